"""HCL vs its MoCo-v2 baseline vs random init, over seeds, under matched controls; plus a one-seed ablation.

The protocol is fixed before any run; nothing in it is chosen by looking at the reported numbers.

* Data: the embedded Animal-MNIST scene set with 1,000 extra validation scenes (``--data``, built when
  missing): 800 training and 1,200 validation scenes, so a Spearman correlation has a standard error
  of at most about 0.03.
* Training: :class:`hcl_plugin.lightly.models.MoCoHCL`, the model of ``lightly_examples/moco_hcl.py``,
  trained as that script trains it, with one set of flags for every run (:data:`TRAIN_ARGS`: ResNet-18,
  64 px, batch 32, ``--steps`` steps, the small recipe's queue, momentum schedule and warm-up matched to
  the step budget by docs/recipe.md's rules, LR 0.015 by linear scaling). HCL is λ = 0.1, the baseline
  λ = 0: the same network, data, views and schedule, without the hyperbolic loss. HCL runs the released
  model's options (:data:`~hcl_plugin.lightly.recipes.RELEASED_HCL_FLAGS`: one head whose raw output is
  mapped onto the ball, Riemannian gradient rescale, no feature scale), so its hyperbolic embedding is
  ``expmap0`` of the projection head's output, the quantity measured on every model.
* Evaluation: :func:`hcl_plugin.eval.compare.compare_models` on ``{hcl, baseline, random_init}`` for
  each seed, ``random_init`` being :func:`~hcl_plugin.eval.compare.random_init_like` of that seed's
  HCL checkpoint. BatchNorm statistics are re-estimated for every model on the same seeded sample of
  training crops; the norms come from one quantity (``hyperbolic_source="projection_head"``: HCL's own
  embedding, and the same map of the baseline's and the control's heads); every metric is computed
  on the validation split.
* Summary: mean ± std over seeds and the 95 % t-interval of the mean; the targets below are checked
  and printed as MET / MISSED.
* Ablation (``--ablation-seed``, one seed): the project's separate hyperbolic head instead of the
  shared one, ``--decoupled``, c = 0.5 instead of 0.05, and 32 px hyperbolic views (half the
  Euclidean views' side, the cheaper option of ``--hyperbolic-size``), each analysed alone (its own hyperbolic
  embedding) under the same BatchNorm procedure and data.

Targets: HCL's |Spearman(norm, number of objects)| ≥ 0.5 with the same sign on every seed and above the
baseline's by more than the sum of their seed stds; out-of-context AUROC ≥ 0.75 and above the baseline;
linear and multi-label probes not below the baseline by more than the baseline's seed std.

    python benchmarks/hcl_vs_baseline.py                                # 3 seeds x 2 runs + ablation
    python benchmarks/hcl_vs_baseline.py --seeds 0 1 --steps 7 --max-images 100 --max-train-images 200 \
        --out /tmp/smoke                                                # a smoke run of the whole script
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from hcl_plugin.lightly.data import ensure_embedded_dataset  # noqa: E402
from hcl_plugin.lightly.recipes import RELEASED_HCL_FLAGS, comparison_protocol_flags  # noqa: E402
from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402

MODELS = ("hcl", "baseline", "random_init")
LAMBDAS = {"hcl": 0.1, "baseline": 0.0}
METRICS = ("norm_spearman", "norm_spearman_labels", "norm_spearman_euclidean", "norm_pearson", "ooc_auroc",
           "ooc_auroc_scene", "ooc_ap", "linear_top1", "multilabel_map", "knn_top1")
PLOTTED = ("norm_spearman", "ooc_auroc", "linear_top1", "multilabel_map", "knn_top1")
#: one-seed ablation: name -> the HCL run's model flags instead of RELEASED_HCL_FLAGS
ABLATIONS = {
    "separate_head": [],  # the project's default: PoincareProjectionHead, learnt feature scale, no rescale
    "released+decoupled": RELEASED_HCL_FLAGS + ["--decoupled"],
    "released+c0.5": RELEASED_HCL_FLAGS + ["--c", "0.5"],
    "released+hyperbolic32": RELEASED_HCL_FLAGS + ["--hyperbolic-size", "32"],  # half-size hyperbolic views (cheaper)
}


def train_args(data: Path, out: Path, seed: int, steps: int, minutes: float) -> List[str]:
    """The flags of every run (λ and the HCL model's flags are added by the caller)."""
    return comparison_protocol_flags(steps) + [
        "--max-minutes", str(minutes), "--embedded-dir", str(data), "--num-workers", "1", "--seed", str(seed),
        "--out", str(out), "--checkpoint-every", "100000", "--no-progress-bar"]


def pretrain(flags: Sequence[str], out: Path) -> Path:
    """Train unless ``out/final.ckpt`` exists (a rerun continues an interrupted benchmark)."""
    from hcl_plugin.lightly.models import MoCoHCL
    from hcl_plugin.lightly.training import train

    final = out / "final.ckpt"
    if not final.exists():
        train(MoCoHCL, list(flags))
    return final


def mean_std_ci(values: Sequence[float]) -> Dict[str, Optional[float]]:
    """Mean, sample std and the half-width of the 95 % t-interval of the mean (None for one value)."""
    from scipy import stats

    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "std": None, "ci95": None, "n": 0}
    if len(values) == 1:
        return {"mean": values[0], "std": None, "ci95": None, "n": 1}
    std = statistics.stdev(values)
    return {"mean": statistics.fmean(values), "std": std, "n": len(values),
            "ci95": float(stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values)))}


def cell(summary: Dict[str, Optional[float]]) -> str:
    if summary["mean"] is None:
        return "n/a"
    if summary["std"] is None:
        return f"{summary['mean']:.3f}"
    return f"{summary['mean']:.3f} ± {summary['std']:.3f} [±{summary['ci95']:.3f}]"


def check_targets(per_seed: Dict[str, Dict[str, List[float]]], summary: Dict[str, Dict[str, Dict]]) -> List[str]:
    """One line per target: MET / MISSED with the numbers it was decided on."""
    def m(model, key):
        return summary[model][key]["mean"]

    def s(model, key):
        return summary[model][key]["std"] or 0.0

    lines = []
    rho = per_seed["hcl"]["norm_spearman"]
    rho_base = per_seed["baseline"]["norm_spearman"]
    same_sign = len({math.copysign(1, v) for v in rho}) == 1
    abs_hcl = statistics.fmean(abs(v) for v in rho)
    abs_base = statistics.fmean(abs(v) for v in rho_base)
    spread = s("hcl", "norm_spearman") + s("baseline", "norm_spearman")
    ok = abs_hcl >= 0.5 and same_sign and abs_hcl - abs_base > spread
    lines.append(f"{'MET' if ok else 'MISSED'}: |Spearman(norm, #objects)| HCL {abs_hcl:.3f} (target >= 0.5), "
                 f"same sign on every seed: {same_sign} ({', '.join(f'{v:+.3f}' for v in rho)}), "
                 f"baseline {abs_base:.3f}, difference {abs_hcl - abs_base:+.3f} vs seed spread {spread:.3f}")
    ok = m("hcl", "ooc_auroc") >= 0.75 and m("hcl", "ooc_auroc") > m("baseline", "ooc_auroc")
    lines.append(f"{'MET' if ok else 'MISSED'}: out-of-context AUROC HCL {m('hcl', 'ooc_auroc'):.3f} "
                 f"(target >= 0.75), baseline {m('baseline', 'ooc_auroc'):.3f}")
    for key in ("linear_top1", "multilabel_map"):
        ok = m("hcl", key) >= m("baseline", key) - s("baseline", key)
        lines.append(f"{'MET' if ok else 'MISSED'}: {key} HCL {m('hcl', key):.3f} not below baseline "
                     f"{m('baseline', key):.3f} by more than its std {s('baseline', key):.3f}")
    for key in ("linear_top1", "knn_top1"):
        lines.append(f"(control) {key}: baseline {m('baseline', key):.3f}, HCL {m('hcl', key):.3f} vs random init "
                     f"{m('random_init', key):.3f}")
    return lines


def plot(per_seed: Dict[str, Dict[str, List[float]]], summary: Dict[str, Dict[str, Dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(3.2 * len(PLOTTED), 3.4))
    colours = {"hcl": "tab:red", "baseline": "tab:blue", "random_init": "tab:gray"}
    for ax, key in zip(axes, PLOTTED):
        for i, model in enumerate(MODELS):
            values = per_seed[model][key]
            mean, std = summary[model][key]["mean"], summary[model][key]["std"] or 0.0
            ax.bar(i, mean, yerr=std, color=colours[model], alpha=0.6, capsize=4)
            ax.scatter([i] * len(values), values, color="black", s=10, zorder=3)
        ax.set_xticks(range(len(MODELS)), ["HCL", "MoCo-v2", "random"], fontsize=8)
        ax.set_title(key, fontsize=9)
        ax.axhline(0, color="black", linewidth=0.5)
    fig.suptitle("mean ± std over seeds (dots: seeds); BatchNorm re-estimated for every model", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one HCL and one baseline run per seed")
    parser.add_argument("--steps", type=int, default=150, help="training steps of every run")
    parser.add_argument("--minutes", type=float, default=10.0, help="safety cap on each run's training time")
    parser.add_argument("--data", type=Path, default=Path("data/embedded_val1200"),
                        help="data-set root (built when missing, with 1,000 extra validation scenes)")
    parser.add_argument("--out", type=Path, default=Path("outputs/hcl_vs_baseline"),
                        help="output folder (runs are reused when their final.ckpt exists)")
    parser.add_argument("--ablation-seed", type=int, default=0, help="seed of the one-seed ablation")
    parser.add_argument("--no-ablation", action="store_true", help="skip the ablation")
    parser.add_argument("--max-images", type=int, default=None,
                        help="analyse at most this many validation scenes (smoke runs only: the targets assume all)")
    parser.add_argument("--max-train-images", type=int, default=None,
                        help="train the probes on at most this many training scenes (smoke runs only)")
    args = parser.parse_args()
    if args.steps < 7:
        parser.error(f"--steps must be >= 7 (the momentum rule 1 - 6/steps), got {args.steps}")
    from hcl_plugin.eval.analyze import run_analysis
    from hcl_plugin.eval.compare import compare_models, random_init_like

    start = time.time()
    limits = {"max_images": args.max_images, "max_train_images": args.max_train_images}

    def say(message: str) -> None:
        print(f"[{(time.time() - start) / 60:5.1f} min] {message}", flush=True)

    ensure_embedded_dataset(args.data, extra_val_images=1000)
    args.out.mkdir(parents=True, exist_ok=True)
    per_seed: Dict[str, Dict[str, List[float]]] = {model: {key: [] for key in METRICS} for model in MODELS}
    for number, seed in enumerate(args.seeds, 1):
        checkpoints = {}
        for name, lambda_hyp in LAMBDAS.items():
            run_dir = args.out / f"{name}_seed{seed}"
            say(f"seed {seed} ({number}/{len(args.seeds)}): training {name} (lambda {lambda_hyp}) -> {run_dir}")
            flags = train_args(args.data, run_dir, seed, args.steps, args.minutes) + ["--lambda-hyp", str(lambda_hyp)]
            flags += RELEASED_HCL_FLAGS if name == "hcl" else []
            checkpoints[name] = pretrain(flags, run_dir)
        say(f"seed {seed}: analysing hcl, baseline and random init (BatchNorm re-estimated for each)")
        comparison = compare_models(
            {"hcl": str(checkpoints["hcl"]), "baseline": str(checkpoints["baseline"]),
             "random_init": random_init_like(checkpoints["hcl"], seed=seed)},
            args.data, args.out / f"compare_seed{seed}", hyperbolic_source="projection_head", split="val",
            progress=False, overwrite=True, **limits)
        for model in MODELS:
            for key in METRICS:
                per_seed[model][key].append(comparison["models"][model].get(key))

    summary = {model: {key: mean_std_ci(per_seed[model][key]) for key in METRICS} for model in MODELS}
    lines = ["| metric | MoCo-v2 + HCL (λ 0.1) | MoCo-v2 (λ 0) | random init |", "|---|---|---|---|"]
    lines += [f"| {key} | " + " | ".join(cell(summary[model][key]) for model in MODELS) + " |" for key in METRICS]
    table = "\n".join(lines)
    targets = check_targets(per_seed, summary) if len(args.seeds) > 1 else ["targets need at least 2 seeds"]

    ablation: Dict[str, Dict] = {}
    if not args.no_ablation:
        for name, extra in ABLATIONS.items():
            run_dir = args.out / f"ablation_{name}_seed{args.ablation_seed}"
            say(f"ablation {name}: training -> {run_dir}")
            flags = train_args(args.data, run_dir, args.ablation_seed, args.steps, args.minutes)
            ckpt = pretrain(flags + ["--lambda-hyp", str(LAMBDAS["hcl"])] + extra, run_dir)
            say(f"ablation {name}: analysing")
            metrics = run_analysis(ckpt, args.data, run_dir / "analysis", split="val", progress=False, overwrite=True,
                                   **limits)
            ablation[name] = {"flags": extra, **{key: metrics.get(key) for key in METRICS},
                              "hyperbolic_source": metrics.get("hyperbolic_source")}
    ablation_lines = []
    if ablation:
        ablation_lines = [f"| HCL variant (seed {args.ablation_seed}) | " + " | ".join(PLOTTED) + " |",
                          "|---|" + "---|" * len(PLOTTED)]
        reference = {key: per_seed["hcl"][key][args.seeds.index(args.ablation_seed)] if args.ablation_seed in args.seeds
                     else None for key in PLOTTED}
        rows = {"released (shared head, c 0.05)": reference, **ablation}
        for name, row in rows.items():
            ablation_lines.append(f"| {name} | " + " | ".join(
                "n/a" if row.get(key) is None else f"{row[key]:.3f}" for key in PLOTTED) + " |")

    plot(per_seed, summary, args.out / "results.png")
    report = (f"# HCL vs MoCo-v2 vs random init\n\nseeds {args.seeds}, {args.steps} steps per run, "
              f"data {args.data} (val split), {(time.time() - start) / 60:.1f} min in all\n\n"
              f"mean ± std over seeds [half-width of the 95 % t-interval of the mean]\n\n{table}\n\n"
              + "\n".join(f"- {line}" for line in targets) + "\n\n" + "\n".join(ablation_lines) + "\n")
    (args.out / "results.md").write_text(report)
    (args.out / "results.json").write_text(json.dumps(
        {"seeds": args.seeds, "steps": args.steps, "data": str(args.data),
         "train_args": train_args(Path("DATA"), Path("OUT"), 0, args.steps, args.minutes),
         "per_seed": per_seed, "summary": summary, "targets": targets, "ablation": ablation,
         "minutes": (time.time() - start) / 60}, indent=2))
    print(report)
    say(f"wrote {args.out}/results.md, results.json, results.png and compare_seed*/ (one analysis per model); "
        f"next: open {args.out}/results.png, or python tools/analyze.py on any run's final.ckpt")


if __name__ == "__main__":
    main()
