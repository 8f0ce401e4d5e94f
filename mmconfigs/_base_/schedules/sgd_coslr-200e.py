# 8 GPUs x 32 images: SGD lr 0.03 (MMSelfSup's value for a total batch of 256), momentum 0.9, wd 1e-4,
# cosine over 200 epochs (the official HCL schedule length). The cosine schedule ends at the train
# loop's max_epochs (MMEngine's default `end`), so DenseCL's own 800-epoch COCO recipe is
# --cfg-options train_cfg.max_epochs=800
_base_ = [
    'mmselfsup::selfsup/_base_/schedules/sgd_coslr-200e_in1k.py',
    'mmselfsup::selfsup/_base_/default_runtime.py',
]
param_scheduler = [dict(type='CosineAnnealingLR', by_epoch=True, begin=0)]  # end = T_max = max_epochs
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=3))
# to ramp lambda instead of using it from the first iteration (not in the official code):
# custom_hooks = [dict(type='HCLLambdaWarmupHook', warmup_iters=1000)]
