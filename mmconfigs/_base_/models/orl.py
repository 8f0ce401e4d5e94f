# ORL stage 3 (Xie et al. NeurIPS 2021; release github Jiahao000/ORL, configs/selfsup/orl/coco/stage3):
# MMSelfSup's BYOL model (ResNet-50, SyncBN, projection 2048-4096-256, predictor 256-4096-256,
# CosineSimilarityLoss) with the release's settings: no bias in the projection and prediction MLPs,
# base momentum 0.99 annealed to 1 on a cosine (MMSelfSup's CosineEMA), and three predictors (image,
# intra-RoI, inter-RoI pairs) with loss weights 1.
_base_ = ['mmselfsup::selfsup/_base_/models/byol.py']

model = dict(
    type='ORL',
    base_momentum=0.99,
    global_loss_weight=1.,
    local_intra_loss_weight=1.,
    local_inter_loss_weight=1.,
    neck=dict(with_bias=False),
    head=dict(predictor=dict(with_bias=False)))
