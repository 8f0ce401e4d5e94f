# A CPU-scale schedule: 300 iterations, SGD lr 0.03 with cosine decay, a checkpoint every 100
# iterations, the loss logged every 10 (MMEngine's logger shows progress and ETA).
_base_ = ['mmselfsup::selfsup/_base_/default_runtime.py']

optimizer = dict(type='SGD', lr=0.03, weight_decay=1e-4, momentum=0.9)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=300)
param_scheduler = [dict(type='CosineAnnealingLR', T_max=300, by_epoch=False, begin=0, end=300)]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
env_cfg = dict(mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
randomness = dict(seed=0)
