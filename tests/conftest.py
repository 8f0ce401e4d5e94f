"""Shared fixtures: fresh random inputs (the seed is printed so a failure can be replayed)."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

warnings.filterwarnings("ignore", message=".*torch.jit.*")


def _unformatted_config_text() -> None:
    """MMEngine formats every config text it makes (``Config.pretty_text``: each ``dump``, each checkpoint's
    meta, the Runner's log) with yapf, seconds per call for the HCL / ORL pipelines. The tests in this
    process keep the unformatted text, which is the same Python; the tools the tests start as subprocesses
    format as usual."""
    try:
        from mmengine.config import config as config_module
    except ImportError:  # the mmselfsup extra is not installed: nothing to speed up
        return
    config_module.FormatCode = lambda text, style_config=None, **kwargs: (text, False)


_unformatted_config_text()


@pytest.fixture
def gen(request) -> torch.Generator:
    """A generator with a fresh seed per test; set HCL_TEST_SEED to replay one."""
    seed = int(os.environ.get("HCL_TEST_SEED", int.from_bytes(os.urandom(4), "little")))
    request.node.user_properties.append(("seed", seed))
    print(f"HCL_TEST_SEED={seed}")
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="session")
def geoopt():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import geoopt as _geoopt
    return _geoopt


def ball_points(n: int, d: int, c: float, gen: torch.Generator, rel_norm=None, dtype=torch.float64) -> torch.Tensor:
    """Random points in the ball; with ``rel_norm`` all at that fraction of the radius."""
    direction = torch.randn(n, d, generator=gen, dtype=dtype)
    direction = direction / direction.norm(dim=1, keepdim=True)
    if rel_norm is None:
        rel = torch.rand(n, 1, generator=gen, dtype=dtype) * 0.95
    else:
        rel = torch.full((n, 1), rel_norm, dtype=dtype)
    return direction * rel / c**0.5
