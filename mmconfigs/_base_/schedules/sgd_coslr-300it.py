# A CPU-scale schedule: max_iters = 300 iterations, SGD lr 0.03 with cosine decay over the whole run,
# a checkpoint every 100 iterations, the loss logged every 10 (MMEngine's logger shows progress and
# ETA). The cosine schedule sets neither T_max nor end: MMEngine's Runner ends it at the train loop's
# max_iters, so --cfg-options train_cfg.max_iters=600 changes the whole schedule.
_base_ = ['mmselfsup::selfsup/_base_/default_runtime.py']

max_iters = 300
optimizer = dict(type='SGD', lr=0.03, weight_decay=1e-4, momentum=0.9)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=False, begin=0)]  # end = T_max = max_iters
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
env_cfg = dict(mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
randomness = dict(seed=0)
