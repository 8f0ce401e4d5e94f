"""Box utilities for scene/object crops, on ``torchvision.ops`` and ``tv_tensors.BoundingBoxes``.

All boxes are float tensors of shape ``(N, 4)``. Pixel boxes are ``xyxy`` with the COCO / PIL
convention that ``x2``/``y2`` are exclusive edges (a box ``[0, 0, W, H]`` is the whole image), so a box's
width is ``x2 - x1``. Normalised boxes are the same in units of the image width/height (OpenImages'
``XMin, XMax, YMin, YMax`` are stored this way).

Rules taken from the official HCL code (github shlokk/HCL,
``openimages_dataset_hierarchy_diff_crop_gtbbox.py``):

* ``filter_by_min_area``: boxes with area < 56 * 56 px are dropped (``get_all_gt_bbox``).
* ``union_box``: a scene is the smallest box holding a set of boxes (``merge_bbox``).
* ``expand_box_randomly``: an object box smaller than 256 * 256 px is grown by a random amount on each
  side, at most ``256 - width`` horizontally and ``256 - height`` vertically, inside the image
  (``jitter_and_resize``). The official code uses the horizontal window for the bottom edge too
  (``height_max = min(height, bbox[3] + width_window)``); here each axis uses its own window.

Cropping: :func:`box_to_pixel_window` is the one rule that turns a float box into the integer pixel
window every framework crops (the Lightly/torchvision views, the MMSelfSup transforms, the analysis
crops), so the same box gives the same pixels everywhere.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple, Union

import torch
from torch import Tensor
from torchvision import tv_tensors
from torchvision.ops import box_area, box_convert, box_iou, clip_boxes_to_image

__all__ = [
    "as_boxes",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
    "normalize_boxes",
    "denormalize_boxes",
    "clip_boxes",
    "degenerate_mask",
    "filter_by_min_area",
    "union_box",
    "box_contains",
    "expand_box_randomly",
    "to_bounding_boxes",
    "box_to_pixel_window",
    "PIXEL_WINDOW_TOLERANCE",
    "box_area",
    "box_iou",
]


def as_boxes(boxes: object, name: str = "boxes") -> Tensor:
    """Return ``boxes`` as a float32 ``(N, 4)`` tensor; raise ``ValueError`` naming ``name`` otherwise.

    Accepts tensors, numpy arrays and nested sequences; an empty input gives a ``(0, 4)`` tensor.
    """
    tensor = torch.as_tensor(boxes, dtype=torch.float32)
    if tensor.numel() == 0:
        return tensor.reshape(0, 4)
    if tensor.dim() == 1 and tensor.shape[0] == 4:
        tensor = tensor[None]
    if tensor.dim() != 2 or tensor.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        row = int((~torch.isfinite(tensor)).any(dim=1).nonzero()[0])
        raise ValueError(f"{name} has a non-finite coordinate at index {row}: {tensor[row].tolist()}")
    return tensor


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """COCO ``[x, y, w, h]`` to ``[x1, y1, x2, y2]`` (``torchvision.ops.box_convert``)."""
    return box_convert(as_boxes(boxes), in_fmt="xywh", out_fmt="xyxy")


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``[x1, y1, x2, y2]`` to COCO ``[x, y, w, h]`` (``torchvision.ops.box_convert``)."""
    return box_convert(as_boxes(boxes), in_fmt="xyxy", out_fmt="xywh")


def normalize_boxes(boxes: Tensor, image_size: Tuple[int, int]) -> Tensor:
    """Pixel ``xyxy`` boxes to fractions of the image; ``image_size`` is ``(height, width)``."""
    height, width = image_size
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return as_boxes(boxes) / scale


def denormalize_boxes(boxes: Tensor, image_size: Tuple[int, int]) -> Tensor:
    """Normalised ``xyxy`` boxes to pixels; ``image_size`` is ``(height, width)``."""
    height, width = image_size
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    return as_boxes(boxes) * scale


def clip_boxes(boxes: Tensor, image_size: Tuple[int, int]) -> Tuple[Tensor, int]:
    """Clip pixel ``xyxy`` boxes to the image and count how many changed.

    ``image_size`` is ``(height, width)``. Uses ``torchvision.ops.clip_boxes_to_image``.

    Returns:
        ``(clipped_boxes, number_of_boxes_that_were_outside)``.
    """
    boxes = as_boxes(boxes)
    clipped = clip_boxes_to_image(boxes, image_size)
    changed = int((clipped != boxes).any(dim=1).sum())
    return clipped, changed


def degenerate_mask(boxes: Tensor) -> Tensor:
    """Boolean ``(N,)`` mask of boxes with zero or negative width or height (to be dropped)."""
    boxes = as_boxes(boxes)
    return (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])


def filter_by_min_area(boxes: Tensor, min_area: float) -> Tensor:
    """Indices of boxes whose area is at least ``min_area`` px^2 (official HCL: 56 * 56)."""
    boxes = as_boxes(boxes)
    if boxes.shape[0] == 0:
        return torch.zeros(0, dtype=torch.long)
    keep = (box_area(boxes) >= min_area) & ~degenerate_mask(boxes)
    return keep.nonzero().flatten()


def union_box(boxes: Tensor) -> Tensor:
    """Smallest ``xyxy`` box that contains all ``boxes`` (official HCL ``merge_bbox``)."""
    boxes = as_boxes(boxes)
    if boxes.shape[0] == 0:
        raise ValueError("union_box needs at least one box, got none")
    return torch.cat([boxes[:, :2].min(dim=0).values, boxes[:, 2:].max(dim=0).values])


def box_contains(outer: Tensor, inner: Tensor) -> Tensor:
    """Whether each ``outer`` box contains the matching ``inner`` box (edges may touch)."""
    outer, inner = as_boxes(outer, "outer"), as_boxes(inner, "inner")
    return (
        (outer[:, 0] <= inner[:, 0])
        & (outer[:, 1] <= inner[:, 1])
        & (outer[:, 2] >= inner[:, 2])
        & (outer[:, 3] >= inner[:, 3])
    )


def expand_box_randomly(
    box: Tensor,
    image_size: Tuple[int, int],
    target_side: float,
    generator: torch.Generator,
) -> Tensor:
    """Grow an object box towards ``target_side`` px by random amounts on each side, inside the image.

    Each edge moves outwards by an integer drawn uniformly from ``[0, window]``, where the window is
    ``max(0, target_side - width)`` horizontally and ``max(0, target_side - height)`` vertically, and
    the image border caps it (official HCL ``jitter_and_resize``, with the bottom edge using the
    vertical window rather than the horizontal one). A box already at least ``target_side`` on an
    axis is unchanged on that axis. ``image_size`` is ``(height, width)``.
    """
    box = as_boxes(box, "box")[0]
    height, width = image_size
    x1, y1, x2, y2 = box.tolist()
    window_x = max(0.0, target_side - (x2 - x1))
    window_y = max(0.0, target_side - (y2 - y1))

    def grow(limit: float) -> float:
        span = int(max(0.0, limit))
        return float(torch.randint(0, span + 1, (1,), generator=generator)) if span > 0 else 0.0

    new_x1 = x1 - grow(min(window_x, x1))
    new_x2 = x2 + grow(min(window_x, width - x2))
    new_y1 = y1 - grow(min(window_y, y1))
    new_y2 = y2 + grow(min(window_y, height - y2))
    return torch.tensor([new_x1, new_y1, new_x2, new_y2], dtype=torch.float32)


def to_bounding_boxes(boxes: Tensor, image_size: Tuple[int, int]) -> tv_tensors.BoundingBoxes:
    """Wrap pixel ``xyxy`` boxes as ``tv_tensors.BoundingBoxes`` for ``torchvision.transforms.v2``."""
    return tv_tensors.BoundingBoxes(as_boxes(boxes), format="XYXY", canvas_size=tuple(image_size))


#: Coordinates within this many pixels of an integer count as that integer in :func:`box_to_pixel_window`
#: (absorbs float error such as ``0.3 * 10 = 3.0000000000000004``, which would otherwise add a pixel).
PIXEL_WINDOW_TOLERANCE = 1e-6


def box_to_pixel_window(
    box: Union[Sequence[float], Tensor],
    width: int,
    height: int,
    tolerance: float = PIXEL_WINDOW_TOLERANCE,
) -> Tuple[int, int, int, int]:
    """The integer pixel window ``(x0, y0, x1, y1)`` (``x1``/``y1`` exclusive) that a crop of ``box`` takes.

    The rule keeps the whole box inside the crop: the start is floored and the end ceiled (a pixel
    the box covers in part is kept), then the window is clipped to the ``width`` x ``height`` image
    and made non-empty (at least one pixel per axis, inside the image). So ``[2.5, 3.2, 4.1, 5.9]``
    gives ``(2, 3, 5, 6)``; a sub-pixel or zero-size box gives the one pixel it starts in
    (``[3.2, 3.2, 3.4, 3.4]`` -> ``(3, 3, 4, 4)``); a box on or past the right/bottom border gives
    the last pixel (``[10, 10, 12, 12]`` in a 10 x 10 image -> ``(9, 9, 10, 10)``); a box reaching out
    of the image is cut at the border. Coordinates within ``tolerance`` px of an integer are taken as
    that integer before rounding (float noise does not add a pixel). Every framework crops with this
    window: ``image.crop(window)`` for PIL, ``img[y0:y1, x0:x1]`` for arrays.

    Args:
        box: pixel ``xyxy`` box, four numbers (sequence, numpy array or tensor of 4 elements).
        width: image width in pixels (>= 1).
        height: image height in pixels (>= 1).
        tolerance: see above (>= 0; 0 for the exact floor/ceil).

    Raises:
        ValueError: ``box`` does not have four finite numbers, the image size is below 1 px, or
            ``tolerance`` is negative.
    """
    values = torch.as_tensor(box, dtype=torch.float64).reshape(-1).tolist()
    if len(values) != 4:
        raise ValueError(f"box must have 4 coordinates (x1, y1, x2, y2), got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"box has a non-finite coordinate: {values}")
    width, height = int(width), int(height)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be at least 1 x 1 px, got {width} x {height}")
    if not tolerance >= 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    x1, y1, x2, y2 = values
    left = min(max(math.floor(x1 + tolerance), 0), width - 1)
    top = min(max(math.floor(y1 + tolerance), 0), height - 1)
    right = max(min(math.ceil(x2 - tolerance), width), left + 1)
    bottom = max(min(math.ceil(y2 - tolerance), height), top + 1)
    return int(left), int(top), int(right), int(bottom)
