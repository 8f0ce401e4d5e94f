# The baseline of mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py: MMSelfSup's MoCo-v2 on the same object crops, same budget.
_base_ = [
    'mmselfsup::selfsup/_base_/models/mocov2.py',
    '../_base_/datasets/embedded_hcl-scenes.py',
    '../_base_/schedules/sgd_coslr-300it.py',
]
model = dict(queue_len=256, momentum=0.98, backbone=dict(depth=18), neck=dict(in_channels=512, hid_channels=512))
train_dataloader = dict(dataset=dict(pipeline=_base_.baseline_pipeline))
