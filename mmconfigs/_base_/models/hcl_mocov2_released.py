# MoCo-v2 + HCL as the released HCL code builds it (docs/hcl_options.md): one projection head, the
# MoCoV2Neck, whose L2-normalised output feeds MoCo's loss and whose raw output, mapped onto the ball
# (expmap0 and a projection; no scale, no clipping, the Riemannian gradient rescale: BallMap.official),
# feeds the hyperbolic loss. lambda 0.1, c 0.05 fixed, tau 0.2 as in hcl_mocov2.py.
_base_ = ['./hcl_mocov2.py']

model = dict(
    hyperbolic_head='shared',
    hyp_neck=dict(_delete_=True, type='BallMapNeck', clip_r=None, feature_scale=None, learn_scale=False,
                  riemannian_grad=True, decoupled=False))
