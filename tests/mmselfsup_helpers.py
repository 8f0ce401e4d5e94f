"""Helpers for the MMSelfSup tests: a tiny embedded data set, derived configs, random view batches,
the one-curvature check, a queue-dump hook."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS as MMENGINE_HOOKS

from tests.data_helpers import build_embedded  # noqa: F401  (re-exported for the MMSelfSup tests)

ROOT = Path(__file__).resolve().parents[1]


def is_deprecated_alias(path: Path) -> bool:
    """Whether ``path`` is one of the old config names kept as a thin ``_base_`` alias for one release."""
    return "deprecated_config_name = " in path.read_text()
TINY = ROOT / "mmconfigs" / "tiny"

QUEUE_KEYS = ("queue", "queue2", "hyp_queue.bank")


def tiny_config(base: str, data_root: Path, work_dir: Path, max_iters: int = 4, batch_size: int = 4,
                checkpoint_interval: int = 2):
    """``mmconfigs/tiny/<base>`` shrunk to a few CPU iterations on ``data_root`` (a ``Config``)."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(TINY / base))
    cfg.work_dir = str(work_dir)
    cfg.visualizer.name = f"visualizer_{uuid.uuid4().hex}"  # several runners in one process: one each
    cfg.model.queue_len = 64
    if "hyp_queue_len" in cfg.model:
        cfg.model.hyp_queue_len = 64
    cfg.train_cfg.max_iters = max_iters
    cfg.param_scheduler = [dict(type="CosineAnnealingLR", T_max=max_iters, by_epoch=False, begin=0, end=max_iters)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = checkpoint_interval
    cfg.default_hooks.checkpoint.max_keep_ckpts = 10
    loader = cfg.train_dataloader
    loader.batch_size = batch_size
    loader.num_workers = 0
    loader.dataset.data_root = str(data_root) + "/"
    loader.dataset.pipeline[1].update(min_box_size=12, expand_to=48)
    return cfg


def random_views_batch(n: int, size: int, gen: torch.Generator, views: int = 4) -> dict:
    """A collated batch of ``n`` samples of ``views`` random uint8 views (what the HCL pipelines make)."""
    from mmselfsup.structures import SelfSupDataSample

    inputs = [torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen) for _ in range(views)]
    return {"inputs": inputs, "data_samples": [SelfSupDataSample() for _ in range(n)]}


def assert_one_curvature(model: torch.nn.Module) -> None:
    """The neck, its momentum copy, the head and the queue use the algorithm's curvature object, which
    is registered once (``curvature``): one ``log_c`` parameter and one checkpoint key when learnable.

    ``hyperbolic_head='shared'``: the neck is a ``BallMapNeck`` (a ``BallMap`` of the projection neck's
    output), with no MLP of its own: its only weights are a scale, when one is set."""
    from hcl_plugin.modules import BallMap, PoincareProjectionHead

    shared = model.curvature
    users = (model.hyp_neck.curvature, model.hyp_neck.head.curvature, model.hyp_neck_k.module.curvature,
             model.hyp_neck_k.module.head.curvature,
             model.hyp_head.curvature, model.hyp_head.loss.curvature, model.hyp_queue.curvature)
    assert all(user is shared for user in users)
    if getattr(model, "hyperbolic_head", "separate") == "shared":
        assert isinstance(model.hyp_neck.head, BallMap) and isinstance(model.hyp_neck_k.module.head, BallMap)
        assert {name for name, _ in model.hyp_neck.named_parameters()} <= {"head.log_scale"}
        assert model.hyp_neck.out_channels == model.queue.size(0) == model.hyp_queue.bank.size(-1)
    else:
        assert isinstance(model.hyp_neck.head, PoincareProjectionHead)
    registered = [name for name, module in model.named_modules(remove_duplicate=False) if module is shared]
    assert registered == ["curvature"]
    expected = ["curvature.log_c"] if shared.learnable else []
    assert [k for k in model.state_dict() if "curvature" in k] == expected
    assert [n for n, _ in model.named_parameters(remove_duplicate=False) if "curvature" in n] == expected


def write_tiny_config(path: Path, base: str, data_root: Path, work_dir: Path, **kwargs) -> Path:
    """:func:`tiny_config` written as a standalone config file (for ``tools/train.py`` in a subprocess)."""
    tiny_config(base, data_root, work_dir, **kwargs).dump(str(path))
    return path


@MMENGINE_HOOKS.register_module(force=True)
class DumpQueuesHook(Hook):
    """After training, each rank writes its queues to ``<work_dir>/queues_rank<r>.pt``."""

    def after_train(self, runner) -> None:
        from mmengine.dist import get_rank

        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        state = model.state_dict()
        queues = {k: v.clone() for k, v in state.items() if k in QUEUE_KEYS}
        torch.save(queues, Path(runner.work_dir) / f"queues_rank{get_rank()}.pt")


def read_scalars(work_dir: Path) -> list:
    """The per-iteration scalars MMEngine's LocalVisBackend wrote (``*/vis_data/scalars.json``)."""
    rows = []
    for path in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows
