# Tiny MoCo-v2 + HCL in the released HCL code's setting (shared head: the MoCoV2Neck's raw output on the
# ball, Riemannian gradient rescale, no feature scale; docs/hcl_options.md) on the embedded scenes.
#   python tools/train.py mmconfigs/tiny/mocov2-hcl-released_resnet18_1xb16-coslr-300it_embedded.py
_base_ = ['./mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py']

model = dict(
    hyperbolic_head='shared',
    hyp_neck=dict(_delete_=True, type='BallMapNeck', clip_r=None, feature_scale=None, learn_scale=False,
                  riemannian_grad=True, decoupled=False))
