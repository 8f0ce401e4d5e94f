# MoCo-v2 + HCL in the released HCL code's setting (shared head, Riemannian gradient rescale, no
# feature scale; docs/hcl_options.md) on COCO train2017 scenes, ResNet-50, 8 GPUs x 32 images,
# 200 epochs cosine. mocov2-hcl_resnet50_8xb32-coslr-200e_coco.py is the same run with the project's defaults.
#   tools/dist_train.sh mmconfigs/mocov2-hcl-released_resnet50_8xb32-coslr-200e_coco.py 8
_base_ = [
    './_base_/models/hcl_mocov2_released.py',
    './_base_/datasets/coco_hcl-scenes.py',
    './_base_/schedules/sgd_coslr-200e.py',
]
