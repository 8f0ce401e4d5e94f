# Tiny ORL stage 3 + HCL on the embedded scenes: orl-stage3 (tiny) plus the hyperbolic branch on the
# whole image (scene, 64 px) and its intra-RoI box (object), a queue of 256 object keys.
#   python tools/train.py mmconfigs/tiny/orl-hcl-stage3_resnet18_1xb16-coslr-300it_embedded.py
_base_ = [
    '../_base_/models/hcl_orl.py',
    '../_base_/models/orl_tiny.py',
    '../_base_/datasets/embedded_orl.py',
    '../_base_/schedules/sgd_coslr-300it.py',
]
model = dict(_base_.tiny_model, hyp_queue_len=256, hyp_neck=dict(in_channels=512, hid_channels=512))
train_dataloader = dict(dataset=dict(pipeline=_base_.hcl_train_pipeline))
optim_wrapper = dict(optimizer=dict(lr=0.0125))
# BYOL's target network anneals its own momentum (CosineEMA): no CosineKeyMomentumHook
custom_hooks = []
