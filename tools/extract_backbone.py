#!/usr/bin/env python
"""Pretraining checkpoint -> backbone checkpoint for MMDetection and torchvision.

    python tools/extract_backbone.py work_dirs/densecl-hcl_resnet50_8xb32-coslr-200e_coco/epoch_200.pth work_dirs/densecl-hcl_resnet50_8xb32-coslr-200e_coco/backbone.pth

Keeps the ``backbone.`` weights of an MMSelfSup (MMEngine) checkpoint and drops the prefix, so the
file loads with no missing or unexpected keys into MMDetection's ``ResNet`` (``init_cfg=dict(
type='Pretrained', checkpoint=...)``, as in ``mmconfigs/mmdet/``) and into torchvision's ``resnet50``
with ``fc = nn.Identity()``. Writes ``{'state_dict': ..., 'meta': ...}`` (the format of OpenMMLab's
model zoo). ``--prefix encoder_k.module.0.`` extracts the momentum encoder instead.

The input is read without running anything from it (docs/security.md). An existing output is
replaced only with ``--overwrite``; the file is written through an exclusive temporary file in the
output's folder, so nothing half-written (and no stray temporary file) is left behind on failure.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hcl_plugin.checkpoints import CheckpointReadError, UnsafeCheckpointError  # noqa: E402
from hcl_plugin.mmselfsup.backbone_checkpoint import BackboneNotFoundError, extract_backbone  # noqa: E402
from hcl_plugin.utils.files import atomic_output  # noqa: E402


from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("checkpoint", help="pretraining checkpoint (MMEngine .pth)")
    parser.add_argument("output", help="backbone checkpoint to write (a file name)")
    parser.add_argument("--prefix", default="backbone.", help="key prefix of the backbone (default: backbone.)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output file if it exists")
    args = parser.parse_args(argv)
    out = Path(args.output)
    if out.exists() and out.resolve() == Path(args.checkpoint).resolve():
        parser.error("output must differ from the input checkpoint")
    try:
        result = extract_backbone(args.checkpoint, prefix=args.prefix)
        with atomic_output(out, overwrite=args.overwrite) as temporary:
            torch.save(result, temporary)
    except (OSError, BackboneNotFoundError, UnsafeCheckpointError, CheckpointReadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {len(result['state_dict'])} tensors from {args.checkpoint} (prefix {args.prefix!r})")
    print(f"next: use it as the detector's pretrained backbone, e.g. --cfg-options "
          f"model.backbone.init_cfg.checkpoint={out} (docs/mmdet.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
