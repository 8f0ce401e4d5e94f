#!/usr/bin/env python
"""ORL stage 2: correspondence discovery with the stage-1 backbone, written to a correspondence store.

    # tiny CPU run on the embedded set (proposals from tools/make_proposals.py)
    python tools/orl_correspondence.py work_dirs/orl-stage1/backbone.pth --arch resnet18 \
        --proposals data/embedded/proposals_train.json --image-root data/embedded/images \
        --out work_dirs/orl-stage2/correspondence --min-size 32 --patch-size 64 --image-size 64
    # COCO, 8 GPUs (each rank embeds and pairs its share of the images)
    torchrun --nproc_per_node 8 tools/orl_correspondence.py work_dirs/orl-stage1_coco/backbone.pth \
        --arch resnet50 --proposals data/coco/proposals_train2017.json --image-root data/coco/train2017 \
        --out data/coco/orl_correspondence_train2017 --workers 4

The backbone file is what ``tools/extract_backbone.py`` writes from the stage-1 checkpoint (torchvision
key names); it is read without running anything from it. The defaults are the release's COCO settings
(k = 10 neighbours, proposals >= 96 px, aspect ratio <= 3, IoU <= 0.5, top 100, pair ratio 0.1, 224 px
crops). The run writes into ``--out`` as it goes and resumes an unfinished ``--out`` of the same inputs;
a finished one is replaced only with ``--overwrite``. At the end it prints the throughput of each pass
(seconds and images per second), the peak memory (resident set of this process and of the largest
data-loading worker), the store's size on disk, and what the rate means for COCO's 118,287 training
images with this backbone, crop size and device. docs/orl.md describes the store and the stages.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hcl_plugin.checkpoints import (  # noqa: E402
    BACKBONE_FEATURE_DIMS,
    STEMS,
    CheckpointReadError,
    KeyMismatchError,
    UnsafeCheckpointError,
    build_resnet,
)
from hcl_plugin.data.readers import AnnotationError  # noqa: E402
from hcl_plugin.orl.discovery import CorrespondenceSettings, discover_correspondences  # noqa: E402
from hcl_plugin.orl.inputs import read_stage2_inputs  # noqa: E402
from hcl_plugin.orl.store import FORMAT, META_FILE, CorrespondenceError, describe, open_store  # noqa: E402
from hcl_plugin.uhml.embedding import load_backbone_strict  # noqa: E402
from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402

#: COCO train2017, for the printed extrapolation
COCO_TRAIN_IMAGES = 118287


def load_backbone(path: str, arch: str, stem: str) -> torch.nn.Module:
    """A torchvision ResNet (``fc = Identity``) with the weights of a backbone file, loaded strictly
    (``tools/extract_backbone.py``'s ``{'state_dict': ...}``, a bare state dict, or a pretraining checkpoint
    with ``backbone.*`` keys), read without running anything from it."""
    model, _ = build_resnet(arch, stem)
    load_backbone_strict(model, path)
    return model


def _init_distributed() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))


def main(argv: Optional[Sequence[str]] = None) -> int:
    defaults = CorrespondenceSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("backbone", help="stage-1 backbone file (tools/extract_backbone.py output)")
    parser.add_argument("--arch", default="resnet50", choices=sorted(BACKBONE_FEATURE_DIMS), help="backbone architecture")
    parser.add_argument("--stem", default="imagenet", choices=STEMS, help="ResNet input stem of the backbone")
    parser.add_argument("--proposals", required=True, help="COCO-format proposals file (tools/make_proposals.py)")
    parser.add_argument("--image-root", required=True, help="folder the proposals file's image names are relative to")
    parser.add_argument("--out", required=True, help="correspondence store folder to write")
    parser.add_argument("--knn", type=int, default=defaults.knn, help="neighbour images per image")
    parser.add_argument("--pair-ratio", type=float, default=defaults.pair_ratio,
                        help="fraction of an image pair's RoI pairs kept (at least one)")
    parser.add_argument("--min-size", type=float, default=defaults.min_size, help="smallest proposal side (px)")
    parser.add_argument("--max-ratio", type=float, default=defaults.max_ratio, help="largest proposal aspect ratio")
    parser.add_argument("--max-iou", type=float, default=defaults.max_iou, help="largest IoU between kept proposals")
    parser.add_argument("--top-n", type=int, default=defaults.top_n, help="proposals kept per image")
    parser.add_argument("--patch-size", type=int, default=defaults.patch_size, help="side of the RoI crops (px)")
    parser.add_argument("--image-size", type=int, default=defaults.image_size, help="side of the k-NN image view (px)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="crops per backbone forward")
    parser.add_argument("--knn-chunk", type=int, default=defaults.knn_chunk, help="images per k-NN block")
    parser.add_argument("--workers", type=int, default=2, help="data-loading processes per rank")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--keep-embeddings", action="store_true", help="keep work/ (global and RoI embeddings)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished store in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    try:
        settings = CorrespondenceSettings(
            min_size=args.min_size, max_ratio=args.max_ratio, max_iou=args.max_iou, top_n=args.top_n, knn=args.knn,
            pair_ratio=args.pair_ratio, patch_size=args.patch_size, image_size=args.image_size,
            batch_size=args.batch_size, knn_chunk=args.knn_chunk)
    except ValueError as error:
        parser.error(str(error))
    _init_distributed()
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    out = Path(args.out)
    meta = out / META_FILE
    if rank == 0 and meta.is_file() and json.loads(meta.read_text()).get("format") == FORMAT:
        if not args.overwrite:
            print(f"error: {out} already holds a finished correspondence store; pass --overwrite to replace it",
                  file=sys.stderr)
            return 2
        shutil.rmtree(out)
    try:
        inputs = read_stage2_inputs(args.proposals, args.image_root)
        backbone = load_backbone(args.backbone, args.arch, args.stem)
    except (OSError, AnnotationError, CheckpointReadError, UnsafeCheckpointError, KeyMismatchError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    def progress(name: str, total: int):
        from tqdm import tqdm

        return tqdm(total=total, desc=name, unit="img", disable=args.quiet)

    try:
        result = discover_correspondences(
            backbone, inputs.file_names, args.image_root, inputs.image_sizes, inputs.proposals, out,
            settings=settings, device=torch.device(args.device) if args.device else None, workers=args.workers,
            progress=progress, keep_embeddings=args.keep_embeddings)
    except (OSError, CorrespondenceError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if rank != 0:
        return 0
    summary = result.summary()
    summary["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    summary["peak_rss_mib_loader_workers"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    summary["store_mib"] = round(sum(p.stat().st_size for p in out.iterdir() if p.is_file()) / 2**20, 1)
    store = open_store(out, image_root=args.image_root)
    summary.update(describe(store))
    world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
    summary["ranks"] = world
    if not result.resumed and summary["seconds_total"] > 0:
        per_image = summary["seconds_total"] / result.images
        summary["images_per_second"] = round(result.images / summary["seconds_total"], 2)
        summary["coco_train2017_hours_at_this_rate"] = round(per_image * COCO_TRAIN_IMAGES / 3600, 2)
        dim = BACKBONE_FEATURE_DIMS[args.arch]
        summary["coco_roi_embeddings_gib"] = round(
            summary["proposals_per_image"] * COCO_TRAIN_IMAGES * dim * 2 / 2**30, 1)
    print(json.dumps(summary, indent=1))
    print(f"correspondence store: {out} ({store.pairs.shape[0]} RoI pairs)")
    print("next: stage 3, e.g. python tools/train.py mmconfigs/orl/orl-stage3_resnet50_8xb64-coslr-800e_coco.py "
          f"--cfg-options train_dataloader.dataset.correspondence={out}  (docs/orl.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
