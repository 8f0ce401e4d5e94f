# Tiny UHML on the embedded Animal-MNIST retrieval set: ResNet-18, 32 px, levels [20, 10], batches of
# 8 pseudo-classes x 4 images, 3 epochs, re-clustered before every epoch; minutes on a CPU.
# Build the data once (needs the Animal-MNIST wheel, see docs/data.md):
#   python -m hcl_plugin.data.embedded.retrieval
#   python tools/train.py mmconfigs/tiny/uhml_resnet18_1xb32-adam-3e_embedded-retrieval.py
#   tools/dist_train.sh mmconfigs/tiny/uhml_resnet18_1xb32-adam-3e_embedded-retrieval.py 2          # 2 CPU processes, gloo
_base_ = ['../_base_/uhml_runtime.py']

data_root = 'data/embedded_retrieval/animal_mnist_200'   # 10 classes x 200; train = the first 5 classes
image_size = 32
levels = [20, 10]                                         # cluster counts per level, fine -> coarse
instances_per_class = 4                                   # M; P = batch_size // M = 8
batch_size = 32

model = dict(
    backbone=dict(depth=18),
    neck=dict(in_channels=512, out_channels=64))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', size=image_size, scale=(0.5, 1.0), backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSelfSupInputs', meta_keys=['img_path', 'dataset_index']),
]
embed_pipeline = [                                         # no augmentation: resize + centre crop
    dict(type='LoadImageFromFile'),
    dict(type='mmcls.ResizeEdge', scale=round(image_size * 256 / 224), edge='short', backend='pillow'),
    dict(type='CenterCrop', crop_size=image_size),
    dict(type='PackSelfSupInputs', meta_keys=['img_path', 'dataset_index']),
]

train_dataloader = dict(
    batch_size=batch_size,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    batch_sampler=dict(type='UHMLBalancedBatchSampler', instances_per_class=instances_per_class),
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='UHMLImageFolder', data_root=data_root, layout='auto', split='train',
                 pipeline=train_pipeline))

custom_hooks = [
    dict(type='UHMLReclusterHook', n_clusters=levels, interval=1, embed_pipeline=embed_pipeline,
         batch_size=128, num_workers=0, log_every=0),
]

optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4, weight_decay=5e-4))
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=3)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='CheckpointHook', interval=1, max_keep_ckpts=2))
log_processor = dict(by_epoch=True)
