"""DenseCL + HCL with Lightly and PyTorch Lightning.

DenseCL (Wang et al., CVPR 2021, Lightly's modules): a global MoCo loss and a dense loss between
matched feature-map locations of two views of an object crop, each with a queue. HCL adds the
hyperbolic term as in ``moco_hcl.py``: scene crop (online backbone, Poincaré head) against object crop
(momentum encoder), with a queue of object keys on the ball. ``--lambda-hyp 0`` is the DenseCL baseline.
The model is :class:`hcl_plugin.lightly.models.DenseCLHCL`. ``--hyperbolic-head shared`` maps the
global projection head's raw output onto the ball instead of a separate Poincaré head; shuffle-BN in
the key encoder is on by default (docs/hcl_options.md).

    python lightly_examples/densecl_hcl.py
    python lightly_examples/densecl_hcl.py --dense-weight 0.5 --learn-c
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hcl_plugin.lightly.models import DenseCLHCL, feature_map  # noqa: E402
from hcl_plugin.lightly.training import train  # noqa: E402

__all__ = ["DenseCLHCL", "feature_map", "main"]


def main(argv: list[str] | None = None):
    """Parse ``argv`` (the command line by default), build :class:`DenseCLHCL`, train; returns the trainer."""
    return train(DenseCLHCL, argv, description=__doc__.split("\n")[0])


if __name__ == "__main__":
    main()
