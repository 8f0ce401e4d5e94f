r"""What the UHML Lightning example (``lightly_examples/uhml.py``) runs: data, evaluation, command line.

UHML (Yan et al., CVPR 2021 [1]) with PyTorch Lightning. Every epoch the training images are
embedded, clustered hierarchically in the Poincaré ball (``--levels`` counts or ``--thresholds``,
fine -> coarse; :class:`~hcl_plugin.lightly.uhml_recluster.ReclusterCallback`), and the model
(:class:`~hcl_plugin.lightly.uhml_model.UHML`) trains on balanced batches of P pseudo-classes x M
instances (:class:`~hcl_plugin.uhml.BalancedBatchSampler`) with the hierarchical log-ratio loss.
Training uses the first half of the (sorted) classes and no labels; the held-out second half is
evaluated with Recall@K (:func:`hcl_plugin.eval.recall_at_k`, query = gallery minus self)

.. math:: R@K = \frac{1}{N}\sum_{q=1}^N \mathbb{1}\left[\exists\, g \in \mathrm{NN}_K(q),\ g \ne q:\ y_g = y_q\right]

with the cosine distance and the Poincaré distance
:math:`d_c(x, y) = \frac{1}{\sqrt c}\operatorname{arcosh}\big(1 + \frac{2c\|x - y\|^2}{(1 - c\|x\|^2)(1 - c\|y\|^2)}\big)`,
for the trained network and for the network as it was before training.

:func:`train_uhml` is the whole example (parse, train, evaluate, write ``OUT/recall.json``,
``OUT/recall.png`` and ``OUT/final.ckpt``); ``benchmarks/uhml_retrieval.py`` calls it once per method
and seed::

    from hcl_plugin.lightly.uhml_training import train_uhml
    report = train_uhml(["--epochs", "1", "--out", "outputs/uhml"])

Needs ``pytorch_lightning``, ``torchvision`` and ``scipy``/``scikit-learn`` for the clustering
(``pip install 'hcl_plugin[lightly,uhml]'``); ``matplotlib`` for the figure.

[1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
    https://openaccess.thecvf.com/content/CVPR2021/html/Yan_Unsupervised_Hyperbolic_Metric_Learning_CVPR_2021_paper.html
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hcl_plugin.data.embedded.retrieval import DEFAULT_EMBEDDED_RETRIEVAL_DIR, ensure_embedded_retrieval_set
from hcl_plugin.eval import DEFAULT_KS, recall_at_k
from hcl_plugin.lightly.training import PRECISIONS, build_trainer, parse_precision
from hcl_plugin.utils.cli import HelpFormatter
from hcl_plugin.lightly.uhml_model import UHML
from hcl_plugin.lightly.uhml_recluster import ReclusterCallback
from hcl_plugin.uhml import BalancedBatchSampler, RetrievalImageFolder, detect_layout
from hcl_plugin.uhml.embedding import BACKBONES
from hcl_plugin.uhml.recluster import embed_dataset

__all__ = [
    "DEFAULT_CROP_SCALE",
    "DESCRIPTION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "METRICS",
    "IndexedImages",
    "build_datasets",
    "build_parser",
    "evaluate",
    "plot_recall",
    "recall_table",
    "state_digest",
    "train_uhml",
    "transforms",
]

#: The parser's default description (the example's first docstring line).
DESCRIPTION = "Unsupervised Hyperbolic Metric Learning (UHML, Yan et al. CVPR 2021) with PyTorch Lightning."
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: The distances of the evaluation (:func:`hcl_plugin.eval.recall_at_k`'s ``metric``).
METRICS = ("cosine", "poincare")

PathLike = Union[str, "os.PathLike[str]"]
#: ``{model ("trained" / "init"): {metric: {K: recall in [0, 1]}}}``.
RecallResults = Dict[str, Dict[str, Dict[int, float]]]


# ---------------------------------------------------------------------------- data


class IndexedImages(Dataset):
    """``(image, class label, index)`` from a :class:`~hcl_plugin.uhml.RetrievalImageFolder` (the index
    links a batch to its columns of the pseudo-labels)."""

    def __init__(self, folder: RetrievalImageFolder) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> Tuple[Any, int, int]:
        image, label = self.folder[index]
        return image, label, index


#: RandomResizedCrop's scale range of the training crops (the released code: 0.16-1, see :func:`transforms`).
DEFAULT_CROP_SCALE = (0.5, 1.0)


def transforms(image_size: int, crop_scale: Sequence[float] = DEFAULT_CROP_SCALE
               ) -> Tuple[Callable[[Any], Tensor], Callable[[Any], Tensor]]:
    """(training, evaluation) transforms: random resized crop (area ``crop_scale``, default 0.5-1; the
    released UHML code: resize 256 + RandomResizedCrop(224, scale 0.16-1)) + horizontal flip; resize to
    ``round(image_size * 256 / 224)`` + centre crop. Both normalise with ImageNet's mean and std.

    Raises:
        ValueError: ``crop_scale`` is not two numbers with 0 < min <= max <= 1.
    """
    from torchvision import transforms as T

    low, high = (float(v) for v in crop_scale)
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"crop_scale must be (min, max) with 0 < min <= max <= 1, got {tuple(crop_scale)}")
    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = T.Compose([T.RandomResizedCrop(image_size, scale=(low, high), antialias=True), T.RandomHorizontalFlip(),
                       T.ToTensor(), normalize])
    test = T.Compose([T.Resize(round(image_size * 256 / 224), antialias=True), T.CenterCrop(image_size), T.ToTensor(),
                      normalize])
    return train, test


def build_datasets(
    data: Optional[PathLike] = None,
    layout: str = "auto",
    image_size: int = 32,
    embedded_dir: PathLike = DEFAULT_EMBEDDED_RETRIEVAL_DIR,
    embedded_per_class: int = 200,
    crop_scale: Sequence[float] = DEFAULT_CROP_SCALE,
) -> Tuple[IndexedImages, IndexedImages, RetrievalImageFolder, Path]:
    """(training set with augmentation, training set for clustering, held-out set, data root).

    Args:
        data: image folder root (``class/`` or ``superclass/class/`` sub-folders); ``None``: the embedded
            Animal-MNIST retrieval set, written to ``embedded_dir`` with ``embedded_per_class`` images per class.
        layout: ``"auto"`` (:func:`hcl_plugin.uhml.detect_layout`), ``"class"`` or ``"superclass/class"``.
        image_size: crop side of both transforms (:func:`transforms`).
        crop_scale: area range of the training crops (:func:`transforms`).
    Raises:
        ValueError: the held-out half has fewer than 2 images.
    """
    root = data
    if root is None:
        root = ensure_embedded_retrieval_set(embedded_dir, per_class=embedded_per_class)
    root = Path(root)
    layout = detect_layout(root) if layout == "auto" else layout
    train_tf, test_tf = transforms(image_size, crop_scale)
    train = RetrievalImageFolder(root, layout=layout, split="train", transform=train_tf)
    train_plain = RetrievalImageFolder(root, layout=layout, split="train", transform=test_tf)
    test = RetrievalImageFolder(root, layout=layout, split="test", transform=test_tf)
    if len(test) < 2:
        raise ValueError(f"{root}: the held-out half has {len(test)} image(s); Recall@K needs at least 2")
    return IndexedImages(train), IndexedImages(train_plain), test, root


# ---------------------------------------------------------------------------- evaluation


def state_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's ``state_dict`` (parameters and buffers, BatchNorm statistics included, in key
    order): two runs with equal digests start from the same weights and the same BatchNorm state."""
    digest = hashlib.sha256()
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        if isinstance(value, Tensor):
            digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def evaluate(module: UHML, dataset: RetrievalImageFolder, ks: Sequence[int], batch_size: int, num_workers: int,
             progress: bool, desc: str) -> Dict[str, Dict[int, float]]:
    """Recall@K of ``dataset`` (query = gallery minus self) with each distance of :data:`METRICS`
    (Poincaré with the module's c); the module is embedded in eval mode and its mode restored."""
    was_training = module.training
    module.eval()
    try:
        z = embed_dataset(module, dataset, batch_size, num_workers, module.device, progress, desc=desc)
    finally:
        module.train(was_training)
    labels = torch.tensor([label for _, label in dataset.samples])
    return {m: recall_at_k(z, labels, ks=ks, metric=m, c=module.hparams.c) for m in METRICS}


def recall_table(results: RecallResults, ks: Sequence[int]) -> str:
    """A plain-text table: one row per (model, distance), Recall@K in percent."""
    header = f"{'model':<8} {'distance':<9}" + "".join(f"{'R@' + str(k):>8}" for k in ks)
    lines = [header, "-" * len(header)]
    for model, by_metric in results.items():
        for metric, recall in by_metric.items():
            lines.append(f"{model:<8} {metric:<9}" + "".join(f"{100 * recall[k]:8.2f}" for k in ks))
    return "\n".join(lines)


def plot_recall(results: RecallResults, ks: Sequence[int], path: PathLike, title: str) -> None:
    """Recall@K (%) against K (log2 axis) per (model, distance) as a PNG: trained solid, untrained dashed.

    Uses matplotlib's Agg canvas directly (pyplot's global state is not touched), as
    :mod:`hcl_plugin.eval.plots` does.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    colours = {"cosine": "tab:blue", "poincare": "tab:red"}
    for model, by_metric in results.items():
        for metric, recall in by_metric.items():
            ax.plot(ks, [100 * recall[k] for k in ks], marker="o", color=colours[metric],
                    linestyle="-" if model == "trained" else "--", label=f"{model}, {metric}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.set_xlabel("K")
    ax.set_ylabel("Recall@K (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.fspath(path), dpi=120)


# ---------------------------------------------------------------------------- command line


def build_parser(description: Optional[str] = DESCRIPTION) -> argparse.ArgumentParser:
    """The example's command line (data, model, UHML and training groups)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, default=None,
                      help="image folder root with class sub-folders (or superclass/class); default: the embedded "
                           "Animal-MNIST retrieval set (5 training / 5 held-out classes)")
    data.add_argument("--layout", default="auto", choices=["auto", "class", "superclass/class"],
                      help="folder layout of --data; auto: detected")
    data.add_argument("--embedded-dir", type=Path, default=DEFAULT_EMBEDDED_RETRIEVAL_DIR,
                      help="where the embedded set is written when --data is not given")
    data.add_argument("--embedded-per-class", type=int, default=200, help="images per Animal-MNIST class (max 1000)")
    data.add_argument("--image-size", type=int, default=32, help="training crop side (paper: 227 / 224)")
    data.add_argument("--crop-scale", type=float, nargs=2, default=list(DEFAULT_CROP_SCALE), metavar=("MIN", "MAX"),
                      help="area range of the training crops (the released code: 0.16 1)")
    data.add_argument("--num-workers", type=int, default=2, help="DataLoader worker processes decoding images")
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default="resnet18", choices=list(BACKBONES), help="torchvision ResNet")
    model.add_argument("--weights", type=Path, default=None,
                       help="local backbone weights: a torchvision state_dict or a checkpoint of this project "
                            "(backbone.* or embedding.backbone.* entries); default: random init")
    model.add_argument("--dim", type=int, default=128, help="embedding dimension")
    model.add_argument("--c", type=float, default=1.0, help="curvature magnitude (paper: 1)")
    model.add_argument("--clip-r", type=float, default=2.3, help="feature clipping radius before expmap0; <= 0: off")
    model.add_argument("--feature-scale", type=float, default=None,
                       help="initial scale of the linear output (default 1/sqrt(dim), learned)")
    model.add_argument("--fixed-scale", action="store_true", help="do not learn the feature scale")
    model.add_argument("--train-bn", action="store_true",
                       help="update the backbone's BatchNorm statistics while training (default: frozen, as the "
                            "released code's freeze_BN; clustering, loss and evaluation then share one BN state)")
    uhml = parser.add_argument_group("UHML")
    levels = uhml.add_mutually_exclusive_group()
    levels.add_argument("--levels", type=int, nargs="+", default=None,
                        help="cluster counts per level, fine -> coarse (default 100 50; paper CUB: 100 50)")
    levels.add_argument("--thresholds", type=float, nargs="+", default=None,
                        help="Ward heights per level, fine -> coarse (the paper's way; see docs/uhml.md)")
    uhml.add_argument("--clustering", default="ward", choices=["ward", "kmeans"],
                      help="ward: hierarchical pseudo-labels (UHML); kmeans: one flat level of k-means labels "
                           "(the control; takes exactly one --levels count)")
    uhml.add_argument("--omega", type=float, default=0.1, help="margin of the hierarchical log-ratio loss")
    uhml.add_argument("--distance", default="poincare", choices=["poincare", "euclidean"],
                      help="distance of the loss (euclidean: the paper's ablation)")
    uhml.add_argument("--batch-classes", type=int, default=16, help="P pseudo-classes per batch (paper: 16)")
    uhml.add_argument("--batch-instances", type=int, default=8, help="M instances per pseudo-class (paper: 8)")
    uhml.add_argument("--batches-per-epoch", type=int, default=None, help="default: training images // (P * M)")
    uhml.add_argument("--recluster-every", type=int, default=1, help="re-cluster every N epochs (paper: 1)")
    uhml.add_argument("--embed-batch-size", type=int, default=256, help="batch size of the embedding passes")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=10, help="training epochs (one re-clustering each)")
    train.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: epochs decide)")
    train.add_argument("--max-minutes", type=float, default=None, help="stop after this much training time")
    train.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (paper: 1e-5)")
    train.add_argument("--weight-decay", type=float, default=5e-4, help="Adam weight decay (paper: 5e-4)")
    train.add_argument("--devices", default="auto", help="number of devices (e.g. 8) or 'auto'")
    train.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    train.add_argument("--strategy", default="auto", help="e.g. ddp (Lightning DDP; gloo on CPU)")
    train.add_argument("--precision", default="fp32", type=parse_precision, choices=list(PRECISIONS),
                       help="fp32, bf16 (mixed) or fp16 (mixed, GPU); 32, bf16-mixed, 16-mixed are deprecated")
    train.add_argument("--seed", type=int, default=0, help="seed of Python, NumPy and torch")
    train.add_argument("--out", type=Path, default=Path("outputs/uhml"), help="checkpoints, logs, recall.json")
    train.add_argument("--checkpoint-every", type=int, default=100, help="save a checkpoint every N steps")
    train.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from")
    train.add_argument("--log-every", type=int, default=5, help="log the losses every N steps")
    train.add_argument("--no-eval-init", action="store_true", help="skip Recall@K of the untrained network")
    train.add_argument("--no-progress-bar", action="store_true", help="no progress bars")
    return parser


def train_uhml(argv: Optional[Sequence[str]] = None, description: Optional[str] = DESCRIPTION) -> Dict[str, object]:
    """The example end to end: parse ``argv`` (the command line by default), train, evaluate, write files.

    Writes ``OUT/final.ckpt``, ``OUT/recall.json`` (the returned report: ``ks``, ``recall`` and
    ``recall_init`` as ``{metric: {str(K): recall}}``, data-set sizes, steps, training seconds, the
    re-clustering history and the arguments) and ``OUT/recall.png``, and prints the Recall@K table.
    Returns ``{}`` on processes other than global rank 0.
    """
    args = build_parser(description).parse_args(None if argv is None else list(argv))
    if args.levels is None and args.thresholds is None:
        args.levels = [100] if args.clustering == "kmeans" else [100, 50]
    if args.clustering == "kmeans" and (args.levels is None or len(args.levels) != 1):
        raise SystemExit(f"--clustering kmeans is one flat level: give one --levels count (got --levels "
                         f"{args.levels}, --thresholds {args.thresholds})")
    pl.seed_everything(args.seed, workers=True)
    train, train_plain, test, root = build_datasets(args.data, args.layout, args.image_size, args.embedded_dir,
                                                    args.embedded_per_class, args.crop_scale)
    if args.levels is not None and args.levels[0] > len(train):
        raise SystemExit(f"--levels {args.levels}: the finest level asks for more clusters than the "
                         f"{len(train)} training images")
    ks = [k for k in DEFAULT_KS if k <= len(test) - 1]
    module = UHML(backbone=args.backbone, dim=args.dim, c=args.c,
                  clip_r=args.clip_r if args.clip_r and args.clip_r > 0 else None,
                  feature_scale=args.feature_scale, learn_scale=not args.fixed_scale,
                  weights=None if args.weights is None else str(args.weights), omega=args.omega,
                  distance=args.distance, lr=args.lr, weight_decay=args.weight_decay, image_size=args.image_size,
                  train_bn=args.train_bn)
    initial_state = state_digest(module)
    sampler = BalancedBatchSampler([0] * len(train), args.batch_classes, args.batch_instances,
                                   num_batches=args.batches_per_epoch, seed=args.seed)
    # the main process draws the batches from the sampler, so persistent workers are fine after re-clustering
    loader = DataLoader(train, batch_sampler=sampler, num_workers=args.num_workers,
                        persistent_workers=args.num_workers > 0)
    recluster = ReclusterCallback(train_plain, sampler, n_clusters=args.levels, thresholds=args.thresholds, c=args.c,
                                  batch_size=args.embed_batch_size, num_workers=args.num_workers,
                                  every_n_epochs=args.recluster_every, seed=args.seed,
                                  progress=not args.no_progress_bar, method=args.clustering)
    trainer = build_trainer(args, [recluster], use_distributed_sampler=False)  # the sampler shards itself
    progress = not args.no_progress_bar
    results: RecallResults = {}
    if trainer.is_global_zero and not args.no_eval_init:
        results["init"] = evaluate(module, test, ks, args.embed_batch_size, args.num_workers, progress,
                                   "Recall@K before training")
    start = time.perf_counter()
    trainer.fit(module, loader, ckpt_path=str(args.resume) if args.resume else None)
    train_seconds = time.perf_counter() - start
    trainer.save_checkpoint(args.out / "final.ckpt", weights_only=False)
    if not trainer.is_global_zero:
        return {}
    module.to(trainer.strategy.root_device)
    results = {"trained": evaluate(module, test, ks, args.embed_batch_size, args.num_workers, progress,
                                   "Recall@K after training"), **results}
    report: Dict[str, object] = {
        "ks": ks,
        "recall": {m: {str(k): v for k, v in r.items()} for m, r in results["trained"].items()},
        "recall_init": ({m: {str(k): v for k, v in r.items()} for m, r in results["init"].items()}
                        if "init" in results else None),
        "data": str(root),
        "train_images": len(train),
        "train_classes": len(set(train.folder.targets)),
        "test_images": len(test),
        "test_classes": len(set(test.targets)),
        "epochs_run": trainer.current_epoch,
        "global_steps": trainer.global_step,
        "train_seconds": train_seconds,
        "initial_state_sha256": initial_state,
        "batchnorm": "trained" if args.train_bn else "frozen",
        "reclustering": recluster.history,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    (args.out / "recall.json").write_text(json.dumps(report, indent=2))
    title = f"UHML {args.backbone}, {args.distance} loss, {len(test)} held-out images / {report['test_classes']} classes"
    plot_recall(results, ks, args.out / "recall.png", title)
    print(f"\nRecall@K (%) on the held-out classes ({len(test)} images; query = gallery minus self):")
    print(recall_table(results, ks))
    print(f"wrote {args.out / 'recall.json'} and {args.out / 'recall.png'}")
    return report
