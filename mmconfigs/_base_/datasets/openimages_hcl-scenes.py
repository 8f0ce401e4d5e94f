# OpenImages scenes for HCL pretraining with ground-truth boxes (the official HCL release's setting):
# data/openimages/oidv6-train-annotations-bbox.csv and data/openimages/train/<ImageID>.jpg.
_base_ = ['./coco_hcl-scenes.py']

data_root = 'data/openimages/'
train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        ann_file='oidv6-train-annotations-bbox.csv',
        ann_format='openimages',
        data_prefix=dict(img_path='train/')))
