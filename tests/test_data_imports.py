"""``hcl_plugin.data`` is framework-free, its package import is lazy, every public name resolves, and the
moved modules' old paths are deprecated aliases."""

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
        "import hcl_plugin.data.embedded.scenes, hcl_plugin.data.proposals_file, hcl_plugin.data.scene_dataset\n"
        "import hcl_plugin.data.embedded.clipart, hcl_plugin.data.embedded.retrieval, hcl_plugin.data.box_sampler\n"
        "import hcl_plugin.uhml.batch_sampler\n"
        "import hcl_plugin.data.embedded.scenes as s; s.build_synthetic_dataset\n"
        f"bad = [m for m in {FRAMEWORKS!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attribute_raises():
    import hcl_plugin.data as data

    with pytest.raises(AttributeError, match="does_not_exist"):
        data.does_not_exist


# old module path -> (new module path, a public name it must forward)
MOVED_MODULES = {
    "hcl_plugin.data.animal_mnist": ("hcl_plugin.data.embedded.animal_mnist", "load_animal_mnist"),
    "hcl_plugin.data.scene_contexts": ("hcl_plugin.data.embedded.contexts", "SCENE_CONTEXTS"),
    "hcl_plugin.data.synthetic": ("hcl_plugin.data.embedded.scenes", "build_synthetic_dataset"),
    "hcl_plugin.data.embedded_retrieval": ("hcl_plugin.data.embedded.retrieval", "ensure_embedded_retrieval_set"),
    "hcl_plugin.data.embedded_clipart": ("hcl_plugin.data.embedded.clipart", "build_clipart_retrieval_set"),
    "hcl_plugin.data.sampler": ("hcl_plugin.data.box_sampler", "SceneObjectSampler"),
    "hcl_plugin.cluster.sampler": ("hcl_plugin.uhml.batch_sampler", "BalancedBatchSampler"),
}


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_old_module_paths_import_and_warn(old):
    import importlib

    new, name = MOVED_MODULES[old]
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated.*use {new}"):
        value = getattr(old_module, name)
    assert value is getattr(new_module, name)
    with pytest.warns(DeprecationWarning):  # every use warns, not only the first
        exec(f"from {old} import {name}", {})
    assert name in dir(old_module)
    with pytest.raises(AttributeError, match="does_not_exist"):
        old_module.does_not_exist


def test_old_cli_path_still_runs_and_warns():
    result = subprocess.run([sys.executable, "-m", "hcl_plugin.data.synthetic", "--help"],
                            capture_output=True, text=True, check=True)
    assert "--num-images" in result.stdout
    assert "DeprecationWarning" in result.stderr and "python -m hcl_plugin.data.embedded.scenes" in result.stderr
