"""Unsupervised Hyperbolic Metric Learning (UHML, Yan et al. CVPR 2021) with PyTorch Lightning.

Every epoch: embed the training images, cluster them hierarchically in the Poincaré ball
(``--levels`` counts or ``--thresholds``, fine -> coarse), then train on balanced batches of P
pseudo-classes x M instances with the hierarchical log-ratio loss. Training uses the first half of
the (sorted) classes and no labels; at the end Recall@K (K = 1, 2, 4, 8, 16, 32; cosine and Poincaré
distance; query = gallery minus self) is measured on the held-out second half, for the trained
network and for the network as it was before training (the random-init / pretrained control), and
written to OUT/recall.json and OUT/recall.png. The model is :class:`hcl_plugin.lightly.uhml_model.UHML`;
data, evaluation and the command line are in :mod:`hcl_plugin.lightly.uhml_training`.

    python lightly_examples/uhml.py                               # embedded Animal-MNIST set, CPU-sized
    python lightly_examples/uhml.py --distance euclidean          # the paper's Euclidean ablation
    python lightly_examples/uhml.py --clustering kmeans --levels 100   # flat k-means pseudo-labels (control)
    python lightly_examples/uhml.py --data CUB_200_2011/images --backbone resnet50 \\
        --weights resnet50_imagenet.pth --image-size 224 --levels 100 50 --lr 1e-5 --epochs 50 \\
        --accelerator gpu --devices 1                             # the paper's CUB setting
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hcl_plugin.lightly.uhml_model import UHML  # noqa: E402
from hcl_plugin.lightly.uhml_training import build_parser, train_uhml  # noqa: E402
from hcl_plugin.losses import HierarchicalLogRatioLoss  # noqa: E402

__all__ = ["HierarchicalLogRatioLoss", "UHML", "build_parser", "main"]


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Parse ``argv`` (the command line by default), train :class:`UHML`, evaluate; returns the Recall@K report."""
    return train_uhml(argv, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()
