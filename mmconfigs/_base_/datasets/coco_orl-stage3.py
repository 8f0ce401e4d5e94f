# ORL stage 3 on COCO train2017 (release: configs/selfsup/orl/coco/stage3/r50_bs512_ep800.py): the
# correspondence store of stage 2 (tools/orl_correspondence.py, docs/orl.md) gives each image its
# proposals, 10 nearest images and their top RoI pairs. Per sample: two BYOL views of the image
# (224 px), an intra-RoI pair (a proposal and a jittered copy: centre shift +-0.5, scale 0.5-2, ratio
# 0.5-2, IoU > 0.5) and an inter-RoI pair (a stored pair with a random neighbour), each RoI resized
# to 96 px, with the BYOL augmentations minus the random crop. HCLORL also takes the whole image
# (scene) and the intra-RoI box (object) resized to scene_size, as HCL's hyperbolic views.
custom_imports = dict(imports=['hcl_plugin.mmselfsup'], allow_failed_imports=False)
_base_ = ['mmselfsup::selfsup/_base_/datasets/imagenet_byol.py']

data_root = 'data/coco/'
patch_size = 96
scene_size = 224
image_pipelines = [_base_.view_pipeline1, _base_.view_pipeline2]
# the BYOL pipelines without their first step (the random resized crop): the RoIs are already cropped
patch_pipelines = [_base_.view_pipeline1[1:], _base_.view_pipeline2[1:]]
# HCL's hyperbolic views: resized without a random crop, with the first view's photometric steps
scene_pipeline = [dict(type='Resize', scale=(scene_size, scene_size), keep_ratio=False, backend='pillow'),
                  *_base_.view_pipeline1[1:]]
orl_views = dict(type='ORLMultiView', image_transforms=image_pipelines, patch_transforms=patch_pipelines,
                 patch_size=patch_size, scene_transforms=None)
train_pipeline = [
    dict(type='LoadORLImages'),
    orl_views,
    dict(type='PackSelfSupInputs', meta_keys=['img_path', 'knn_img_path']),
]
hcl_train_pipeline = [dict(step, scene_transforms=scene_pipeline) if step['type'] == 'ORLMultiView' else step
                      for step in train_pipeline]
train_dataloader = dict(
    batch_size=64,
    num_workers=4,
    # MMEngine passes every key of collate_fn to the function: drop the _scope_ the mmselfsup:: base adds
    collate_fn=dict(_delete_=True, type='default_collate'),
    dataset=dict(
        _delete_=True,
        type='ORLCorrespondenceDataset',
        data_root=data_root,
        correspondence='orl_correspondence_train2017',
        image_root='train2017',
        topk_knn_image=10,
        jitter=dict(shift=(-0.5, 0.5), scale=(0.5, 2.), ratio=(0.5, 2.), min_iou=0.5, attempts=200),
        pipeline=train_pipeline))
