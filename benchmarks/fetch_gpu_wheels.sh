#!/usr/bin/env bash
# Download the wheels benchmarks/gpu_check.sh installs on a GPU machine that can fetch nothing.
#
#   benchmarks/fetch_gpu_wheels.sh [PYTHON_VERSION]     # default 3.12, the lent GPU machine's Python
#
# Saves lightly and geoopt (pure-Python wheels, the versions pinned in requirements/constraints.txt)
# into the git-ignored folder .whl/. Their other needs (torch, torchvision, pytorch_lightning, numpy,
# scipy, tqdm) are preinstalled there; lightly's hydra-core is only used by its command-line tools.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:-3.12}
pins=()
for name in lightly geoopt; do
    pin=$(grep -E "^${name}==" requirements/constraints.txt) || { echo "no pin for ${name} in requirements/constraints.txt" >&2; exit 2; }
    pins+=("$pin")
done
python3 -m pip download --no-deps --only-binary=:all: --python-version "$version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "${pins[@]}"
echo "Wheels are in .whl/: $(ls .whl | tr '\n' ' ')"
echo "Next: benchmarks/gpu_check.sh on the GPU machine (carry .whl)."
