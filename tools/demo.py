#!/usr/bin/env python
"""The main job (``make demo``): pretrain MoCo-v2 + HCL on the embedded data set, then analyse it.

1. Builds the embedded Animal-MNIST scene set in ``data/embedded`` unless it is there.
2. Pretrains MoCo-v2 + HCL (:class:`hcl_plugin.lightly.models.MoCoHCL`, the model of
   ``lightly_examples/moco_hcl.py``) with the released HCL model's options for ``--steps`` steps
   (default 150; ``--minutes`` caps the training time) under the CPU comparison protocol of
   ``benchmarks/hcl_vs_baseline.py`` (:func:`hcl_plugin.lightly.recipes.comparison_protocol_flags`:
   ResNet-18, 64 px, batch 32, queue 256, momentum and warm-up matched to the step budget), so the
   whole job stays within about 10 minutes on a 2-core CPU; skipped when ``OUT/final.ckpt`` exists
   (a second run reuses it; ``--retrain`` forces).
   A leftover ``OUT/train`` without ``OUT/final.ckpt`` (an interrupted run) is never deleted silently:
   the demo stops and says so; ``--retrain`` deletes it and starts over.
3. Compares the trained model with the same architecture at random initialisation under matched
   controls (``hcl_plugin.eval.compare.compare_models``: BatchNorm statistics re-estimated for both,
   norms of one quantity, 95 % intervals; norms vs number of objects, out-of-context detection,
   linear / multi-label / kNN probes).
4. Writes ``OUT/metrics.json`` (both), ``OUT/report.md``, ``OUT/training_loss.png`` and the
   comparison ``OUT/compare/`` (``comparison.md``, one analysis folder with plots per model).

    python tools/demo.py [--out outputs/demo] [--steps 150] [--minutes 7] [--retrain] [--overwrite]

The MoCo-v2 baseline under the same protocol, over three seeds: ``benchmarks/hcl_vs_baseline.py``.

``OUT`` must be new, empty or an earlier demo's folder; any other non-empty folder needs ``--overwrite``
(files of the same names are then replaced; nothing else is deleted). Checkpoints are read without
running anything from them (docs/security.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from hcl_plugin.lightly.data import ensure_embedded_dataset  # noqa: E402
from hcl_plugin.lightly.models import MoCoHCL  # noqa: E402
from hcl_plugin.lightly.recipes import RELEASED_HCL_FLAGS, comparison_protocol_flags  # noqa: E402
from hcl_plugin.lightly.training import train as train_lightly  # noqa: E402
from hcl_plugin.utils.files import record_outputs, recorded_outputs  # noqa: E402

PRODUCER = "tools/demo.py"

HEADLINE = ["norm_spearman", "norm_pearson", "ooc_auroc", "ooc_ap", "linear_top1", "multilabel_map", "knn_top1"]


def train(args: argparse.Namespace, out: Path) -> Path:
    final = out / "final.ckpt"
    if final.exists() and not args.retrain:
        print(f"reusing {final} (pass --retrain to train again)")
        return final
    run_dir = out / "train"
    if run_dir.exists():
        if not args.retrain:
            raise SystemExit(
                f"error: {run_dir} holds an earlier, unfinished training run (no {final}); the demo does not "
                "resume it. Pass --retrain to delete it and train again, or choose another --out."
            )
        shutil.rmtree(run_dir)  # asked for with --retrain: old logs would mix into the loss curve
    train_lightly(MoCoHCL, [
        *comparison_protocol_flags(args.steps), *RELEASED_HCL_FLAGS, "--lambda-hyp", "0.1",
        "--embedded-dir", str(args.data), "--batch-size", str(args.batch_size), "--max-minutes", str(args.minutes),
        "--num-workers", "1", "--out", str(run_dir), "--checkpoint-every", "100", "--seed", str(args.seed),
    ])
    shutil.copyfile(run_dir / "final.ckpt", final)
    return final


def loss_curve(train_dir: Path, out: Path) -> List[Dict[str, float]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for path in sorted(train_dir.glob("logs/version_*/metrics.csv")):
        for row in csv.DictReader(path.open()):
            if row.get("loss"):
                rows.append({k: float(v) for k, v in row.items() if v not in ("", None)})
    if rows:
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
        steps = [r["step"] for r in rows]
        for key, label in (("train/loss_euc", "Euclidean InfoNCE"), ("train/loss_hyp", "hyperbolic InfoNCE")):
            ax[0].plot(steps, [r.get(key, float("nan")) for r in rows], label=label)
        ax[0].set_xlabel("step"), ax[0].set_ylabel("loss"), ax[0].legend(), ax[0].set_title("training losses")
        for key in ("health/hyp_norm_min", "health/hyp_norm_mean", "health/hyp_norm_max"):
            ax[1].plot(steps, [r.get(key, float("nan")) for r in rows], label=key.split("/")[1])
        ax[1].set_xlabel("step"), ax[1].set_ylabel("d(0, z)"), ax[1].legend(), ax[1].set_title("scene-query hyperbolic norms")
        fig.tight_layout()
        fig.savefig(out / "training_loss.png", dpi=110)
        plt.close(fig)
    return rows


def fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main(argv=None) -> None:
    from hcl_plugin.utils.cli import HelpFormatter

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--data", type=Path, default=Path("data/embedded"),
                        help="data-set root (DATA/images/, DATA/annotations_train.json, DATA/annotations_val.json); "
                             "the embedded set is built there when missing")
    parser.add_argument("--steps", type=int, default=150,
                        help="training steps (the LR, momentum and warm-up schedules are matched to them)")
    parser.add_argument("--minutes", type=float, default=7.0, help="cap on the training time")
    parser.add_argument("--retrain", action="store_true",
                        help="train again even if OUT/final.ckpt exists (deletes OUT/train)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty OUT that is not an earlier demo's folder")
    parser.add_argument("--batch-size", type=int, default=32, help="images per training step")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training run")
    parser.add_argument("--embedded-images", type=int, default=1000, help="size of the embedded set when built")
    args = parser.parse_args(argv)
    if args.steps < 7:
        parser.error(f"--steps must be >= 7 (the momentum is matched to the step budget as 1 - 6/steps), got {args.steps}")
    from hcl_plugin.eval.compare import compare_models, random_init_like

    entries = sorted(p.name for p in args.out.iterdir()) if args.out.is_dir() else []
    if entries and not recorded_outputs(args.out, PRODUCER) and not args.overwrite:
        raise SystemExit(f"error: {args.out} is not empty ({', '.join(entries[:5])}) and is not an earlier demo's "
                         "folder; choose another --out or pass --overwrite")
    args.out.mkdir(parents=True, exist_ok=True)
    ensure_embedded_dataset(args.data, num_images=args.embedded_images)
    trained = train(args, args.out)
    record_outputs(args.out, PRODUCER, ["final.ckpt", "train"])
    rows = loss_curve(args.out / "train", args.out)
    # the comparison folder is this demo's own output: replaced on every run
    comparison = compare_models({"hcl": str(trained), "random_init": random_init_like(trained)},
                                args.data, args.out / "compare", hyperbolic_source="projection_head", overwrite=True)
    results = comparison["models"]
    steps = int(rows[-1]["step"]) + 1 if rows else None
    summary = {"steps": steps, "checkpoint": str(trained),
               **{name: {k: r.get(k) for k in HEADLINE} for name, r in results.items()}}
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2))
    lines = [
        "# hcl_plugin demo: MoCo-v2 + HCL on the embedded scene set", "",
        f"Pretrained `lightly_examples/moco_hcl.py` with the released HCL options (ResNet-18, 64 px, batch "
        f"{args.batch_size}, queue 256, λ = 0.1, c = 0.05) for {steps} steps on `{args.data}`; checkpoint "
        f"`{trained}`. The control is the same network at random initialisation. Both were analysed with "
        "BatchNorm statistics re-estimated on the same training crops; norms are d(0, expmap0(e)) of the "
        "projection head's output e (HCL's own hyperbolic embedding). 95 % intervals: "
        "[compare/comparison.md](compare/comparison.md).", "",
        "| metric | MoCo-v2 + HCL | random init |", "|---|---|---|",
        *[f"| {k} | {fmt(results['hcl'].get(k))} | {fmt(results['random_init'].get(k))} |" for k in HEADLINE], "",
        "![training](training_loss.png)", "",
        "Full reports with the plots: [compare/hcl/report.md](compare/hcl/report.md), "
        "[compare/random_init/report.md](compare/random_init/report.md). The MoCo-v2 baseline under the same "
        "protocol, over three seeds: `python benchmarks/hcl_vs_baseline.py`.", "",
    ]
    (args.out / "report.md").write_text("\n".join(lines))
    record_outputs(args.out, PRODUCER, ["final.ckpt", "train", "random_init.ckpt", "metrics.json", "report.md",
                                        "training_loss.png", "compare"])
    print("\n".join(lines))
    print(f"wrote {args.out}/metrics.json and {args.out}/report.md (plots: {args.out}/compare/hcl/, "
          f"{args.out}/compare/random_init/)")
    print(f"outputs: {trained} (trained model), {args.out}/train/logs/ (metrics.csv), {args.out}/metrics.json, "
          f"{args.out}/report.md, {args.out}/training_loss.png")
    print("next: python benchmarks/hcl_vs_baseline.py  (HCL vs the MoCo-v2 baseline vs random init, 3 seeds, "
          "about an hour on 2 cores)")


if __name__ == "__main__":
    main()
