"""``HCLLambdaWarmupHook``: ramp the hyperbolic loss weight λ, registered in MMSelfSup's ``HOOKS``.

.. math:: \\lambda_t = \\lambda \\cdot \\mathrm{clip}\\Big(\\frac{t - t_0}{T}, 0, 1\\Big)

``t`` the iteration, ``t_0 = start_iters`` (λ = 0 before it, like MMSelfSup's ``DenseCLHook``),
``T = warmup_iters`` (0: a step at ``t_0``). The hyperbolic branch still runs at λ = 0, so its queue
fills with keys before the loss counts. The target λ is the model's ``hyp_lambda`` at the start of
training; the ramp depends only on ``runner.iter``, so a resumed run continues it exactly.
"""

from __future__ import annotations

from typing import Optional, Sequence

from mmengine.hooks import Hook
from mmselfsup.registry import HOOKS
from mmselfsup.utils import get_model

__all__ = ["HCLLambdaWarmupHook", "hyp_lambda_at"]


def hyp_lambda_at(iteration: int, target: float, start_iters: int, warmup_iters: int) -> float:
    """λ at ``iteration``: 0 before ``start_iters``, then linear to ``target`` over ``warmup_iters``."""
    if iteration < start_iters:
        return 0.0
    if warmup_iters <= 0:
        return target
    return target * min(1.0, (iteration - start_iters + 1) / warmup_iters)


@HOOKS.register_module()
class HCLLambdaWarmupHook(Hook):
    """Linear warm-up of ``hyp_lambda`` of ``HCLMoCoV2`` / ``HCLDenseCL``.

    Args:
        warmup_iters: iterations of the linear ramp after ``start_iters``.
        start_iters: iterations with λ = 0 first.
    """

    priority = "NORMAL"

    def __init__(self, warmup_iters: int = 1000, start_iters: int = 0) -> None:
        if warmup_iters < 0 or start_iters < 0:
            raise ValueError(f"HCLLambdaWarmupHook: warmup_iters and start_iters must be >= 0, "
                             f"got {warmup_iters}, {start_iters}")
        self.warmup_iters = int(warmup_iters)
        self.start_iters = int(start_iters)
        self.target: Optional[float] = None

    def before_train(self, runner) -> None:
        model = get_model(runner.model)
        if not hasattr(model, "hyp_lambda"):
            raise AttributeError(f"HCLLambdaWarmupHook needs a model with 'hyp_lambda' (HCLMoCoV2, HCLDenseCL); "
                                 f"got {type(model).__name__}")
        self.target = float(model.hyp_lambda)

    def before_train_iter(self, runner, batch_idx: int, data_batch: Optional[Sequence[dict]] = None) -> None:
        value = hyp_lambda_at(runner.iter, self.target, self.start_iters, self.warmup_iters)
        get_model(runner.model).hyp_lambda = value
        runner.message_hub.update_scalar("train/hyp_lambda", value)
