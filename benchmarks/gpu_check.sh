#!/usr/bin/env bash
# One call for the accelerator evidence: loss benchmark, numerics tests and a training step on a GPU.
#
#   benchmarks/gpu_check.sh [--device cuda|cpu] [--quick] [--out DIR] [--parts losses tests step]
#
# On a lent GPU machine (Python 3.12, torch and Lightning preinstalled, no network): lightly and
# geoopt come from the wheels in .whl/ (benchmarks/fetch_gpu_wheels.sh saves them). Writes
# DIR/gpu_check.json and DIR/gpu_check.md (default DIR: outputs/gpu_check). Stops after 8 minutes.
# On a CPU, `benchmarks/gpu_check.sh --device cpu --quick --out DIR` runs the same code in about a minute.
# PYTHON selects the interpreter (default: python3).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
if ! "$py" -c "import lightly, geoopt" 2>/dev/null; then
    if compgen -G ".whl/*.whl" >/dev/null; then
        site=${TMPDIR:-/tmp}/hcl_plugin_gpu_site
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/*.whl
        export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "gpu_check.sh: lightly or geoopt is missing and .whl/ holds no wheels;" \
             "run benchmarks/fetch_gpu_wheels.sh where PyPI is reachable, then carry .whl" >&2
        exit 2
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --signal=INT --kill-after=20 480 "$py" benchmarks/gpu_check.py "$@"
