# Tiny MoCo-v2 + HCL on the embedded Animal-MNIST scenes: ResNet-18, 64 px views, batch 16, queues of
# 256 (the small-scale recipe, docs/recipe.md), 300 iterations on a CPU in minutes. Build the data once: python -m hcl_plugin.data.embedded.scenes --out data/embedded
#   python tools/train.py mmconfigs/tiny/mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py
#   tools/dist_train.sh mmconfigs/tiny/mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py 2          # 2 CPU processes, gloo
_base_ = [
    '../_base_/models/hcl_mocov2.py',
    '../_base_/datasets/embedded_hcl-scenes.py',
    '../_base_/schedules/sgd_coslr-300it.py',
]
# ResNet-18: 512 channels in the last stage; the hyperbolic queue is as long as queue_len
model = dict(
    queue_len=256, momentum=0.98,
    backbone=dict(depth=18),
    neck=dict(in_channels=512, hid_channels=512),
    hyp_neck=dict(in_channels=512, hid_channels=512))
