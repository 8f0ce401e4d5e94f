# COCO train2017 scenes for HCL pretraining: boxes = unsupervised selective-search proposals (the
# paper's COCO setting, ORL's filter), written once with
#   python tools/make_proposals.py --image-root data/coco/train2017 \
#       --coco data/coco/annotations/instances_train2017.json \
#       --out data/coco/proposals/train2017_selective-search.json --workers 32
# (with ground-truth boxes instead: ann_file='annotations/instances_train2017.json').
# Four views per image: two MoCo-v2 views of one object crop (the baseline's), the scene crop and
# the object crop resized to hyperbolic_size (default input_size) without a random crop (the hyperbolic pair).
# The pipelines are written here once; embedded_hcl-scenes.py derives its 64 px version from them.
custom_imports = dict(imports=['hcl_plugin.mmselfsup'], allow_failed_imports=False)

dataset_type = 'SceneBoxDataset'
data_root = 'data/coco/'
input_size = 224
# side of the two hyperbolic views (scene crop, object crop); None = input_size, the official setting
# (224 for all four views). A smaller side makes the hyperbolic branch cheaper and leaves the object
# views unchanged (SceneObjectMultiView's hyperbolic_size; docs/mmselfsup.md). From the command line:
#   --cfg-options train_dataloader.dataset.pipeline.2.hyperbolic_size=112
hyperbolic_size = None

# MMSelfSup's MoCo-v2 augmentations (configs/selfsup/_base_/datasets/imagenet_mocov2.py) after the
# first step, which sets the view size: a random resized crop for the object views, a plain resize
# for the hyperbolic views (official HCL)
photometric_augmentations = [
    dict(type='RandomApply',
         transforms=[dict(type='ColorJitter', brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)],
         prob=0.8),
    dict(type='RandomGrayscale', prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
    dict(type='RandomGaussianBlur', sigma_min=0.1, sigma_max=2.0, prob=0.5),
    dict(type='RandomFlip', prob=0.5),
]
object_view_pipeline = [dict(type='RandomResizedCrop', size=input_size, scale=(0.2, 1.), backend='pillow'),
                        *photometric_augmentations]
scene_view_pipeline = [dict(type='Resize', scale=(input_size, input_size), keep_ratio=False, backend='pillow'),
                       *photometric_augmentations]
# official HCL box rules: boxes >= 56x56 px, >= 2 boxes per image (else another image is drawn),
# scene = union of 2-5 boxes + the object, small objects expanded towards 256 px
box_sampler = dict(type='SampleSceneObjectBoxes', min_box_size=56, min_boxes=2, scene_boxes=(2, 5),
                   expand_to=256, too_few_boxes='resample')
train_pipeline = [
    dict(type='LoadSceneImageFromFile'),  # hcl_plugin's loader: same pixels as the Lightly path
    box_sampler,
    dict(type='SceneObjectMultiView', object_transforms=object_view_pipeline,
         scene_transforms=scene_view_pipeline, hyperbolic_views=True, hyperbolic_size=hyperbolic_size),
    dict(type='PackSelfSupInputs', meta_keys=['img_path']),
]
# the baselines' pipeline (mocov2_resnet50_8xb32-coslr-200e_coco.py, densecl_resnet50_8xb32-coslr-200e_coco.py, ...): the same object views of the same
# crops, no scene views
baseline_pipeline = [dict(step, hyperbolic_views=False) if step['type'] == 'SceneObjectMultiView' else step
                     for step in train_pipeline]
train_dataloader = dict(
    batch_size=32,
    num_workers=8,
    drop_last=True,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        ann_file='proposals/train2017_selective-search.json',
        ann_format='coco',
        data_prefix=dict(img_path='train2017/'),
        pipeline=train_pipeline))
