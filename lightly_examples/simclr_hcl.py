"""SimCLR + HCL with Lightly and PyTorch Lightning: in-batch negatives for both losses.

Euclidean: Lightly's ``NTXentLoss`` between two views of an object crop. Hyperbolic:
``HyperbolicNTXentLoss`` between the scene crop and the object crop, both through the online network
and a Poincaré head, the other 2B - 2 views of the batch (of all ranks with DDP) as negatives.
``--lambda-hyp 0`` is the SimCLR baseline.

    python lightly_examples/simclr_hcl.py
    python lightly_examples/simclr_hcl.py --devices 2 --strategy ddp --accelerator cpu   # Lightning DDP (gloo)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hcl_plugin.lightly import HyperbolicNTXentLoss, PoincareProjectionHead  # noqa: E402
from hcl_plugin.lightly.training import add_common_arguments, fit, head_hparams, resnet_backbone, sgd_with_cosine  # noqa: E402


class SimCLRHCL(pl.LightningModule):
    """SimCLR + HCL. Hyper-parameter names follow the checkpoint contract of docs/eval.md."""

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
        lr: float = 0.06,
        weight_decay: float = 1e-4,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone, width = resnet_backbone(backbone)
        # no batch norm: Linear-ReLU-Linear, the same keys as the other examples' heads
        self.projection_head = SimCLRProjectionHead(width, proj_hidden_dim, proj_output_dim, batch_norm=False)
        self.hyperbolic_head = PoincareProjectionHead(width, hyp_hidden_dim, hyp_output_dim, c=c, clip_r=clip_r,
                                                      feature_scale=feature_scale, learn_scale=learn_scale)
        self.criterion = NTXentLoss(temperature=temperature, gather_distributed=gather_distributed)
        self.criterion_hyp = HyperbolicNTXentLoss(temperature=temperature, c=c, gather_distributed=gather_distributed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def training_step(self, batch, batch_idx):
        z1 = self.projection_head(self.backbone(batch["object_view_1"]))
        z2 = self.projection_head(self.backbone(batch["object_view_2"]))
        loss_euc = self.criterion(z1, z2)
        loss = loss_euc
        batch_size = z1.shape[0]
        if self.hparams.lambda_hyp > 0:
            scene = self.hyperbolic_head(self.backbone(batch["hyperbolic_scene"]))
            obj = self.hyperbolic_head(self.backbone(batch["hyperbolic_object"]))
            loss_hyp = self.criterion_hyp(scene, obj)
            loss = loss + self.hparams.lambda_hyp * loss_hyp
            self.log("train/loss_hyp", loss_hyp.detach(), batch_size=batch_size)
            self.log_dict({f"health/{k}": v for k, v in self.hyperbolic_head.stats.items()}, batch_size=batch_size)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}")
        self.log("loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/loss_euc", loss_euc.detach(), batch_size=batch_size)
        return loss

    def configure_optimizers(self):
        return sgd_with_cosine(self, self.hparams.lr, self.hparams.weight_decay)


def build_parser() -> argparse.ArgumentParser:
    return add_common_arguments(argparse.ArgumentParser(description=__doc__.split("\n")[0]))


def main(argv: list[str] | None = None) -> pl.Trainer:
    args = build_parser().parse_args(argv)
    pl.seed_everything(args.seed, workers=True)
    return fit(SimCLRHCL(**head_hparams(args)), args)


if __name__ == "__main__":
    main()
