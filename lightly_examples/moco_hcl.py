"""MoCo-v2 + HCL with Lightly and PyTorch Lightning (the official HCL code's setting).

Euclidean: symmetric MoCo loss on two views of an object crop, two queues of keys. Hyperbolic: the
scene crop through the online backbone and a Poincaré head (query) against the object crop through
the momentum encoder (key), with a queue of object keys on the ball. ``--lambda-hyp 0`` is the
MoCo-v2 baseline (the hyperbolic branch is not even computed).

    python lightly_examples/moco_hcl.py                       # embedded data set, CPU-sized defaults
    python lightly_examples/moco_hcl.py --lambda-hyp 0        # MoCo-v2 baseline
    python lightly_examples/moco_hcl.py --data coco/train2017 \\
        --annotations coco/annotations/instances_train2017.json --backbone resnet50 --image-size 224 \\
        --min-box-size 56 --expand-to 256 --batch-size 128 --memory-bank-size 65536 --epochs 200 \\
        --lr 0.15 --devices 8 --strategy ddp --accelerator gpu   # the paper's scale
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightly.models.modules import MoCoProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from hcl_plugin.lightly import HCLLoss, PoincareProjectionHead  # noqa: E402
from hcl_plugin.lightly.training import add_common_arguments, fit, head_hparams, resnet_backbone, sgd_with_cosine  # noqa: E402


class MoCoHCL(pl.LightningModule):
    """MoCo-v2 + HCL. Hyper-parameter names follow the checkpoint contract of docs/eval.md."""

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
        lr: float = 0.06,
        weight_decay: float = 1e-4,
        gather_distributed: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone, width = resnet_backbone(backbone)
        self.projection_head = MoCoProjectionHead(width, proj_hidden_dim, proj_output_dim)
        self.hyperbolic_head = PoincareProjectionHead(width, hyp_hidden_dim, hyp_output_dim, c=c, clip_r=clip_r,
                                                      feature_scale=feature_scale, learn_scale=learn_scale)
        self.backbone_momentum = copy.deepcopy(self.backbone)
        self.projection_head_momentum = copy.deepcopy(self.projection_head)
        self.hyperbolic_head_momentum = copy.deepcopy(self.hyperbolic_head)
        for module in (self.backbone_momentum, self.projection_head_momentum, self.hyperbolic_head_momentum):
            deactivate_requires_grad(module)
        self.criterion = HCLLoss(
            lambda_hyp=lambda_hyp, temperature_euc=temperature, temperature_hyp=temperature, c=c,
            memory_bank_size=(memory_bank_size, proj_output_dim) if memory_bank_size else 0,
            hyp_memory_bank_size=(memory_bank_size, hyp_output_dim) if memory_bank_size else 0,
            symmetric=True, gather_distributed=gather_distributed,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    @torch.no_grad()
    def momentum_update(self) -> None:
        m = self.hparams.momentum
        update_momentum(self.backbone, self.backbone_momentum, m)
        update_momentum(self.projection_head, self.projection_head_momentum, m)
        update_momentum(self.hyperbolic_head, self.hyperbolic_head_momentum, m)

    def training_step(self, batch, batch_idx):
        self.momentum_update()
        v1, v2 = batch["object_view_1"], batch["object_view_2"]
        queries = (self.projection_head(self.backbone(v1)), self.projection_head(self.backbone(v2)))
        with torch.no_grad():
            keys = (self.projection_head_momentum(self.backbone_momentum(v1)),
                    self.projection_head_momentum(self.backbone_momentum(v2)))
        scene_query = object_key = None
        if self.hparams.lambda_hyp > 0:
            scene_query = self.hyperbolic_head(self.backbone(batch["hyperbolic_scene"]))
            with torch.no_grad():
                object_key = self.hyperbolic_head_momentum(self.backbone_momentum(batch["hyperbolic_object"]))
        loss, parts = self.criterion(queries, keys, scene_query, object_key, return_parts=True)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}: {parts}")
        batch_size = v1.shape[0]
        self.log("loss", loss, prog_bar=True, batch_size=batch_size)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=batch_size)
        if self.hparams.lambda_hyp > 0:
            self.log_dict({f"health/{k}": v for k, v in self.hyperbolic_head.stats.items()}, batch_size=batch_size)
        return loss

    def configure_optimizers(self):
        return sgd_with_cosine(self, self.hparams.lr, self.hparams.weight_decay)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument("--memory-bank-size", type=int, default=4096, help="queue length (official: 65536); 0: in-batch negatives")
    parser.add_argument("--momentum", type=float, default=0.999, help="momentum encoder update (official: 0.999)")
    return parser


def main(argv: list[str] | None = None) -> pl.Trainer:
    args = build_parser().parse_args(argv)
    pl.seed_everything(args.seed, workers=True)
    model = MoCoHCL(**head_hparams(args), memory_bank_size=args.memory_bank_size, momentum=args.momentum)
    return fit(model, args)


if __name__ == "__main__":
    main()
