"""MoCo-v2 + HCL with Lightly and PyTorch Lightning (the official HCL code's setting).

Euclidean: symmetric MoCo loss on two views of an object crop, two queues of keys. Hyperbolic: the
scene crop through the online backbone and a Poincaré head (query) against the object crop through
the momentum encoder (key), with a queue of object keys on the ball. ``--lambda-hyp 0`` is the
MoCo-v2 baseline (the hyperbolic branch is not even computed); ``--learn-c`` learns the curvature.
The model is :class:`hcl_plugin.lightly.models.MoCoHCL`. The released HCL code's model differs from
the project's defaults in its head and gradient (docs/hcl_options.md): ``--hyperbolic-head shared
--riemannian-grad --feature-scale 1 --fixed-scale`` (shuffle-BN in the key encoder is on by default,
``--no-shuffle-bn`` turns it off; ``--decoupled`` lets the hyperbolic loss move only the norm).

    python lightly_examples/moco_hcl.py                       # embedded data set, CPU-sized defaults
    python lightly_examples/moco_hcl.py --lambda-hyp 0        # MoCo-v2 baseline
    python lightly_examples/moco_hcl.py --data coco/train2017 \\
        --annotations coco/annotations/instances_train2017.json --backbone resnet50 --image-size 224 \\
        --min-box-size 56 --expand-to 256 --batch-size 128 --memory-bank-size 65536 --epochs 200 \\
        --lr 0.15 --devices 8 --strategy ddp --accelerator gpu   # the paper's scale
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hcl_plugin.lightly.models import MoCoHCL  # noqa: E402
from hcl_plugin.lightly.training import train  # noqa: E402

__all__ = ["MoCoHCL", "main"]


def main(argv: list[str] | None = None):
    """Parse ``argv`` (the command line by default), build :class:`MoCoHCL`, train; returns the trainer."""
    return train(MoCoHCL, argv, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()
