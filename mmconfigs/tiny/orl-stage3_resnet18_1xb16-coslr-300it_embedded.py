# Tiny ORL stage 3 on the embedded scenes: ResNet-18, 64 px images, 32 px RoIs, batch 16, 300 iterations,
# from the store of stage 2 (work_dirs/orl_embedded/correspondence; tools/orl_pipeline.sh writes it).
#   python tools/train.py mmconfigs/tiny/orl-stage3_resnet18_1xb16-coslr-300it_embedded.py
#   tools/dist_train.sh mmconfigs/tiny/orl-stage3_resnet18_1xb16-coslr-300it_embedded.py 2     # 2 CPU processes, gloo
_base_ = [
    '../_base_/models/orl.py',
    '../_base_/models/orl_tiny.py',
    '../_base_/datasets/embedded_orl.py',
    '../_base_/schedules/sgd_coslr-300it.py',
]
model = _base_.tiny_model
optim_wrapper = dict(optimizer=dict(lr=0.0125))
# BYOL's target network anneals its own momentum (CosineEMA): no CosineKeyMomentumHook
custom_hooks = []
