"""Host synchronisations in one training step: MoCo-v2 + HCL vs the MoCo-v2 baseline (λ = 0).

Both models are :class:`hcl_plugin.lightly.models.MoCoHCL` (the Lightly example's module) with the
same seed; the baseline is the same module with ``lambda_hyp=0`` (the hyperbolic branch is not
computed). One step is ``training_step`` (momentum update, forward of all views, losses, queue
updates) + backward + SGD step, on a tiny random batch (resnet18, 32 px, batch 4). The first step is
a warm-up and is not counted; the next ``--steps`` steps are (then, for the second setting of the
value checks, one more warm-up step and ``--steps`` counted steps on the same models).

Counted with :class:`hcl_plugin.utils.sync_count.HostSyncCounter`, which instruments on any device
the calls that synchronise an accelerator (``.item()``, ``bool(tensor)``, ``nonzero``, ...) and
records their sites. On the CPU the fused hyperbolic log-sum-exp takes its device path for near
pairs (``keep_near_flags`` is patched to ``True``), so the count is the one of an accelerator.
Two settings of the value checks (:func:`hcl_plugin.utils.checks.set_value_check_interval`):
``every=1`` (the default: every call) and ``every=--interval`` (the recommended setting).

With a CUDA device the script also runs both steps on it under
``torch.cuda.set_sync_debug_mode("error")`` (the module's own non-finite-loss check, a deliberate
sync shared by both models, is the one thing left out: ``log_step`` is replaced by a stand-in that
returns the loss), after a warm-up step, and reports whether they ran without a synchronisation.

    python benchmarks/count_host_syncs.py [--interval 100] [--steps 1] [--out outputs/host_syncs]

Runs on the CPU in a few seconds; writes ``OUT/host_syncs.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from hcl_plugin.losses import poincare_logsumexp  # noqa: E402
from hcl_plugin.utils.checks import value_checks  # noqa: E402
from hcl_plugin.utils.sync_count import HostSyncCounter  # noqa: E402

#: The recommended value-check interval (docs/numerics.md, "Host synchronisations").
RECOMMENDED_INTERVAL = 100

#: The tiny model of the count: resnet18 on 32 px crops, batch 4, short queues.
TINY = dict(backbone="resnet18", proj_hidden_dim=64, proj_output_dim=32, hyp_hidden_dim=64, hyp_output_dim=32,
            feature_scale=32**-0.5, learn_scale=True, image_size=32, memory_bank_size=64, gather_distributed=False)


from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402

def moco_hcl_class() -> type:
    """:class:`hcl_plugin.lightly.models.MoCoHCL`, the model of ``lightly_examples/moco_hcl.py`` (imported on use)."""
    from hcl_plugin.lightly.models import MoCoHCL

    return MoCoHCL


def build(lambda_hyp: float, device: str = "cpu", seed: int = 0) -> Tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The module (train mode, on ``device``) and an SGD optimiser (momentum 0.9, weight decay 1e-4)."""
    torch.manual_seed(seed)
    module = moco_hcl_class()(lambda_hyp=lambda_hyp, **TINY).to(device).train()
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    return module, optimizer


def make_batch(batch_size: int = 4, image_size: int = 32, device: str = "cpu", seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random views with the keys ``training_step`` reads (two object views, the scene and the object crop)."""
    gen = torch.Generator().manual_seed(seed)
    names = ("object_view_1", "object_view_2", "hyperbolic_scene", "hyperbolic_object")
    return {name: torch.randn(batch_size, 3, image_size, image_size, generator=gen).to(device) for name in names}


def train_step(module: torch.nn.Module, optimizer: torch.optim.Optimizer, batch: Dict[str, torch.Tensor],
               batch_idx: int) -> torch.Tensor:
    """``training_step`` + backward + optimiser step (what Lightning's automatic optimisation runs)."""
    loss = module.training_step(batch, batch_idx)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


@contextlib.contextmanager
def accelerator_paths() -> Iterator[None]:
    """Make the CPU take the device-only branches (the near-pair path of the fused log-sum-exp)."""
    original = poincare_logsumexp.keep_near_flags
    poincare_logsumexp.keep_near_flags = lambda device: True
    try:
        yield
    finally:
        poincare_logsumexp.keep_near_flags = original


class StepCounter:
    """One model (CPU), its optimiser and batch; :meth:`count` runs a warm-up step, then counts steps."""

    def __init__(self, lambda_hyp: float, seed: int = 0) -> None:
        self.module, self.optimizer = build(lambda_hyp, seed=seed)
        self.batch = make_batch(seed=seed)
        self.steps_done = 0

    def step(self) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer attached: logging is a no-op
            loss = train_step(self.module, self.optimizer, self.batch, self.steps_done)
        self.steps_done += 1
        return loss

    def count(self, interval: int, steps: int = 1, warm_up: bool = True) -> HostSyncCounter:
        """Syncs of ``steps`` steps under ``value_checks(every=interval)``, after one warm-up step under it
        (not counted; ``warm_up=False`` skips it), on the CPU with the accelerator's branches
        (:func:`accelerator_paths`)."""
        with value_checks(every=interval), accelerator_paths():
            if warm_up:
                self.step()  # not counted
            with HostSyncCounter() as counter:
                for _ in range(steps):
                    self.step()
        return counter


def cuda_error_mode(lambda_hyp: float, interval: int, seed: int = 0) -> Optional[str]:
    """Run one step on CUDA under ``set_sync_debug_mode("error")`` (after a warm-up); the error, or ``None``.

    ``log_step``'s non-finite-loss check (a sync of both models, by design) is replaced by a stand-in.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")
        module, optimizer = build(lambda_hyp, device="cuda", seed=seed)
        module.log_step = lambda out, batch_size, **parts: out.loss
        batch = make_batch(device="cuda", seed=seed)
        with value_checks(every=interval):
            train_step(module, optimizer, batch, 0)
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                train_step(module, optimizer, batch, 1)
            except RuntimeError as error:
                return str(error).splitlines()[0]
            finally:
                torch.cuda.set_sync_debug_mode("default")
    return None


def summary(counter: HostSyncCounter, steps: int) -> Dict[str, Any]:
    return {"syncs": counter.count, "syncs_per_step": counter.count / steps, "sites": counter.sites()}


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--interval", type=int, default=RECOMMENDED_INTERVAL,
                        help="value-check interval of the recommended setting (default %(default)s)")
    parser.add_argument("--steps", type=int, default=1, help="steps counted after the warm-up step")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "host_syncs", help="output folder")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result: Dict[str, Any] = {"model": {"class": "MoCoHCL", **TINY, "batch_size": 4}, "steps": args.steps,
                              "counted_on": "cpu (accelerator branches)", "settings": {}}
    models = {"hcl": StepCounter(0.1, args.seed), "baseline": StepCounter(0.0, args.seed)}
    for label, interval in (("every call (default)", 1), (f"every {args.interval} calls (recommended)", args.interval)):
        counts = {name: model.count(interval, args.steps) for name, model in models.items()}
        hcl, base = counts["hcl"].count, counts["baseline"].count
        result["settings"][label] = {
            "interval": interval, "hcl": summary(counts["hcl"], args.steps),
            "baseline": summary(counts["baseline"], args.steps),
            "ratio_hcl_to_baseline": hcl / base if base else (0.0 if hcl == 0 else float("inf")),
        }
        print(f"value checks {label}: HCL {hcl} sync(s), baseline {base} sync(s) in {args.steps} step(s)"
              + (f", ratio {hcl / base:.2f}" if base else ""))
        for name in ("hcl", "baseline"):
            print(f"  {name}: " + counts[name].report().replace("\n", "\n  "))
    if torch.cuda.is_available():
        result["cuda_sync_debug_mode_error"] = {
            name: cuda_error_mode(lam, args.interval, args.seed) or "no sync" for name, lam in
            (("hcl", 0.1), ("baseline", 0.0))}
        print(f"CUDA, set_sync_debug_mode('error'), every {args.interval} calls: {result['cuda_sync_debug_mode_error']}")
    else:
        result["cuda_sync_debug_mode_error"] = "skipped: no CUDA device is present"
    result["seconds"] = round(time.perf_counter() - start, 2)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "host_syncs.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nWrote {path}. Next: pytest tests/test_host_syncs.py (the same counts as a test; its cuda-marked "
          "test runs the CUDA check), and see docs/numerics.md, 'Host synchronisations', for the setting.")
    return result


if __name__ == "__main__":
    main()
