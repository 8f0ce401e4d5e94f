# The ORL models at CPU scale: ResNet-18 with plain BatchNorm (BN, BN1d in the MLPs; SyncBN needs several GPUs), projection
# 512-512-128 and predictor 128-512-128.
tiny_model = dict(
    backbone=dict(depth=18, norm_cfg=dict(type='BN')),
    neck=dict(in_channels=512, hid_channels=512, out_channels=128, norm_cfg=dict(type='BN1d')),
    head=dict(predictor=dict(in_channels=128, hid_channels=512, out_channels=128, norm_cfg=dict(type='BN1d'))))
