#!/usr/bin/env python
"""Compute-only step time of MoCo-v2 + HCL vs MoCo-v2 (λ = 0), Lightly: a thin wrapper of ``bench_train_step.py``.

Kept so that ``make bench`` and earlier commands keep working; the benchmark itself (the Lightly model
:class:`hcl_plugin.lightly.models.MoCoHCL`, steps interleaved HCL, baseline, baseline, HCL, ..., the
arithmetic floor) is ``benchmarks/bench_train_step.py --framework lightly --parts compute``, which
this script runs with the flags it is given. ``--out FILE.json`` receives the report; the full
outputs (JSON and the plot of per-step times) go to the folder ``FILE`` (without ``.json``).
For the end-to-end part (data loading included) run ``bench_train_step.py`` itself.

    python benchmarks/bench_moco_step.py [--backbone resnet18] [--image-size 64] [--batch-size 32]
        [--memory-bank-size 4096] [--steps 20] [--device cpu|cuda] [--out outputs/bench_moco_step.json]
        [any other flag of bench_train_step.py, e.g. --hyperbolic-size 32 --precision bf16]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train_step  # noqa: E402


def main(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Run ``bench_train_step.main`` for the Lightly compute-only part; write its report to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_moco_step.json"), help="report (JSON file)")
    args, rest = parser.parse_known_args(argv)
    report = bench_train_step.main(["--framework", "lightly", "--parts", "compute", *rest,
                                    "--out", str(args.out.with_suffix(""))])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
