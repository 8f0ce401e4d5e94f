"""Running MMEngine/MMSelfSup jobs on machines without CUDA (gloo), as ``tools/train.py`` does.

MMEngine 0.10's ``init_dist('pytorch')`` calls ``torch.cuda.set_device`` and its default DDP wrapper
passes ``device_ids=[LOCAL_RANK]``; both fail on a CPU-only machine. :func:`prepare_distributed`
initialises the process group with gloo itself (MMEngine then skips its own ``init_dist``) and
configures the wrapper with ``device_ids=None``. With CUDA nothing changes (nccl, as configured).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from mmengine.config import Config

__all__ = ["prepare_distributed", "uses_cpu_distributed"]


def uses_cpu_distributed(launcher: str) -> bool:
    """True when a distributed launcher is requested on a machine without CUDA."""
    return launcher != "none" and not torch.cuda.is_available()


def prepare_distributed(cfg: Config, launcher: str) -> Config:
    """Make ``cfg`` runnable with ``launcher`` here: gloo + CPU DDP when CUDA is missing.

    Only the ``'pytorch'`` launcher (torchrun: ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
    ``MASTER_PORT`` in the environment) is supported on CPU; slurm/mpi need CUDA as in MMEngine.
    """
    cfg.launcher = launcher
    if not uses_cpu_distributed(launcher):
        return cfg
    if launcher != "pytorch":
        raise RuntimeError(f"launcher {launcher!r} on a machine without CUDA: use 'pytorch' (tools/dist_train.sh)")
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise RuntimeError(f"--launcher pytorch needs {key} in the environment (start it with tools/dist_train.sh)")
    env_cfg = cfg.setdefault("env_cfg", {})
    env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    wrapper = dict(cfg.get("model_wrapper_cfg") or {})
    wrapper.setdefault("type", "MMDistributedDataParallel")
    wrapper["device_ids"] = None
    wrapper.setdefault("broadcast_buffers", False)
    wrapper.setdefault("find_unused_parameters", cfg.get("find_unused_parameters", False))
    cfg.model_wrapper_cfg = wrapper
    return cfg
