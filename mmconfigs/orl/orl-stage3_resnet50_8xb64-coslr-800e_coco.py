# ORL stage 3 on COCO train2017 (the paper's ORL row): image, intra-RoI and inter-RoI BYOL from the
# stage-2 correspondence store, ResNet-50, 8 GPUs x 64 images, 800 epochs (the release).
#   tools/dist_train.sh mmconfigs/orl/orl-stage3_resnet50_8xb64-coslr-800e_coco.py 8
# The stage-3 network starts from scratch, as in the release (stage 1 only finds the correspondences).
_base_ = [
    '../_base_/models/orl.py',
    '../_base_/datasets/coco_orl-stage3.py',
    '../_base_/schedules/sgd_coslr-800e.py',
]
