"""Write unsupervised proposals for a set of images to a COCO-format file, with parallel workers.

The file is a COCO instances dict (``images``, ``annotations`` with ``bbox`` ``[x, y, w, h]`` and a
``score`` that falls with rank, one category ``{"id": 1, "name": "object"}``), so ``read_coco`` reads it
in place of ground truth and ``read_proposal_boxes`` attaches it to ground-truth records. ORL writes the
same information as ``{"bbox": [...]}`` lists per image (github Jiahao000/ORL, ``tools/selective_search.py``);
COCO format keeps one reader for both.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict
from multiprocessing import get_context
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from hcl_plugin.data.image_io import ImageLoadError, load_image_array
from hcl_plugin.data.proposals import SelectiveSearchConfig, propose_boxes, proposals_to_coco_annotations
from hcl_plugin.data.readers import load_coco_document

__all__ = ["IMAGE_EXTENSIONS", "list_images", "images_from_coco", "make_proposals_file"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def list_images(image_root: os.PathLike) -> List[Dict[str, object]]:
    """COCO ``images`` entries (``id`` from 1, ``file_name`` relative to ``image_root``), sorted by name."""
    root = Path(image_root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist")
    names = sorted(
        str(path.relative_to(root)) for path in root.rglob("*") if path.suffix.lower() in IMAGE_EXTENSIONS
    )
    return [{"id": i + 1, "file_name": name} for i, name in enumerate(names)]


def images_from_coco(annotation_file: os.PathLike) -> List[Dict[str, object]]:
    """The ``images`` entries of a COCO file (ids kept, so proposals line up with its annotations).

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: not a COCO dict, no ``images`` list, an entry without ``id``/``file_name``, a
            duplicate id... (``load_coco_document``; the message names the file and the entry).
    """
    dataset = load_coco_document(annotation_file, check_annotations=False)
    return [{"id": image["id"], "file_name": image["file_name"]} for image in dataset["images"]]


def _propose_one(job: Tuple[str, SelectiveSearchConfig]) -> Tuple[Optional[Tuple[int, int]], object]:
    path, config = job
    try:
        rgb = load_image_array(path)
    except ImageLoadError as error:
        return None, str(error)
    return (rgb.shape[0], rgb.shape[1]), propose_boxes(rgb, config)


def make_proposals_file(
    images: Sequence[Dict[str, object]],
    image_root: os.PathLike,
    out_file: os.PathLike,
    config: SelectiveSearchConfig = SelectiveSearchConfig(),
    workers: int = 1,
    skip_bad_images: bool = False,
    progress: bool = True,
) -> Counter:
    """Run selective search on every image and write the COCO-format proposals file.

    Args:
        images: COCO ``images`` entries with ``id`` and ``file_name`` (``list_images``/``images_from_coco``).
        image_root: folder the file names are relative to.
        out_file: the JSON file to write.
        config: selective search and box-filter settings.
        workers: processes (1 runs in this process).
        skip_bad_images: skip unreadable images (counted) instead of raising ``OSError`` naming the file.

    Returns:
        Counts: ``images``, ``proposals``, ``bad_images_skipped``, ``images_without_proposals``.
    """
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    jobs = [(os.path.join(os.fspath(image_root), str(image["file_name"])), config) for image in images]
    stats: Counter = Counter()
    out_images: List[dict] = []
    annotations: List[dict] = []

    def consume(results: Iterable[Tuple[Optional[Tuple[int, int]], object]]) -> None:
        bar = tqdm(results, total=len(jobs), desc="proposals", unit="img", disable=not progress)
        for image, (size, boxes) in zip(images, bar):
            if size is None:
                if not skip_bad_images:
                    raise OSError(boxes)
                stats["bad_images_skipped"] += 1
                continue
            out_images.append({"id": image["id"], "file_name": image["file_name"], "height": size[0], "width": size[1]})
            annotations.extend(proposals_to_coco_annotations(boxes, image["id"], len(annotations) + 1))
            stats["images"] += 1
            stats["proposals"] += len(boxes)
            stats["images_without_proposals"] += int(len(boxes) == 0)

    if workers == 1:
        consume(map(_propose_one, jobs))
    else:
        with get_context("spawn").Pool(workers) as pool:
            consume(pool.imap(_propose_one, jobs, chunksize=1))
    document = {
        "info": {"description": "selective search proposals ('fast', ORL box filter)", "config": asdict(config)},
        "images": out_images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
    }
    Path(out_file).parent.mkdir(parents=True, exist_ok=True)
    with open(out_file, "w", encoding="utf-8") as handle:
        json.dump(document, handle, separators=(",", ":"))
    return stats
