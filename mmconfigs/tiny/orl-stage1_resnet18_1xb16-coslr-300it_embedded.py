# Tiny ORL stage 1 (image-level BYOL) on the embedded scenes: ResNet-18, 64 px views, batch 16, 300 iterations.
#   python tools/train.py mmconfigs/tiny/orl-stage1_resnet18_1xb16-coslr-300it_embedded.py
# The whole pipeline (stage 1, backbone extraction, stage 2, stage 3): tools/orl_pipeline.sh (docs/orl.md).
_base_ = [
    '../_base_/models/orl_stage1.py',
    '../_base_/models/orl_tiny.py',
    '../_base_/datasets/embedded_orl.py',
    '../_base_/schedules/sgd_coslr-300it.py',
]
model = _base_.tiny_model
train_dataloader = dict(dataset=dict(_delete_=True, **_base_.stage1_dataset))
# the release's lr 0.4 for a batch of 512, scaled linearly to 16
optim_wrapper = dict(optimizer=dict(lr=0.0125))
# BYOL's target network anneals its own momentum (CosineEMA): no CosineKeyMomentumHook
custom_hooks = []
