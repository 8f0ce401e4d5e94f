r"""Self-supervised pretraining on an image folder, without labels: the project's MoCo-v2 on whole images.

The model is the MoCo-v2 of ``lightly_examples/moco_hcl.py`` at λ = 0 (:class:`~hcl_plugin.lightly.models.MoCoHCL`
without its hyperbolic term: Lightly's ``MoCoProjectionHead``, momentum encoder with shuffle-BN, the symmetric
InfoNCE loss with a queue of keys, He et al. CVPR 2020; Chen et al. 2020):

.. math:: \mathcal{L} = -\log\frac{\exp(q \cdot k^+/\tau)}{\exp(q \cdot k^+/\tau) + \sum_{k^-} \exp(q \cdot k^-/\tau)}

with the two views ``object_view_1`` / ``object_view_2`` being two MoCo-v2 augmentations of a whole image
(:class:`~hcl_plugin.data.MoCoV2TwoViews`) instead of two views of an object crop. It takes the example's
command line (:func:`hcl_plugin.lightly.training.build_parser`, ``--recipe`` included); ``--data`` is an
image folder (``class/`` or ``superclass/class/``; only the images of ``split`` are read, their labels never).

UHML's paper starts from ImageNet weights; this is the unsupervised stand-in the UHML retrieval benchmark
uses (its "self-supervised start"): pretrain on the training half's images, then pass the checkpoint to
``lightly_examples/uhml.py --weights`` (its ``backbone.*`` entries are the torchvision ResNet).

    python -m hcl_plugin.lightly.image_pretraining --data CUB_200_2011/images --out outputs/moco_images \
        --image-size 32 --max-steps 300 --epochs 1000    # then: lightly_examples/uhml.py --weights outputs/moco_images/final.ckpt
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, default_collate

from hcl_plugin.data import MoCoV2TwoViews
from hcl_plugin.lightly.models import MoCoHCL
from hcl_plugin.lightly.recipes import apply_recipe
from hcl_plugin.lightly.training import build_parser, fit
from hcl_plugin.uhml import RetrievalImageFolder, detect_layout

__all__ = ["TwoViewImages", "main", "pretrain_on_images"]

DESCRIPTION = "MoCo-v2 (this project's, λ = 0) on whole images of an image folder, without labels."


class TwoViewImages(Dataset):
    """``{"object_view_1", "object_view_2", "index"}``: two MoCo-v2 views of each image of a
    :class:`~hcl_plugin.uhml.RetrievalImageFolder` (its labels are not returned)."""

    def __init__(self, folder: RetrievalImageFolder, views: MoCoV2TwoViews) -> None:
        self.folder = folder
        self.views = views

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> Dict[str, Any]:
        image, _ = self.folder[index]
        first, second = self.views(image)
        return {"object_view_1": first, "object_view_2": second, "index": index}


def pretrain_on_images(argv: Sequence[str], split: str = "train", layout: str = "auto") -> Path:
    """Train MoCo-v2 on the images of ``split`` of ``--data`` with the example's flags ``argv``; returns
    ``OUT/final.ckpt``.

    Raises:
        SystemExit: ``--data`` is missing, or ``--lambda-hyp`` is not 0 (whole images have no scene/object pair).
    """
    argv = list(argv)
    parser = build_parser(MoCoHCL, DESCRIPTION)
    args = apply_recipe(parser, parser.parse_args(argv), argv)
    if args.data is None:
        raise SystemExit("image pretraining needs --data: an image folder (class/ or superclass/class/ sub-folders)")
    if args.lambda_hyp != 0:
        raise SystemExit(f"image pretraining is MoCo-v2 alone: --lambda-hyp must be 0 (got {args.lambda_hyp}); "
                         f"HCL needs scene images with object boxes (lightly_examples/moco_hcl.py)")
    pl.seed_everything(args.seed, workers=True)
    root = Path(args.data)
    folder = RetrievalImageFolder(root, layout=detect_layout(root) if layout == "auto" else layout, split=split)
    if len(folder) < args.batch_size:
        raise SystemExit(f"{root}: split {split!r} has {len(folder)} images, fewer than --batch-size {args.batch_size}")
    loader = DataLoader(TwoViewImages(folder, MoCoV2TwoViews(size=args.image_size)), batch_size=args.batch_size,
                        shuffle=True, drop_last=True, num_workers=args.num_workers, collate_fn=default_collate,
                        persistent_workers=args.num_workers > 0)
    trainer = fit(MoCoHCL.from_args(args), args, seed=False, loader=loader)
    final = Path(args.out) / "final.ckpt"
    if trainer.is_global_zero:
        print(f"wrote {final} (MoCo-v2 on {len(folder)} images of {root}, split {split!r}); next: "
              f"python lightly_examples/uhml.py --data {root} --weights {final}", file=sys.stderr)
    return final


def main(argv: Optional[Sequence[str]] = None) -> Path:
    """``python -m hcl_plugin.lightly.image_pretraining`` with the example's flags (``--lambda-hyp`` is 0)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return pretrain_on_images(argv if "--lambda-hyp" in argv else argv + ["--lambda-hyp", "0"])


if __name__ == "__main__":
    main()
