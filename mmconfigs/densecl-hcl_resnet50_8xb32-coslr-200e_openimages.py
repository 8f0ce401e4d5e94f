# DenseCL + HCL pretraining on OpenImages scenes (ground-truth boxes), ResNet-50,
# 8 GPUs x 32 images, 200 epochs cosine (see _base_ files for each default).
#   tools/dist_train.sh mmconfigs/densecl-hcl_resnet50_8xb32-coslr-200e_openimages.py 8
_base_ = [
    './_base_/models/hcl_densecl.py',
    './_base_/datasets/openimages_hcl-scenes.py',
    './_base_/schedules/sgd_coslr-200e.py',
]
find_unused_parameters = True  # as MMSelfSup's DenseCL config
