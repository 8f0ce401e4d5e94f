# ORL stage 1 on COCO train2017: whole images, MMSelfSup's BYOL views (224 px, asymmetric blur and
# solarisation). The image list comes from a COCO-format file; its boxes are not used here, so the
# proposals file of stage 2 serves (tools/make_proposals.py writes it, docs/orl.md):
#   python tools/make_proposals.py --image-root data/coco/train2017 \
#       --coco data/coco/annotations/instances_train2017.json \
#       --out data/coco/proposals/train2017_selective-search.json --workers 32
custom_imports = dict(imports=['hcl_plugin.mmselfsup'], allow_failed_imports=False)
_base_ = ['mmselfsup::selfsup/_base_/datasets/imagenet_byol.py']

data_root = 'data/coco/'
train_pipeline = [
    dict(type='LoadSceneImageFromFile'),  # hcl_plugin's loader: same pixels as the Lightly path
    dict(type='MultiView', num_views=[1, 1], transforms=[_base_.view_pipeline1, _base_.view_pipeline2]),
    dict(type='PackSelfSupInputs', meta_keys=['img_path']),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=4,
    # MMEngine passes every key of collate_fn to the function: drop the _scope_ the mmselfsup:: base adds
    collate_fn=dict(_delete_=True, type='default_collate'),
    dataset=dict(
        _delete_=True,
        type='SceneBoxDataset',
        data_root=data_root,
        ann_file='proposals/train2017_selective-search.json',
        ann_format='coco',
        data_prefix=dict(img_path='train2017/'),
        pipeline=train_pipeline))
