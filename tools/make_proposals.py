#!/usr/bin/env python
"""Selective-search proposals for images without boxes, written as a COCO-format file.

    python tools/make_proposals.py --image-root coco/train2017 \
        --coco coco/annotations/instances_train2017.json --out coco/proposals_train2017.json --workers 8
    python tools/make_proposals.py --image-root data/embedded/images --out data/embedded/proposals.json

Defaults follow ORL (github Jiahao000/ORL, tools/selective_search.py): 'fast' mode, boxes with both
sides >= 96 px and aspect ratio <= 3, top 100 per image. See docs/data.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Optional, Sequence

from hcl_plugin.data.proposals import SelectiveSearchConfig
from hcl_plugin.data.proposals_file import images_from_coco, list_images, make_proposals_file


from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402

def main(argv: Optional[Sequence[str]] = None) -> int:
    defaults = SelectiveSearchConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--image-root", required=True, help="folder with the images")
    parser.add_argument("--coco", default=None,
                        help="take the image list (and ids) from this COCO file instead of scanning the folder")
    parser.add_argument("--out", required=True, help="proposals JSON to write")
    parser.add_argument("--workers", type=int, default=1, help="processes running selective search")
    parser.add_argument("--min-size", type=float, default=defaults.min_size, help="smallest proposal side in px")
    parser.add_argument("--max-ratio", type=float, default=defaults.max_ratio, help="largest aspect ratio (long side / short side) of a proposal")
    parser.add_argument("--top-n", type=int, default=defaults.top_n, help="proposals kept per image")
    parser.add_argument("--max-side", type=int, default=None,
                        help="downscale images to this longer side before segmentation (speed)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the segmentation's randomness")
    parser.add_argument("--skip-bad-images", action="store_true", help="skip unreadable images (counted)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)

    config = SelectiveSearchConfig(min_size=args.min_size, max_ratio=args.max_ratio, top_n=args.top_n,
                                   max_side=args.max_side, seed=args.seed)
    images = images_from_coco(args.coco) if args.coco else list_images(args.image_root)
    start = time.perf_counter()
    try:
        stats = make_proposals_file(images, args.image_root, args.out, config, workers=args.workers,
                                    skip_bad_images=args.skip_bad_images, progress=not args.quiet)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - start
    print(json.dumps({**stats, "seconds": round(seconds, 3),
                      "images_per_second": round(stats["images"] / seconds, 3) if seconds > 0 else None}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
