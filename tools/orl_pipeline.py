#!/usr/bin/env python
"""ORL's three stages in one call: stage 1 (image-level BYOL) -> backbone -> proposals -> stage 2
(correspondences) -> stage 3 (ORL, and ORL + HCL).

CPU-scale run on the embedded scenes (defaults; build them once with
``python -m hcl_plugin.data.embedded.scenes --out data/embedded``)::

    python tools/orl_pipeline.py                                   # -> work_dirs/orl_embedded
    python tools/orl_pipeline.py --stage1-iters 100 --stage3-iters 100 --stages 1 2   # quicker; stop after stage 2

COCO with 8 GPUs (the release's schedules; proposals from tools/make_proposals.py)::

    python tools/orl_pipeline.py --gpus 8 --out work_dirs/orl_coco --image-root data/coco/train2017 \\
        --proposals data/coco/proposals/train2017_selective-search.json \\
        --stage1-config mmconfigs/orl/orl-stage1_resnet50_8xb64-coslr-800e_coco.py \\
        --stage3-config "ORL=mmconfigs/orl/orl-stage3_resnet50_8xb64-coslr-800e_coco.py" \\
        --stage3-config "ORL + HCL=mmconfigs/orl/orl-hcl-stage3_resnet50_8xb64-coslr-800e_coco.py" \\
        --stage2-options "--arch resnet50 --workers 8" --stage1-iters 0 --stage3-iters 0

Every stage is a subprocess (``tools/train.py`` / ``tools/dist_train.sh``, ``tools/extract_backbone.py``,
``tools/make_proposals.py``, ``tools/orl_correspondence.py``, under ``torchrun`` with ``--gpus`` > 1) whose
output goes to the terminal and to a log in ``--out``; a finished stage is reused (``--force`` reruns it),
an interrupted training stage continues from its last checkpoint (``--resume``) and stage 2 resumes an
unfinished store. docs/orl.md describes the stages.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from benchmark_transfer import last_checkpoint, run, schedule_options, train_command  # noqa: E402

from hcl_plugin.orl.store import FORMAT, META_FILE  # noqa: E402
from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402

DEFAULT_STAGE1 = "mmconfigs/tiny/orl-stage1_resnet18_1xb16-coslr-300it_embedded.py"
DEFAULT_STAGE3 = (
    "ORL=mmconfigs/tiny/orl-stage3_resnet18_1xb16-coslr-300it_embedded.py",
    "ORL + HCL=mmconfigs/tiny/orl-hcl-stage3_resnet18_1xb16-coslr-300it_embedded.py",
)
#: the embedded scenes are 256 px: ORL's 96 px proposal floor would leave few boxes
DEFAULT_STAGE2_OPTIONS = "--arch resnet18 --min-size 32 --patch-size 64 --image-size 64"
DEFAULT_PROPOSAL_OPTIONS = "--min-size 32 --workers 2"


def training_state(work_dir: Path, iters: int) -> str:
    """``'done'`` (the last checkpoint is ``iter_<iters>.pth``, or any with ``iters`` = 0), ``'partial'``
    (an interrupted run: resumed with ``--resume``) or ``'none'``."""
    marker = work_dir / "last_checkpoint"
    if not marker.is_file():
        return "none"
    return "done" if iters <= 0 or Path(marker.read_text().strip()).name == f"iter_{iters}.pth" else "partial"


def train_stage(config: str, work_dir: Path, options: List[str], iters: int, gpus: int, log: Path, force: bool,
                dry_run: bool) -> Optional[float]:
    """Train ``config`` into ``work_dir`` unless it is done; an interrupted run resumes. Wall seconds, or None."""
    state = "none" if force else training_state(work_dir, iters)
    if state == "done":
        return None
    command = train_command(config, str(work_dir), options + schedule_options(config, iters, det=False), gpus)
    return run(command + (["--resume"] if state == "partial" else []), log, dry_run)


def _store_is_finished(folder: Path) -> bool:
    meta = folder / META_FILE
    return meta.is_file() and json.loads(meta.read_text()).get("format") == FORMAT


def stage2_command(backbone: Path, proposals: Path, image_root: str, store: Path, options: Sequence[str],
                   gpus: int) -> List[str]:
    """``tools/orl_correspondence.py`` (under ``torchrun`` for ``gpus`` > 1)."""
    launcher = [sys.executable] if gpus <= 1 else [sys.executable, "-m", "torch.distributed.run",
                                                    f"--nproc_per_node={gpus}"]
    return launcher + [str(ROOT / "tools/orl_correspondence.py"), str(backbone), "--proposals", str(proposals),
                       "--image-root", image_root, "--out", str(store), *options]


def correspondence_store(out: Path, stage1_config: str, image_root: str, proposals: Optional[str],
                         proposal_images: Optional[str], stage1_iters: int, gpus: int, seed: int,
                         stage2_options: Sequence[str], proposal_options: Sequence[str], force: bool = False,
                         dry_run: bool = False) -> Tuple[Path, Dict[str, float]]:
    """Stages 1 and 2 (reusing what exists): the stage-1 run, its backbone, the proposals, the store.

    Returns the store's folder and the wall seconds of the stages run here.
    """
    times: Dict[str, float] = {}
    stage1 = out / "stage1"
    seconds = train_stage(stage1_config, stage1, [f"randomness.seed={seed}"], stage1_iters, gpus, out / "stage1.log",
                          force, dry_run)
    backbone = out / "stage1_backbone.pth"
    if seconds is not None:
        times["stage1_s"] = seconds
    if force or seconds is not None or not backbone.is_file():
        checkpoint = stage1 / "<last checkpoint>" if dry_run else last_checkpoint(stage1)
        times["extract_s"] = run([sys.executable, str(ROOT / "tools/extract_backbone.py"), str(checkpoint),
                                  str(backbone), "--overwrite"], out / "extract.log", dry_run)
    proposals_file = Path(proposals) if proposals else out / "proposals.json"
    if not proposals and (force or not proposals_file.is_file()):
        command = [sys.executable, str(ROOT / "tools/make_proposals.py"), "--image-root", image_root,
                   "--out", str(proposals_file), *proposal_options]
        if proposal_images:
            command += ["--coco", proposal_images]
        times["proposals_s"] = run(command, out / "proposals.log", dry_run)
    store = out / "correspondence"
    if force or not _store_is_finished(store):
        options = list(stage2_options) + (["--overwrite"] if force else []) + ["--quiet"]
        times["stage2_s"] = run(stage2_command(backbone, proposals_file, image_root, store, options, gpus),
                                out / "stage2.log", dry_run)
    return store, times


def stage3_options(store: Path, image_root: str) -> List[str]:
    """``--cfg-options`` pointing a stage-3 config at a store and its images."""
    return [f"train_dataloader.dataset.correspondence={store}", f"train_dataloader.dataset.image_root={image_root}"]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--out", default="work_dirs/orl_embedded", help="output folder of every stage")
    parser.add_argument("--image-root", default="data/embedded/images", help="the images of stages 1-3")
    parser.add_argument("--proposals", default=None,
                        help="COCO-format proposals file for stage 2 (default: tools/make_proposals.py writes OUT/proposals.json)")
    parser.add_argument("--proposal-images", default="data/embedded/annotations_train.json",
                        help="COCO file whose images get proposals (the training images); '' = every image in --image-root")
    parser.add_argument("--proposal-options", default=DEFAULT_PROPOSAL_OPTIONS, help="tools/make_proposals.py options")
    parser.add_argument("--stage1-config", default=DEFAULT_STAGE1, help="stage-1 (BYOL) config")
    parser.add_argument("--stage3-config", action="append", metavar="NAME=CONFIG",
                        help=f"stage-3 configs, repeatable (default: {' and '.join(DEFAULT_STAGE3)})")
    parser.add_argument("--stage2-options", default=DEFAULT_STAGE2_OPTIONS, help="tools/orl_correspondence.py options")
    parser.add_argument("--stage1-iters", type=int, default=300, help="stage-1 iterations (0: the config's schedule)")
    parser.add_argument("--stage3-iters", type=int, default=300, help="stage-3 iterations (0: the config's schedule)")
    parser.add_argument("--stages", nargs="+", type=int, default=[1, 2, 3], choices=[1, 2, 3],
                        help="stages to run (stage 3 needs the store of stage 2; stage 2 the backbone of stage 1)")
    parser.add_argument("--gpus", type=int, default=1, help="processes per stage (>1: torchrun)")
    parser.add_argument("--seed", type=int, default=0, help="randomness.seed of the training stages")
    parser.add_argument("--force", action="store_true", help="rerun stages whose outputs exist")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, object]:
    args = parse_args(argv)
    out = Path(args.out) if Path(args.out).is_absolute() else ROOT / args.out
    out.mkdir(parents=True, exist_ok=True)
    result: Dict[str, object] = {}
    store = out / "correspondence"
    if 1 in args.stages or 2 in args.stages:
        store, times = correspondence_store(
            out, args.stage1_config, args.image_root, args.proposals, args.proposal_images or None, args.stage1_iters,
            args.gpus, args.seed, shlex.split(args.stage2_options), shlex.split(args.proposal_options), args.force,
            args.dry_run)
        result.update(times)
    if 3 in args.stages:
        for spec in args.stage3_config or DEFAULT_STAGE3:
            name, config = spec.split("=", 1)
            work = out / ("stage3_" + name.lower().replace(" + ", "_").replace(" ", "_"))
            seconds = train_stage(config, work, [f"randomness.seed={args.seed}"] + stage3_options(store, args.image_root),
                                  args.stage3_iters, args.gpus, out / f"{work.name}.log", args.force, args.dry_run)
            if seconds is not None:
                result[f"stage3 {name}_s"] = seconds
    print(json.dumps({k: round(v, 1) for k, v in result.items()}, indent=1))
    print(f"outputs: {out} (stage1/, stage1_backbone.pth, proposals.json, correspondence/, stage3_*/, *.log)")
    print(f"next: python tools/extract_backbone.py <checkpoint in {out}/stage3_orl_hcl> backbone.pth, then fine-tune a "
          "detector from it (docs/mmdet.md), or tools/benchmark_transfer.sh --orl for the transfer table")
    return result


if __name__ == "__main__":
    main()
