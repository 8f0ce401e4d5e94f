#!/usr/bin/env python
"""Cost of HCL's four views vs the standard MoCo-v2 two views, on the same images; proposal throughput.

    python benchmarks/bench_views.py --out outputs/bench_views.json
    python benchmarks/bench_views.py --data DIR   # an existing COCO-format set (DIR/images, DIR/annotations.json)

Per image and interleaved (HCL then MoCo on image i, the order alternating between repeats), it times

* ``with_decode``: read + decode the JPEG + (HCL: sample boxes) + build the views — what one data-loader
  worker does per image;
* ``transform_only``: the same on an already decoded image.

Both run with one torch thread, as in a DataLoader worker. Target: HCL / MoCo <= 1.5. Then
selective search ('fast', ORL filter) runs on ``--proposal-images`` images, one process: images/s.
By default the images are a fresh embedded set (``hcl_plugin.data.embedded.scenes``) of ``--num-images``
scenes of ``--image-size`` px; its generation time is reported too.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import torch

from hcl_plugin.data.proposals import SelectiveSearchConfig, propose_boxes
from hcl_plugin.data.readers import read_coco
from hcl_plugin.data.box_sampler import SceneObjectSampler
from hcl_plugin.data.scene_dataset import load_rgb_image
from hcl_plugin.data.embedded.scenes import SyntheticConfig, build_synthetic_dataset
from hcl_plugin.data.views import HCLViews, MoCoV2TwoViews

TARGET_RATIO = 1.5


from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402

def _summary(times: List[float]) -> Dict[str, float]:
    return {"median_ms": 1e3 * statistics.median(times), "mean_ms": 1e3 * statistics.fmean(times)}


def usable_records(records, limit: int) -> list:
    """The first ``limit`` records with enough boxes for the default (official) sampler rules, so both
    pipelines are timed on the same images and HCL never takes the cheap "too few boxes" exit."""
    sampler = SceneObjectSampler()
    kept = []
    for record in records:
        if record.width and record.height:
            usable, _ = sampler.usable_boxes((record.height, record.width), record.pixel_boxes(record.height, record.width))
            if usable.shape[0] >= sampler.min_boxes:
                kept.append(record)
        if len(kept) == limit:
            break
    if not kept:
        raise SystemExit("no image has two boxes of >= 56 x 56 px; use a larger --image-size")
    return kept


def bench_views(records, repeats: int, size: int) -> Dict[str, object]:
    hcl, moco = HCLViews(euclidean_size=size, hyperbolic_size=size), MoCoV2TwoViews(size=size)
    decoded = [load_rgb_image(r.path) for r in records]
    times = {mode: {"hcl": [], "moco": []} for mode in ("with_decode", "transform_only")}
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)

    def run_hcl(record, image):
        image = image if image is not None else load_rgb_image(record.path)
        out = hcl(image, record.pixel_boxes(image.height, image.width), generator=generator)
        return out

    def run_moco(record, image):
        image = image if image is not None else load_rgb_image(record.path)
        return moco(image)

    for record, image in zip(records, decoded):  # warm-up
        run_hcl(record, image), run_moco(record, image)
    for repeat in range(repeats):
        for record, image in zip(records, decoded):
            for mode, given in (("with_decode", None), ("transform_only", image)):
                order = (("hcl", run_hcl), ("moco", run_moco))
                for name, fn in order if repeat % 2 == 0 else order[::-1]:
                    start = time.perf_counter()
                    fn(record, given)
                    times[mode][name].append(time.perf_counter() - start)
    result: Dict[str, object] = {}
    for mode, pair in times.items():
        hcl_s, moco_s = _summary(pair["hcl"]), _summary(pair["moco"])
        ratio = hcl_s["median_ms"] / moco_s["median_ms"]
        result[mode] = {"hcl": hcl_s, "moco_v2": moco_s, "ratio_median": ratio,
                        "ratio_mean": hcl_s["mean_ms"] / moco_s["mean_ms"], "meets_target": ratio <= TARGET_RATIO}
    result["resampled_images"] = int(hcl.sampler.stats["resampled"])
    return result


def bench_proposals(records, count: int) -> Dict[str, object]:
    images = [load_rgb_image(r.path) for r in records[:count]]
    import numpy as np

    arrays = [np.asarray(image) for image in images]
    propose_boxes(arrays[0])  # warm-up
    start = time.perf_counter()
    kept = [len(propose_boxes(a, SelectiveSearchConfig())) for a in arrays]
    seconds = time.perf_counter() - start
    return {"images": len(arrays), "seconds": seconds, "images_per_second": len(arrays) / seconds,
            "mean_proposals_kept": float(np.mean(kept)), "image_shape": list(arrays[0].shape)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--data", type=Path, default=None, help="existing set: DIR/images + DIR/annotations.json")
    parser.add_argument("--num-images", type=int, default=64, help="images timed (with >= 2 usable boxes)")
    parser.add_argument("--image-size", type=int, default=256, help="side of the embedded images built for timing")
    parser.add_argument("--view-size", type=int, default=224, help="side of every view")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions")
    parser.add_argument("--proposal-images", type=int, default=8, help="images timed with selective-search proposals")
    parser.add_argument("--synthetic-images", type=int, default=1000,
                        help="also time building an embedded set of this many scenes (0: skip)")
    parser.add_argument("--out", type=Path, default=Path("outputs/bench_views.json"), help="report (JSON file)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    report: Dict[str, object] = {"python": platform.python_version(), "torch": torch.__version__,
                                 "machine": platform.machine(), "view_size": args.view_size}
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = Path(tmp) / "synthetic"
            config = SyntheticConfig(num_images=4 * args.num_images, image_size=args.image_size, seed=0)
            report["synthetic"] = build_synthetic_dataset(data, config, progress=False)
        records = usable_records(read_coco(data / "annotations.json", data / "images").records, args.num_images)
        report["images"] = len(records)
        report["views"] = bench_views(records, args.repeats, args.view_size)
        report["proposals"] = bench_proposals(records, args.proposal_images)
        if args.synthetic_images > 0:
            config = SyntheticConfig(num_images=args.synthetic_images, image_size=args.image_size, seed=1)
            timing = build_synthetic_dataset(Path(tmp) / "timing", config, progress=False)
            report["synthetic_generation"] = {"num_images": args.synthetic_images, "image_size": args.image_size,
                                              "seconds": timing["seconds"]}

    for mode in ("with_decode", "transform_only"):
        r = report["views"][mode]
        print(f"views {mode:15s}: HCL {r['hcl']['median_ms']:.2f} ms  MoCo-v2 {r['moco_v2']['median_ms']:.2f} ms"
              f"  ratio {r['ratio_median']:.2f} (target <= {TARGET_RATIO}: {'met' if r['meets_target'] else 'NOT met'})")
    p = report["proposals"]
    print(f"proposals: {p['images_per_second']:.2f} images/s (one process, {p['image_shape'][1]}x{p['image_shape'][0]} px,"
          f" {p['mean_proposals_kept']:.1f} kept per image)")
    if "synthetic_generation" in report:
        g = report["synthetic_generation"]
        print(f"synthetic set: {g['num_images']} scenes of {g['image_size']} px in {g['seconds']:.1f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
