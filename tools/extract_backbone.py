#!/usr/bin/env python
"""Pretraining checkpoint -> backbone checkpoint for MMDetection and torchvision.

    python tools/extract_backbone.py work_dirs/densecl_hcl_coco/epoch_200.pth work_dirs/densecl_hcl_coco/backbone.pth

Keeps the ``backbone.`` weights of an MMSelfSup (MMEngine) checkpoint and drops the prefix, so the
file loads with no missing or unexpected keys into MMDetection's ``ResNet`` (``init_cfg=dict(
type='Pretrained', checkpoint=...)``, as in ``mmconfigs/mmdet/``) and into torchvision's ``resnet50``
with ``fc = nn.Identity()``. Writes ``{'state_dict': ..., 'meta': ...}`` (the format of OpenMMLab's
model zoo). ``--prefix encoder_k.module.0.`` extracts the momentum encoder instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hcl_plugin.mmselfsup.backbone_checkpoint import extract_backbone  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="pretraining checkpoint (MMEngine .pth)")
    parser.add_argument("output", help="backbone checkpoint to write")
    parser.add_argument("--prefix", default="backbone.", help="key prefix of the backbone (default: backbone.)")
    args = parser.parse_args()
    result = extract_backbone(args.checkpoint, prefix=args.prefix)
    out = Path(args.output)
    if out.resolve() == Path(args.checkpoint).resolve():
        parser.error("output must differ from the input checkpoint")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(result, tmp)
    os.replace(tmp, out)  # nothing half-written is left under the output name
    print(f"wrote {out}: {len(result['state_dict'])} tensors from {args.checkpoint} (prefix {args.prefix!r})")


if __name__ == "__main__":
    main()
