#!/usr/bin/env python
"""Analyse a pretrained checkpoint on a COCO-format scene set: norms vs number of objects (HCL Fig. 3/4),
out-of-context detection (Fig. 5) and transfer proxies (linear probe, multi-label mAP, kNN).

    python tools/analyze.py outputs/lightly/final.ckpt --data data/embedded --out outputs/analysis
    python tools/analyze.py outputs/demo/final.ckpt --data data/embedded --out outputs/analysis --split all --device cuda
    python tools/analyze.py hcl=outputs/hcl/final.ckpt baseline=outputs/moco/final.ckpt --random-init-control \\
        --hyperbolic-source projection_head --data data/embedded --out outputs/compare

(outputs/lightly/final.ckpt: lightly_examples/moco_hcl.py; outputs/hcl, outputs/moco: the same with
--out outputs/hcl and --out outputs/moco --lambda-hyp 0; data/embedded: what the examples build, or
python -m hcl_plugin.data.embedded.scenes --out data/embedded.)

One checkpoint: writes OUT/metrics.json (norm_spearman, norm_pearson, ooc_auroc, ooc_ap, linear_top1,
multilabel_map, knn_top1, ...; null where a metric is undefined on the data; 95 % intervals under
*_ci), OUT/report.md and the PNG plots; prints the headline metrics as JSON (stdout) and the
intervals (stderr). Several (NAME=CHECKPOINT), or --random-init-control: a matched comparison
(hcl_plugin.eval.compare.compare_models: one BatchNorm procedure and one norm quantity for every model)
into OUT/<name>/, OUT/comparison.json and OUT/comparison.md; prints the table.
Every model's BatchNorm statistics are re-estimated on training crops first (--bn recompute, the default).
The checkpoint contract and every metric are described in docs/eval.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from typing import Dict, Optional, Sequence

from hcl_plugin.data.readers import AnnotationError
from hcl_plugin.eval.analyze import HYPERBOLIC_SOURCES, run_analysis
from hcl_plugin.eval.batchnorm import BN_PROCEDURES, BatchNormProcedure
from hcl_plugin.eval.checkpoint import CheckpointFormatError, CheckpointMismatchError
from hcl_plugin.eval.report import REQUIRED_METRICS, format_interval
from hcl_plugin.eval.scenes import SPLITS
from hcl_plugin.utils.cli import HelpFormatter


#: Metrics whose interval is printed after a single analysis.
INTERVAL_METRICS = ("norm_spearman", "norm_pearson", "norm_spearman_euclidean", "ooc_auroc")


def _named_checkpoints(specs: Sequence[str]) -> Dict[str, str]:
    """``{name: path}`` from ``NAME=PATH`` or ``PATH`` (named after the file; after its folder for
    ``final.ckpt`` / ``last.ckpt``)."""
    named: Dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or os.path.exists(spec):
            path = spec
            stem = os.path.splitext(os.path.basename(path))[0]
            name = os.path.basename(os.path.dirname(os.path.abspath(path))) if stem in ("final", "last") else stem
        if name in named:
            raise ValueError(f"two checkpoints are named {name!r}; name them: NAME=CHECKPOINT")
        named[name] = path
    return named


def _print_intervals(metrics) -> None:
    for key in INTERVAL_METRICS:
        value = metrics.get(key)
        shown = "n/a" if value is None else f"{value:.3f}"
        print(f"{key} = {shown}  95 % interval {format_interval(metrics.get(key + '_ci'))}", file=sys.stderr)
    print(f"norms from {metrics.get('hyperbolic_source')}; BatchNorm {metrics.get('bn_procedure')}", file=sys.stderr)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("checkpoint", nargs="+", metavar="[NAME=]CHECKPOINT",
                        help="checkpoint file (.ckpt of the Lightly examples or a torch.save'd dict); several = a "
                             "matched comparison, each optionally named NAME=CHECKPOINT")
    parser.add_argument("--data", required=True,
                        help="data-set root: DATA/images/ + DATA/annotations_train.json (probes, BatchNorm) and "
                             "DATA/annotations_val.json (analysis), as for the training examples")
    parser.add_argument("--out", required=True, help="output folder (metrics.json, report.md, plots)")
    parser.add_argument("--split", choices=SPLITS, default="auto",
                        help="analysis split; auto = val if annotations_val.json exists, else all")
    parser.add_argument("--batch-size", type=int, default=64, help="crops per forward pass")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, auto")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding images")
    parser.add_argument("--max-images", type=int, default=None,
                        help="analyse the first N images of the split (default: all)")
    parser.add_argument("--max-train-images", type=int, default=None,
                        help="cap the probes' training images (default: all)")
    parser.add_argument("--knn-k", type=int, default=20, help="neighbours of the kNN probe")
    parser.add_argument("--knn-temperature", type=float, default=0.07,
                        help="weights exp(cos/T) of the kNN vote; 0 = majority vote")
    parser.add_argument("--hyperbolic-source", choices=HYPERBOLIC_SOURCES, default="auto",
                        help="points on the ball from the hyperbolic head or expmap0(projection head); auto = the "
                             "hyperbolic head unless lambda_hyp == 0")
    parser.add_argument("--bn", choices=BN_PROCEDURES, default="recompute",
                        help="BatchNorm statistics: recompute = re-estimate on training crops for every model "
                             ", as_trained = as stored")
    parser.add_argument("--bn-batches", type=int, default=BatchNormProcedure.num_batches,
                        help="batches of the BatchNorm re-estimation")
    parser.add_argument("--bn-batch-size", type=int, default=BatchNormProcedure.batch_size,
                        help="crops per re-estimation batch")
    parser.add_argument("--random-init-control", action="store_true",
                        help="add the first checkpoint's architecture at random initialisation as 'random_init'")
    parser.add_argument("--random-init-seed", type=int, default=0, help="seed of the random-init control's weights")
    parser.add_argument("--allow-mixed-sources", action="store_true",
                        help="compare models whose norms come from different quantities (warns) instead of refusing")
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
    common = dict(split=args.split, batch_size=args.batch_size, device=args.device, num_workers=args.num_workers,
                  max_images=args.max_images, max_train_images=args.max_train_images, knn_k=args.knn_k,
                  knn_temperature=args.knn_temperature or None, hyperbolic_source=args.hyperbolic_source,
                  trusted=args.trust_checkpoint, overwrite=args.overwrite, progress=not args.quiet)
    try:
        bn = BatchNormProcedure(args.bn, num_batches=args.bn_batches, batch_size=args.bn_batch_size)
        if len(args.checkpoint) == 1 and not args.random_init_control:
            metrics = run_analysis(args.checkpoint[0], args.data, args.out, bn=bn, **common)
        else:
            from hcl_plugin.eval.compare import compare_models, random_init_like

            models: Dict[str, object] = dict(_named_checkpoints(args.checkpoint))
            if args.random_init_control:
                if "random_init" in models:
                    raise ValueError("a checkpoint is already named 'random_init'")
                models["random_init"] = random_init_like(next(iter(models.values())), seed=args.random_init_seed,
                                                         trusted=args.trust_checkpoint)
            with warnings.catch_warnings():
                warnings.simplefilter("always", UserWarning)
                comparison = compare_models(models, args.data, args.out, bn=bn,
                                            allow_mixed_sources=args.allow_mixed_sources, **common)
            print(comparison["table"])
            for note in comparison["notes"]:
                print(f"note: {note}", file=sys.stderr)
            print(f"wrote {args.out}/comparison.json, {args.out}/comparison.md and {args.out}/<name>/", file=sys.stderr)
            print(f"next: read {args.out}/comparison.md (the metrics are described in docs/eval.md)", file=sys.stderr)
            return 0
    except (OSError, ValueError, AnnotationError, CheckpointFormatError, CheckpointMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({key: metrics[key] for key in REQUIRED_METRICS}, indent=2))
    _print_intervals(metrics)
    print(f"wrote {args.out}/metrics.json and {args.out}/report.md", file=sys.stderr)
    print(f"next: read {args.out}/report.md; compare with a control: python tools/analyze.py "
          f"hcl={args.checkpoint[0]} --random-init-control --data {args.data} --out {args.out}_compare", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
