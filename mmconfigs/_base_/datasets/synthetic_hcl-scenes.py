# The embedded Animal-MNIST scene set (CPU-scale proxy for COCO), built once with
#   python -m hcl_plugin.data.embedded.scenes --out data/embedded
# (`make demo` builds the same set). 256 px scenes, 2-5 animals each, exact boxes; small crops and
# 64 px views so a few hundred iterations run in minutes on a CPU.
_base_ = ['./coco_hcl-scenes.py']

data_root = 'data/embedded/'
input_size = 64
object_view_pipeline = [
    dict(type='RandomResizedCrop', size=input_size, scale=(0.2, 1.), backend='pillow'),
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='RandomGaussianBlur', sigma_min=0.1, sigma_max=2.0, prob=0.5),
    dict(type='RandomFlip', prob=0.5),
]
scene_view_pipeline = [
    dict(type='Resize', scale=(input_size, input_size), keep_ratio=False, backend='pillow'),
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='RandomGaussianBlur', sigma_min=0.1, sigma_max=2.0, prob=0.5),
    dict(type='RandomFlip', prob=0.5),
]
# animals in 256 px scenes are small: the official 56 px rule keeps ~65 % of them (docs/data.md)
box_sampler = dict(type='SampleSceneObjectBoxes', min_box_size=24, min_boxes=2, scene_boxes=(2, 5),
                   expand_to=96, too_few_boxes='resample')
train_pipeline = [
    dict(type='LoadSceneImageFromFile'),  # hcl_plugin's loader: same pixels as the Lightly path
    box_sampler,
    dict(type='SceneObjectMultiView', object_transforms=object_view_pipeline,
         scene_transforms=scene_view_pipeline, hyperbolic_views=True),
    dict(type='PackSelfSupInputs', meta_keys=['img_path']),
]
train_dataloader = dict(
    batch_size=16,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        ann_file='annotations_train.json',
        ann_format='coco',
        data_prefix=dict(img_path='images/'),
        pipeline=train_pipeline))
