# HCL's hyperbolic branch with the official HCL defaults, shared by hcl_mocov2.py and hcl_densecl.py.
# Each copies it into its `model`: override the copy (--cfg-options model.lambda_hyp=0.2).
hcl_branch = dict(
    lambda_hyp=0.1,  # λ, the weight of the hyperbolic loss
    # Where the hyperbolic branch comes from (docs/hcl_options.md): 'separate' (the project's default) is
    # the PoincareNeck below, an MLP of its own on the backbone features; 'shared' (the released HCL
    # code's) maps the projection neck's raw output (MoCoV2Neck / DenseCL's global branch, before its L2
    # normalisation) onto the ball, with hyp_neck's map keys (clip_r, feature_scale, learn_scale,
    # riemannian_grad, decoupled; its MLP keys are then unused).
    hyperbolic_head='separate',
    # The curvature of the ball, owned by the algorithm, which passes this one object to the neck, its
    # momentum copy, the head and the queue (so no `c` in hyp_neck / hyp_head). Fixed at the official
    # 0.05 (ball radius 1/sqrt(c) ~ 4.47); a plain number is a fixed c too. learnable=True learns log c
    # (one parameter, 'curvature.log_c', bounded by min_c / max_c); spare it weight decay with
    # optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'curvature': dict(decay_mult=0.)})).
    curvature=dict(c=0.05, learnable=False),
    # The learnable feature scale (initial 1/sqrt(128)) keeps the hyperbolic norms in the informative
    # range (docs/background.md). riemannian_grad rescales the gradient at the ball point by
    # (1 - c|z|^2)^2 / 4 (the released code: on); decoupled lets the hyperbolic loss move only the norm.
    hyp_neck=dict(type='PoincareNeck', in_channels=2048, hid_channels=2048, out_channels=128, clip_r=None,
                  feature_scale=128 ** -0.5, learn_scale=True, riemannian_grad=False, decoupled=False),
    hyp_head=dict(type='HyperbolicContrastiveHead', temperature=0.2),
    # the queue of object keys on the ball: as long as the baseline's queue_len unless hyp_queue_len is set
)

