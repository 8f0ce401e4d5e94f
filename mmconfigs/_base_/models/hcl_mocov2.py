# MoCo-v2 + HCL: MMSelfSup's MoCo-v2 model (ResNet-50, MoCoV2Neck 2048-2048-128, tau 0.2, queue 65536,
# m 0.999) plus the hyperbolic branch with the official HCL defaults: lambda 0.1, c 0.05 (ball radius
# 1/sqrt(c) ~ 4.47), tau 0.2, a queue of 65536 object keys on the ball. The learnable feature scale
# (initial 1/sqrt(128)) keeps the hyperbolic norms in the informative range (docs/background.md).
_base_ = 'mmselfsup::selfsup/_base_/models/mocov2.py'

hyp_c = 0.05
model = dict(
    type='HCLMoCoV2',
    hyp_lambda=0.1,
    hyp_queue_len=65536,
    hyp_neck=dict(type='PoincareNeck', in_channels=2048, hid_channels=2048, out_channels=128, c=hyp_c,
                  clip_r=None, feature_scale=128 ** -0.5, learn_scale=True),
    hyp_head=dict(type='HyperbolicContrastiveHead', temperature=0.2, c=hyp_c))
