#!/usr/bin/env python
"""Analyse a pretrained checkpoint on a COCO-format scene set: norms vs number of objects (HCL Fig. 3/4),
out-of-context detection (Fig. 5) and transfer proxies (linear probe, multi-label mAP, kNN).

    python tools/analyze.py outputs/hcl/last.ckpt --data data/scenes --out outputs/analysis
    python tools/analyze.py model.pt --data data/scenes --out outputs/analysis --split all --device cuda

Writes OUT/metrics.json (norm_spearman, norm_pearson, ooc_auroc, ooc_ap, linear_top1, multilabel_map,
knn_top1, ...; null where a metric is undefined on the data), OUT/report.md and the PNG plots.
The checkpoint contract and every metric are described in docs/eval.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from hcl_plugin.data.readers import AnnotationError
from hcl_plugin.eval.analyze import HYPERBOLIC_SOURCES, run_analysis
from hcl_plugin.eval.checkpoint import CheckpointFormatError, CheckpointMismatchError
from hcl_plugin.eval.report import REQUIRED_METRICS
from hcl_plugin.eval.scenes import SPLITS


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint file (.ckpt of the Lightly examples or a torch.save'd dict)")
    parser.add_argument("--data", required=True, help="data folder: DIR/images + DIR/annotations[_train|_val].json")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--split", choices=SPLITS, default="auto",
                        help="analysis split; auto = val if annotations_val.json exists, else all (default)")
    parser.add_argument("--batch-size", type=int, default=64, help="crops per forward pass (default 64)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto (default cpu)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding images")
    parser.add_argument("--max-images", type=int, default=None, help="analyse the first N images of the split")
    parser.add_argument("--max-train-images", type=int, default=None, help="cap the probes' training images")
    parser.add_argument("--knn-k", type=int, default=20)
    parser.add_argument("--knn-temperature", type=float, default=0.07,
                        help="weights exp(cos/T) of the kNN vote; 0 = majority vote (default 0.07)")
    parser.add_argument("--hyperbolic-source", choices=HYPERBOLIC_SOURCES, default="auto",
                        help="points on the ball from the hyperbolic head or expmap0(projection head); auto = the "
                             "hyperbolic head unless lambda_hyp == 0 (default auto)")
    parser.add_argument("--trust-checkpoint", action="store_true",
                        help="allow full unpickling of the checkpoint (runs code from the file; only for files you wrote)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out, replacing the files an earlier analysis wrote there")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    try:  # MMSelfSup checkpoints (tools/train.py) when the MMSelfSup extras are installed
        import hcl_plugin.mmselfsup  # noqa: F401
    except ImportError:
        pass
    try:
        metrics = run_analysis(
            args.checkpoint, args.data, args.out, split=args.split, batch_size=args.batch_size, device=args.device,
            num_workers=args.num_workers, max_images=args.max_images, max_train_images=args.max_train_images,
            knn_k=args.knn_k, knn_temperature=args.knn_temperature or None, hyperbolic_source=args.hyperbolic_source,
            trusted=args.trust_checkpoint, overwrite=args.overwrite,
            progress=not args.quiet,
        )
    except (OSError, ValueError, AnnotationError, CheckpointFormatError, CheckpointMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({key: metrics[key] for key in REQUIRED_METRICS}, indent=2))
    print(f"wrote {args.out}/metrics.json and {args.out}/report.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
