# ORL stage 1: image-level BYOL, MMSelfSup's BYOL model with the release's settings (stage1 config:
# no bias in the MLPs, base momentum 0.99).
_base_ = ['mmselfsup::selfsup/_base_/models/byol.py']

model = dict(base_momentum=0.99, neck=dict(with_bias=False), head=dict(predictor=dict(with_bias=False)))
