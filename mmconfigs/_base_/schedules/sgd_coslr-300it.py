# A CPU-scale schedule on the small-scale recipe of docs/recipe.md (the Lightly examples' comparison
# protocol at the same number of images: 300 iterations x batch 16 = 150 x 32): max_iters = 300 iterations;
# SGD with the LR linearly scaled from Lightly's 0.06 for batch 128 (0.0075 for batch 16), a linear
# warm-up over the first T/15 = 20 iterations, then a cosine decay to the end; the momentum encoders'
# momentum annealed from model.momentum (the tiny configs: m0 = 1 - 6/T = 0.98) to 1 on a cosine
# (CosineKeyMomentumHook, as BYOL / MoCo-v3); a checkpoint every 100 iterations, the loss logged every 10
# (MMEngine's logger shows progress and ETA). The cosine LR schedule sets no end: MMEngine's Runner ends it
# at the train loop's max_iters, so --cfg-options train_cfg.max_iters=600 changes the whole schedule
# (the warm-up stays 20 iterations, so max_iters must exceed 20; the momentum schedule follows max_iters).
_base_ = ['mmselfsup::selfsup/_base_/default_runtime.py']

max_iters = 300
warmup_iters = 20
optimizer = dict(type='SGD', lr=0.0075, weight_decay=1e-4, momentum=0.9)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer)
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1.0 / warmup_iters, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=warmup_iters),  # end = max_iters
]
custom_hooks = [dict(type='CosineKeyMomentumHook')]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    checkpoint=dict(type='CheckpointHook', interval=100, by_epoch=False, max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
env_cfg = dict(mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
randomness = dict(seed=0)
