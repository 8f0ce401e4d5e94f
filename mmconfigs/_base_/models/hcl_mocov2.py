# MoCo-v2 + HCL: MMSelfSup's MoCo-v2 model (ResNet-50, MoCoV2Neck 2048-2048-128, tau 0.2, queue 65536,
# m 0.999) plus the hyperbolic branch of hcl_branch.py (lambda 0.1, c 0.05 fixed, tau 0.2).
_base_ = ['mmselfsup::selfsup/_base_/models/mocov2.py', './hcl_branch.py']

model = dict(type='HCLMoCoV2', **_base_.hcl_branch)
