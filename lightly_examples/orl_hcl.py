r"""ORL stage 3 (object-level BYOL) + HCL with Lightly and PyTorch Lightning, from a correspondence store.

ORL (Xie et al., NeurIPS 2021; release github Jiahao000/ORL) pretrains in three stages: image-level BYOL,
correspondence discovery (``tools/orl_correspondence.py`` writes the store this script reads), and this
stage: BYOL on image-level, intra-RoI and inter-RoI pairs with three predictor heads. HCL (Ge et al.,
CVPR 2023) adds a hyperbolic InfoNCE term, the whole image (scene, online network, on the Poincaré ball)
against one of its proposals (object, momentum network) with a queue of object keys:

    L = w_g L_global + w_intra L_local_intra + w_inter L_local_inter + lambda_hyp * L_hyp,
    L_h = -2 cos(q_h(g(f(v1))), sg g'(f'(v2))) - 2 cos(q_h(g(f(v2))), sg g'(f'(v1)))

(weights 1; target momentum 0.99 -> 1, cosine). ``--lambda-hyp 0`` is plain ORL (no hyperbolic branch).
Model: :class:`hcl_plugin.lightly.orl_model.ORLHCL`; views: :class:`hcl_plugin.lightly.orl_data.ORLDataset`.

    python lightly_examples/orl_hcl.py --correspondence work_dirs/orl_embedded/correspondence --max-steps 200   # CPU-sized
    python lightly_examples/orl_hcl.py --correspondence work_dirs/orl_embedded/correspondence --lambda-hyp 0    # plain ORL
    python lightly_examples/orl_hcl.py --correspondence work_dirs/orl_embedded/correspondence --weights work_dirs/orl_embedded/stage1_backbone.pth \
        --backbone resnet50 --image-size 224 --patch-size 96 --batch-size 64 --epochs 800 \
        --devices 8 --strategy ddp --accelerator gpu           # the release's scale (stage 1 weights)
    python tools/extract_backbone.py OUT/final.ckpt OUT/backbone.pth   # then: docs/mmdet.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import pytorch_lightning as pl  # noqa: E402
from torch.utils.data import DataLoader, default_collate  # noqa: E402

from hcl_plugin.lightly.orl_data import ORLDataset, ORLViews  # noqa: E402
from hcl_plugin.lightly.orl_model import ORLHCL  # noqa: E402
from hcl_plugin.lightly.training import PRECISIONS, fit, parse_precision  # noqa: E402
from hcl_plugin.orl.store import describe, open_store  # noqa: E402
from hcl_plugin.uhml.embedding import backbone_state_dict  # noqa: E402

__all__ = ["ORLHCL", "build_parser", "load_backbone_file", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The example's command line (the trainer flags are those of the other Lightly examples)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--correspondence", type=Path, required=True,
                      help="stage-2 correspondence store (folder written by tools/orl_correspondence.py)")
    data.add_argument("--image-root", type=Path, default=None, help="folder of the images (default: the store's)")
    data.add_argument("--image-size", type=int, default=64, help="side of the image-level views (release: 224)")
    data.add_argument("--patch-size", type=int, default=32, help="side of the RoI views (release: 96 at 224)")
    data.add_argument("--hyperbolic-size", type=int, default=None,
                      help="side of the scene/object views of the hyperbolic term (default: --image-size)")
    data.add_argument("--topk-knn-image", type=int, default=None,
                      help="draw the neighbour among the first K stored (default: all; release: 10)")
    data.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", choices=["resnet18", "resnet50"], default="resnet18", help="torchvision ResNet")
    model.add_argument("--stem", choices=["imagenet", "small"], default="imagenet",
                       help="ResNet stem (small: 3x3/1 conv, no max-pool; must match --weights)")
    model.add_argument("--weights", type=Path, default=None,
                       help="stage-1 backbone file ({'state_dict': torchvision ResNet keys}, tools/extract_backbone.py)")
    model.add_argument("--proj-hidden-dim", type=int, default=4096, help="BYOL projection/predictor hidden width")
    model.add_argument("--proj-output-dim", type=int, default=256, help="BYOL projection output dimension")
    model.add_argument("--momentum", type=float, default=0.99, help="base target momentum (cosine to 1)")
    model.add_argument("--global-weight", type=float, default=1.0, help="weight of the image-level BYOL loss")
    model.add_argument("--intra-weight", type=float, default=1.0, help="weight of the intra-RoI BYOL loss")
    model.add_argument("--inter-weight", type=float, default=1.0, help="weight of the inter-RoI BYOL loss")
    model.add_argument("--lambda-hyp", type=float, default=0.1, help="weight of the hyperbolic loss; 0 = plain ORL")
    model.add_argument("--c", type=float, default=0.05, help="curvature magnitude of the Poincaré ball")
    model.add_argument("--learn-c", action="store_true", help="learn the curvature")
    model.add_argument("--temperature", type=float, default=0.2, help="temperature of the hyperbolic InfoNCE")
    model.add_argument("--memory-bank-size", type=int, default=4096, help="queue of object keys (0: in-batch)")
    model.add_argument("--hyp-output-dim", type=int, default=128, help="dimension of the ball points")
    train = parser.add_argument_group("training")
    train.add_argument("--batch-size", type=int, default=16, help="images per step and device")
    train.add_argument("--epochs", type=int, default=1, help="passes over the store's images")
    train.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: epochs decide)")
    train.add_argument("--max-minutes", type=float, default=None, help="stop after this much training time")
    train.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (cosine schedule)")
    train.add_argument("--weight-decay", type=float, default=1e-4, help="SGD weight decay")
    train.add_argument("--warmup-steps", type=int, default=0, help="linear learning-rate warm-up steps")
    train.add_argument("--seed", type=int, default=0, help="seed of Python, NumPy and torch")
    train.add_argument("--out", type=Path, default=Path("outputs/orl_hcl"), help="checkpoints and logs")
    train.add_argument("--devices", default="auto", help="number of devices or 'auto'")
    train.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    train.add_argument("--strategy", default="auto", help="e.g. ddp")
    train.add_argument("--precision", default="fp32", type=parse_precision, choices=list(PRECISIONS),
                       help="fp32, bf16 (mixed) or fp16 (mixed, GPU)")
    train.add_argument("--checkpoint-every", type=int, default=100, help="save a checkpoint every N steps")
    train.add_argument("--save-top-k", type=int, default=1, help="periodic checkpoints kept (-1: all)")
    train.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from")
    train.add_argument("--log-every", type=int, default=10, help="log the losses every N steps (OUT/logs/)")
    train.add_argument("--no-progress-bar", action="store_true", help="no progress bar")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> pl.Trainer:
    """Parse ``argv`` (the command line by default), build the data and :class:`ORLHCL`, train; returns the trainer."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    args.num_workers = args.workers
    pl.seed_everything(args.seed, workers=True)
    store = open_store(args.correspondence, image_root=args.image_root)
    counts = describe(store)
    print(f"correspondence store {args.correspondence}: {counts['images']} images, {counts['neighbours']} "
          f"neighbours each, {counts['proposals_per_image']} proposals and {counts['pairs_per_neighbour']} RoI pairs "
          f"per neighbour; images from {store.image_root}", file=sys.stderr)
    if len(store) < args.batch_size:
        raise SystemExit(f"--correspondence {args.correspondence}: {len(store)} images, fewer than --batch-size "
                         f"{args.batch_size} (the last incomplete batch is dropped)")
    views = ORLViews.default(args.image_size, args.patch_size, hyperbolic=args.lambda_hyp > 0,
                             hyperbolic_size=args.hyperbolic_size)
    dataset = ORLDataset(store, views, topk_knn_image=args.topk_knn_image)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True, num_workers=args.workers,
                        collate_fn=default_collate, persistent_workers=args.workers > 0)
    model = ORLHCL(
        backbone=args.backbone, stem=args.stem, proj_hidden_dim=args.proj_hidden_dim,
        proj_output_dim=args.proj_output_dim, pred_hidden_dim=args.proj_hidden_dim, image_size=args.image_size,
        patch_size=args.patch_size, hyperbolic_size=args.hyperbolic_size or args.image_size,
        global_weight=args.global_weight, intra_weight=args.intra_weight, inter_weight=args.inter_weight,
        momentum=args.momentum, lambda_hyp=args.lambda_hyp, c=args.c, learn_c=args.learn_c,
        hyp_output_dim=args.hyp_output_dim, temperature=args.temperature, memory_bank_size=args.memory_bank_size,
        lr=args.lr, weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
    )
    if args.weights is not None:
        model.load_backbone(backbone_state_dict(args.weights)[0], source=f"--weights {args.weights}")
        print(f"backbone (online and momentum) initialised from {args.weights}", file=sys.stderr)
    what = "plain ORL" if args.lambda_hyp == 0 else f"ORL + HCL (lambda_hyp = {args.lambda_hyp})"
    print(f"training {what}: {args.backbone}, views {args.image_size} px (images) / {args.patch_size} px (RoIs), "
          f"batch {args.batch_size}, {len(loader)} steps per epoch; logs in {args.out / 'logs'}", file=sys.stderr)
    trainer = fit(model, args, seed=False, loader=loader)
    if trainer.is_global_zero:
        final = args.out / "final.ckpt"
        logs = Path(trainer.logger.log_dir) / "metrics.csv" if trainer.logger is not None else args.out / "logs"
        print(f"wrote {final} (the trained model; backbone under 'backbone.'), {logs} (loss, loss_global, "
              f"loss_local_intra, loss_local_inter{', loss_hyp' if args.lambda_hyp > 0 else ''} per step) and "
              f"{args.out / 'checkpoints'}/ (last.ckpt for --resume)\n"
              f"next: python tools/extract_backbone.py {final} {args.out / 'backbone.pth'}  "
              f"(then use it as a detector's pretrained backbone, docs/mmdet.md)", file=sys.stderr)
    return trainer


if __name__ == "__main__":
    main()
