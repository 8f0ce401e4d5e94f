"""DenseCL + HCL with Lightly and PyTorch Lightning.

DenseCL (Wang et al., CVPR 2021, Lightly's modules): a global MoCo loss and a dense loss between
matched feature-map locations of two views of an object crop, each with a queue. HCL adds the
hyperbolic term as in ``moco_hcl.py``: scene crop (online backbone, Poincaré head) against object crop
(momentum encoder), with a queue of object keys on the ball. ``--lambda-hyp 0`` is the DenseCL baseline.

    python lightly_examples/densecl_hcl.py
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightly.loss import NTXentLoss
from lightly.models import utils
from lightly.models.modules import DenseCLProjectionHead
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hcl_plugin.lightly import HyperbolicNTXentLoss, PoincareProjectionHead  # noqa: E402
from hcl_plugin.lightly.training import add_common_arguments, fit, head_hparams, resnet_backbone, sgd_with_cosine  # noqa: E402


def feature_map(resnet: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The (B, C, H, W) output of a torchvision ResNet's last stage (the backbone keeps torchvision's keys)."""
    x = resnet.maxpool(resnet.relu(resnet.bn1(resnet.conv1(x))))
    return resnet.layer4(resnet.layer3(resnet.layer2(resnet.layer1(x))))


class DenseCLHCL(pl.LightningModule):
    """DenseCL + HCL. Hyper-parameter names follow the checkpoint contract of docs/eval.md."""

    def __init__(
        self,
        backbone: str = "resnet18",
        proj_hidden_dim: int = 512,
        proj_output_dim: int = 128,
        hyp_hidden_dim: int = 512,
        hyp_output_dim: int = 128,
        c: float = 0.05,
        clip_r: float | None = None,
        feature_scale: float | None = None,
        learn_scale: bool = True,
        image_size: int = 64,
        lambda_hyp: float = 0.1,
        temperature: float = 0.2,
        memory_bank_size: int = 4096,
        momentum: float = 0.999,
        dense_weight: float = 0.5,
        lr: float = 0.06,
        weight_decay: float = 1e-4,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone, width = resnet_backbone(backbone)
        self.projection_head = DenseCLProjectionHead(width, proj_hidden_dim, proj_output_dim)  # global
        self.projection_head_local = DenseCLProjectionHead(width, proj_hidden_dim, proj_output_dim)
        self.hyperbolic_head = PoincareProjectionHead(width, hyp_hidden_dim, hyp_output_dim, c=c, clip_r=clip_r,
                                                      feature_scale=feature_scale, learn_scale=learn_scale)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        self.projection_head_local_momentum = copy.deepcopy(self.projection_head_local)
        self.hyperbolic_head_momentum = copy.deepcopy(self.hyperbolic_head)
        for module in (self.backbone_momentum, self.projection_head_momentum, self.projection_head_local_momentum,
                       self.hyperbolic_head_momentum):
            utils.deactivate_requires_grad(module)
        bank = (memory_bank_size, proj_output_dim) if memory_bank_size else 0
        self.criterion_global = NTXentLoss(temperature=temperature, memory_bank_size=bank, gather_distributed=gather_distributed)
        self.criterion_local = NTXentLoss(temperature=temperature, memory_bank_size=bank, gather_distributed=gather_distributed)
        self.criterion_hyp = HyperbolicNTXentLoss(temperature=temperature, c=c, memory_bank_size=(memory_bank_size, hyp_output_dim) if memory_bank_size else 0,
                                                  gather_distributed=gather_distributed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    @staticmethod
    def dense_outputs(resnet: nn.Module, head_global: nn.Module, head_local: nn.Module, x: torch.Tensor):
        features = feature_map(resnet, x)
        pooled = features.mean(dim=(2, 3))
        features = features.flatten(start_dim=2).permute(0, 2, 1)  # (B, H*W, C)
        return pooled, features, head_global(pooled), head_local(features)

    def training_step(self, batch, batch_idx):
        m = self.hparams.momentum
        for online, target in ((self.backbone, self.backbone_momentum), (self.projection_head, self.projection_head_momentum),
                               (self.projection_head_local, self.projection_head_local_momentum),
                               (self.hyperbolic_head, self.hyperbolic_head_momentum)):
            utils.update_momentum(online, target, m)
        _, q_features, q_global, q_local = self.dense_outputs(self.backbone, self.projection_head, self.projection_head_local,
                                                             batch["object_view_1"])
        with torch.no_grad():
            _, k_features, k_global, k_local = self.dense_outputs(
                self.backbone_momentum, self.projection_head_momentum, self.projection_head_local_momentum,
                batch["object_view_2"])
            k_local = utils.select_most_similar(q_features, k_features, k_local)
        loss_global = self.criterion_global(q_global, k_global)
        loss_local = self.criterion_local(q_local.flatten(end_dim=1), k_local.flatten(end_dim=1))
        w = self.hparams.dense_weight
        loss_euc = (1 - w) * loss_global + w * loss_local
        loss = loss_euc
        batch_size = q_global.shape[0]
        if self.hparams.lambda_hyp > 0:
            scene = self.hyperbolic_head(self.backbone(batch["hyperbolic_scene"]))
            with torch.no_grad():
                obj = self.hyperbolic_head_momentum(self.backbone_momentum(batch["hyperbolic_object"]))
            loss_hyp = self.criterion_hyp(scene, obj)
            loss = loss + self.hparams.lambda_hyp * loss_hyp
            self.log("train/loss_hyp", loss_hyp.detach(), batch_size=batch_size)
            self.log_dict({f"health/{k}": v for k, v in self.hyperbolic_head.stats.items()}, batch_size=batch_size)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}")
        self.log("loss", loss, prog_bar=True, batch_size=batch_size)
        self.log_dict({"train/loss_global": loss_global.detach(), "train/loss_local": loss_local.detach(),
                       "train/loss_euc": loss_euc.detach()}, batch_size=batch_size)
        return loss

    def configure_optimizers(self):
        return sgd_with_cosine(self, self.hparams.lr, self.hparams.weight_decay)


def build_parser() -> argparse.ArgumentParser:
    parser = add_common_arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0]))
    parser.add_argument("--memory-bank-size", type=int, default=4096, help="queue length; 0: in-batch negatives")
    parser.add_argument("--momentum", type=float, default=0.999)
    parser.add_argument("--dense-weight", type=float, default=0.5, help="DenseCL's lambda between global and dense loss")
    return parser


def main(argv: list[str] | None = None) -> pl.Trainer:
    args = build_parser().parse_args(argv)
    pl.seed_everything(args.seed, workers=True)
    model = DenseCLHCL(**head_hparams(args), memory_bank_size=args.memory_bank_size, momentum=args.momentum,
                       dense_weight=args.dense_weight)
    return fit(model, args)


if __name__ == "__main__":
    main()
