# The MoCo-v2 baseline for mocov2_hcl_coco.py: MMSelfSup's MoCo-v2, the same object crops (same box
# sampler and view pipeline), no hyperbolic branch and no scene views.
_base_ = [
    'mmselfsup::selfsup/_base_/models/mocov2.py',
    './_base_/datasets/coco_hcl-scenes.py',
    './_base_/schedule_sgd-coslr-200e.py',
]
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadSceneImageFromFile'),  # hcl_plugin's loader: same pixels as the Lightly path
    {{_base_.box_sampler}},
    dict(type='SceneObjectMultiView', object_transforms={{_base_.object_view_pipeline}}, hyperbolic_views=False),
    dict(type='PackSelfSupInputs', meta_keys=['img_path']),
]))
