# Mask R-CNN R50-FPN, 1x schedule (12 epochs), fine-tuned on COCO from an HCL-pretrained backbone:
# the setting of MMSelfSup's benchmark config mask-rcnn_r50_fpn_ms-1x_coco.py (SyncBN everywhere,
# frozen_stages=-1, norm_eval=False, Shared4Conv1FC box head, multi-scale training 640-800) with the
# backbone loaded from an extracted pretraining checkpoint and its keys checked strictly.
#
#   python tools/extract_backbone.py work_dirs/densecl-hcl_resnet50_8xb32-coslr-200e_coco/epoch_200.pth work_dirs/densecl-hcl_resnet50_8xb32-coslr-200e_coco/backbone.pth
#   tools/dist_train.sh mmconfigs/mmdet/mask-rcnn_r50_fpn_1x_coco_hcl.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/densecl-hcl_resnet50_8xb32-coslr-200e_coco/backbone.pth
#
# 8 GPUs x 2 images (lr 0.02 for batch 16, MMDetection's schedule_1x). COCO in data/coco/ as in
# MMDetection (override train_dataloader.dataset.data_root etc. for another place).
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

custom_imports = dict(imports=['hcl_plugin.mmdet'], allow_failed_imports=False)

# the output of tools/extract_backbone.py (bare ResNet keys: conv1.weight, layer1.0.conv1.weight, ...)
backbone_checkpoint = 'work_dirs/densecl-hcl_resnet50_8xb32-coslr-200e_coco/backbone.pth'

norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    backbone=dict(
        frozen_stages=-1,
        norm_cfg=norm_cfg,
        norm_eval=False,
        init_cfg=dict(type='Pretrained', checkpoint=backbone_checkpoint)),
    neck=dict(norm_cfg=norm_cfg),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

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

# stop at start when the checkpoint is missing or its keys do not fit the backbone exactly
# (MMEngine's Pretrained init only warns, and the detector would train from random weights)
custom_hooks = [dict(type='PretrainedKeysCheckHook', modules=['backbone'])]
