"""Unsupervised Hyperbolic Metric Learning (UHML, Yan et al. CVPR 2021) with PyTorch Lightning.

Every epoch: embed the training images, cluster them hierarchically in the Poincaré ball
(``--levels`` counts or ``--thresholds``, fine -> coarse), then train on balanced batches of P
pseudo-classes x M instances with the hierarchical log-ratio loss. Training uses the first half of
the (sorted) classes and no labels; at the end Recall@K (K = 1, 2, 4, 8, 16, 32; cosine and Poincaré
distance; query = gallery minus self) is measured on the held-out second half, for the trained
network and for the network as it was before training (the random-init / pretrained control), and
written to OUT/recall.json and OUT/recall.png.

    python lightly_examples/uhml.py                               # embedded Animal-MNIST set, CPU-sized
    python lightly_examples/uhml.py --distance euclidean          # the paper's Euclidean ablation
    python lightly_examples/uhml.py --clustering kmeans --levels 100   # flat k-means pseudo-labels (control)
    python lightly_examples/uhml.py --data CUB_200_2011/images --backbone resnet50 \\
        --weights resnet50_imagenet.pth --image-size 224 --levels 100 50 --lr 1e-5 --epochs 50 \\
        --accelerator gpu --devices 1                             # the paper's CUB setting
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hcl_plugin.data.embedded.retrieval import DEFAULT_EMBEDDED_RETRIEVAL_DIR, ensure_embedded_retrieval_set  # noqa: E402
from hcl_plugin.eval import DEFAULT_KS, recall_at_k  # noqa: E402
from hcl_plugin.lightly.training import PRECISIONS, build_trainer  # noqa: E402
from hcl_plugin.lightly.uhml_recluster import ReclusterCallback  # noqa: E402
from hcl_plugin.losses import HierarchicalLogRatioLoss  # noqa: E402
from hcl_plugin.uhml import BalancedBatchSampler, RetrievalImageFolder, UHMLEmbedding, similarity_levels  # noqa: E402
from hcl_plugin.uhml.embedding import BACKBONES  # noqa: E402
from hcl_plugin.uhml.recluster import embed_dataset  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
METRICS = ("cosine", "poincare")


class UHML(pl.LightningModule):
    """UHML: :class:`~hcl_plugin.uhml.UHMLEmbedding` trained with :class:`~hcl_plugin.losses.HierarchicalLogRatioLoss`.

    Batches are ``(images, class labels (unused), sample indices)``; the indices pick the columns of
    the stored pseudo-labels (:meth:`set_pseudo_labels`, set by
    :class:`~hcl_plugin.lightly.uhml_recluster.ReclusterCallback`), whose similarity levels are the
    loss's targets. The checkpoint's ``state_dict`` holds ``embedding.backbone.<torchvision key>``,
    ``embedding.linear.*`` and ``embedding.log_scale``.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        dim: int = 128,
        c: float = 1.0,
        clip_r: Optional[float] = 2.3,
        feature_scale: Optional[float] = None,
        learn_scale: bool = True,
        weights: Optional[str] = None,
        omega: float = 0.1,
        distance: str = "poincare",
        lr: float = 1e-4,
        weight_decay: float = 5e-4,
        image_size: int = 32,
        initial_weights: Optional[str] = None,
    ) -> None:
        super().__init__()
        # ``weights`` is read once here; the checkpoint records the file as ``initial_weights`` (metadata),
        # so load_from_checkpoint does not need the file any more
        self.save_hyperparameters(ignore=["weights"])
        if weights is not None:
            self.hparams.initial_weights = str(weights)
        self.embedding = UHMLEmbedding(backbone, dim=dim, c=c, clip_r=clip_r, feature_scale=feature_scale,
                                       learn_scale=learn_scale, weights=weights)
        self.criterion = HierarchicalLogRatioLoss(omega=omega, distance=distance, c=c)
        self.pseudo_labels: Optional[torch.Tensor] = None

    @property
    def curvature_value(self) -> float:
        return float(self.hparams.c)

    def set_pseudo_labels(self, labels: torch.Tensor) -> None:
        """(K, N) int64 labels of the training samples, fine -> coarse."""
        self.pseudo_labels = labels.to(torch.int64).cpu()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedding(images)

    def training_step(self, batch, batch_idx):
        images, _, index = batch
        if self.pseudo_labels is None:
            raise RuntimeError("no pseudo-labels: train with a ReclusterCallback (or call set_pseudo_labels first)")
        levels = similarity_levels(self.pseudo_labels[:, index.cpu()]).to(images.device)
        z = self(images)
        loss = self.criterion(z, levels)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}")
        batch_size = images.shape[0]
        self.log("loss", loss, prog_bar=True, batch_size=batch_size)
        self.log_dict({f"health/{k}": v for k, v in self.embedding.stats.items()}, batch_size=batch_size)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


# ---------------------------------------------------------------------------- data


class IndexedImages(Dataset):
    """``(image, class label, index)`` from a :class:`RetrievalImageFolder` (the index links to the pseudo-labels)."""

    def __init__(self, folder: RetrievalImageFolder) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int):
        image, label = self.folder[index]
        return image, label, index


def detect_layout(root: Path) -> str:
    """``"class"`` when the first sub-folder holds files, ``"superclass/class"`` when it only holds folders."""
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("."):
            inner = [e for e in os.scandir(entry.path) if not e.name.startswith(".")]
            if inner and all(e.is_dir() for e in inner):
                return "superclass/class"
            return "class"
    return "class"


def transforms(image_size: int):
    """(training, evaluation) transforms: random resized crop + flip; resize + centre crop (UHML's protocol)."""
    from torchvision import transforms as T

    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = T.Compose([T.RandomResizedCrop(image_size, scale=(0.5, 1.0), antialias=True), T.RandomHorizontalFlip(),
                       T.ToTensor(), normalize])
    test = T.Compose([T.Resize(round(image_size * 256 / 224), antialias=True), T.CenterCrop(image_size), T.ToTensor(),
                      normalize])
    return train, test


def build_datasets(args: argparse.Namespace) -> Tuple[Dataset, Dataset, RetrievalImageFolder, Path]:
    """(training set with augmentation, training set for clustering, held-out set, data root)."""
    root = args.data
    if root is None:
        root = ensure_embedded_retrieval_set(args.embedded_dir, per_class=args.embedded_per_class)
    root = Path(root)
    layout = detect_layout(root) if args.layout == "auto" else args.layout
    train_tf, test_tf = transforms(args.image_size)
    train = RetrievalImageFolder(root, layout=layout, split="train", transform=train_tf)
    train_plain = RetrievalImageFolder(root, layout=layout, split="train", transform=test_tf)
    test = RetrievalImageFolder(root, layout=layout, split="test", transform=test_tf)
    if len(test) < 2:
        raise ValueError(f"{root}: the held-out half has {len(test)} image(s); Recall@K needs at least 2")
    return IndexedImages(train), IndexedImages(train_plain), test, root


# ---------------------------------------------------------------------------- evaluation


def evaluate(module: UHML, dataset: Dataset, ks: Sequence[int], batch_size: int, num_workers: int,
             progress: bool, desc: str) -> Dict[str, Dict[int, float]]:
    """Recall@K of the held-out images with cosine and Poincaré distance (module in eval mode)."""
    was_training = module.training
    module.eval()
    try:
        z = embed_dataset(module, dataset, batch_size, num_workers, module.device, progress, desc=desc)
    finally:
        module.train(was_training)
    labels = torch.tensor([label for _, label in dataset.samples])
    return {m: recall_at_k(z, labels, ks=ks, metric=m, c=module.hparams.c) for m in METRICS}


def recall_table(results: Dict[str, Dict[str, Dict[int, float]]], ks: Sequence[int]) -> str:
    header = f"{'model':<8} {'distance':<9}" + "".join(f"{'R@' + str(k):>8}" for k in ks)
    lines = [header, "-" * len(header)]
    for model, by_metric in results.items():
        for metric, recall in by_metric.items():
            lines.append(f"{model:<8} {metric:<9}" + "".join(f"{100 * recall[k]:8.2f}" for k in ks))
    return "\n".join(lines)


def plot_recall(results: Dict[str, Dict[str, Dict[int, float]]], ks: Sequence[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
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
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=Path, default=None,
                      help="image folder root with class sub-folders (or superclass/class); default: the embedded "
                           "Animal-MNIST retrieval set (5 training / 5 held-out classes)")
    data.add_argument("--layout", default="auto", choices=["auto", "class", "superclass/class"])
    data.add_argument("--embedded-dir", type=Path, default=DEFAULT_EMBEDDED_RETRIEVAL_DIR,
                      help="where the embedded set is written when --data is not given")
    data.add_argument("--embedded-per-class", type=int, default=200, help="images per Animal-MNIST class (max 1000)")
    data.add_argument("--image-size", type=int, default=32, help="training crop side (paper: 227 / 224)")
    data.add_argument("--num-workers", type=int, default=2)
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default="resnet18", choices=list(BACKBONES))
    model.add_argument("--weights", type=Path, default=None,
                       help="local backbone weights: a torchvision state_dict or a checkpoint of this project "
                            "(backbone.* or embedding.backbone.* entries); default: random init")
    model.add_argument("--dim", type=int, default=128, help="embedding dimension")
    model.add_argument("--c", type=float, default=1.0, help="curvature magnitude (paper: 1)")
    model.add_argument("--clip-r", type=float, default=2.3, help="feature clipping radius before expmap0; <= 0: off")
    model.add_argument("--feature-scale", type=float, default=None,
                       help="initial scale of the linear output (default 1/sqrt(dim), learned)")
    model.add_argument("--fixed-scale", action="store_true", help="do not learn the feature scale")
    uhml = parser.add_argument_group("UHML")
    levels = uhml.add_mutually_exclusive_group()
    levels.add_argument("--levels", type=int, nargs="+", default=None,
                        help="cluster counts per level, fine -> coarse (default 100 50; paper CUB: 100 50)")
    levels.add_argument("--thresholds", type=float, nargs="+", default=None,
                        help="Ward heights per level, fine -> coarse (the paper's way; see docs/uhml.md)")
    uhml.add_argument("--clustering", default="ward", choices=["ward", "kmeans"],
                      help="ward: hierarchical pseudo-labels (UHML); kmeans: one flat level of k-means labels "
                           "(the control; takes exactly one --levels count)")
    uhml.add_argument("--omega", type=float, default=0.1)
    uhml.add_argument("--distance", default="poincare", choices=["poincare", "euclidean"])
    uhml.add_argument("--batch-classes", type=int, default=16, help="P pseudo-classes per batch (paper: 16)")
    uhml.add_argument("--batch-instances", type=int, default=8, help="M instances per pseudo-class (paper: 8)")
    uhml.add_argument("--batches-per-epoch", type=int, default=None, help="default: training images // (P * M)")
    uhml.add_argument("--recluster-every", type=int, default=1, help="re-cluster every N epochs (paper: 1)")
    uhml.add_argument("--embed-batch-size", type=int, default=256, help="batch size of the embedding passes")
    train = parser.add_argument_group("training")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (-1: epochs decide)")
    train.add_argument("--max-minutes", type=float, default=None, help="stop after this much training time")
    train.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (paper: 1e-5)")
    train.add_argument("--weight-decay", type=float, default=5e-4, help="Adam weight decay (paper: 5e-4)")
    train.add_argument("--devices", default="auto", help="number of devices (e.g. 8) or 'auto'")
    train.add_argument("--accelerator", default="auto", help="cpu, gpu or auto")
    train.add_argument("--strategy", default="auto", help="e.g. ddp (Lightning DDP; gloo on CPU)")
    train.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS))
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, default=Path("outputs/uhml"), help="checkpoints, logs, recall.json")
    train.add_argument("--checkpoint-every", type=int, default=100, help="save a checkpoint every N steps")
    train.add_argument("--resume", type=Path, default=None, help="checkpoint to continue from")
    train.add_argument("--log-every", type=int, default=5)
    train.add_argument("--no-eval-init", action="store_true", help="skip Recall@K of the untrained network")
    train.add_argument("--no-progress-bar", action="store_true")
    return parser


def main(argv: Optional[List[str]] = None) -> Dict[str, object]:
    args = build_parser().parse_args(argv)
    if args.levels is None and args.thresholds is None:
        args.levels = [100] if args.clustering == "kmeans" else [100, 50]
    if args.clustering == "kmeans" and (args.levels is None or len(args.levels) != 1):
        raise SystemExit(f"--clustering kmeans is one flat level: give one --levels count (got --levels "
                         f"{args.levels}, --thresholds {args.thresholds})")
    pl.seed_everything(args.seed, workers=True)
    train, train_plain, test, root = build_datasets(args)
    if args.levels is not None and args.levels[0] > len(train):
        raise SystemExit(f"--levels {args.levels}: the finest level asks for more clusters than the "
                         f"{len(train)} training images")
    ks = [k for k in DEFAULT_KS if k <= len(test) - 1]
    module = UHML(backbone=args.backbone, dim=args.dim, c=args.c,
                  clip_r=args.clip_r if args.clip_r and args.clip_r > 0 else None,
                  feature_scale=args.feature_scale, learn_scale=not args.fixed_scale,
                  weights=None if args.weights is None else str(args.weights), omega=args.omega,
                  distance=args.distance, lr=args.lr, weight_decay=args.weight_decay, image_size=args.image_size)
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
    results: Dict[str, Dict[str, Dict[int, float]]] = {}
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


if __name__ == "__main__":
    main()
