# The DenseCL baseline for densecl_hcl_openimages.py: MMSelfSup's DenseCL, the same object crops (same box
# sampler and view pipeline), no hyperbolic branch and no scene views.
_base_ = [
    'mmselfsup::selfsup/_base_/models/densecl.py',
    './_base_/datasets/openimages_hcl-scenes.py',
    './_base_/schedule_sgd-coslr-200e.py',
]
find_unused_parameters = True
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadSceneImageFromFile'),  # hcl_plugin's loader: same pixels as the Lightly path
    {{_base_.box_sampler}},
    dict(type='SceneObjectMultiView', object_transforms={{_base_.object_view_pipeline}}, hyperbolic_views=False),
    dict(type='PackSelfSupInputs', meta_keys=['img_path']),
]))
