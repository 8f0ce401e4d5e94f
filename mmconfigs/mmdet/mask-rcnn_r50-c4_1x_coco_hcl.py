# Mask R-CNN R50-C4, 1x schedule, fine-tuned on COCO from an HCL-pretrained backbone: the setting of
# MMSelfSup's mask-rcnn_r50-c4_ms-1x_coco.py (PyTorch-style ResNet with RGB normalisation, SyncBN,
# frozen_stages=-1, norm_eval=False, ResLayerExtraNorm RoI head, multi-scale training 640-800).
#
# Difference from MMSelfSup's config: there only the backbone (conv1-layer3) is initialised from the
# checkpoint, and the RoI head's res5 (layer4) starts from random weights, since MMDetection 3.x gives
# the shared head no pretrained weights of its own. Here layer4 is loaded from the same file (as in
# Detectron2's C4 models), and the key check covers both modules: every key of the file must land in
# the backbone or in the shared head, only the extra norm after res5 is new.
#
#   tools/dist_train.sh mmconfigs/mmdet/mask-rcnn_r50-c4_1x_coco_hcl.py 8 --cfg-options \
#       model.backbone.init_cfg.checkpoint=BACKBONE.pth model.roi_head.shared_head.init_cfg.checkpoint=BACKBONE.pth
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50-caffe-c4_1x_coco.py'

custom_imports = dict(imports=['hcl_plugin.mmdet'], allow_failed_imports=False)

backbone_checkpoint = 'work_dirs/densecl-hcl_resnet50_8xb32-coslr-200e_coco/backbone.pth'

data_preprocessor = dict(
    type='DetDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_mask=True,
    pad_size_divisor=32)

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)),
    roi_head=dict(
        shared_head=dict(
            type='ResLayerExtraNorm',
            norm_cfg=norm_cfg,
            norm_eval=False,
            style='pytorch',
            init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint))))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='RandomChoiceResize',
        scales=[(1333, 640), (1333, 672), (1333, 704), (1333, 736), (1333, 768), (1333, 800)],
        keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)

custom_hooks = [
    dict(type='PretrainedKeysCheckHook',
         modules=['backbone', 'roi_head.shared_head'],
         ignore_missing=['roi_head.shared_head.norm.*'])
]
