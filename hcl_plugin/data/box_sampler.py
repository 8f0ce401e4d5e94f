"""``SceneObjectSampler``: draw an object box and a scene box that contains it, from an image's boxes.

The rules follow the official HCL code (github shlokk/HCL,
``openimages_dataset_hierarchy_diff_crop_gtbbox.py``, ``OpenImages.__getitem__``), each one a named
parameter here:

* boxes with area < ``min_box_area`` (official: 56 * 56 px) are dropped (``get_all_gt_bbox``);
* an image needs at least ``min_boxes`` (official: 2) usable boxes; the official loop draws another
  image until one has enough (``while n_box < 2``) — ``too_few_boxes`` chooses what happens here;
* the object ("parent" in the official code) is one box drawn uniformly;
* the scene ("child") is the union of ``k`` distinct random boxes plus the object, with
  ``k = randint(2, max(min(n, 6), 3))`` (upper bound exclusive), i.e. ``k`` uniform in
  ``[scene_boxes[0], min(scene_boxes[1], max(n - 1, scene_boxes[0]))]`` with ``scene_boxes = (2, 5)``;
* an object smaller than ``expand_to ** 2`` px in area (official: 256 * 256) is grown at random
  towards ``expand_to`` px per side for the two Euclidean views (``jitter_and_resize``); the
  hyperbolic object view uses the raw box.

Boxes are clipped to the image first and degenerate boxes are dropped; every such event and every
policy decision is counted in ``SceneObjectSampler.stats``, never silent; the first image that had too
few usable boxes is described in ``SceneObjectSampler.first_fallback`` (:func:`describe_boxes`: boxes
in ``[x, y, w, h]``, outside the image or missing show up there).

This samples *boxes* inside one image; UHML's *batch* sampler is
:class:`hcl_plugin.uhml.batch_sampler.BalancedBatchSampler`.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import Optional, Tuple, Union

import torch
from torch import Tensor

from hcl_plugin.data.boxes import (
    as_boxes,
    clip_boxes,
    degenerate_mask,
    expand_box_randomly,
    filter_by_min_area,
    union_box,
)

__all__ = ["TooFewBoxesPolicy", "TooFewBoxesError", "CropSample", "SceneObjectSampler", "describe_boxes"]


def describe_boxes(image_size: Tuple[int, int], boxes: object, min_box_area: float) -> str:
    """Why ``boxes`` of an image of ``image_size = (height, width)`` are (un)usable, in words: how many are
    empty after clipping (``x2 <= x1`` or ``y2 <= y1``: ``[x, y, w, h]`` boxes?), extend beyond the
    image, or are below ``min_box_area``; the first few boxes are quoted."""
    height, width = image_size
    raw = as_boxes(boxes)
    if raw.shape[0] == 0:
        return f"{width}x{height} image without boxes"
    clipped, _ = clip_boxes(raw, image_size)
    degenerate = degenerate_mask(clipped)
    outside = ((raw[:, 0] < 0) | (raw[:, 1] < 0) | (raw[:, 2] > width) | (raw[:, 3] > height))
    inverted = (raw[:, 2] <= raw[:, 0]) | (raw[:, 3] <= raw[:, 1])
    areas = (clipped[:, 2] - clipped[:, 0]).clamp(min=0) * (clipped[:, 3] - clipped[:, 1]).clamp(min=0)
    small = (~degenerate) & (areas < min_box_area)
    quoted = ", ".join("[" + ", ".join(f"{float(v):g}" for v in box) + "]" for box in raw[:3])
    parts = [f"{width}x{height} image, {raw.shape[0]} box(es) ({quoted}{', ...' if raw.shape[0] > 3 else ''})"]
    if int(inverted.sum()):
        parts.append(f"{int(inverted.sum())} with x2 <= x1 or y2 <= y1 (boxes must be pixel [x1, y1, x2, y2]; "
                     "[x, y, w, h] boxes?)")
    if int(outside.sum()):
        parts.append(f"{int(outside.sum())} extending beyond the image (clipped; "
                     f"{int((degenerate & ~inverted).sum())} empty after clipping)")
    if int(small.sum()):
        parts.append(f"{int(small.sum())} below the minimum area {min_box_area:g} px^2")
    return "; ".join(parts)


class TooFewBoxesPolicy(str, Enum):
    """What to do with an image that has fewer than ``min_boxes`` usable boxes."""

    RESAMPLE = "resample"  # return None; the data set draws another image (official HCL behaviour)
    PROPOSALS = "proposals"  # use the image's unsupervised proposals; random crops if those fail too
    RANDOM_CROPS = "random_crops"  # a random object box and a random scene box around it
    RAISE = "raise"  # raise TooFewBoxesError naming the image


class TooFewBoxesError(ValueError):
    """An image has too few usable boxes and the policy is ``"raise"``."""


@dataclass(frozen=True)
class CropSample:
    """One draw: pixel ``xyxy`` boxes (float32 tensors of shape ``(4,)``).

    Attributes:
        object_box: the object box (hyperbolic object view).
        expanded_object_box: the object box grown towards ``expand_to`` px (Euclidean views).
        scene_box: union of the scene boxes; contains ``object_box``.
        scene_box_indices: indices (into the boxes given to ``sample``) that make up the scene,
            the object's index included; empty for random crops.
        object_index: index of the object box in the boxes given, ``-1`` for random crops.
        source: ``"boxes"``, ``"proposals"`` or ``"random_crops"``.
    """

    object_box: Tensor
    expanded_object_box: Tensor
    scene_box: Tensor
    scene_box_indices: Tensor
    object_index: int
    source: str


class SceneObjectSampler:
    """Draw (object box, scene box containing it) pairs from an image's boxes.

    Args:
        min_box_area: boxes with a smaller area (px^2) are unusable (official: 56 * 56).
        min_boxes: usable boxes an image needs (official: 2).
        scene_boxes: inclusive range of the number of random boxes united into the scene before the
            object is added (official: 2 to 5, limited by the number of boxes).
        expand_to: objects smaller than ``expand_to ** 2`` px are grown at random towards this side
            length for the Euclidean views (official: 256); ``0`` disables it.
        too_few_boxes: a ``TooFewBoxesPolicy`` or its value.
        random_object_area: area range (fraction of the image) of a random-crop object box.
        random_object_ratio: aspect-ratio range (w / h) of a random-crop object box.

    Example:
        >>> sampler = SceneObjectSampler()
        >>> g = torch.Generator().manual_seed(0)
        >>> s = sampler.sample((480, 640), [[0, 0, 100, 100], [200, 200, 400, 400]], g)
        >>> bool((s.scene_box[:2] <= s.object_box[:2]).all())
        True
    """

    def __init__(
        self,
        min_box_area: float = 56 * 56,
        min_boxes: int = 2,
        scene_boxes: Tuple[int, int] = (2, 5),
        expand_to: float = 256,
        too_few_boxes: Union[TooFewBoxesPolicy, str] = TooFewBoxesPolicy.RESAMPLE,
        random_object_area: Tuple[float, float] = (0.05, 0.3),
        random_object_ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        if min_box_area < 0:
            raise ValueError(f"min_box_area must be >= 0, got {min_box_area}")
        if min_boxes < 1:
            raise ValueError(f"min_boxes must be >= 1, got {min_boxes}")
        low, high = scene_boxes
        if not 1 <= low <= high:
            raise ValueError(f"scene_boxes must be (low, high) with 1 <= low <= high, got {scene_boxes}")
        if expand_to < 0:
            raise ValueError(f"expand_to must be >= 0, got {expand_to}")
        if not 0 < random_object_area[0] <= random_object_area[1] <= 1:
            raise ValueError(f"random_object_area must lie in (0, 1], got {random_object_area}")
        if not 0 < random_object_ratio[0] <= random_object_ratio[1]:
            raise ValueError(f"random_object_ratio must be 0 < low <= high, got {random_object_ratio}")
        try:
            self.too_few_boxes = TooFewBoxesPolicy(too_few_boxes)
        except ValueError:
            allowed = ", ".join(p.value for p in TooFewBoxesPolicy)
            raise ValueError(f"too_few_boxes must be one of {allowed}; got {too_few_boxes!r}") from None
        self.min_box_area = float(min_box_area)
        self.min_boxes = int(min_boxes)
        self.scene_boxes = (int(low), int(high))
        self.expand_to = float(expand_to)
        self.random_object_area = random_object_area
        self.random_object_ratio = random_object_ratio
        self.stats: Counter = Counter()
        #: The first image with too few usable boxes, described (:func:`describe_boxes`); ``None`` until then.
        self.first_fallback: Optional[str] = None

    # ------------------------------------------------------------------ public
    def usable_boxes(self, image_size: Tuple[int, int], boxes: object) -> Tuple[Tensor, Tensor]:
        """Clip ``boxes`` to the image, drop degenerate and small ones; count each event.

        Returns ``(usable_boxes, their_indices_in_boxes)``.
        """
        boxes = as_boxes(boxes)
        clipped, n_clipped = clip_boxes(boxes, image_size)
        degenerate = degenerate_mask(clipped)
        self.stats["boxes_clipped"] += n_clipped
        self.stats["boxes_degenerate"] += int(degenerate.sum())
        keep = filter_by_min_area(clipped, self.min_box_area)
        self.stats["boxes_too_small"] += int(clipped.shape[0] - keep.numel() - degenerate.sum())
        return clipped[keep], keep

    def sample(
        self,
        image_size: Tuple[int, int],
        boxes: object,
        generator: torch.Generator,
        proposals: Optional[object] = None,
        image_name: str = "<image>",
    ) -> Optional[CropSample]:
        """Draw one object box and a scene box containing it.

        Args:
            image_size: ``(height, width)`` in pixels.
            boxes: ``(N, 4)`` pixel ``xyxy`` boxes (ground truth or proposals).
            generator: the source of randomness (same seed, same draw).
            proposals: fallback boxes for the ``"proposals"`` policy.
            image_name: used in error messages.

        Returns:
            A ``CropSample``, or ``None`` when the image has too few boxes and the policy is
            ``"resample"`` (the caller draws another image).

        Raises:
            TooFewBoxesError: too few boxes and the policy is ``"raise"``, or the policy is
                ``"proposals"`` and no proposals were given.
        """
        height, width = image_size
        if height <= 0 or width <= 0:
            raise ValueError(f"{image_name}: image_size must be positive (height, width), got {image_size}")
        usable, index = self.usable_boxes(image_size, boxes)
        if usable.shape[0] >= self.min_boxes:
            self.stats["sampled_from_boxes"] += 1
            return self._from_boxes(image_size, usable, index, generator, "boxes")
        self.stats["too_few_boxes"] += 1
        if self.first_fallback is None:
            self.first_fallback = (f"{image_name}: {usable.shape[0]} usable box(es), need {self.min_boxes}; "
                                   f"{describe_boxes(image_size, boxes, self.min_box_area)}")
        policy = self.too_few_boxes
        if policy is TooFewBoxesPolicy.RESAMPLE:
            self.stats["resampled"] += 1
            return None
        if policy is TooFewBoxesPolicy.RAISE:
            raise TooFewBoxesError(
                f"{image_name}: {usable.shape[0]} usable box(es) (area >= {self.min_box_area:g} px^2), "
                f"need {self.min_boxes}"
            )
        if policy is TooFewBoxesPolicy.PROPOSALS:
            if proposals is None:
                raise TooFewBoxesError(
                    f"{image_name}: too few boxes and too_few_boxes='proposals', but no proposals were "
                    "given for this image (make them with tools/make_proposals.py)"
                )
            usable_p, index_p = self.usable_boxes(image_size, proposals)
            if usable_p.shape[0] >= self.min_boxes:
                self.stats["sampled_from_proposals"] += 1
                return self._from_boxes(image_size, usable_p, index_p, generator, "proposals")
            self.stats["proposals_too_few"] += 1
        self.stats["sampled_random_crops"] += 1
        return self._random_crops(image_size, generator)

    # ----------------------------------------------------------------- private
    def _randint(self, low: int, high_inclusive: int, generator: torch.Generator) -> int:
        return int(torch.randint(low, high_inclusive + 1, (1,), generator=generator))

    def _expand(self, box: Tensor, image_size: Tuple[int, int], generator: torch.Generator) -> Tensor:
        area = float((box[2] - box[0]) * (box[3] - box[1]))
        if self.expand_to > 0 and area < self.expand_to**2:
            return expand_box_randomly(box, image_size, self.expand_to, generator)
        return box.clone()

    def _from_boxes(
        self,
        image_size: Tuple[int, int],
        usable: Tensor,
        index: Tensor,
        generator: torch.Generator,
        source: str,
    ) -> CropSample:
        n = usable.shape[0]
        object_position = self._randint(0, n - 1, generator)
        low, high = self.scene_boxes
        upper = max(min(high, n - 1), min(low, n))
        count = self._randint(min(low, n), upper, generator)
        chosen = torch.randperm(n, generator=generator)[:count]
        if not bool((chosen == object_position).any()):
            chosen = torch.cat([chosen, torch.tensor([object_position])])
        object_box = usable[object_position]
        return CropSample(
            object_box=object_box,
            expanded_object_box=self._expand(object_box, image_size, generator),
            scene_box=union_box(usable[chosen]),
            scene_box_indices=index[chosen],
            object_index=int(index[object_position]),
            source=source,
        )

    def _random_crops(self, image_size: Tuple[int, int], generator: torch.Generator) -> CropSample:
        height, width = image_size

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=generator))

        area = uniform(*self.random_object_area) * height * width
        ratio = math.exp(uniform(math.log(self.random_object_ratio[0]), math.log(self.random_object_ratio[1])))
        box_w = max(1, min(width, int(round(math.sqrt(area * ratio)))))
        box_h = max(1, min(height, int(round(math.sqrt(area / ratio)))))
        x1 = self._randint(0, width - box_w, generator)
        y1 = self._randint(0, height - box_h, generator)
        object_box = torch.tensor([x1, y1, x1 + box_w, y1 + box_h], dtype=torch.float32)
        scene_box = torch.tensor(
            [
                self._randint(0, x1, generator),
                self._randint(0, y1, generator),
                self._randint(x1 + box_w, width, generator),
                self._randint(y1 + box_h, height, generator),
            ],
            dtype=torch.float32,
        )
        return CropSample(
            object_box=object_box,
            expanded_object_box=self._expand(object_box, image_size, generator),
            scene_box=scene_box,
            scene_box_indices=torch.zeros(0, dtype=torch.long),
            object_index=-1,
            source="random_crops",
        )
