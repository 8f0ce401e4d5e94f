# UHML (Yan et al. CVPR 2021) on CUB-200-2011 with the paper's settings: ResNet-50, 227/224 px crops,
# Adam lr 1e-5, weight decay 5e-4, batches of 128 = 16 pseudo-classes x 8 images, levels [100, 50]
# (Ward cuts, re-clustered before every epoch), Omega 0.1, c = 1. Training uses classes 1-100 (the
# first half of data/CUB_200_2011/images/<class>/), no labels; evaluate Recall@K on classes 101-200.
# ImageNet weights for the backbone (a local MMClassification ResNet-50 checkpoint; nothing is downloaded):
#   --cfg-options model.backbone.init_cfg.type=Pretrained model.backbone.init_cfg.checkpoint=r50.pth \
#                 model.backbone.init_cfg.prefix=backbone.
#   python tools/train.py mmconfigs/uhml_resnet50_1xb128-adam-50e_cub.py
#   tools/dist_train.sh mmconfigs/uhml_resnet50_1xb128-adam-50e_cub.py 4      # 4 processes: 4 x 128 images per step
_base_ = ['_base_/uhml_runtime.py']

data_root = 'data/CUB_200_2011/images'
levels = [100, 50]
instances_per_class = 8          # M; P = 128 // 8 = 16

model = dict(
    backbone=dict(depth=50),
    neck=dict(in_channels=2048, out_channels=128, c=1.0))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmcls.ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='RandomResizedCrop', size=227, scale=(0.5, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSelfSupInputs', meta_keys=['img_path', 'dataset_index']),
]
embed_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='mmcls.ResizeEdge', scale=256, edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackSelfSupInputs', meta_keys=['img_path', 'dataset_index']),
]

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='UHMLBalancedBatchSampler', instances_per_class=instances_per_class),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='UHMLImageFolder', data_root=data_root, layout='class', split='train',
                 pipeline=train_pipeline))

custom_hooks = [
    dict(type='UHMLReclusterHook', n_clusters=levels, interval=1, embed_pipeline=embed_pipeline,
         batch_size=256, num_workers=8, log_every=10),
]

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-5, weight_decay=5e-4))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=50)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=5, max_keep_ckpts=3))
log_processor = dict(by_epoch=True)
