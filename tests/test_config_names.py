"""Config names follow OpenMMLab's pattern; the old names are thin aliases that load the same config.

OpenMMLab names a config ``{algorithm}_{backbone}_{gpus}xb{batch}-{schedule}_{dataset}.py`` (MMSelfSup's
``mocov2_resnet50_8xb32-coslr-200e_in1k.py``). The first release used shorter names; each old file is now
``_base_ = ['<new name>']`` plus ``deprecated_config_name``, which ``tools/train.py`` turns into a warning.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config

from tests.mmselfsup_helpers import ROOT, is_deprecated_alias

MMCONFIGS = ROOT / "mmconfigs"
ALL = sorted(MMCONFIGS.rglob("*.py"))
ALIASES = [p for p in ALL if is_deprecated_alias(p)]
CURRENT_PRETRAIN = [p for p in ALL if not is_deprecated_alias(p) and "_base_" not in p.parts and "mmdet" not in p.parts]
# {algorithm}_{backbone}_{N}xb{B}-{schedule}_{dataset}; the algorithm may carry "-hcl" / "-hcl-released"
OPENMMLAB_NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*_(resnet\d+)_\d+xb\d+(-[a-z0-9]+)+_[a-z0-9-]+\.py$")


def _rel(path: Path) -> str:
    return path.relative_to(MMCONFIGS).as_posix()


def _target(alias: Path) -> Path:
    old, new = Config.fromfile(str(alias)).deprecated_config_name.split(" -> ")
    assert old == f"mmconfigs/{_rel(alias)}", f"{alias}: deprecated_config_name names {old}"
    return ROOT / new


def test_there_are_aliases_and_current_configs():
    assert len(ALIASES) == 20 and len(CURRENT_PRETRAIN) >= 16


@pytest.mark.parametrize("path", CURRENT_PRETRAIN, ids=_rel)
def test_pretraining_configs_follow_the_openmmlab_pattern(path):
    assert OPENMMLAB_NAME.match(path.name), f"{_rel(path)} is not algorithm_backbone_NxB-schedule_dataset.py"


def test_schedules_live_in_base_schedules_and_the_built_in_data_is_called_embedded():
    assert sorted(p.name for p in (MMCONFIGS / "_base_" / "schedules").glob("*.py")) == [
        "sgd_coslr-200e.py", "sgd_coslr-300it.py", "sgd_coslr-800e.py"]
    current = [p for p in ALL if not is_deprecated_alias(p)]
    assert not [_rel(p) for p in current if "synthetic" in p.name]
    assert not [_rel(p) for p in current if "_base_/schedule_" in p.read_text()]


@pytest.mark.parametrize("alias", ALIASES, ids=_rel)
def test_an_old_name_loads_the_same_config_as_its_new_name(alias):
    target = _target(alias)
    assert target.is_file() and not is_deprecated_alias(target)
    old = Config.fromfile(str(alias)).to_dict()
    new = Config.fromfile(str(target)).to_dict()
    assert old.pop("deprecated_config_name") and "deprecated_config_name" not in new
    assert old == new


def test_no_current_config_inherits_from_an_old_name():
    for path in ALL:
        if not is_deprecated_alias(path):
            assert "deprecated_config_name" not in Config.fromfile(str(path)), _rel(path)


def test_train_py_warns_for_an_old_name(tmp_path):
    """tools/train.py names the old and the new file when it reads the config (stopped right after by --amp
    refusing an unknown optimizer wrapper, before anything is built)."""
    script = ("import sys, warnings; sys.argv = ['train.py', 'mmconfigs/tiny/mocov2_hcl_synthetic.py', '--work-dir', "
              f"{str(tmp_path)!r}, '--amp', '--cfg-options', 'optim_wrapper.type=NoSuchWrapper']\n"
              "import runpy\nwarnings.simplefilter('always')\n"
              "try:\n    runpy.run_path('tools/train.py', run_name='__main__')\nexcept Exception as error:\n"
              "    print('stopped:', type(error).__name__)\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "stopped: ValueError" in result.stdout, result.stdout + result.stderr[-2000:]
    assert "FutureWarning" in result.stderr and "mmconfigs/tiny/mocov2_hcl_synthetic.py -> " \
        "mmconfigs/tiny/mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py" in result.stderr, result.stderr[-2000:]
