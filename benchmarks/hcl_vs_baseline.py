"""HCL vs its baseline under the same budget: pretrain, analyse, compare.

For each seed, :class:`hcl_plugin.lightly.models.MoCoHCL` (the model of ``lightly_examples/moco_hcl.py``,
trained as that script does) pretrains MoCo-v2 + HCL (λ = 0.1) and the MoCo-v2 baseline (λ = 0) on
the embedded scene set with identical data, architecture, schedule and step budget (``--steps``;
``--minutes`` caps each run's training time as a safeguard); ``hcl_plugin.eval.run_analysis`` then
measures each checkpoint, and the same network at random initialisation is measured once per seed
as the control. Prints a table of mean ± std over seeds and writes JSON.

    python benchmarks/hcl_vs_baseline.py                       # 3 seeds x 250 steps x 2 runs
    python benchmarks/hcl_vs_baseline.py --seeds 0 --minutes 0.5 --out /tmp/smoke   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from hcl_plugin.checkpoints import safe_load  # noqa: E402
from hcl_plugin.lightly.data import ensure_embedded_dataset  # noqa: E402
from hcl_plugin.lightly.models import MoCoHCL  # noqa: E402
from hcl_plugin.lightly.training import train  # noqa: E402

METRICS = ["norm_spearman", "norm_pearson", "ooc_auroc", "ooc_ap", "linear_top1", "multilabel_map", "knn_top1"]
RUNS = {"hcl": 0.1, "baseline": 0.0}


from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402

def pretrain(data: Path, out: Path, seed: int, lambda_hyp: float, minutes: float, steps: int) -> Path:
    final = out / "final.ckpt"
    if not final.exists():
        train(MoCoHCL, ["--embedded-dir", str(data), "--image-size", "64", "--batch-size", "32", "--epochs", "1000",
                       "--max-minutes", str(minutes), "--max-steps", str(steps), "--memory-bank-size", "1024",
                       "--lambda-hyp", str(lambda_hyp), "--num-workers", "1", "--out", str(out), "--seed", str(seed),
                       "--checkpoint-every", "1000", "--no-progress-bar"])
    return final


def random_init(like: Path, out: Path, seed: int) -> Path:
    checkpoint = safe_load(like)
    torch.manual_seed(seed)
    hparams = dict(checkpoint["hyper_parameters"])
    path = out / "random_init.ckpt"
    torch.save({"state_dict": MoCoHCL(**hparams).state_dict(), "hyper_parameters": hparams}, path)
    return path


def summary(values: List[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {std:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one HCL and one baseline run per seed")
    parser.add_argument("--minutes", type=float, default=6.0, help="cap on each run's training time")
    parser.add_argument("--steps", type=int, default=250, help="steps per run (-1: the time cap alone)")
    parser.add_argument("--data", type=Path, default=Path("data/embedded"), help="data-set root (built when missing)")
    parser.add_argument("--out", type=Path, default=Path("outputs/hcl_vs_baseline"), help="output folder")
    args = parser.parse_args()
    from hcl_plugin.eval.analyze import run_analysis

    ensure_embedded_dataset(args.data)
    results: Dict[str, List[Dict]] = {name: [] for name in (*RUNS, "random_init")}
    for seed in args.seeds:
        for name, lambda_hyp in RUNS.items():
            run_dir = args.out / f"{name}_seed{seed}"
            ckpt = pretrain(args.data, run_dir, seed, lambda_hyp, args.minutes, args.steps)
            metrics = run_analysis(ckpt, args.data, run_dir / "analysis", progress=False, overwrite=True)
            metrics["steps"] = safe_load(ckpt)["global_step"]
            results[name].append(metrics)
        control_dir = args.out / f"random_init_seed{seed}"
        control_dir.mkdir(parents=True, exist_ok=True)
        ckpt = random_init(args.out / f"hcl_seed{seed}" / "final.ckpt", control_dir, seed)
        results["random_init"].append(run_analysis(ckpt, args.data, control_dir / "analysis", progress=False,
                                                  overwrite=True))

    lines = [f"| metric | {' | '.join(results)} |", "|---|" + "---|" * len(results)]
    for key in METRICS + ["steps"]:
        lines.append(f"| {key} | " + " | ".join(summary([r.get(key) for r in runs]) for runs in results.values()) + " |")
    table = "\n".join(lines)
    print(f"seeds {args.seeds}, {args.steps} steps per run (at most {args.minutes} min)\n{table}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"seeds": args.seeds, "minutes": args.minutes,
         "runs": {name: [{k: r.get(k) for k in METRICS + ["steps"]} for r in runs] for name, runs in results.items()},
         "table": table}, indent=2))
    print(f"wrote {args.out}/results.json")


if __name__ == "__main__":
    main()
