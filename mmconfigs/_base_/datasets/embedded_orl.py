# ORL on the embedded Animal-MNIST scenes (CPU-scale proxy for COCO; build them once with
#   python -m hcl_plugin.data.embedded.scenes --out data/embedded): the COCO pipelines of
# coco_orl-stage1.py / coco_orl-stage3.py at 64 px images and 32 px RoIs, batch 16. Stage 3 reads the
# store that tools/orl_pipeline.sh (or tools/orl_correspondence.py) writes to
# work_dirs/orl_embedded/correspondence; another one: --cfg-options train_dataloader.dataset.correspondence=...
_base_ = ['./coco_orl-stage3.py']

input_size = 64
patch_size = 32
view_size = {'RandomResizedCrop': dict(size=input_size), 'Resize': dict(scale=(input_size, input_size))}


def _sized(pipeline):
    return [dict(step, **view_size.get(step['type'], {})) for step in pipeline]


image_pipelines = [_sized(p) for p in _base_.image_pipelines]
scene_pipeline = _sized(_base_.scene_pipeline)
stage1_pipeline = [
    dict(type='LoadSceneImageFromFile'),
    dict(type='MultiView', num_views=[1, 1], transforms=image_pipelines),
    dict(type='PackSelfSupInputs', meta_keys=['img_path']),
]
orl_views = dict(_base_.orl_views, image_transforms=image_pipelines, patch_size=patch_size)
train_pipeline = [
    dict(type='LoadORLImages'),
    orl_views,
    dict(type='PackSelfSupInputs', meta_keys=['img_path', 'knn_img_path']),
]
hcl_train_pipeline = [dict(step, scene_transforms=scene_pipeline) if step['type'] == 'ORLMultiView' else step
                      for step in train_pipeline]
stage1_dataset = dict(type='SceneBoxDataset', data_root='data/embedded/', ann_file='annotations_train.json',
                      ann_format='coco', data_prefix=dict(img_path='images/'), pipeline=stage1_pipeline)
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        data_root='',
        topk_knn_image=None,  # all the neighbours the store has
        correspondence='work_dirs/orl_embedded/correspondence',
        image_root='data/embedded/images',
        pipeline=train_pipeline))
