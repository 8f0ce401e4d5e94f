"""SimCLR + HCL with Lightly and PyTorch Lightning: in-batch negatives for both losses.

Euclidean: Lightly's ``NTXentLoss`` between two views of an object crop. Hyperbolic:
``HyperbolicNTXentLoss`` between the scene crop and the object crop, both through the online network
and a Poincaré head, the other 2B - 2 views of the batch (of all ranks with DDP) as negatives.
``--lambda-hyp 0`` is the SimCLR baseline. The model is :class:`hcl_plugin.lightly.models.SimCLRHCL`.
``--hyperbolic-head shared`` maps the SimCLR projection head's raw output onto the ball instead of a
separate Poincaré head (docs/hcl_options.md).

    python lightly_examples/simclr_hcl.py
    python lightly_examples/simclr_hcl.py --devices 2 --strategy ddp --accelerator cpu   # Lightning DDP (gloo)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hcl_plugin.lightly.models import SimCLRHCL  # noqa: E402
from hcl_plugin.lightly.training import train  # noqa: E402

__all__ = ["SimCLRHCL", "main"]


def main(argv: list[str] | None = None):
    """Parse ``argv`` (the command line by default), build :class:`SimCLRHCL`, train; returns the trainer."""
    return train(SimCLRHCL, argv, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()
