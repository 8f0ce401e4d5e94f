# Tiny Mask R-CNN R18-FPN on the embedded Animal-MNIST scene set (COCO format, boxes + RLE masks,
# 10 animal classes, 256 px scenes): the CPU-scale proxy of mask-rcnn_r50_fpn_1x_coco_hcl.py
# (same SyncBN / norm_eval=False / frozen_stages=-1 / Shared4Conv1FC head / multi-scale training /
# strict backbone key check), with the ResNet-18 of the tiny pretraining configs
# (mmconfigs/tiny/*_embedded.py), narrower heads (128 channels, 64 RoIs per image), 160-192 px
# images, batch 4 and 400 iterations, evaluated with
# CocoMetric (bbox + segm) on the val split. Build the data once with
#   python -m hcl_plugin.data.embedded.scenes --out data/embedded
# then
#   python tools/train.py mmconfigs/tiny/densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py --work-dir work_dirs/tiny/densecl-hcl_resnet18_1xb16-coslr-300it_embedded
#   python tools/extract_backbone.py work_dirs/tiny/densecl-hcl_resnet18_1xb16-coslr-300it_embedded/iter_300.pth \
#       work_dirs/tiny/densecl-hcl_resnet18_1xb16-coslr-300it_embedded/backbone.pth
#   python tools/train.py mmconfigs/mmdet/tiny/mask-rcnn_r18_fpn_embedded_hcl.py
# (tools/benchmark_transfer.sh runs all of it for HCL, its baseline and random init.)
_base_ = '../mask-rcnn_r50_fpn_1x_coco_hcl.py'

backbone_checkpoint = 'work_dirs/tiny/densecl-hcl_resnet18_1xb16-coslr-300it_embedded/backbone.pth'
max_iters = 400

# CPU budget: the COCO heads on 512 sampled RoIs per image cost ~1.4 TFLOP per iteration of 4 images
# (the 4conv1fc box head alone ~1 TFLOP): 30 s per iteration on this 2-core CPU (shared with other
# jobs). The proxy keeps the architecture (FPN, 4conv1fc box head, 4-conv mask head, SyncBN) at 128
# channels, 64 sampled RoIs per image and 160-192 px images: 5-7 s per iteration on the same loaded CPU.
width = 128
model = dict(
    backbone=dict(depth=18, init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=width),
    rpn_head=dict(in_channels=width, feat_channels=width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=width),
        bbox_head=dict(in_channels=width, conv_out_channels=width, fc_out_channels=256, num_classes=10),
        mask_roi_extractor=dict(out_channels=width),
        mask_head=dict(in_channels=width, conv_out_channels=width, num_classes=10)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=300),
        rcnn=dict(sampler=dict(num=64))),
    # a low score threshold so that a short CPU run still has detections to score (AP needs a ranking)
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300), rcnn=dict(score_thr=0.001, max_per_img=50)))

dataset_type = 'CocoDataset'
data_root = 'data/embedded/'
metainfo = dict(classes=('bear', 'bird', 'cat', 'cow', 'dog', 'elephant', 'giraffe', 'horse', 'sheep', 'zebra'))

# the multi-scale rule of the COCO configs (short side 640-800 for a 800 px test size), scaled to 192 px
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomChoiceResize', scales=[(240, 160), (240, 168), (240, 176), (240, 184), (240, 192)], keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(240, 192), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs', meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations_train.json',
        data_prefix=dict(img='images/'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations_val.json',
        data_prefix=dict(img='images/'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='CocoMetric', ann_file=data_root + 'annotations_val.json', metric=['bbox', 'segm'],
                     format_only=False)
test_evaluator = val_evaluator

# iteration-based CPU schedule: batch 4, lr 0.02 (SGD, momentum 0.9, wd 1e-4), 50 warm-up iterations,
# x0.1 at 75 % of the run; evaluate and save once, at the end
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', by_epoch=False, begin=0, end=max_iters, milestones=[int(max_iters * 0.75)], gamma=0.1),
]
optim_wrapper = dict(optimizer=dict(lr=0.02))
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(backend='gloo'))
