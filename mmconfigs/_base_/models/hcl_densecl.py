# DenseCL + HCL: MMSelfSup's DenseCL model (ResNet-50, DenseCLNeck, tau 0.2, queue 65536, m 0.999,
# loss_lambda 0.5) plus the hyperbolic branch (see hcl_mocov2.py for its defaults).
_base_ = 'mmselfsup::selfsup/_base_/models/densecl.py'

hyp_c = 0.05
model = dict(
    type='HCLDenseCL',
    hyp_lambda=0.1,
    hyp_queue_len=65536,
    hyp_neck=dict(type='PoincareNeck', in_channels=2048, hid_channels=2048, out_channels=128, c=hyp_c,
                  clip_r=None, feature_scale=128 ** -0.5, learn_scale=True),
    hyp_head=dict(type='HyperbolicContrastiveHead', temperature=0.2, c=hyp_c))
