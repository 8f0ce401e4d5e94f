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
import sys
import warnings
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
from hcl_plugin.lightly.recipes import RECIPES, apply_recipe
from hcl_plugin.utils.checks import set_value_check_interval
from hcl_plugin.utils.cli import HelpFormatter

if TYPE_CHECKING:  # models imports this module
    from hcl_plugin.lightly.models import HCLModule

#: ``--precision`` spellings and Lightning's names for them (one spelling per precision; the old aliases
#: of :data:`DEPRECATED_PRECISIONS` are still accepted with a warning).
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}
#: Old ``--precision`` spellings -> the one kept (``FutureWarning`` when used).
DEPRECATED_PRECISIONS = {"32": "fp32", "bf16-mixed": "bf16", "16-mixed": "fp16"}


def parse_precision(value: str) -> str:
    """``--precision`` value: ``fp32``, ``bf16`` or ``fp16``; an old spelling (``32``, ``bf16-mixed``,
    ``16-mixed``) is mapped to its new name with a ``FutureWarning`` naming both."""
    if value in DEPRECATED_PRECISIONS:
        new = DEPRECATED_PRECISIONS[value]
        warnings.warn(f"--precision {value} is deprecated and will be removed; use --precision {new}",
                      FutureWarning, stacklevel=2)
        return new
    return value


#: What ``--data`` means in every tool (the Lightly examples, tools/analyze.py, tools/demo.py): the layout
#: ``python -m hcl_plugin.data.embedded.scenes`` writes and the MMSelfSup configs' ``data_root`` holds.
DATA_LAYOUT = ("a data-set root: DATA/images/ and DATA/annotations_train.json (the train split; "
               "DATA/annotations_val.json is the analysis split, never trained on)")


def resnet_backbone(name: str, stem: str = "imagenet") -> Tuple[nn.Module, int]:
    """A randomly initialised torchvision ResNet with ``fc = Identity`` (keys stay torchvision's), and its
    width: :func:`hcl_plugin.checkpoints.build_resnet`, the project's one builder (``stem``: ``"imagenet"``
    or ``"small"``, the 3x3 stride-1 stem without max-pool)."""
    return build_resnet(name, stem=stem)


def add_common_arguments(parser: argparse.ArgumentParser, lambda_hyp: float = 0.1) -> argparse.ArgumentParser:
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, default=None,
                      help=f"{DATA_LAYOUT}; with --annotations, the images are read from DATA/images/ if it exists, "
                           "else from DATA itself (COCO: --data coco/train2017 --annotations "
                           "coco/annotations/instances_train2017.json); default: the embedded set in --embedded-dir")
    data.add_argument("--annotations", type=Path, default=None,
                      help="COCO JSON (instances or proposals) or OpenImages box CSV; overrides "
                           "DATA/annotations_train.json")
    data.add_argument("--embedded-dir", type=Path, default=DEFAULT_EMBEDDED_DIR,
                      help="where the embedded set is built (and read) when --data is not given")
    data.add_argument("--embedded-images", type=int, default=1000,
                      help="number of images of the embedded set when it is built")
    data.add_argument("--image-size", type=int, default=64, help="side of every view (official: 224)")
    data.add_argument("--hyperbolic-size", type=int, default=None,
                      help="side of the two hyperbolic (scene, object) views; default: --image-size (official: "
                           "224 for all four views); smaller is cheaper, the Euclidean views are unchanged")
    data.add_argument("--min-box-size", type=float, default=24,
                      help="boxes whose area (after clipping to the image) is below MIN_BOX_SIZE^2 px^2 are not "
                           "used, e.g. 24: 576 px^2, so a thin 12 x 60 box is kept (official: 56 at COCO size)")
    data.add_argument("--expand-to", type=float, default=96, help="small objects grow towards this size (official: 256)")
    data.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes decoding images")
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet34", "resnet50"],
                       help="torchvision ResNet, randomly initialised (official: resnet50)")
    model.add_argument("--recipe", choices=sorted(RECIPES), default="paper",
                       help="named defaults, explicit flags override them: paper (the flags' own defaults) or small "
                            "(learns in a few hundred steps on a CPU: --stem small --image-size 32 "
                            "--memory-bank-size 256 --momentum 0.98 --momentum-schedule cosine --warmup-steps 20; "
                            "docs/recipe.md)")
    model.add_argument("--stem", choices=["imagenet", "small"], default="imagenet",
                       help="ResNet stem: imagenet (7x7/2 conv + max-pool) or small (3x3/1 conv, no max-pool, as "
                            "CIFAR recipes do; for views of at most ~96 px)")
    model.add_argument("--lambda-hyp", type=float, default=lambda_hyp, help="weight of the hyperbolic loss; 0 = baseline")
    model.add_argument("--temperature", type=float, default=0.2,
                       help="InfoNCE temperature of both terms (official: 0.2)")
    model.add_argument("--c", type=float, default=0.05, help="curvature magnitude (ball radius 1/sqrt(c))")
    model.add_argument("--learn-c", action="store_true",
                       help="learn the curvature (from --c, as log c; one Curvature for head, loss and queue)")
    model.add_argument("--clip-r", type=float, default=None, help="feature clipping radius before expmap0")
    model.add_argument("--feature-scale", type=float, default=None,
                       help="initial scale of the hyperbolic head's output (default 1/sqrt(output dim), learned)")
    model.add_argument("--fixed-scale", action="store_true", help="do not learn the feature scale")
    model.add_argument("--hyperbolic-head", choices=["separate", "shared"], default="separate",
                       help="separate: a Poincaré head with its own MLP (project default); shared: the projection "
                            "head's raw output mapped onto the ball (the released HCL code's; docs/hcl_options.md)")
    model.add_argument("--riemannian-grad", action=argparse.BooleanOptionalAction, default=False,
                       help="rescale the gradient at the ball point by (1 - c|z|^2)^2/4 (released HCL code: on)")
    model.add_argument("--decoupled", action=argparse.BooleanOptionalAction, default=False,
                       help="the hyperbolic loss moves only the norm; the direction is detached (released code's option)")
    model.add_argument("--proj-hidden-dim", type=int, default=512,
                       help="hidden width of the projection heads (and of the separate hyperbolic head)")
    model.add_argument("--proj-output-dim", type=int, default=128,
                       help="output dimension of the projection heads (and of the ball points)")
    train = parser.add_argument_group("training")
    train.add_argument("--batch-size", type=int, default=32, help="images per step and device")
    train.add_argument("--epochs", type=int, default=1, help="passes over the training split")
    train.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: epochs decide)")
    train.add_argument("--max-minutes", type=float, default=None, help="stop after this much training time")
    train.add_argument("--lr", type=float, default=0.06, help="SGD learning rate (cosine schedule)")
    train.add_argument("--weight-decay", type=float, default=1e-4, help="SGD weight decay (not on a learnt curvature)")
    train.add_argument("--warmup-steps", type=int, default=0,
                       help="linear learning-rate warm-up steps before the cosine decay (0: none)")
    train.add_argument("--devices", default="auto", help="number of devices (e.g. 8) or 'auto'")
    train.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    train.add_argument("--strategy", default="auto", help="e.g. ddp (Lightning DDP; gloo on CPU)")
    train.add_argument("--precision", default="fp32", type=parse_precision, choices=list(PRECISIONS),
                       help="fp32, bf16 (mixed) or fp16 (mixed, GPU); old spellings 32, bf16-mixed, 16-mixed are "
                            "deprecated")
    train.add_argument("--seed", type=int, default=0, help="seed of Python, NumPy and torch (set once)")
    train.add_argument("--value-check-interval", type=int, default=1,
                       help="run the NaN/in-ball input checks on every N-th call (1 = always; 100 leaves a GPU step "
                            "with no more host synchronisations than the baseline's; docs/numerics.md)")
    train.add_argument("--out", type=Path, default=Path("outputs/lightly"), help="checkpoints and logs")
    train.add_argument("--checkpoint-every", type=int, default=100, help="save a checkpoint every N steps")
    train.add_argument("--save-top-k", type=int, default=1,
                       help="periodic checkpoints kept in OUT/checkpoints (the newest; -1: all), besides last.ckpt "
                            "and OUT/final.ckpt")
    train.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from")
    train.add_argument("--log-every", type=int, default=10, help="log the losses every N steps (OUT/logs/)")
    train.add_argument("--no-progress-bar", action="store_true", help="no progress bar")
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
        lambda_hyp=args.lambda_hyp, hyperbolic_head=getattr(args, "hyperbolic_head", "separate"),
        stem=getattr(args, "stem", "imagenet"),
    )
    return {**contract.to_dict(), "temperature": args.temperature, "lr": args.lr,
            "weight_decay": args.weight_decay,
            "warmup_steps": getattr(args, "warmup_steps", 0), "recipe": getattr(args, "recipe", "paper"),
            # a data setting, recorded resolved: the side of the hyperbolic views (default: --image-size)
            "hyperbolic_size": args.image_size if getattr(args, "hyperbolic_size", None) is None else args.hyperbolic_size}


def resolve_data(data: Optional[Path], annotations: Optional[Path] = None) -> Tuple[Path, Path]:
    """``(image folder, annotation file)`` of ``--data`` (a data-set root) and ``--annotations``.

    ``DATA/images/`` and ``DATA/annotations_train.json``: the train split only. ``--annotations`` overrides
    the file; the images are then read from ``DATA/images/`` if it exists, else from ``DATA`` (a COCO
    ``train2017/`` folder). Without ``--annotations`` a root lacking ``annotations_train.json`` is refused
    with a ``FileNotFoundError`` naming the missing file: an ``images/`` folder given as ``--data`` or
    a root with only ``annotations.json`` (all images, the validation split included) would otherwise
    train on the validation images.
    """
    data = Path(data)
    images = data / "images" if (data / "images").is_dir() else data
    if annotations is not None:
        return images, Path(annotations)
    train_file = data / "annotations_train.json"
    if train_file.exists():
        return images, train_file
    hint = ""
    if (data.parent / "annotations_train.json").exists():
        hint = f" {data} looks like the images folder of a data set: pass its root, --data {data.parent}."
    elif (data / "annotations.json").exists():
        hint = (f" {data / 'annotations.json'} exists but holds every image, the validation split included; "
                f"to train on it anyway pass --annotations {data / 'annotations.json'}.")
    raise FileNotFoundError(f"--data {data}: no {train_file} (--data is {DATA_LAYOUT}); or pass the annotation "
                            f"file with --annotations.{hint}")


def build_dataloader(args: argparse.Namespace, drop_last: bool = True) -> DataLoader:
    """The training split's loader: ``--data`` (or the embedded set, built in ``--embedded-dir`` when
    missing) resolved by :func:`resolve_data`."""
    if args.data is None:
        root = ensure_embedded_dataset(args.embedded_dir, num_images=args.embedded_images)
        image_root, annotations = resolve_data(root, args.annotations)
    else:
        image_root, annotations = resolve_data(args.data, args.annotations)
    dataset = scene_dataset(image_root, annotations, input_size=args.image_size, min_box_size=args.min_box_size,
                            expand_to=args.expand_to, hyperbolic_size=getattr(args, "hyperbolic_size", None))
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=drop_last,
                      num_workers=args.num_workers, collate_fn=default_collate,
                      persistent_workers=args.num_workers > 0)


def build_trainer(args: argparse.Namespace, callbacks: Optional[List[pl.Callback]] = None,
                  use_distributed_sampler: bool = True) -> pl.Trainer:
    """Trainer with a progress bar, CSV logs, checkpoints every ``--checkpoint-every`` steps and ``last.ckpt``.

    Of the periodic checkpoints (``OUT/checkpoints/step<N>.ckpt``) the newest ``--save-top-k`` are kept
    (default 1; -1 keeps all); ``last.ckpt`` is a link to the newest (a copy with ``--save-top-k 0``).

    ``use_distributed_sampler=False`` for data loaders whose batch sampler shards itself (UHML's
    balanced sampler).
    """
    args.out.mkdir(parents=True, exist_ok=True)
    top_k = getattr(args, "save_top_k", -1)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=args.out / "checkpoints", every_n_train_steps=args.checkpoint_every,
                                              save_top_k=top_k, monitor="step", mode="max",  # the newest top_k
                                              save_last="link" if top_k != 0 else True, filename="step{step}",
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


def warmup_cosine_factor(step: int, total: int, warmup_steps: int = 0) -> float:
    """The learning-rate factor at ``step`` of ``total``: linear warm-up ``(step + 1) / warmup_steps`` over the
    first ``warmup_steps`` steps, then a cosine from 1 to 0 over the remaining ones (as ``CosineAnnealingLR``)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay = max(1, total - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup_steps, decay) / decay))


def sgd_with_cosine(module: pl.LightningModule, lr: float, weight_decay: float, warmup_steps: int = 0) -> Dict[str, Any]:
    """SGD (momentum 0.9) with a cosine learning-rate schedule over the trainer's estimated steps, after a
    linear warm-up of ``warmup_steps`` steps (:func:`warmup_cosine_factor`; 0: ``CosineAnnealingLR`` as before).

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
    if warmup_steps > 0:
        schedule: Any = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine_factor(step, total, warmup_steps))
    else:
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def fit(module: pl.LightningModule, args: argparse.Namespace, callbacks: Optional[List[pl.Callback]] = None,
        seed: bool = True, loader: Optional[DataLoader] = None) -> pl.Trainer:
    """Train, resuming from ``args.resume`` if given, and write ``OUT/final.ckpt``; then print where the
    outputs are and the analysis command to run next (on global rank 0).

    ``seed=False`` when the caller already seeded (:func:`train` seeds once, before building the model).
    ``loader``: the training batches (default: the scene set of ``--data``, :func:`build_dataloader`); a
    caller that passes its own data prints its own next steps (the scene analysis is not printed).
    """
    if seed:
        pl.seed_everything(args.seed, workers=True)
    own_data = loader is not None
    loader = loader if own_data else build_dataloader(args)
    trainer = build_trainer(args, [FallbackReport()] + list(callbacks or []))
    trainer.fit(module, loader, ckpt_path=str(args.resume) if args.resume else None)
    final = args.out / "final.ckpt"
    trainer.save_checkpoint(final)
    if trainer.is_global_zero and not own_data:
        print(next_steps(args, trainer), file=sys.stderr)
    return trainer


def next_steps(args: argparse.Namespace, trainer: pl.Trainer) -> str:
    """Where a run's outputs are and the command to run next (printed at the end of every example)."""
    logger = trainer.logger
    metrics = Path(logger.log_dir) / "metrics.csv" if logger is not None else args.out / "logs"
    data = args.data if args.data is not None else args.embedded_dir
    return (f"wrote {args.out / 'final.ckpt'} (the trained model), {metrics} (losses and health per step) and "
            f"{args.out / 'checkpoints'}/ (periodic checkpoints, last.ckpt for --resume)\n"
            f"next: python tools/analyze.py {args.out / 'final.ckpt'} --data {data} --out {args.out / 'analysis'}")


def fallback_message(counts: Dict[str, int], first: Optional[str] = None) -> Optional[str]:
    """One line on images with too few usable boxes from a sampler's counters (``None`` when there were none):
    how many, what the policy did instead, the box events behind it, and the first such image."""
    n = int(counts.get("too_few_boxes", 0))
    if n == 0:
        return None
    done = {"resampled": "replaced by another image", "sampled_from_proposals": "cropped from proposals",
            "sampled_random_crops": "cropped at random"}
    actions = ", ".join(f"{int(counts[k])} {v}" for k, v in done.items() if counts.get(k))
    events = ", ".join(f"{k} = {int(counts[k])}" for k in ("boxes_degenerate", "boxes_clipped", "boxes_too_small")
                       if counts.get(k))
    total = n + int(counts.get("sampled_from_boxes", 0))
    return (f"{n} of {total} drawn images had too few usable boxes ({actions or 'no fall-back'}; box events: "
            f"{events or 'none'}); first: {first or 'unknown'}")


class FallbackReport(pl.Callback):
    """Once per epoch, a report when images of the training set had too few usable boxes (the box-sampler
    policy took over: another image, proposals or random crops), with the counts and the first such
    image: a ``UserWarning`` when boxes were empty or outside the image or random crops replaced them,
    else a note on stderr (replacing the image is the official HCL loop). Boxes in ``[x, y, w, h]``
    instead of ``[x1, y1, x2, y2]``, boxes outside the image or images without boxes show up here
    (docs/data.md).

    Counts come from the data set's sampler (:attr:`hcl_plugin.data.SceneObjectSampler.stats`) in the
    main process: with ``--num-workers > 0`` each worker counts its own and this report sees none of
    them (run a first epoch with ``--num-workers 0`` to check new annotations).
    """

    def __init__(self) -> None:
        self._seen: Dict[str, int] = {}

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loader = trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        views = getattr(dataset, "views", None) or getattr(getattr(dataset, "transform", None), "views", None)
        sampler = getattr(views, "sampler", None)
        stats = getattr(sampler, "stats", None)
        if not stats:
            return
        now = {k: int(v) for k, v in stats.items()}
        delta = {k: v - self._seen.get(k, 0) for k, v in now.items() if v - self._seen.get(k, 0)}
        self._seen = now
        message = fallback_message(delta, getattr(sampler, "first_fallback", None))
        if not message or not trainer.is_global_zero:
            return
        # replacing an image without enough boxes by another is the official HCL loop (a note); boxes that are
        # empty or outside the image and random-crop fall-backs usually mean wrong annotations (a warning)
        if any(delta.get(k) for k in ("boxes_degenerate", "boxes_clipped", "sampled_random_crops")):
            warnings.warn(f"epoch {trainer.current_epoch}: {message}", UserWarning, stacklevel=1)
        else:
            print(f"note: epoch {trainer.current_epoch}: {message}", file=sys.stderr)


def build_parser(model_class: Type["HCLModule"], description: Optional[str] = None) -> argparse.ArgumentParser:
    """The command line of an example: :func:`add_common_arguments` plus ``model_class.add_arguments``
    (e.g. ``--memory-bank-size`` and ``--momentum`` of :class:`~hcl_plugin.lightly.models.MoCoHCL`)."""
    parser = add_common_arguments(argparse.ArgumentParser(description=description, formatter_class=HelpFormatter))
    model_class.add_arguments(parser)
    return parser


def train(model_class: Type["HCLModule"], argv: Optional[Sequence[str]] = None, description: Optional[str] = None,
          callbacks: Optional[List[pl.Callback]] = None) -> pl.Trainer:
    """An example end to end: parse ``argv``, seed (once), build ``model_class.from_args(args)``, :func:`fit`."""
    parser = build_parser(model_class, description)
    argv = None if argv is None else list(argv)
    args = apply_recipe(parser, parser.parse_args(argv), argv)  # --recipe's values; explicit flags override
    set_value_check_interval(args.value_check_interval)
    pl.seed_everything(args.seed, workers=True)
    return fit(model_class.from_args(args), args, callbacks, seed=False)
