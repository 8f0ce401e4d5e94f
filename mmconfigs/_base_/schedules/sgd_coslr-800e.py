# ORL's schedule (release, stage 1 and stage 3): 8 GPUs x 64 images = 512, SGD lr 0.4, momentum 0.9,
# wd 1e-4, 800 epochs, cosine to 0 after a 4-epoch linear warm-up, mixed precision (AmpOptimWrapper;
# on a CPU use --cfg-options optim_wrapper.type=OptimWrapper). The cosine ends at max_epochs.
_base_ = ['mmselfsup::selfsup/_base_/default_runtime.py']

max_epochs = 800
warmup_epochs = 4
optimizer = dict(type='SGD', lr=0.4, weight_decay=1e-4, momentum=0.9)
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic', optimizer=optimizer)
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs, eta_min=0., convert_to_iter_based=True),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
