# The baseline of densecl_hcl_synthetic.py: MMSelfSup's DenseCL on the same object crops, same budget.
_base_ = [
    'mmselfsup::selfsup/_base_/models/densecl.py',
    '../_base_/datasets/synthetic_hcl-scenes.py',
    '../_base_/schedule_tiny-cpu.py',
]
find_unused_parameters = True  # as MMSelfSup's DenseCL config
model = dict(queue_len=4096, backbone=dict(depth=18), neck=dict(in_channels=512, hid_channels=512))
train_dataloader = dict(dataset=dict(pipeline=_base_.baseline_pipeline))
