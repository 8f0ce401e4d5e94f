# MoCo-v2 + HCL pretraining on COCO train2017 scenes (unsupervised proposals), ResNet-50,
# 8 GPUs x 32 images, 200 epochs cosine (the paper's COCO setting; see _base_ files for each default).
#   tools/dist_train.sh mmconfigs/mocov2-hcl_resnet50_8xb32-coslr-200e_coco.py 8
_base_ = [
    './_base_/models/hcl_mocov2.py',
    './_base_/datasets/coco_hcl-scenes.py',
    './_base_/schedules/sgd_coslr-200e.py',
]
