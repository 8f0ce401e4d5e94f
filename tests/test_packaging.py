"""The core stays framework-free and cheap to import (README, Layout)."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ["lightly", "pytorch_lightning", "lightning", "mmcv", "mmengine", "mmselfsup", "mmdet", "geoopt"]


def test_core_imports_no_training_framework():
    code = (
        "import sys, hcl_plugin, hcl_plugin.geometry, hcl_plugin.losses, hcl_plugin.modules\n"
        f"loaded = [m for m in {FRAMEWORKS!r} if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "", f"the core imported {out}"


def test_version_and_public_names():
    import hcl_plugin
    from hcl_plugin.geometry import __all__ as geometry_names
    from hcl_plugin.losses import __all__ as loss_names
    from hcl_plugin.modules import __all__ as module_names

    assert hcl_plugin.__version__
    assert {"expmap0", "logmap0", "project", "clip_features", "dist", "pairwise_dist"} <= set(geometry_names)
    assert {"InfoNCELoss", "HyperbolicInfoNCELoss", "HCLLoss"} <= set(loss_names)
    assert {"PoincareProjectionHead", "HyperbolicMemoryBank"} <= set(module_names)
