#!/usr/bin/env bash
# End-to-end transfer benchmark: pretrain (tiny DenseCL and DenseCL + HCL) -> extract backbone ->
# fine-tune Mask R-CNN on the embedded scene set -> COCO AP^b / AP^m table, with a random-init control.
#   tools/benchmark_transfer.sh                                  # CPU-scale proxy (outputs/benchmark_transfer)
#   tools/benchmark_transfer.sh --pretrain-iters 100 --det-iters 100
#   tools/benchmark_transfer.sh --orl                            # + ORL and ORL + HCL rows (ORL stages 1-2 first)
#   tools/benchmark_transfer.sh --gpus 8 --out outputs/transfer_coco --no-random-init \
#       --method "DenseCL=mmconfigs/densecl_resnet50_8xb32-coslr-200e_coco.py" --method "DenseCL + HCL=mmconfigs/densecl-hcl_resnet50_8xb32-coslr-200e_coco.py" \
#       --det-config mmconfigs/mmdet/mask-rcnn_r50_fpn_1x_coco_hcl.py --pretrain-iters 0 --det-iters 0
# All options: python tools/benchmark_transfer.py --help
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PYTHON=${PYTHON:-python}
if [ -x "$HERE/../.venv/bin/python" ] && [ -z "${PYTHON_SET:-}" ] && [ "$PYTHON" = python ]; then
    PYTHON="$HERE/../.venv/bin/python"
fi
if [ ! -f "$HERE/../data/embedded/annotations_train.json" ] && [[ " $* " != *" --det-config "* ]]; then
    echo "building the embedded data set (data/embedded) ..." >&2
    (cd "$HERE/.." && "$PYTHON" -m hcl_plugin.data.embedded.scenes --out data/embedded)
fi
cd "$HERE/.."
PYTHONWARNINGS=${PYTHONWARNINGS:-ignore} exec "$PYTHON" tools/benchmark_transfer.py "$@"
