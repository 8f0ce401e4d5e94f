# Mask R-CNN R50-FPN, 2x schedule (24 epochs, lr steps at 16 and 22): mask-rcnn_r50_fpn_1x_coco_hcl.py
# with the schedule of MMSelfSup's mask-rcnn_r50_fpn_ms-2x_coco.py.
_base_ = './mask-rcnn_r50_fpn_1x_coco_hcl.py'

train_cfg = dict(max_epochs=24)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=24, by_epoch=True, milestones=[16, 22], gamma=0.1),
]
