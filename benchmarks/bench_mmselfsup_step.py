#!/usr/bin/env python
"""Per-iteration time of ``HCLDenseCL`` / ``HCLMoCoV2`` vs MMSelfSup's ``DenseCL`` / ``MoCo``: a thin
wrapper of ``bench_train_step.py``.

Kept so that ``make bench`` and earlier commands keep working; the benchmark itself (the tiny configs
``mmconfigs/tiny/*_embedded.py``, each iteration the model's ``train_step`` on one fixed batch made
by the configs' own pipelines, iterations interleaved, the arithmetic floor) is
``benchmarks/bench_train_step.py --framework mmselfsup --parts compute``, which this script runs.
The old flags map onto it: ``--pairs`` -> ``--mmselfsup-pairs``, ``--depth N`` -> ``--backbone
resnetN``, ``--hyp-image-size`` -> ``--hyperbolic-size``; other flags pass through. ``--out
FILE.json`` receives the report; the full outputs go to the folder ``FILE`` (without ``.json``).

    python benchmarks/bench_mmselfsup_step.py [--pairs densecl mocov2] [--depth 18] [--image-size 64]
        [--hyp-image-size 64] [--batch-size 16] [--steps 20] [--warmup 2] [--device cpu|cuda]
        [--out outputs/bench_mmselfsup_step.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train_step  # noqa: E402


from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402

def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run ``bench_train_step.main`` for the MMSelfSup compute-only part; write its report to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--pairs", nargs="+", default=["densecl", "mocov2"], choices=sorted(bench_train_step.MMSELFSUP_PAIRS), help="baseline/HCL config pairs timed")
    parser.add_argument("--depth", type=int, default=18, choices=[18, 34, 50], help="ResNet depth")
    parser.add_argument("--hyp-image-size", type=int, default=None, help="default: --image-size")
    parser.add_argument("--batch-size", type=int, default=16, help="images per step")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_mmselfsup_step.json"), help="report (JSON file)")
    args, rest = parser.parse_known_args(argv)
    forwarded = ["--framework", "mmselfsup", "--parts", "compute", "--mmselfsup-pairs", *args.pairs,
                 "--backbone", f"resnet{args.depth}", "--batch-size", str(args.batch_size)]
    if args.hyp_image_size is not None:
        forwarded += ["--hyperbolic-size", str(args.hyp_image_size)]
    report = bench_train_step.main([*forwarded, *rest, "--out", str(args.out.with_suffix(""))])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
