# ORL stage 1: image-level BYOL on COCO train2017, ResNet-50, 8 GPUs x 64 images, 800 epochs (the release).
#   tools/dist_train.sh mmconfigs/orl/orl-stage1_resnet50_8xb64-coslr-800e_coco.py 8
#   python tools/extract_backbone.py work_dirs/orl-stage1_resnet50_8xb64-coslr-800e_coco/epoch_800.pth \
#       work_dirs/orl-stage1_resnet50_8xb64-coslr-800e_coco/backbone.pth
# then stage 2 (tools/orl_correspondence.py) and stage 3; docs/orl.md.
_base_ = [
    '../_base_/models/orl_stage1.py',
    '../_base_/datasets/coco_orl-stage1.py',
    '../_base_/schedules/sgd_coslr-800e.py',
]
