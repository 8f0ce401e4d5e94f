"""ORL stage 2's input: the images and their ranked proposals, from a COCO-format proposals file.

``tools/make_proposals.py`` writes selective-search proposals in COCO format (``images`` with ``width``
/ ``height``, ``annotations`` with ``bbox`` ``[x, y, w, h]`` and a ``score`` falling with rank); a
ground-truth COCO file works too. Proposals are ranked by ``score`` (highest first; file order among
equal scores).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from hcl_plugin.data.image_io import read_image_size
from hcl_plugin.data.readers import AnnotationError, load_coco_document

__all__ = ["Stage2Inputs", "read_stage2_inputs"]


@dataclass
class Stage2Inputs:
    """Image file names (relative to the image root), their ``(N, 2)`` width / height, and per image the
    ranked pixel ``x, y, w, h`` proposals."""

    file_names: List[str]
    image_sizes: np.ndarray
    proposals: List[np.ndarray]


def read_stage2_inputs(proposals_file: os.PathLike, image_root: os.PathLike) -> Stage2Inputs:
    """Read a COCO-format proposals file for :func:`hcl_plugin.orl.discovery.discover_correspondences`.

    Images without ``width`` / ``height`` are measured from their file.

    Raises:
        FileNotFoundError: the proposals file or an image file (without recorded size) is missing.
        AnnotationError: a malformed file (:func:`hcl_plugin.data.readers.load_coco_document`), or a
            proposal reaching outside its image (the message names the file, the image and the annotation id).
    """
    source = os.fspath(proposals_file)
    document = load_coco_document(source, require_annotations=True, check_categories=False)
    grouped: Dict[object, list] = {image["id"]: [] for image in document["images"]}
    for annotation in document["annotations"]:
        grouped[annotation["image_id"]].append(annotation)
    names, sizes, proposals = [], [], []
    for image in document["images"]:
        name = str(image["file_name"])
        if image.get("width") is None or image.get("height") is None:
            width, height = read_image_size(os.path.join(os.fspath(image_root), name))
        else:
            width, height = int(image["width"]), int(image["height"])
        ranked = sorted(grouped[image["id"]], key=lambda a: -float(a.get("score", 0.0)))  # stable
        boxes = np.array([a["bbox"] for a in ranked], dtype=np.float64).reshape(-1, 4)
        outside = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 0] + boxes[:, 2] > width + 1e-6) \
            | (boxes[:, 1] + boxes[:, 3] > height + 1e-6)
        if outside.any():
            bad = ranked[int(np.flatnonzero(outside)[0])]
            raise AnnotationError(f"{source}: annotation {bad['id']!r} of image {image['id']!r} ({name}), bbox "
                                  f"{bad['bbox']}, reaches outside the {width}x{height} px image")
        names.append(name)
        sizes.append((width, height))
        proposals.append(boxes.astype(np.float32))
    return Stage2Inputs(file_names=names, image_sizes=np.array(sizes, dtype=np.int32).reshape(-1, 2),
                        proposals=proposals)
