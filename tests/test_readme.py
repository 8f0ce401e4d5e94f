"""The README stays true to the code: every ```python block runs, and every command of its ```bash blocks
is checked on tiny settings (scripts answer ``--help``, the files and configs they name exist, ``make``
targets exist, the quickstart really runs). Commands that need GPUs, COCO or an MMCV build are checked by
their scripts, configs and ``--help``, not run."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TEXT = README.read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)
BASH_BLOCKS = re.findall(r"```bash\n(.*?)```", TEXT, re.S)

# One marker per ```python block: the test that runs it.
PYTHON_MARKERS = ("from hcl_plugin.losses import HCLLoss", "from hcl_plugin.lightly import HCLLoss",
                  "scene_dataset(", "HierarchicalLogRatioLoss")
SETUP_COMMANDS = ("python3 -m venv .venv && . .venv/bin/activate",)
PATH_PREFIXES = ("tools/", "lightly_examples/", "mmconfigs/", "requirements/", "benchmarks/", "hcl_plugin/", "docs/")


def block(marker: str, blocks=PYTHON_BLOCKS) -> str:
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"{len(found)} README blocks contain {marker!r}"
    return found[0]


def commands(text: str) -> list:
    """The commands of a bash block: continuation lines joined, comments dropped."""
    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            out.append(line)
    return out


ALL_COMMANDS = [c for b in BASH_BLOCKS for c in commands(b)]
QUICKSTART = commands(TEXT.split("## Quickstart", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0])


def python_target(words: list):
    """``python script.py ...`` / ``python -m module ...`` -> ("script", path) / ("module", name), else None."""
    if not words or words[0] not in ("python", "python3"):
        return None
    if words[1] == "-m":
        return ("module", words[2])
    return ("script", words[1])


def repo_paths(words: list) -> list:
    return [w for w in words if w.startswith(PATH_PREFIXES)]


# ----------------------------------------------------------------------------------------- python blocks


def test_every_python_block_is_run_by_a_test():
    unmarked = [b[:80] for b in PYTHON_BLOCKS if not any(m in b for m in PYTHON_MARKERS)]
    assert not unmarked, f"README python blocks no test runs: {unmarked}"
    assert len(PYTHON_BLOCKS) == len(PYTHON_MARKERS)


def test_plain_pytorch_snippet_runs():
    namespace: dict = {}
    exec(compile(block("from hcl_plugin.losses import HCLLoss"), str(README), "exec"), namespace)
    assert namespace["out"].loss.grad_fn is not None and torch.isfinite(namespace["out"].loss)
    assert set(namespace["hyp_head"].stats) >= {"clipped_fraction", "hyp_norm_mean"}


def test_lightly_snippet_runs():
    namespace: dict = {}
    exec(compile(block("from hcl_plugin.lightly import HCLLoss"), str(README), "exec"), namespace)
    views = [torch.randn(4, 3, 64, 64) for _ in range(4)]
    loss = namespace["training_step"](*views)
    loss.backward()
    assert torch.isfinite(loss)
    assert int(namespace["criterion"].hyperbolic.memory_bank.ptr) == 4


def test_lightly_data_snippet_runs(tmp_path):
    """data set -> DataLoader -> batch dict -> training_step, on a tiny embedded set (paths and batch size swapped)."""
    from tests.mmselfsup_helpers import build_embedded

    root = build_embedded(tmp_path / "embedded", num_images=24, image_size=128)
    data = block("scene_dataset(")
    assert '"data/embedded/' in data and "batch_size=32" in data
    data = data.replace('"data/embedded/', f'"{root.as_posix()}/').replace("batch_size=32", "batch_size=4")
    namespace: dict = {}
    exec(compile(block("from hcl_plugin.lightly import HCLLoss"), str(README), "exec"), namespace)
    exec(compile(data, str(README), "exec"), namespace)
    from hcl_plugin.data import VIEW_KEYS

    batch = namespace["batch"]
    assert set(VIEW_KEYS) <= set(batch) and all(batch[k].shape == (4, 3, 64, 64) for k in VIEW_KEYS)
    assert torch.isfinite(namespace["loss"])


def test_uhml_snippet_runs():
    namespace: dict = {}
    exec(compile(block("HierarchicalLogRatioLoss"), str(README), "exec"), namespace)
    loss = namespace["loss"]
    loss.backward()
    assert torch.isfinite(loss) and namespace["labels"].shape == (2, 2000)


# ----------------------------------------------------------------------------------------- bash commands


def makefile_targets() -> set:
    return set(re.findall(r"^([A-Za-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


def extras() -> set:
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        tomllib = pytest.importorskip("tomli", reason="reading pyproject.toml needs tomllib (3.11) or tomli")
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_bash_command_names_what_exists(command):
    """Each command is of a kind this test knows, and the scripts, configs, targets and extras it names exist."""
    if command in SETUP_COMMANDS:
        return
    words = shlex.split(command)
    if words[0] == "make":
        assert set(words[1:2]) <= makefile_targets(), f"{command!r}: no such make target"
        return
    if words[:2] == ["pip", "install"]:
        for word in words[2:]:
            match = re.fullmatch(r"\.(?:\[([\w,]+)\])?", word)
            if match and match.group(1):
                assert set(match.group(1).split(",")) <= extras(), f"{command!r}: unknown extra"
        assert "-c" in words and (ROOT / words[words.index("-c") + 1]).is_file()
        return
    if words[0].startswith("mmcv_wheels=$("):
        script = ROOT / words[0].split("$(", 1)[1]
        assert script.is_file() and os.access(script, os.X_OK), command
        return
    if words[0] == "cat":
        assert command in QUICKSTART, f"{command!r}: only the quickstart reads a file it made"
        return
    target = python_target(words)
    if target is None:
        script = ROOT / words[0]
        assert words[0].startswith("tools/") and script.suffix == ".sh", f"{command!r}: unknown kind of command"
        assert os.access(script, os.X_OK), f"{script} is not executable"
    elif target[0] == "script":
        assert (ROOT / target[1]).is_file(), f"{command!r}: {target[1]} does not exist"
    else:
        import importlib.util

        assert importlib.util.find_spec(target[1]) is not None, f"{command!r}: no module {target[1]}"
    for path in repo_paths(words[1:]):
        assert (ROOT / path).exists(), f"{command!r}: {path} does not exist"


def python_targets() -> list:
    """The README's python modules and scripts whose ``--help`` this file runs: tests/test_cli.py already
    runs it for every script in tools/, lightly_examples/ and benchmarks/, so of those only the Lightly
    example whose flags the README lists is run here."""
    from tests.test_cli import SCRIPTS

    seen = []
    for command in ALL_COMMANDS:
        target = python_target(shlex.split(command))
        covered = target and target[0] != "module" and target[1] in SCRIPTS
        if target and target not in seen and (not covered or target[1] == "lightly_examples/moco_hcl.py"):
            seen.append(target)
    return seen


@pytest.mark.parametrize("target", python_targets(), ids=lambda t: t[1])
def test_python_command_answers_help(target):
    if target[1] == "tools/train.py":
        pytest.importorskip("mmselfsup", reason="tools/train.py needs the mmselfsup extra")
    from tests.cli_helpers import all_help_targets, help_results

    result = subprocess.CompletedProcess(target, **help_results(all_help_targets())[target[1]])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage" in result.stdout.lower()
    if target[1] == "lightly_examples/moco_hcl.py":  # the flags the README lists for the Lightly examples
        paragraph = TEXT.split("Their flags:", 1)[1].split("\n\n", 1)[0]
        flags = set(re.findall(r"`(--[a-z][\w-]*)", paragraph))
        assert len(flags) >= 15 and not {f for f in flags if f not in result.stdout}, flags


def shell_scripts() -> list:
    scripts = set()
    for command in ALL_COMMANDS:
        first = shlex.split(command)[0]
        first = first.split("$(", 1)[-1]  # mmcv_wheels=$(requirements/build_mmcv.sh ...)
        if first.endswith(".sh"):
            scripts.add(first)
    return sorted(scripts)


@pytest.mark.parametrize("script", shell_scripts())
def test_shell_script_parses(script):
    result = subprocess.run(["bash", "-n", str(ROOT / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_named_mmconfigs_load():
    """Every config a README command names loads (custom imports included); nothing is trained."""
    pytest.importorskip("mmselfsup", reason="the configs need the mmselfsup extra")
    pytest.importorskip("mmdet", reason="the configs need the mmdet extra")
    from mmengine.config import Config

    configs = sorted({p for c in ALL_COMMANDS for p in repo_paths(shlex.split(c)) if p.startswith("mmconfigs/")})
    assert len(configs) >= 5
    for path in configs:
        cfg = Config.fromfile(str(ROOT / path))
        assert "model" in cfg, path


# ----------------------------------------------------------------------------------------- quickstart

QUICK_OVERRIDES = {
    "hcl_plugin.data.embedded.scenes": ["--num-images", "48", "--image-size", "128", "--val-fraction", "0.5",
                                        "--ooc-fraction", "0.35", "--seed", "11", "--quiet"],
    "lightly_examples/moco_hcl.py": ["--max-steps", "2", "--batch-size", "8", "--num-workers", "0",
                                     "--min-box-size", "12", "--expand-to", "48", "--checkpoint-every", "1000",
                                     "--no-progress-bar"],
    "tools/analyze.py": ["--batch-size", "16", "--quiet"],
}


def test_quickstart_is_four_commands():
    assert len(QUICKSTART) == 4
    assert [python_target(shlex.split(c)) for c in QUICKSTART[:3]] == [
        ("module", "hcl_plugin.data.embedded.scenes"), ("script", "lightly_examples/moco_hcl.py"),
        ("script", "tools/analyze.py")]


@pytest.mark.slow
def test_quickstart_runs(tmp_path):
    """The quickstart's commands as written, in a scratch folder, with tiny flags appended (later flags win)."""
    from tests.data_helpers import animals_or_skip

    animals_or_skip()
    for command in QUICKSTART:
        words = shlex.split(command)
        if words[0] == "cat":
            report = tmp_path / words[1]
            assert report.is_file() and report.read_text().strip(), f"{words[1]} was not written"
            continue
        kind, name = python_target(words)
        argv = [sys.executable, *(["-m", name] if kind == "module" else [str(ROOT / name)]), *words[2 + (kind == "module"):]]
        result = subprocess.run(argv + QUICK_OVERRIDES[name], cwd=tmp_path, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"{command!r} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    assert (tmp_path / "outputs/quick/final.ckpt").is_file()
    assert (tmp_path / "outputs/quick/analysis/metrics.json").is_file()
