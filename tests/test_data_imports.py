"""``hcl_plugin.data`` is framework-free, its package import is lazy, and every public name resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest

FRAMEWORKS = ("lightly", "pytorch_lightning", "lightning", "mmcv", "mmengine", "mmselfsup", "mmdet", "tensorflow")


def test_data_modules_import_no_training_framework():
    code = (
        "import sys, hcl_plugin.data as d\n"
        "assert 'skimage' not in sys.modules and 'pycocotools' not in sys.modules, 'package import not lazy'\n"
        "for name in d.__all__: getattr(d, name)\n"
        "import hcl_plugin.data.synthetic, hcl_plugin.data.proposals_file, hcl_plugin.data.scene_dataset\n"
        "import hcl_plugin.data.synthetic as s; s.build_synthetic_dataset\n"
        f"bad = [m for m in {FRAMEWORKS!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attribute_raises():
    import hcl_plugin.data as data

    with pytest.raises(AttributeError, match="does_not_exist"):
        data.does_not_exist
