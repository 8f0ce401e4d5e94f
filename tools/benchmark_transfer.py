#!/usr/bin/env python
"""Pretrain -> extract backbone -> fine-tune Mask R-CNN -> COCO AP, for HCL and its baseline.

The CPU-scale proxy (defaults: the tiny DenseCL / DenseCL + HCL pretraining configs on the embedded
Animal-MNIST scenes, ResNet-18, then the tiny Mask R-CNN R18-FPN config on the same scenes)::

    tools/benchmark_transfer.sh                   # = python tools/benchmark_transfer.py
    python tools/benchmark_transfer.py --pretrain-iters 100 --det-iters 100   # quicker, noisier

``--orl`` adds the paper's third pair of rows, ORL and ORL + HCL: ORL's stages 1 and 2 run once
(``tools/orl_pipeline.py``: image-level BYOL, its backbone, proposals, the correspondence store, in
``OUT/orl``), then each stage-3 config is pretrained from the store and fine-tuned like the others::

    tools/benchmark_transfer.sh --orl             # DenseCL, DenseCL + HCL, ORL, ORL + HCL, random init

The full-scale recipe is the same script with the COCO configs and a GPU count (each stage then runs
through ``tools/dist_train.sh``)::

    python tools/benchmark_transfer.py --gpus 8 --out outputs/transfer_coco \\
        --method "DenseCL=mmconfigs/densecl_resnet50_8xb32-coslr-200e_coco.py" --method "DenseCL + HCL=mmconfigs/densecl-hcl_resnet50_8xb32-coslr-200e_coco.py" \\
        --det-config mmconfigs/mmdet/mask-rcnn_r50_fpn_1x_coco_hcl.py --no-random-init \\
        --pretrain-iters 0 --det-iters 0

For every method the same seed (``randomness.seed``) and the same budget are used; ``random init``
fine-tunes the detector from scratch as a control. Every stage is a subprocess running the real
MMEngine ``Runner`` (``tools/train.py``), so its MMEngine log shows progress; the commands are printed
and a stage whose output already exists is reused (``--force`` reruns). Writes ``OUT/results.json`` and
``OUT/results.md`` (the table in the paper's layout: AP^b, AP^b_50, AP^b_75, AP^m, AP^m_50, AP^m_75).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

#: CocoMetric keys -> column headers of the paper's table
COLUMNS: Tuple[Tuple[str, str], ...] = (
    ("coco/bbox_mAP", "AP^b"),
    ("coco/bbox_mAP_50", "AP^b_50"),
    ("coco/bbox_mAP_75", "AP^b_75"),
    ("coco/segm_mAP", "AP^m"),
    ("coco/segm_mAP_50", "AP^m_50"),
    ("coco/segm_mAP_75", "AP^m_75"),
)
DEFAULT_METHODS = (
    "DenseCL=mmconfigs/tiny/densecl_resnet18_1xb16-coslr-300it_embedded.py",
    "DenseCL + HCL=mmconfigs/tiny/densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py",
)
DEFAULT_DET_CONFIG = "mmconfigs/mmdet/tiny/mask-rcnn_r18_fpn_embedded_hcl.py"


from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out", default="outputs/benchmark_transfer", help="output folder")
    parser.add_argument("--method", action="append", metavar="NAME=PRETRAIN_CONFIG",
                        help=f"a pretraining method (repeatable; default: {' and '.join(DEFAULT_METHODS)}); "
                             "the baseline first, then the HCL variant")
    parser.add_argument("--det-config", default=DEFAULT_DET_CONFIG, help="MMDetection fine-tuning config")
    parser.add_argument("--pretrain-iters", type=int, default=100,
                        help="pretraining iterations (IterBasedTrainLoop configs); 0 keeps the config's schedule")
    parser.add_argument("--det-iters", type=int, default=60,
                        help="fine-tuning iterations (IterBasedTrainLoop configs); 0 keeps the config's schedule")
    parser.add_argument("--seed", type=int, default=0, help="randomness.seed of every stage")
    parser.add_argument("--gpus", type=int, default=1, help="processes per stage (>1: tools/dist_train.sh)")
    parser.add_argument("--random-init", action=argparse.BooleanOptionalAction, default=True,
                        help="also fine-tune from a randomly initialised backbone (control)")
    parser.add_argument("--pretrain-cfg-options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra --cfg-options for every pretraining run")
    parser.add_argument("--det-cfg-options", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra --cfg-options for every fine-tuning run (e.g. data roots)")
    orl = parser.add_argument_group("ORL rows (tools/orl_pipeline.py runs stages 1 and 2 once, into OUT/orl)")
    orl.add_argument("--orl", action="store_true",
                     help="add the ORL and ORL + HCL rows: stage 1, proposals, stage 2, then each stage-3 config")
    orl.add_argument("--orl-stage1-config", default=None, help="stage-1 config (default: the tiny embedded one)")
    orl.add_argument("--orl-stage3-config", action="append", metavar="NAME=CONFIG",
                     help="stage-3 rows (default: the tiny ORL and ORL + HCL configs)")
    orl.add_argument("--orl-image-root", default="data/embedded/images", help="the images of the ORL stages")
    orl.add_argument("--orl-proposals", default=None, help="COCO-format proposals (default: made by tools/make_proposals.py)")
    orl.add_argument("--orl-proposal-images", default="data/embedded/annotations_train.json",
                     help="COCO file listing the images that get proposals ('' = all of --orl-image-root)")
    orl.add_argument("--orl-stage2-options", default=None, help="tools/orl_correspondence.py options")
    parser.add_argument("--force", action="store_true", help="rerun stages whose outputs exist")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    return parser.parse_args(argv)


def _load_config(path: str):
    from mmengine.config import Config

    return Config.fromfile(path)


def schedule_options(config_path: str, iters: int, det: bool) -> List[str]:
    """``--cfg-options`` that set an iteration-based config's length to ``iters``.

    Scales the iteration-based schedulers (``end``/``T_max``/``milestones`` given relative to the old
    length), the validation interval and the checkpoint interval with it. Raises ValueError for an
    epoch-based config (use 0 there and keep the config's schedule).
    """
    if iters <= 0:
        return []
    cfg = _load_config(config_path)
    loop = cfg.train_cfg
    if loop.get("type") != "IterBasedTrainLoop":
        raise ValueError(f"{config_path}: train_cfg is {loop.get('type')}, not IterBasedTrainLoop; pass "
                         f"--{'det' if det else 'pretrain'}-iters 0 to keep its schedule")
    old = int(loop["max_iters"])
    opts = [f"train_cfg.max_iters={iters}"]
    if "val_interval" in loop:
        opts.append(f"train_cfg.val_interval={iters}")
    for i, sched in enumerate(cfg.get("param_scheduler", []) or []):
        if sched.get("by_epoch", True):
            continue
        if sched.get("end") == old:
            opts.append(f"param_scheduler.{i}.end={iters}")
        if sched.get("T_max") == old:
            opts.append(f"param_scheduler.{i}.T_max={iters}")
        if "milestones" in sched:
            ms = [max(1, round(m * iters / old)) for m in sched["milestones"]]
            opts.append(f"param_scheduler.{i}.milestones=[{','.join(map(str, ms))}]")
    ckpt = cfg.get("default_hooks", {}).get("checkpoint", {})
    if ckpt and not ckpt.get("by_epoch", True):
        interval = iters if det else min(int(ckpt.get("interval", iters)), iters)
        opts.append(f"default_hooks.checkpoint.interval={interval}")
    return opts


def pretrained_modules(det_config: str) -> List[str]:
    """Dotted names of the modules of ``det_config`` whose ``init_cfg`` is ``Pretrained`` (backbone, C4 head)."""
    cfg = _load_config(det_config)
    found = []
    for name, sub in (("backbone", cfg.model.get("backbone")),
                      ("roi_head.shared_head", cfg.model.get("roi_head", {}).get("shared_head"))):
        init = (sub or {}).get("init_cfg")
        if isinstance(init, dict) and init.get("type") == "Pretrained":
            found.append(name)
    return found


def train_command(config: str, work_dir: str, options: Sequence[str], gpus: int) -> List[str]:
    """``tools/train.py`` (one process) or ``tools/dist_train.sh`` (``gpus`` processes) for a config."""
    if gpus > 1:
        cmd = ["bash", str(ROOT / "tools/dist_train.sh"), config, str(gpus)]
    else:
        cmd = [sys.executable, str(ROOT / "tools/train.py"), config]
    cmd += ["--work-dir", work_dir]
    if options:
        cmd += ["--cfg-options", *options]
    return cmd


def run(cmd: Sequence[str], log: Path, dry_run: bool) -> float:
    """Run ``cmd`` (output to the terminal and to ``log``); return its wall time in seconds."""
    print("+ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    if dry_run:
        return 0.0
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.setdefault("PYTHONWARNINGS", "ignore")
    start = time.perf_counter()
    with open(log, "w", buffering=1) as fh:  # line-buffered: the log file follows the run
        proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                cwd=str(ROOT))
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if "mmengine" in line or "Error" in line or "error" in line or "wrote" in line or "Traceback" in line:
                sys.stdout.write(line)
                sys.stdout.flush()
        code = proc.wait()
    if code != 0:
        tail = "".join(open(log).readlines()[-30:])
        raise RuntimeError(f"stage failed (exit {code}); full log: {log}\n{tail}")
    return time.perf_counter() - start


def last_checkpoint(work_dir: Path) -> Path:
    """The checkpoint MMEngine's CheckpointHook wrote last (``work_dir/last_checkpoint``)."""
    marker = work_dir / "last_checkpoint"
    if not marker.is_file():
        raise FileNotFoundError(f"{marker} does not exist: the run in {work_dir} saved no checkpoint")
    path = Path(marker.read_text().strip())
    return path if path.is_absolute() else (ROOT / path)


def read_metrics(work_dir: Path) -> Dict[str, float]:
    """The last evaluation's CocoMetric values from ``work_dir/*/vis_data/scalars.json``.

    Raises:
        RuntimeError: no evaluation result there (the table would otherwise show nothing for a method).
    """
    files = sorted(glob.glob(str(work_dir / "*" / "vis_data" / "scalars.json")), key=osp.getmtime)
    for path in reversed(files):
        rows = [json.loads(line) for line in open(path) if line.strip()]
        rows = [r for r in rows if any(k.startswith("coco/") for k in r)]
        if rows:
            return {k: float(v) for k, v in rows[-1].items() if k.startswith("coco/")}
    raise RuntimeError(f"no coco/* metrics in {work_dir}/*/vis_data/scalars.json: did the evaluation run? "
                       "(CocoMetric reports nothing when no image has a detection)")


def table(results: Dict[str, Dict]) -> str:
    """The paper's layout: one row per pre-training, AP in percent, HCL's gain over its baseline below."""
    head = "| pre-train | " + " | ".join(h for _, h in COLUMNS) + " |"
    lines = [head, "|---" * (len(COLUMNS) + 1) + "|"]

    def cells(metrics: Dict[str, float]) -> str:
        return " | ".join(f"{100 * metrics[k]:.1f}" if k in metrics else "–" for k, _ in COLUMNS)

    names = list(results)
    for name in names:
        lines.append(f"| {name} | {cells(results[name]['metrics'])} |")
    for hcl_name, base_name in hcl_pairs([n for n in names if n != "random init"]):
        base, hcl = results[base_name]["metrics"], results[hcl_name]["metrics"]
        delta = " | ".join(f"{100 * (hcl[k] - base[k]):+.1f}" if k in hcl and k in base else "–" for k, _ in COLUMNS)
        lines.append(f"| Δ ({hcl_name} − {base_name}) | {delta} |")
    return "\n".join(lines)


def hcl_pairs(methods: Sequence[str]) -> List[Tuple[str, str]]:
    """``(HCL row, its baseline row)``: ``"X + HCL"`` with ``"X"`` when both are there; otherwise the last
    row against the first (the ``--method`` order: the baseline first)."""
    pairs = [(name, name[: -len(" + HCL")]) for name in methods
             if name.endswith(" + HCL") and name[: -len(" + HCL")] in methods]
    if not pairs and len(methods) >= 2:
        pairs = [(methods[-1], methods[0])]
    return pairs


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Dict]:
    """Run every stage; write and print the table; return the results."""
    args = parse_args(argv)
    import hcl_plugin.mmselfsup  # noqa: F401  (config loading resolves mmselfsup:: bases and custom imports)

    out = Path(args.out)
    if not out.is_absolute():
        out = ROOT / out
    methods = [m.split("=", 1) for m in (args.method or DEFAULT_METHODS)]
    for m in methods:
        if len(m) != 2 or not osp.isfile(ROOT / m[1]) and not osp.isfile(m[1]):
            raise SystemExit(f"--method {'='.join(m)!r}: expected NAME=PRETRAIN_CONFIG with an existing config file")
    seed_opts = [f"randomness.seed={args.seed}"]
    det_modules = pretrained_modules(args.det_config)
    det_sched = schedule_options(args.det_config, args.det_iters, det=True)
    results: Dict[str, Dict] = {}
    started = time.perf_counter()

    runs: List[Tuple[str, Optional[str]]] = ([("random init", None)] if args.random_init else []) + \
        [(name, cfg) for name, cfg in methods]
    method_options: Dict[str, List[str]] = {}
    if args.orl:
        runs += orl_rows(args, out, method_options)
    for name, pretrain_cfg in runs:
        slug = name.lower().replace(" + ", "_").replace(" ", "_")
        base = out / slug
        times: Dict[str, float] = {}
        det_opts = list(seed_opts) + det_sched
        if pretrain_cfg is not None:
            pre_dir = base / "pretrain"
            if args.force or not (pre_dir / "last_checkpoint").is_file():
                opts = seed_opts + schedule_options(pretrain_cfg, args.pretrain_iters, det=False) + \
                    method_options.get(name, []) + args.pretrain_cfg_options
                times["pretrain_s"] = run(train_command(pretrain_cfg, str(pre_dir), opts, args.gpus),
                                          base / "pretrain.log", args.dry_run)
            backbone = base / "backbone.pth"
            if args.force or not backbone.is_file():
                ckpt = pre_dir / "<last checkpoint>" if args.dry_run else last_checkpoint(pre_dir)
                times["extract_s"] = run([sys.executable, str(ROOT / "tools/extract_backbone.py"), str(ckpt),
                                          str(backbone), "--overwrite"], base / "extract.log", args.dry_run)
            det_opts += [f"model.{m}.init_cfg.checkpoint={backbone}" for m in det_modules]
        else:
            det_opts += [f"model.{m}.init_cfg=None" for m in det_modules] + ["custom_hooks=[]"]
        det_dir = base / "det"
        if args.force or not det_dir.is_dir() or not glob.glob(str(det_dir / "*" / "vis_data" / "scalars.json")) \
                or _no_metrics(det_dir):
            times["finetune_and_eval_s"] = run(train_command(args.det_config, str(det_dir),
                                                             det_opts + args.det_cfg_options, args.gpus),
                                               base / "det.log", args.dry_run)
        if args.dry_run:
            continue
        # stage wall times persist beside the outputs, so a table built from reused stages still has them
        wall_file = base / "wall.json"
        saved = json.loads(wall_file.read_text()) if wall_file.is_file() else {}
        saved.update({k: round(v, 1) for k, v in times.items()})
        wall_file.write_text(json.dumps(saved, indent=2))
        results[name] = {"pretrain_config": pretrain_cfg, "metrics": read_metrics(det_dir), "wall_s": saved,
                         "reused": sorted(set(saved) - set(times))}
        if pretrain_cfg is not None:  # what was really used (a reused stage may come from another budget)
            import torch

            meta = torch.load(base / "backbone.pth", map_location="cpu", weights_only=True).get("meta", {})
            results[name]["backbone"] = {"file": str(base / "backbone.pth"), "source": meta.get("source"),
                                         "pretrain_iter": meta.get("iter")}
        print(f"[benchmark_transfer] {name}: " + ", ".join(f"{h} {100 * results[name]['metrics'].get(k, float('nan')):.1f}"
                                                          for k, h in COLUMNS), flush=True)
    if args.dry_run:
        return results
    total = time.perf_counter() - started
    stages = sum(v for r in results.values() for v in r["wall_s"].values())
    summary = {
        "results": results,
        "det_config": args.det_config,
        "seed": args.seed,
        "pretrain_iters": args.pretrain_iters,
        "det_iters": args.det_iters,
        "gpus": args.gpus,
        "total_wall_s": round(total, 1),
        "sum_of_stage_wall_s": round(stages, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    md = table(results)
    timing = (f"wall time of this call {total / 60:.1f} min; sum of the stages' wall times (reused ones as first "
              f"measured) {stages / 60:.1f} min")
    (out / "results.md").write_text(md + f"\n\n{timing}.\n")
    print("\n" + md + f"\n\n{timing}; {out / 'results.json'}", flush=True)
    return results


def orl_rows(args: argparse.Namespace, out: Path, method_options: Dict[str, List[str]]) -> List[Tuple[str, str]]:
    """Stages 1 and 2 of ORL (tools/orl_pipeline.py, reused when done) and the stage-3 rows; each row's
    pretraining then reads the store (its extra options go into ``method_options``)."""
    import shlex

    import orl_pipeline

    store, _ = orl_pipeline.correspondence_store(
        out / "orl", args.orl_stage1_config or orl_pipeline.DEFAULT_STAGE1, args.orl_image_root, args.orl_proposals,
        args.orl_proposal_images or None, args.pretrain_iters, args.gpus, args.seed,
        shlex.split(args.orl_stage2_options or orl_pipeline.DEFAULT_STAGE2_OPTIONS),
        shlex.split(orl_pipeline.DEFAULT_PROPOSAL_OPTIONS), args.force, args.dry_run)
    rows = []
    for spec in args.orl_stage3_config or orl_pipeline.DEFAULT_STAGE3:
        name, config = spec.split("=", 1)
        method_options[name] = orl_pipeline.stage3_options(store, args.orl_image_root)
        rows.append((name, config))
    return rows


def _no_metrics(det_dir: Path) -> bool:
    try:
        read_metrics(det_dir)
        return False
    except RuntimeError:
        return True


if __name__ == "__main__":
    main()
