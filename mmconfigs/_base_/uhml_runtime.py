# UHML (Unsupervised Hyperbolic Metric Learning, Yan et al. CVPR 2021) on MMEngine: shared model, data and
# re-clustering settings. Derived configs set data_root, image sizes, backbone width and the schedule.
# Components: hcl_plugin/mmselfsup/uhml_model.py, datasets.py, samplers.py, hooks.py (docs/uhml_mmengine.md).
_base_ = ['mmselfsup::selfsup/_base_/default_runtime.py']

custom_imports = dict(imports=['hcl_plugin.mmselfsup'], allow_failed_imports=False)

model = dict(
    type='UHML',
    omega=0.1,                 # Omega: distance ratio per level (paper/code: 0.1)
    distance='poincare',
    data_preprocessor=dict(
        mean=(123.675, 116.28, 103.53),
        std=(58.395, 57.12, 57.375),
        bgr_to_rgb=True),
    # norm_eval=True: BatchNorm statistics frozen (eval mode while training), as the released code's freeze_BN,
    # so the re-clustering features and the features the loss sees share one BN state; False trains them
    backbone=dict(type='ResNet', depth=50, in_channels=3, out_indices=[4], norm_cfg=dict(type='BN'),
                  norm_eval=True, zero_init_residual=False),
    neck=dict(type='UHMLNeck', in_channels=2048, out_channels=128, c=1.0, clip_r=2.3, feature_scale=None,
              learn_scale=True))

env_cfg = dict(mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
randomness = dict(seed=0)
