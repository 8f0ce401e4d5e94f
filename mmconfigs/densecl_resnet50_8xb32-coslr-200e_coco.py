# The DenseCL baseline for densecl-hcl_resnet50_8xb32-coslr-200e_coco.py: MMSelfSup's DenseCL on the same object crops (same box
# sampler and view pipeline), without the hyperbolic branch and the scene views.
_base_ = [
    'mmselfsup::selfsup/_base_/models/densecl.py',
    './_base_/datasets/coco_hcl-scenes.py',
    './_base_/schedules/sgd_coslr-200e.py',
]
find_unused_parameters = True  # as MMSelfSup's DenseCL config
train_dataloader = dict(dataset=dict(pipeline=_base_.baseline_pipeline))
