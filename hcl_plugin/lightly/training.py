"""What the Lightning examples in ``lightly_examples/`` share: arguments, backbone, data, trainer.

The models are in :mod:`hcl_plugin.lightly.models`; this module turns command-line arguments into
a model (``Model.from_args``), data loaders and a ``pytorch_lightning.Trainer`` with a progress bar,
periodic checkpoints, ``--resume`` and a final checkpoint (``OUT/final.ckpt``) whose ``backbone.*``
weights are a torchvision ResNet's. :func:`train` is a whole example::

    from hcl_plugin.lightly.models import MoCoHCL
    from hcl_plugin.lightly.training import train
    train(MoCoHCL, ["--lambda-hyp", "0.1", "--max-steps", "100"])
"""

from __future__ import annotations

import argparse
import math
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Type

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, default_collate

from hcl_plugin.checkpoints import ModelHyperParameters, build_resnet
from hcl_plugin.geometry import Curvature
from hcl_plugin.lightly.data import DEFAULT_EMBEDDED_DIR, ensure_embedded_dataset, scene_dataset
from hcl_plugin.utils.checks import set_value_check_interval

if TYPE_CHECKING:  # models imports this module
    from hcl_plugin.lightly.models import HCLModule

PRECISIONS = {"fp32": "32-true", "32": "32-true", "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed",
              "16-mixed": "16-mixed", "fp16": "16-mixed"}


def resnet_backbone(name: str) -> Tuple[nn.Module, int]:
    """A randomly initialised torchvision ResNet with ``fc = Identity`` (keys stay torchvision's), and its
    width: :func:`hcl_plugin.checkpoints.build_resnet`, the project's one builder."""
    return build_resnet(name)


def add_common_arguments(parser: argparse.ArgumentParser, lambda_hyp: float = 0.1) -> argparse.ArgumentParser:
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, default=None,
                      help="image folder (COCO: train2017/, OpenImages: train/); default: the embedded set")
    data.add_argument("--annotations", type=Path, default=None,
                      help="COCO JSON (instances or proposals) or OpenImages box CSV; default: DATA/annotations.json")
    data.add_argument("--embedded-dir", type=Path, default=DEFAULT_EMBEDDED_DIR,
                      help="where the embedded set is built when --data is not given")
    data.add_argument("--embedded-images", type=int, default=1000)
    data.add_argument("--image-size", type=int, default=64, help="side of every view (official: 224)")
    data.add_argument("--min-box-size", type=float, default=24,
                      help="boxes smaller than this many px per side are not used (official: 56 at COCO size)")
    data.add_argument("--expand-to", type=float, default=96, help="small objects grow towards this size (official: 256)")
    data.add_argument("--num-workers", type=int, default=2)
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet34", "resnet50"])
    model.add_argument("--lambda-hyp", type=float, default=lambda_hyp, help="weight of the hyperbolic loss; 0 = baseline")
    model.add_argument("--temperature", type=float, default=0.2)
    model.add_argument("--c", type=float, default=0.05, help="curvature magnitude (ball radius 1/sqrt(c))")
    model.add_argument("--learn-c", action="store_true",
                       help="learn the curvature (from --c, as log c; one Curvature for head, loss and queue)")
    model.add_argument("--clip-r", type=float, default=None, help="feature clipping radius before expmap0")
    model.add_argument("--feature-scale", type=float, default=None,
                       help="initial scale of the hyperbolic head's output (default 1/sqrt(output dim), learned)")
    model.add_argument("--fixed-scale", action="store_true", help="do not learn the feature scale")
    model.add_argument("--proj-hidden-dim", type=int, default=512)
    model.add_argument("--proj-output-dim", type=int, default=128)
    train = parser.add_argument_group("training")
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--epochs", type=int, default=1)
    train.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: epochs decide)")
    train.add_argument("--max-minutes", type=float, default=None, help="stop after this much training time")
    train.add_argument("--lr", type=float, default=0.06)
    train.add_argument("--weight-decay", type=float, default=1e-4)
    train.add_argument("--devices", default="auto", help="number of devices (e.g. 8) or 'auto'")
    train.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    train.add_argument("--strategy", default="auto", help="e.g. ddp (Lightning DDP; gloo on CPU)")
    train.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS))
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--value-check-interval", type=int, default=1,
                       help="run the NaN/in-ball input checks on every N-th call (1 = always; 100 leaves a GPU step "
                            "with no more host synchronisations than the baseline's; docs/numerics.md)")
    train.add_argument("--out", type=Path, default=Path("outputs/lightly"), help="checkpoints and logs")
    train.add_argument("--checkpoint-every", type=int, default=100, help="save a checkpoint every N steps")
    train.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from")
    train.add_argument("--log-every", type=int, default=10)
    train.add_argument("--no-progress-bar", action="store_true")
    return parser


def head_hparams(args: argparse.Namespace) -> Dict[str, object]:
    """The model's hyper-parameters (the checkpoint contract, :class:`~hcl_plugin.checkpoints.ModelHyperParameters`,
    docs/eval.md) plus the loss and optimiser settings the examples also save."""
    scale = args.feature_scale if args.feature_scale is not None else 1 / math.sqrt(args.proj_output_dim)
    contract = ModelHyperParameters(
        backbone=args.backbone, c=args.c, image_size=args.image_size,
        proj_hidden_dim=args.proj_hidden_dim, proj_output_dim=args.proj_output_dim,
        hyp_hidden_dim=args.proj_hidden_dim, hyp_output_dim=args.proj_output_dim,
        clip_r=args.clip_r, feature_scale=scale, learn_scale=not args.fixed_scale, learn_c=args.learn_c,
        lambda_hyp=args.lambda_hyp,
    )
    return {**contract.to_dict(), "temperature": args.temperature, "lr": args.lr,
            "weight_decay": args.weight_decay}


def build_dataloader(args: argparse.Namespace, drop_last: bool = True) -> DataLoader:
    if args.data is None:
        root = ensure_embedded_dataset(args.embedded_dir, num_images=args.embedded_images)
        image_root = root / "images"
        annotations = args.annotations or (root / "annotations_train.json")
    else:
        image_root = args.data
        annotations = args.annotations or (args.data / "annotations.json")
    dataset = scene_dataset(image_root, annotations, input_size=args.image_size, min_box_size=args.min_box_size,
                            expand_to=args.expand_to)
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=drop_last,
                      num_workers=args.num_workers, collate_fn=default_collate,
                      persistent_workers=args.num_workers > 0)


def build_trainer(args: argparse.Namespace, callbacks: Optional[List[pl.Callback]] = None,
                  use_distributed_sampler: bool = True) -> pl.Trainer:
    """Trainer with a progress bar, CSV logs, checkpoints every ``--checkpoint-every`` steps and ``last.ckpt``.

    ``use_distributed_sampler=False`` for data loaders whose batch sampler shards itself (UHML's
    balanced sampler).
    """
    args.out.mkdir(parents=True, exist_ok=True)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=args.out / "checkpoints", every_n_train_steps=args.checkpoint_every,
                                              save_top_k=-1, save_last=True, filename="step{step}",
                                              auto_insert_metric_name=False)
    devices = args.devices if args.devices == "auto" else int(args.devices)
    return pl.Trainer(
        max_epochs=args.epochs,
        max_steps=args.max_steps,
        max_time=None if args.max_minutes is None else timedelta(minutes=args.max_minutes),
        devices=devices,
        accelerator=args.accelerator,
        strategy=args.strategy,
        precision=PRECISIONS[args.precision],
        default_root_dir=args.out,
        callbacks=[checkpoint] + list(callbacks or []),
        log_every_n_steps=args.log_every,
        enable_progress_bar=not args.no_progress_bar,
        logger=pl.loggers.CSVLogger(args.out, name="logs"),
        use_distributed_sampler=use_distributed_sampler,
        deterministic=False,
    )


def sgd_with_cosine(module: pl.LightningModule, lr: float, weight_decay: float) -> Dict[str, Any]:
    """SGD (momentum 0.9) with a cosine learning-rate schedule over the trainer's estimated steps.

    A learnable curvature (the ``log_c`` of a :class:`~hcl_plugin.geometry.Curvature`) gets no weight
    decay, which would pull it towards c = 1 (MERU excludes its curvature likewise).
    """
    curvature = {id(p) for m in module.modules() if isinstance(m, Curvature) for p in m.parameters()}
    params = list(module.parameters())
    groups: List[Dict[str, Any]] = [{"params": [p for p in params if id(p) not in curvature]}]
    if curvature:
        groups.append({"params": [p for p in params if id(p) in curvature], "weight_decay": 0.0})
    optimizer = torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
    total = max(1, int(module.trainer.estimated_stepping_batches))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def fit(module: pl.LightningModule, args: argparse.Namespace, callbacks: Optional[List[pl.Callback]] = None) -> pl.Trainer:
    """Train, resuming from ``args.resume`` if given, and write ``OUT/final.ckpt``."""
    pl.seed_everything(args.seed, workers=True)
    loader = build_dataloader(args)
    trainer = build_trainer(args, callbacks)
    trainer.fit(module, loader, ckpt_path=str(args.resume) if args.resume else None)
    trainer.save_checkpoint(args.out / "final.ckpt")
    return trainer


def build_parser(model_class: Type["HCLModule"], description: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line of an example: :func:`add_common_arguments` plus ``model_class.add_arguments``
    (e.g. ``--memory-bank-size`` and ``--momentum`` of :class:`~hcl_plugin.lightly.models.MoCoHCL`)."""
    parser = add_common_arguments(argparse.ArgumentParser(description=description))
    model_class.add_arguments(parser)
    return parser


def train(model_class: Type["HCLModule"], argv: Optional[Sequence[str]] = None, description: Optional[str] = None,
          callbacks: Optional[List[pl.Callback]] = None) -> pl.Trainer:
    """An example end to end: parse ``argv``, seed, build ``model_class.from_args(args)``, :func:`fit`."""
    args = build_parser(model_class, description).parse_args(None if argv is None else list(argv))
    set_value_check_interval(args.value_check_interval)
    pl.seed_everything(args.seed, workers=True)
    return fit(model_class.from_args(args), args, callbacks)
