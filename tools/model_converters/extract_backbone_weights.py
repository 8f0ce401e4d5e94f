#!/usr/bin/env python
"""Pretraining checkpoint -> backbone checkpoint, where MMSelfSup users look for it.

    python tools/model_converters/extract_backbone_weights.py work_dirs/densecl-hcl_resnet50_8xb32-coslr-200e_coco/epoch_200.pth backbone.pth

The same command as ``tools/extract_backbone.py`` (same arguments, same safe reading and writing);
MMSelfSup ships its extractor under this name.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.argv[0] = str(Path(__file__).resolve())
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "extract_backbone.py"), run_name="__main__")
