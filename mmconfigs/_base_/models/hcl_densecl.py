# DenseCL + HCL: MMSelfSup's DenseCL model (ResNet-50, DenseCLNeck, tau 0.2, queue 65536, m 0.999,
# loss_lambda 0.5) plus the hyperbolic branch of hcl_branch.py (lambda 0.1, c 0.05 fixed, tau 0.2).
_base_ = ['mmselfsup::selfsup/_base_/models/densecl.py', './hcl_branch.py']

model = dict(type='HCLDenseCL', **_base_.hcl_branch)
