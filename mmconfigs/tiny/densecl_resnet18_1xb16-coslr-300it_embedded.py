# The baseline of densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py: MMSelfSup's DenseCL on the same object crops, same budget.
_base_ = [
    'mmselfsup::selfsup/_base_/models/densecl.py',
    '../_base_/datasets/embedded_hcl-scenes.py',
    '../_base_/schedules/sgd_coslr-300it.py',
]
find_unused_parameters = True  # as MMSelfSup's DenseCL config
model = dict(queue_len=256, momentum=0.98, backbone=dict(depth=18), neck=dict(in_channels=512, hid_channels=512))
train_dataloader = dict(dataset=dict(pipeline=_base_.baseline_pipeline))
