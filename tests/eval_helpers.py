"""Helpers for the tests of ``hcl_plugin.eval``: checkpoints in the contract of docs/eval.md."""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
import torchvision
from torch import nn

from hcl_plugin.modules import BallMap, PoincareProjectionHead


def contract_hparams(**overrides: Any) -> Dict[str, Any]:
    """Hyper-parameters of a tiny resnet18 model (small heads, 32 px crops)."""
    hp = {
        "backbone": "resnet18",
        "proj_hidden_dim": 64,
        "proj_output_dim": 32,
        "hyp_hidden_dim": 64,
        "hyp_output_dim": 16,
        "c": 0.1,
        "clip_r": None,
        "feature_scale": 0.25,
        "learn_scale": True,
        "learn_c": False,
        "image_size": 32,
        "lambda_hyp": 0.1,
        "hyperbolic_head": "separate",
    }
    hp.update(overrides)
    return hp


def contract_checkpoint(seed: int = 0, hparams: Optional[Dict[str, Any]] = None, momentum: bool = True,
                        hyperbolic: bool = True, backbone: str = "resnet18") -> Dict[str, Any]:
    """A checkpoint dict as the Lightly examples save it (random weights from ``seed``).

    Modules are built the way the training scripts build them: a torchvision ResNet with
    ``fc = Identity``, a Linear-ReLU-Linear head under ``layers`` (Lightly's MoCoProjectionHead keys)
    and a PoincareProjectionHead (a BallMap of the projection head's output for
    ``hparams["hyperbolic_head"] == "shared"``); momentum copies and a memory-bank buffer are added as
    extra keys.
    """
    hp = hparams or contract_hparams()
    torch.manual_seed(seed)
    net = getattr(torchvision.models, backbone)(weights=None)
    net.fc = nn.Identity()
    feature_dim = 512 if backbone in ("resnet18", "resnet34") else 2048
    head = nn.Module()
    head.layers = nn.Sequential(nn.Linear(feature_dim, hp["proj_hidden_dim"]), nn.ReLU(),
                                nn.Linear(hp["proj_hidden_dim"], hp["proj_output_dim"]))
    modules = {"backbone": net, "projection_head": head}
    if hyperbolic and hp.get("hyperbolic_head", "separate") == "shared":
        modules["hyperbolic_head"] = BallMap(hp["c"], clip_r=hp["clip_r"], feature_scale=hp["feature_scale"],
                                             learn_scale=hp["learn_scale"])
    elif hyperbolic:
        modules["hyperbolic_head"] = PoincareProjectionHead(
            feature_dim, hp["hyp_hidden_dim"], hp["hyp_output_dim"], c=hp["c"], clip_r=hp["clip_r"],
            feature_scale=hp["feature_scale"], learn_scale=hp["learn_scale"])
    state: Dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            state[f"{name}.{key}"] = value
            if momentum:
                state[f"{name}_momentum.{key}"] = value.clone()
    state["criterion.bank"] = torch.randn(8, hp["proj_output_dim"])
    return {"state_dict": state, "hyper_parameters": dict(hp), "epoch": 1, "global_step": 10,
            "pytorch-lightning_version": "2.6.6"}

