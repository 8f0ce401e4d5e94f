"""Per-step time of MoCo-v2 + HCL (``lightly_examples/moco_hcl.py``) vs the MoCo-v2 baseline (λ = 0).

Both models are built by the example's class, :class:`hcl_plugin.lightly.models.MoCoHCL`, with the
same seed; each step runs its ``training_step`` (momentum update, forward of all views, loss, queue
update) plus backward and an SGD step, on one fixed batch of real HCL views from the embedded data set (data
loading is measured by ``bench_views.py``). Steps alternate HCL, baseline, baseline, HCL, ...; the
table gives medians and the ratio. The paper reports 0.757 vs 0.616 s/iter on 4 GPUs (1.23×).

    python benchmarks/bench_moco_step.py [--backbone resnet18] [--image-size 64] [--batch-size 32]
                                         [--steps 20] [--device cpu|cuda] [--out outputs/bench_moco_step.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from torch.utils.data import default_collate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from hcl_plugin.lightly import ensure_embedded_dataset, scene_dataset  # noqa: E402
from hcl_plugin.lightly.models import MoCoHCL  # noqa: E402


def make_model(args: argparse.Namespace, lambda_hyp: float) -> MoCoHCL:
    torch.manual_seed(args.seed)
    model = MoCoHCL(backbone=args.backbone, image_size=args.image_size, lambda_hyp=lambda_hyp,
                             memory_bank_size=args.memory_bank_size, feature_scale=1 / 128**0.5)
    return model.to(args.device).train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--memory-bank-size", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--embedded-dir", type=Path, default=Path("data/embedded"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_moco_step.json"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*self.log.*")

    root = ensure_embedded_dataset(args.embedded_dir)
    dataset = scene_dataset(root / "images", root / "annotations_train.json", input_size=args.image_size,
                            min_box_size=24, expand_to=96, seed=args.seed)
    batch = default_collate([dataset[i] for i in range(args.batch_size)])
    batch = {k: v.to(args.device) if torch.is_tensor(v) else v for k, v in batch.items()}
    models = {"hcl": make_model(args, 0.1), "baseline": make_model(args, 0.0)}
    optimizers = {k: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9) for k, m in models.items()}

    def step(name: str) -> float:
        sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
        sync()
        start = time.perf_counter()
        loss = models[name].training_step(batch, 0)
        optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        optimizers[name].step()
        sync()
        return time.perf_counter() - start

    for name in models:  # warm-up
        step(name), step(name)
    times = {name: [] for name in models}
    for i in range(args.steps):
        for name in (("hcl", "baseline") if i % 2 == 0 else ("baseline", "hcl")):
            times[name].append(step(name))
    medians = {name: statistics.median(t) for name, t in times.items()}
    result = {
        "config": {k: str(v) for k, v in vars(args).items()},
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "threads": torch.get_num_threads(),
        "median_s": medians,
        "ratio": medians["hcl"] / medians["baseline"],
    }
    print(f"{args.backbone}, {args.image_size} px, batch {args.batch_size}, queue {args.memory_bank_size}, "
          f"{result['device']}: HCL {medians['hcl']:.3f} s/step, MoCo-v2 {medians['baseline']:.3f} s/step, "
          f"ratio {result['ratio']:.2f}x (target <= 1.25x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
