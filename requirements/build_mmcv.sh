#!/usr/bin/env bash
# Build MMCV 2.0.1 with compiled ops into a wheel cache, once; later runs reuse the wheel.
#
#   requirements/build_mmcv.sh PYTHON   ->  prints the folder that holds the wheel
#
# Why (docs/background.md, the dependency set): MMDetection imports mmcv.ops at module level, PyPI has only
# MMCV sources in the range MMSelfSup 1.0 and MMDetection 3.3 both accept (2.0.1), and torch >= 2.10
# headers need C++20 where MMCV's setup.py asks for C++14. So: download the sdist, change the
# standard flag, build with torch already installed (--no-build-isolation, setuptools < 81).
# Where CUDA is visible to torch (or FORCE_CUDA=1) the build includes CUDA ops; the cache folder
# name says which, so a CPU wheel is never reused on a GPU machine.
set -euo pipefail
PY=${1:?usage: build_mmcv.sh PYTHON}
MMCV_VERSION=${MMCV_VERSION:-2.0.1}
CACHE_ROOT=${HCL_PLUGIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/hcl_plugin}
flavour=$("$PY" - <<'PYEOF'
import os, sys, torch
cuda = torch.cuda.is_available() or os.environ.get("FORCE_CUDA") == "1"
tag = f"cu{torch.version.cuda.replace('.', '')}" if cuda and torch.version.cuda else "cpu"
print(f"py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__.split('+')[0]}-{tag}")
PYEOF
)
dest="$CACHE_ROOT/wheels/mmcv-$MMCV_VERSION-$flavour"
if compgen -G "$dest/mmcv-$MMCV_VERSION-*.whl" > /dev/null; then
    echo "$dest"
    exit 0
fi
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
    echo "building mmcv $MMCV_VERSION ($flavour) with ops; about 13 minutes on 2 cores, once"
    "$PY" -m pip install --quiet --disable-pip-version-check "setuptools<81" wheel ninja
    "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
        --no-build-isolation "mmcv==$MMCV_VERSION" -d "$work"
    tar -xzf "$work/mmcv-$MMCV_VERSION.tar.gz" -C "$work"
    src="$work/mmcv-$MMCV_VERSION"
    sed -i "s/-std=c++14/-std=c++20/g; s/-std=c++17/-std=c++20/g" "$src/setup.py"
    grep -q -- "-std=c++20" "$src/setup.py" || { echo "build_mmcv.sh: setup.py has no C++ standard flag to change" >&2; exit 1; }
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip wheel --no-deps --no-build-isolation \
        --disable-pip-version-check -w "$work/out" "$src"
    mv "$work"/out/mmcv-*.whl "$dest/"
} >&2
echo "$dest"
