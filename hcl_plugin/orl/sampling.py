"""ORL stage 3's boxes for one training sample, drawn from a correspondence store.

The release (github Jiahao000/ORL, ``datasets/orl.py``, ``data_sources/coco_orl_json.py``) draws, per
image ``i``:

- one of its ``topk_knn_image`` nearest images ``j`` (10: all of them), uniformly;
- an **intra-RoI pair**: one of image i's proposals ``b`` uniformly, and a jittered copy ``b'``
  (:func:`jitter_box`: centre shifted by U(-0.5, 0.5) of the side, area scaled by U(0.5, 2), aspect
  ratio exp U(log 0.5, log 2), kept inside the image and with IoU(b, b') > 0.5; up to 200 attempts,
  then ``b`` itself);
- an **inter-RoI pair**: one of the stored RoI pairs of (i, j) uniformly: a box in i and one in j.

HCL's hyperbolic pair in stage 3 (scene = the image, object = one of its proposals) uses the
intra-RoI box ``b``: it lies inside the image, so the scene contains the object.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from hcl_plugin.orl.store import CorrespondenceStore

__all__ = ["BoxJitter", "ORLBoxes", "box_iou_xywh", "jitter_box", "sample_orl_boxes"]

Box = Tuple[float, float, float, float]


@dataclass(frozen=True)
class BoxJitter:
    """The release's ``aug_bbox`` settings (stage-3 config: shift (-0.5, 0.5), scale (0.5, 2), ratio (0.5, 2),
    IoU > 0.5, 200 attempts)."""

    shift: Tuple[float, float] = (-0.5, 0.5)
    scale: Tuple[float, float] = (0.5, 2.0)
    ratio: Tuple[float, float] = (0.5, 2.0)
    min_iou: Optional[float] = 0.5
    attempts: int = 200


def box_iou_xywh(a: Box, b: Box) -> float:
    """IoU of two ``x, y, w, h`` boxes."""
    width = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = width * height
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def jitter_box(box: Box, image_size: Tuple[int, int], rng: random.Random, jitter: BoxJitter = BoxJitter()) -> Box:
    """A random box near ``box`` inside the ``(width, height)`` image, as the release's ``aug_bbox``.

    Centre :math:`c + u\\,(w, h)` with :math:`u \\sim U(\\text{shift})`, area :math:`s\\,wh` with
    :math:`s \\sim U(\\text{scale})`, aspect ratio :math:`r = \\exp U(\\log \\text{ratio})`, side lengths
    :math:`\\sqrt{s\\,wh\\,r}` and :math:`\\sqrt{s\\,wh/r}` rounded to pixels; the first draw inside the image
    with IoU above ``min_iou`` is returned, ``box`` itself after ``attempts`` failures.
    """
    width, height = image_size
    x, y, w, h = (float(v) for v in box)
    cx, cy, area = x + 0.5 * w, y + 0.5 * h, w * h
    log_ratio = (math.log(jitter.ratio[0]), math.log(jitter.ratio[1]))
    for _ in range(jitter.attempts):
        new_area = rng.uniform(*jitter.scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        new_w, new_h = int(round(math.sqrt(new_area * aspect))), int(round(math.sqrt(new_area / aspect)))
        new_cx, new_cy = cx + rng.uniform(*jitter.shift) * w, cy + rng.uniform(*jitter.shift) * h
        new_x, new_y = int(round(new_cx - 0.5 * new_w)), int(round(new_cy - 0.5 * new_h))
        if new_w < 1 or new_h < 1 or new_x < 0 or new_y < 0 or new_x + new_w > width or new_y + new_h > height:
            continue
        candidate = (float(new_x), float(new_y), float(new_w), float(new_h))
        if jitter.min_iou is None or box_iou_xywh(candidate, (x, y, w, h)) > jitter.min_iou:
            return candidate
    return (x, y, w, h)


@dataclass(frozen=True)
class ORLBoxes:
    """One stage-3 sample's images and pixel ``x, y, w, h`` boxes.

    Attributes:
        index: the image.
        neighbour: the neighbour image drawn.
        intra: a proposal of ``index``; also HCL's object box (inside the scene, the image).
        intra_jittered: :func:`jitter_box` of ``intra``.
        inter_first: the inter-RoI pair's box in ``index``.
        inter_second: its box in ``neighbour``.
    """

    index: int
    neighbour: int
    intra: Box
    intra_jittered: Box
    inter_first: Box
    inter_second: Box


def sample_orl_boxes(store: CorrespondenceStore, index: int, rng: random.Random,
                     topk_knn_image: Optional[int] = None, jitter: BoxJitter = BoxJitter()) -> ORLBoxes:
    """Draw a neighbour, an intra-RoI pair and an inter-RoI pair for image ``index`` (module docstring).

    Args:
        topk_knn_image: draw among the first this many neighbours (default: all stored).

    Raises:
        ValueError: ``topk_knn_image`` is not in ``[1, K]``.
    """
    k = store.num_neighbours
    top = k if topk_knn_image is None else int(topk_knn_image)
    if not 1 <= top <= k:
        raise ValueError(f"topk_knn_image must be in [1, {k}] (the store's neighbours per image), got {topk_knn_image}")
    j = rng.randrange(top)
    neighbour, pairs = store.neighbour_pairs(index, j)
    boxes = store.image_boxes(index)
    intra = tuple(float(v) for v in boxes[rng.randrange(len(boxes))])
    size = tuple(int(v) for v in store.image_sizes[index])
    pair = pairs[rng.randrange(len(pairs))].astype(np.float64).tolist()
    return ORLBoxes(index=index, neighbour=neighbour, intra=intra, intra_jittered=jitter_box(intra, size, rng, jitter),
                    inter_first=tuple(pair[:4]), inter_second=tuple(pair[4:]))
