"""UHML retrieval benchmark: Recall@K on held-out clip-art classes vs three controls, over several seeds.

Data: the embedded clip-art retrieval set (:mod:`hcl_plugin.data.embedded.clipart`,
Debian's public-domain ``openclipart-png``, ``superclass/class`` folders); training uses the first
half of the sorted classes without labels, Recall@K (K = 1, 2, 4, 8, 16, 32; query = gallery minus
self) is measured on the second half (class-disjoint), with cosine and Poincaré distance.

Starts (``--starts``): every method of a seed starts from the same network (checked: the SHA-256 of its
state, weights and BatchNorm statistics, recorded by each run must agree):

* ``self_supervised``: a ResNet-18 pretrained without labels on the training half's images with this
  project's MoCo-v2 (:func:`hcl_plugin.lightly.image_pretraining.pretrain_on_images`, the small recipe's
  queue and step-matched momentum/warm-up, ``--pretrain-steps`` steps), passed as ``--weights``; the
  stand-in for the paper's ImageNet start, unsupervised end to end;
* ``random_init``: the network at its random initialisation (a second row).

Methods, each trained with :func:`hcl_plugin.lightly.uhml_training.train_uhml` (what
``lightly_examples/uhml.py`` runs; same network, initial weights per seed and start, data, augmentation,
sampler, optimiser, epochs, batches and image size; BatchNorm frozen, as released, so all of them and the
untrained control share one BatchNorm state):

* ``uhml``: hierarchical Ward pseudo-labels at ``--levels`` counts (fine -> coarse) re-clustered every
  epoch, Poincaré hierarchical log-ratio loss (the method);
* ``untrained``: the same starting network without UHML training, as evaluated by the ``uhml`` run
  before training;
* ``flat_kmeans``: one level of k-means pseudo-labels (the finest count of ``--levels``), same loss
  (``--clustering kmeans``; similarity levels s_ij in {0, 1});
* ``euclidean``: UHML with the Euclidean log-ratio loss (``--distance euclidean``);
* ``raw_pixels``: cosine nearest neighbours of the normalised evaluation-transform pixels (no network;
  deterministic, one row).

Targets, per start and distance: UHML's R@1 above each of ``untrained``, ``flat_kmeans`` and ``euclidean``
by more than the seed spread, i.e. ``mean_uhml - mean_other > std_uhml + std_other`` (sample standard
deviations over the seeds, ddof = 1: the mean ± std intervals do not overlap); and UHML from the
self-supervised start above UHML from random init by the same rule. The cluster counts ``--levels``
(128, 32, 8: a fine level of several clusters per expected class and two coarser ones) were fixed from
the training half's size before any held-out number was seen; nothing here is tuned on the held-out classes.

Ablation (``--ablation-seed``, one seed, from the self-supervised start; ``--no-ablation`` skips it): UHML as
above and with one change each (:data:`ABLATIONS`: the paper's Adam LR 1e-5, BatchNorm statistics trained,
the released crop scale 0.16-1, the released code's milder per-level target), to show which option moves R@1; one run each, so differences within the
seed spread of the main table mean nothing.

    python benchmarks/uhml_retrieval.py                       # 3 seeds x 2 starts + ablation, the default CPU budget
    python benchmarks/uhml_retrieval.py --seeds 0 --epochs 1 --starts random_init   # quick look

Writes ``--out`` (JSON: configuration, data set, every run's Recall@K, means ± std, target checks,
timings), ``--plot`` (R@K curves, mean ± std) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from hcl_plugin.data.embedded.clipart import DEFAULT_CLIPART_RETRIEVAL_DIR, ensure_clipart_retrieval_set  # noqa: E402
from hcl_plugin.eval import DEFAULT_KS, recall_at_k  # noqa: E402
from hcl_plugin.lightly.image_pretraining import pretrain_on_images  # noqa: E402
from hcl_plugin.lightly.recipes import step_matched_schedule  # noqa: E402
from hcl_plugin.lightly.uhml_training import build_parser as uhml_parser, train_uhml, transforms  # noqa: E402
from hcl_plugin.uhml import RetrievalImageFolder  # noqa: E402

TRAINED_METHODS = ("uhml", "flat_kmeans", "euclidean")
COMPARISONS = ("untrained", "flat_kmeans", "euclidean")
ALL_ROWS = ("uhml", "untrained", "flat_kmeans", "euclidean", "raw_pixels")
LABELS = {
    "uhml": "UHML (Ward levels, Poincaré log-ratio)",
    "untrained": "(a) same network, untrained",
    "flat_kmeans": "(b) flat k-means pseudo-labels, same loss",
    "euclidean": "(c) Euclidean log-ratio variant",
    "raw_pixels": "raw pixels",
}
METRICS = ("cosine", "poincare")
STARTS = ("self_supervised", "random_init")
START_LABELS = {"self_supervised": "MoCo-v2 start", "random_init": "random init"}

Recall = Dict[str, Dict[str, float]]  # metric -> str(K) -> recall


from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402

def log(message: str, start: float) -> None:
    print(f"[uhml_retrieval {time.perf_counter() - start:7.1f} s] {message}", flush=True)


def method_argv(method: str, args: argparse.Namespace, data: Path, seed: int, out: Path,
                weights: Optional[Path] = None) -> List[str]:
    """Command line of :func:`~hcl_plugin.lightly.uhml_training.train_uhml` (``lightly_examples/uhml.py``) for one
    method and seed (identical except the method flags), starting from ``weights`` (None: random init)."""
    argv = [
        "--data", str(data), "--layout", "superclass/class", "--seed", str(seed), "--out", str(out),
        "--image-size", str(args.image_size), "--epochs", str(args.epochs), "--lr", str(args.lr),
        "--weight-decay", str(args.weight_decay), "--omega", str(args.omega), "--dim", str(args.dim),
        "--clip-r", str(args.clip_r), "--batch-classes", str(args.batch_classes),
        "--batch-instances", str(args.batch_instances), "--num-workers", str(args.num_workers),
        "--backbone", args.backbone, "--accelerator", "cpu", "--devices", "1",
        "--checkpoint-every", str(10 ** 9), "--log-every", "5",
    ]
    if args.batches_per_epoch is not None:
        argv += ["--batches-per-epoch", str(args.batches_per_epoch)]
    if weights is not None:
        argv += ["--weights", str(weights)]
    if not args.progress:
        argv.append("--no-progress-bar")
    if method == "uhml":
        argv += ["--levels", *map(str, args.levels)]
    elif method == "flat_kmeans":
        argv += ["--clustering", "kmeans", "--levels", str(args.levels[0])]
    elif method == "euclidean":
        argv += ["--levels", *map(str, args.levels), "--distance", "euclidean"]
    else:
        raise ValueError(f"unknown method {method!r}; expected one of {TRAINED_METHODS}")
    return argv


def pretrain_argv(args: argparse.Namespace, data: Path, seed: int, out: Path) -> List[str]:
    """Command line of the self-supervised start (:func:`~hcl_plugin.lightly.image_pretraining.pretrain_on_images`):
    this project's MoCo-v2 (λ = 0) on the training half's images, the small recipe's queue and cosine momentum
    schedule with the momentum and warm-up matched to ``--pretrain-steps`` (docs/recipe.md), the UHML runs'
    backbone, image size and seed, LR 0.06 scaled linearly to the batch."""
    schedule = step_matched_schedule(args.pretrain_steps)
    argv = ["--data", str(data), "--out", str(out), "--seed", str(seed), "--lambda-hyp", "0", "--recipe", "small",
            "--stem", "imagenet", "--image-size", str(args.image_size), "--batch-size", str(args.pretrain_batch_size),
            "--lr", f"{0.06 * args.pretrain_batch_size / 128:g}", "--momentum", f"{schedule['momentum']:.4f}",
            "--warmup-steps", str(schedule["warmup_steps"]), "--epochs", "100000",
            "--max-steps", str(args.pretrain_steps), "--num-workers", str(args.num_workers),
            "--checkpoint-every", str(10 ** 9), "--accelerator", "cpu", "--devices", "1"]
    if not args.progress:
        argv.append("--no-progress-bar")
    return argv


def reusable_report(argv_run: Sequence[str], out: Path) -> Optional[Dict[str, object]]:
    """The ``recall.json`` of a finished earlier run whose recorded arguments equal ``argv_run``'s, else None."""
    path = out / "recall.json"
    if not path.is_file():
        return None
    report = json.loads(path.read_text())
    wanted = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(uhml_parser().parse_args(list(argv_run))).items()}
    if wanted.get("levels") is None and wanted.get("thresholds") is None:  # train_uhml fills the default in
        wanted["levels"] = report.get("args", {}).get("levels")
    if report.get("args") != wanted:
        return None
    if "--no-eval-init" not in argv_run and report.get("recall_init") is None:
        return None
    return report


def raw_pixel_recall(data: Path, image_size: int, ks: Sequence[int]) -> Recall:
    """Recall@K (cosine) of the held-out images' pixels after the evaluation transform (resize, crop, normalise)."""
    _, test_tf = transforms(image_size)
    test = RetrievalImageFolder(data, layout="superclass/class", split="test", transform=test_tf)
    pixels = torch.stack([test[i][0].reshape(-1) for i in range(len(test))])
    recall = recall_at_k(pixels, torch.tensor(test.targets), ks=ks, metric="cosine")
    return {"cosine": {str(k): float(v) for k, v in recall.items()}}


def summarise(runs: Mapping[str, Sequence[Recall]], ks: Sequence[int]) -> Dict[str, Dict[str, Dict[str, Dict[str, float]]]]:
    """``{method: {metric: {K: {"mean", "std", "n"}}}}`` in percent; std is the sample std (ddof = 1; 0 for one run)."""
    out: Dict[str, Dict[str, Dict[str, Dict[str, float]]]] = {}
    for method, recalls in runs.items():
        out[method] = {}
        for metric in METRICS:
            if not recalls or metric not in recalls[0]:
                continue
            out[method][metric] = {}
            for k in ks:
                values = np.array([100.0 * r[metric][str(k)] for r in recalls])
                std = float(values.std(ddof=1)) if values.size > 1 else 0.0
                out[method][metric][str(k)] = {"mean": float(values.mean()), "std": std, "n": int(values.size)}
    return out


def target_checks(summary: Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]) -> List[Dict[str, object]]:
    """UHML's R@1 vs each comparison: passed when ``mean_u - mean_o > std_u + std_o`` (per distance)."""
    checks = []
    for metric in METRICS:
        if metric not in summary.get("uhml", {}):
            continue
        u = summary["uhml"][metric]["1"]
        for other in COMPARISONS:
            if metric not in summary.get(other, {}):
                continue
            o = summary[other][metric]["1"]
            margin, spread = u["mean"] - o["mean"], u["std"] + o["std"]
            checks.append({"metric": metric, "comparison": other, "uhml_r1": u["mean"], "other_r1": o["mean"],
                           "margin": margin, "spread": spread, "passed": bool(margin > spread)})
    return checks


def start_checks(summaries: Mapping[str, Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]]
                 ) -> List[Dict[str, object]]:
    """UHML from the self-supervised start vs UHML from random init (R@1, per distance), the same rule."""
    checks = []
    ssl, rnd = summaries.get("self_supervised", {}).get("uhml"), summaries.get("random_init", {}).get("uhml")
    if ssl is None or rnd is None:
        return checks
    for metric in METRICS:
        u, o = ssl[metric]["1"], rnd[metric]["1"]
        margin, spread = u["mean"] - o["mean"], u["std"] + o["std"]
        checks.append({"metric": metric, "comparison": "uhml_from_random_init", "uhml_r1": u["mean"],
                       "other_r1": o["mean"], "margin": margin, "spread": spread, "passed": bool(margin > spread)})
    return checks


def markdown_table(summaries: Mapping[str, Mapping], raw: Mapping, ks: Sequence[int]) -> str:
    """One row per (start, method, distance) and one for raw pixels: mean ± std (or the value of one run)."""
    lines = ["| start | method | distance | " + " | ".join(f"R@{k}" for k in ks) + " |",
             "|---|---|---|" + "---:|" * len(ks)]
    rows = [(START_LABELS[start], method, metric, summaries[start].get(method, {}).get(metric))
            for start in summaries for method in ALL_ROWS if method != "raw_pixels" for metric in METRICS]
    rows += [("—", "raw_pixels", "cosine", raw.get("raw_pixels", {}).get("cosine"))]
    for start, method, metric, cells in rows:
        if cells is None:
            continue
        if cells[str(ks[0])]["n"] > 1:
            values = [f"{cells[str(k)]['mean']:.1f} ± {cells[str(k)]['std']:.1f}" for k in ks]
        else:
            values = [f"{cells[str(k)]['mean']:.1f}" for k in ks]
        lines.append(f"| {start} | {LABELS[method]} | {metric} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def plot(summaries: Mapping[str, Mapping], raw: Mapping, ks: Sequence[int], path: Path, title: str) -> None:
    """R@K curves (mean ± std over seeds): one row of panels per start, one column per distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"uhml": "tab:red", "untrained": "tab:gray", "flat_kmeans": "tab:blue", "euclidean": "tab:green",
               "raw_pixels": "black"}
    starts = list(summaries)
    fig, axes = plt.subplots(len(starts), 2, figsize=(10, 3.6 * len(starts)), sharey=True, squeeze=False)
    for row, start in enumerate(starts):
        for ax, metric in zip(axes[row], METRICS):
            for method in ALL_ROWS:
                source = raw if method == "raw_pixels" else summaries[start]
                cells = source.get(method, {}).get(metric)
                if cells is None:
                    continue
                means = [cells[str(k)]["mean"] for k in ks]
                stds = [cells[str(k)]["std"] for k in ks]
                ax.errorbar(ks, means, yerr=stds, marker="o", markersize=3, capsize=2, color=colours[method],
                            linestyle=":" if method == "raw_pixels" else "-", label=LABELS[method])
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(ks), [str(k) for k in ks])
            ax.set_xlabel("K")
            ax.set_title(f"{START_LABELS[start]}, {metric} distance", fontsize=9)
            ax.grid(alpha=0.3)
        axes[row][0].set_ylabel("Recall@K (%), held-out classes")
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help="superclass/class image folder (default: build the embedded clip-art set)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_CLIPART_RETRIEVAL_DIR,
                        help="where the clip-art set is built when --data is not given")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one run per method and seed")
    parser.add_argument("--methods", nargs="+", default=list(TRAINED_METHODS), choices=list(TRAINED_METHODS),
                        help="trained methods to run; 'untrained' is evaluated in the first one's run (all "
                             "methods start from the same weights at a seed)")
    parser.add_argument("--starts", nargs="+", default=list(STARTS), choices=list(STARTS),
                        help="starting networks: self_supervised (this project's MoCo-v2 on the training half's images, "
                             "no labels) and/or random_init")
    parser.add_argument("--ablation-seed", type=int, default=0,
                        help="seed of the one-seed ablation from the self-supervised start (paper LR, trained "
                             "BatchNorm, the released crop scale)")
    parser.add_argument("--no-ablation", action="store_true", help="skip the ablation")
    parser.add_argument("--pretrain-steps", type=int, default=300, help="MoCo-v2 steps of the self-supervised start")
    parser.add_argument("--pretrain-batch-size", type=int, default=64, help="MoCo-v2 batch size of the self-supervised start")
    parser.add_argument("--image-size", type=int, default=32, help="side of the images")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs")
    parser.add_argument("--batches-per-epoch", type=int, default=None, help="default: training images // (P * M)")
    parser.add_argument("--levels", type=int, nargs="+", default=[128, 32, 8],
                        help="UHML's Ward counts, fine -> coarse; flat k-means uses the first")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    parser.add_argument("--weight-decay", type=float, default=5e-4, help="Adam weight decay")
    parser.add_argument("--omega", type=float, default=0.1, help="margin of the log-ratio loss")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension")
    parser.add_argument("--clip-r", type=float, default=2.3, help="feature clipping radius before expmap0")
    parser.add_argument("--batch-classes", type=int, default=16, help="P pseudo-classes per batch")
    parser.add_argument("--batch-instances", type=int, default=8, help="M instances per pseudo-class")
    parser.add_argument("--backbone", default="resnet18", help="torchvision ResNet")
    parser.add_argument("--num-workers", type=int, default=0,
                        help="data-loader workers (0: load in the main process; as fast here on 2 cores)")
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/uhml_retrieval_runs"),
                        help="per-run folders (logs, recall.json); checkpoints are deleted unless --keep-checkpoints")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep each run's checkpoints in --work-dir")
    parser.add_argument("--reuse", action="store_true",
                        help="reuse a run's WORK_DIR/seed<s>/<method>/recall.json when its recorded arguments are "
                             "identical (resume an interrupted benchmark)")
    parser.add_argument("--out", type=Path, default=Path("outputs/uhml_retrieval.json"), help="report (JSON file)")
    parser.add_argument("--plot", type=Path, default=Path("docs/images/uhml_retrieval.png"), help="Recall@K plot (PNG)")
    parser.add_argument("--progress", action="store_true", help="show Lightning's progress bars")
    return parser


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    data = Path(args.data) if args.data is not None else ensure_clipart_retrieval_set(args.data_dir)
    train = RetrievalImageFolder(data, layout="superclass/class", split="train")
    test = RetrievalImageFolder(data, layout="superclass/class", split="test")
    if len(set(test.targets)) < 2:
        raise SystemExit(f"{data}: the held-out half has {len(set(test.targets))} class(es); need >= 2")
    ks = [k for k in DEFAULT_KS if k <= len(test) - 1]
    dataset = {"root": str(data), "classes": train.num_classes, "train_classes": len(set(train.targets)),
               "train_images": len(train), "test_classes": len(set(test.targets)), "test_images": len(test),
               "superclasses": len(train.superclass_names),
               "test_class_names": sorted({test.class_names[t] for t in test.targets})}
    log(f"data {data}: {dataset['train_classes']} training classes / {dataset['train_images']} images, "
        f"{dataset['test_classes']} held-out classes / {dataset['test_images']} images", start)

    runs: Dict[str, Dict[str, List[Recall]]] = {
        start: {m: [] for m in ("uhml", "untrained", "flat_kmeans", "euclidean")} for start in args.starts}
    records: List[Dict[str, object]] = []
    ablation: Optional[Dict[str, object]] = None
    total = len(args.seeds) * len(args.starts) * len(args.methods)
    done = 0
    for seed in args.seeds:
        for start_name in args.starts:
            pretrain_out = args.work_dir / f"seed{seed}" / "moco_pretrain"
            weights = pretrain_out / "final.ckpt" if start_name == "self_supervised" else None
            digests = set()
            for method in args.methods:
                out = args.work_dir / f"seed{seed}" / start_name / method
                argv_run = method_argv(method, args, data, seed, out, weights)
                # every method starts from the same network: the untrained control is evaluated once
                want_init = method == args.methods[0]
                if not want_init:
                    argv_run.append("--no-eval-init")
                report, seconds = run_or_reuse(args, argv_run, out, data, seed, weights, pretrain_out,
                                               f"run {done + 1}/{total}: seed {seed}, {start_name}, {method}", start)
                digests.add(report.get("initial_state_sha256"))
                runs[start_name][method].append(report["recall"])
                if want_init:
                    runs[start_name]["untrained"].append(report["recall_init"])
                records.append({"seed": seed, "start": start_name, "method": method, "seconds": seconds,
                                "train_seconds": report["train_seconds"], "global_steps": report["global_steps"],
                                "initial_state_sha256": report.get("initial_state_sha256"),
                                "batchnorm": report.get("batchnorm"), "recall": report["recall"],
                                "recall_init": report.get("recall_init"), "reclustering": report["reclustering"]})
                done += 1
                r1 = ", ".join(f"{m} R@1 {100 * report['recall'][m]['1']:.1f}" for m in METRICS)
                log(f"run {done}/{total} done in {seconds:.0f} s ({report['global_steps']} steps): {r1}", start)
            if len(digests) != 1 or None in digests:
                raise RuntimeError(f"seed {seed}, {start_name}: the methods did not start from one network "
                                   f"(initial state digests {sorted(map(str, digests))}); the comparison is not matched")
        if (seed == args.ablation_seed and "self_supervised" in args.starts and "uhml" in args.methods
                and not args.no_ablation):
            ablation = run_ablation(args, data, seed, start)
        if not args.keep_checkpoints:
            remove_checkpoints(args.work_dir / f"seed{seed}" / "moco_pretrain")

    raw = summarise({"raw_pixels": [raw_pixel_recall(data, args.image_size, ks)]}, ks)
    summaries = {start_name: summarise({m: v for m, v in by_method.items() if v}, ks)
                 for start_name, by_method in runs.items()}
    checks = [dict(check, start=start_name) for start_name, summary in summaries.items()
              for check in target_checks(summary)]
    checks += [dict(check, start="self_supervised") for check in start_checks(summaries)]
    table = markdown_table(summaries, raw, ks)
    elapsed = time.perf_counter() - start
    result: Dict[str, object] = {
        "ks": ks, "seeds": args.seeds, "starts": args.starts, "dataset": dataset, "summary_percent": summaries,
        "raw_pixels_percent": raw["raw_pixels"], "targets": checks, "runs": records, "ablation": ablation,
        "elapsed_seconds": elapsed,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "torch_threads": torch.get_num_threads(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    title = (f"UHML retrieval, {dataset['test_classes']} held-out clip-art classes ({dataset['test_images']} images); "
             f"{args.backbone} {args.image_size}px, {args.epochs} epochs, mean ± std over {len(args.seeds)} seed(s)")
    plot(summaries, raw, ks, args.plot, title)
    print(f"\nRecall@K (%) on the held-out classes, mean ± std over seeds {args.seeds}:\n")
    print(table)
    print()
    for check in checks:
        verdict = "MET" if check["passed"] else "NOT MET"
        print(f"target [{START_LABELS[check['start']]}, {check['metric']}]: UHML R@1 {check['uhml_r1']:.2f} vs "
              f"{check['comparison']} {check['other_r1']:.2f}: margin {check['margin']:+.2f} vs spread "
              f"{check['spread']:.2f} -> {verdict}")
    if ablation is not None:
        print(f"\nAblation (seed {args.ablation_seed}, MoCo-v2 start, one run each; R@1 %):\n")
        print(ablation_table(ablation))
    print(f"\nwrote {args.out} and {args.plot}; total {elapsed / 60:.1f} min")
    print("next: docs/benchmarks.md explains the protocol; python benchmarks/uhml_retrieval.py --reuse re-aggregates "
          "the finished runs")
    return result


def run_or_reuse(args: argparse.Namespace, argv_run: List[str], out: Path, data: Path, seed: int,
                 weights: Optional[Path], pretrain_out: Path, label: str, start: float
                 ) -> Tuple[Dict[str, object], float]:
    """``(recall.json report, seconds)`` of one UHML run: reused with ``--reuse`` when its recorded arguments
    are identical, else trained (after pretraining the seed's self-supervised start if it is missing)."""
    run_start = time.perf_counter()
    report = reusable_report(argv_run, out) if args.reuse else None
    if report is None:
        if weights is not None and not weights.is_file():
            log(f"seed {seed}: self-supervised start, MoCo-v2 on the training half's images "
                f"({args.pretrain_steps} steps) -> {weights}", start)
            pretrain_on_images(pretrain_argv(args, data, seed, pretrain_out), split="train", layout="superclass/class")
        log(f"{label}: uhml.py {' '.join(argv_run)}", start)
        report = train_uhml(argv_run)
    else:
        log(f"{label}: reusing {out / 'recall.json'} (same arguments)", start)
    if not args.keep_checkpoints:
        remove_checkpoints(out)
    return report, time.perf_counter() - run_start


#: the one-seed ablation from the self-supervised start: name -> UHML flags added to the method's
ABLATIONS = {
    "paper_lr_1e-5": ["--lr", "1e-5"],              # the paper's Adam learning rate (default here: 1e-4)
    "batchnorm_trained": ["--train-bn"],            # BatchNorm statistics trained (the project's old default)
    "released_crops_0.16-1": ["--crop-scale", "0.16", "1"],  # the released code's crop scale
    # the released code's per-level target, 0.1 * (s_ij - s_il) * log(Omega), is the paper's form with
    # Omega**0.1: a milder ratio per level (docs/uhml.md, "Loss")
    "released_target_omega_0.794": ["--omega", f"{0.1 ** 0.1:.4f}"],
}


def run_ablation(args: argparse.Namespace, data: Path, seed: int, start: float) -> Dict[str, object]:
    """UHML as in the main runs and with each :data:`ABLATIONS` change, from the seed's self-supervised start
    (one run each; the first also evaluates the untrained start); every run must start from the same network
    (state digest). The reference row is run here, from the same checkpoint as the changed rows, so the rows
    compare even when the main runs' checkpoint was deleted and the start pretrained again."""
    pretrain_out = args.work_dir / f"seed{seed}" / "moco_pretrain"
    weights = pretrain_out / "final.ckpt"
    rows: Dict[str, object] = {}
    digests = set()
    variants = {"uhml": [], **ABLATIONS}
    for number, (name, flags) in enumerate(variants.items(), 1):
        out = args.work_dir / f"seed{seed}" / "ablation" / name
        argv_run = method_argv("uhml", args, data, seed, out, weights) + flags
        if name != "uhml":
            argv_run.append("--no-eval-init")
        report, _ = run_or_reuse(args, argv_run, out, data, seed, weights, pretrain_out,
                                 f"ablation {number}/{len(variants)}: seed {seed}, {name}", start)
        digests.add(report.get("initial_state_sha256"))
        rows[name] = report["recall"]
        if name == "uhml":
            rows["untrained"] = report["recall_init"]
    if len(digests) != 1 or None in digests:
        raise RuntimeError(f"ablation, seed {seed}: the runs did not start from one network ({sorted(map(str, digests))})")
    return {"seed": seed, "start": "self_supervised", "flags": ABLATIONS, "recall": rows,
            "initial_state_sha256": digests.pop()}


def ablation_table(ablation: Mapping[str, object]) -> str:
    """R@1 (%) per ablation row and distance."""
    lines = ["| run | " + " | ".join(f"R@1 {m}" for m in METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
    for name, recall in ablation["recall"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * recall[m]['1']:.1f}" for m in METRICS) + " |")
    return "\n".join(lines)


def remove_checkpoints(out: Path) -> None:
    """Delete a run's ``final.ckpt`` and ``checkpoints/`` (the benchmark keeps only its reports by default)."""
    for stale in [out / "final.ckpt", out / "checkpoints"]:
        if stale.is_dir():
            shutil.rmtree(stale)
        elif stale.exists():
            stale.unlink()


if __name__ == "__main__":
    main()
