# The MoCo-v2 baseline for mocov2-hcl_resnet50_8xb32-coslr-200e_coco.py: MMSelfSup's MoCo-v2 on the same object crops (same box
# sampler and view pipeline), without the hyperbolic branch and the scene views.
_base_ = [
    'mmselfsup::selfsup/_base_/models/mocov2.py',
    './_base_/datasets/coco_hcl-scenes.py',
    './_base_/schedules/sgd_coslr-200e.py',
]
train_dataloader = dict(dataset=dict(pipeline=_base_.baseline_pipeline))
