"""The README's core usage snippet runs as written (keeps the docs true to the code)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_plain_pytorch_snippet_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    core = next(b for b in blocks if "from hcl_plugin.losses import HCLLoss" in b)
    namespace: dict = {}
    exec(compile(core, str(README), "exec"), namespace)
    assert namespace["out"].loss.grad_fn is not None and torch.isfinite(namespace["out"].loss)
    assert set(namespace["hyp_head"].stats) >= {"clipped_fraction", "hyp_norm_mean"}


def test_lightly_snippet_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    snippet = next(b for b in blocks if "from hcl_plugin.lightly import" in b)
    namespace: dict = {}
    exec(compile(snippet, str(README), "exec"), namespace)
    views = [torch.randn(4, 3, 64, 64) for _ in range(4)]
    loss = namespace["training_step"](*views)
    loss.backward()
    assert torch.isfinite(loss)
    assert int(namespace["criterion"].hyperbolic.memory_bank.ptr) == 4


def test_uhml_snippet_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    snippet = next(b for b in blocks if "HierarchicalLogRatioLoss" in b)
    namespace: dict = {}
    exec(compile(snippet, str(README), "exec"), namespace)
    loss = namespace["loss"]
    loss.backward()
    assert torch.isfinite(loss) and namespace["labels"].shape == (2, 2000)
