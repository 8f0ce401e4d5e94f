"""Unsupervised object proposals: selective search ('fast' mode) on scikit-image, with ORL's box filter.

The paper's COCO setting (HCL, Ge et al. CVPR 2023) uses unsupervised proposals as ORL does (Xie et al.
NeurIPS 2021, github Jiahao000/ORL, ``tools/selective_search.py``): OpenCV's
``cv2.ximgproc.segmentation`` selective search in 'fast' mode, then ``box_filter`` keeps boxes whose
width and height are both >= ``min_size`` (96) and whose aspect ratio is <= ``max_ratio`` (3), and
takes the first ``top_n`` (100). OpenCV-contrib's ``cv2`` clashes with the ``opencv-python`` that MMCV
needs, so the same algorithm is built here on scikit-image:

Selective search (Uijlings et al., IJCV 2013, "Selective Search for Object Recognition"), 'fast' mode
as in OpenCV's ``switchToSelectiveSearchFast(base_k=150, inc_k=150, sigma=0.8)``:

1. colour spaces HSV and Lab (8-bit ranges as OpenCV's ``cvtColor``);
2. initial regions by Felzenszwalb-Huttenlocher graph segmentation
   (``skimage.segmentation.felzenszwalb``) with k = 150 and 300, sigma 0.8, min size 100;
3. greedy hierarchical grouping of neighbouring regions by the similarities
   colour (histogram intersection, 25 bins per channel), texture (histogram intersection of Gaussian
   derivatives, sigma 1, in 8 orientations, 10 bins each, per channel), size (``1 - (|a|+|b|)/|im|``)
   and fill (``1 - (|BB(a,b)| - |a| - |b|)/|im|``), with the two strategies C+T+S+F and T+S+F;
4. ranking (paper, section 3.3): in each hierarchy the region created last gets position 1, the one
   before 2, and so on; each position is multiplied by a uniform random number; all hierarchies are
   pooled, sorted ascending and duplicate boxes removed (seeded, hence reproducible).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

__all__ = ["SelectiveSearchConfig", "selective_search", "filter_proposals", "propose_boxes", "proposals_to_coco_annotations"]

_COLOUR_BINS = 25
_TEXTURE_BINS = 10
_ORIENTATIONS = 8


@dataclass(frozen=True)
class SelectiveSearchConfig:
    """Selective search 'fast' settings (OpenCV defaults) and ORL's box filter.

    Attributes:
        colour_spaces: subset of ``("hsv", "lab", "rgb")``.
        ks: Felzenszwalb ``k`` (``scale``) values (OpenCV fast: 150, 300).
        sigma: Felzenszwalb pre-smoothing (OpenCV: 0.8).
        segment_min_size: Felzenszwalb minimum region size in px (OpenCV default 100).
        strategies: similarity sets; letters c(olour), t(exture), s(ize), f(ill) (fast: "ctsf", "tsf").
        min_size: ORL ``box_filter``: width and height must both be >= this (px).
        max_ratio: ORL ``box_filter``: ``max(w/h, h/w)`` must be <= this.
        top_n: ORL ``box_filter``: keep this many best-ranked boxes.
        max_side: images are downscaled so the longer side is at most this before segmentation (boxes
            are mapped back); ``None`` keeps full resolution.
        seed: seed of the random ranking.
    """

    colour_spaces: Tuple[str, ...] = ("hsv", "lab")
    ks: Tuple[float, ...] = (150.0, 300.0)
    sigma: float = 0.8
    segment_min_size: int = 100
    strategies: Tuple[str, ...] = ("ctsf", "tsf")
    min_size: float = 96
    max_ratio: float = 3.0
    top_n: int = 100
    max_side: Optional[int] = None
    seed: int = 0

    def __post_init__(self) -> None:
        for space in self.colour_spaces:
            if space not in ("hsv", "lab", "rgb"):
                raise ValueError(f"colour_spaces: unknown colour space {space!r} (hsv, lab, rgb)")
        for strategy in self.strategies:
            if not strategy or set(strategy) - set("ctsf"):
                raise ValueError(f"strategies: {strategy!r} must be a non-empty combination of c, t, s, f")
        if self.max_ratio < 1 or self.top_n < 1 or self.min_size < 0:
            raise ValueError(f"need max_ratio >= 1, top_n >= 1, min_size >= 0; got {self}")


def _convert(image: np.ndarray, space: str) -> np.ndarray:
    """RGB uint8 -> float64 colour space in OpenCV's 8-bit ranges (H 0-180, others 0-255)."""
    from skimage import color

    if space == "rgb":
        return image.astype(np.float64)
    if space == "hsv":
        hsv = color.rgb2hsv(image)
        return hsv * np.array([180.0, 255.0, 255.0])
    lab = color.rgb2lab(image)
    return lab * np.array([255.0 / 100.0, 1.0, 1.0]) + np.array([0.0, 128.0, 128.0])


def _texture_codes(converted: np.ndarray) -> np.ndarray:
    """Per pixel, the texture-histogram bin of each (channel, orientation): int array (H*W, 3*8)."""
    from skimage.filters import gaussian, sobel_h, sobel_v

    codes = []
    for channel in range(converted.shape[2]):
        smooth = gaussian(converted[..., channel], sigma=1.0, preserve_range=True)
        gy, gx = sobel_h(smooth), sobel_v(smooth)
        for k in range(_ORIENTATIONS // 2):
            angle = np.pi * k / (_ORIENTATIONS // 2)
            response = np.cos(angle) * gx + np.sin(angle) * gy
            for part in (np.maximum(response, 0), np.maximum(-response, 0)):
                top = part.max()
                scaled = part / top if top > 0 else part
                codes.append(np.minimum((scaled * _TEXTURE_BINS).astype(np.int64), _TEXTURE_BINS - 1).ravel())
    offsets = np.arange(len(codes), dtype=np.int64) * _TEXTURE_BINS
    return np.stack(codes, axis=1) + offsets


def _colour_codes(converted: np.ndarray, space: str) -> np.ndarray:
    top = np.array([180.0, 255.0, 255.0]) if space == "hsv" else np.array([255.0, 255.0, 255.0])
    scaled = np.clip(converted / top, 0.0, 1.0 - 1e-9)
    bins = (scaled * _COLOUR_BINS).astype(np.int64).reshape(-1, 3)
    return bins + np.arange(3, dtype=np.int64) * _COLOUR_BINS


def _histograms(labels: np.ndarray, codes: np.ndarray, n_regions: int, n_bins: int) -> np.ndarray:
    """L1-normalised histogram per region (``codes``: (pixels, features) bin indices)."""
    flat = (labels.ravel()[:, None] * n_bins + codes).ravel()
    hist = np.bincount(flat, minlength=n_regions * n_bins).reshape(n_regions, n_bins).astype(np.float64)
    return hist / hist.sum(axis=1, keepdims=True)


def _neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    pairs = [
        np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
        np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], 1),
    ]
    pairs = np.concatenate(pairs)
    pairs = np.sort(pairs[pairs[:, 0] != pairs[:, 1]], axis=1)
    n_regions = int(labels.max()) + 1
    codes = np.unique(pairs[:, 0] * n_regions + pairs[:, 1])
    return np.stack([codes // n_regions, codes % n_regions], axis=1)


def _region_boxes(labels: np.ndarray, n_regions: int) -> np.ndarray:
    from scipy.ndimage import find_objects

    boxes = np.zeros((n_regions, 4), dtype=np.float64)
    for region, slices in enumerate(find_objects(labels + 1, max_label=n_regions)):
        rows, cols = slices
        boxes[region] = (cols.start, rows.start, cols.stop, rows.stop)
    return boxes


@dataclass
class _Segmentation:
    """Initial regions of one Felzenszwalb segmentation: sizes, boxes, histograms, neighbour pairs."""

    image_area: float
    sizes: np.ndarray
    boxes: np.ndarray
    colour_hist: np.ndarray
    texture_hist: np.ndarray
    pairs: np.ndarray


def _describe(labels: np.ndarray, colour_codes: np.ndarray, texture_codes: np.ndarray) -> _Segmentation:
    n_regions = int(labels.max()) + 1
    return _Segmentation(
        image_area=float(labels.size),
        sizes=np.bincount(labels.ravel(), minlength=n_regions).astype(np.float64),
        boxes=_region_boxes(labels, n_regions),
        colour_hist=_histograms(labels, colour_codes, n_regions, 3 * _COLOUR_BINS),
        texture_hist=_histograms(labels, texture_codes, n_regions, texture_codes.shape[1] * _TEXTURE_BINS),
        pairs=_neighbour_pairs(labels),
    )


def _group(segmentation: _Segmentation, strategy: str) -> List[np.ndarray]:
    """Greedy hierarchical grouping; returns region boxes in creation order (initial regions first)."""
    n_regions = segmentation.sizes.shape[0]
    image_area = segmentation.image_area
    sizes = list(segmentation.sizes)
    boxes = list(segmentation.boxes)
    colour_hist, texture_hist = segmentation.colour_hist, segmentation.texture_hist
    colour = list(colour_hist)
    texture = list(texture_hist)
    use_c, use_t, use_s, use_f = ("c" in strategy), ("t" in strategy), ("s" in strategy), ("f" in strategy)

    def similarity(a: int, b: int) -> float:
        value = 0.0
        if use_c:
            value += float(np.minimum(colour[a], colour[b]).sum())
        if use_t:
            value += float(np.minimum(texture[a], texture[b]).sum())
        if use_s:
            value += 1.0 - (sizes[a] + sizes[b]) / image_area
        if use_f:
            ba, bb = boxes[a], boxes[b]
            union = (max(ba[2], bb[2]) - min(ba[0], bb[0])) * (max(ba[3], bb[3]) - min(ba[1], bb[1]))
            value += 1.0 - (union - sizes[a] - sizes[b]) / image_area
        return value

    neighbours: Dict[int, set] = {r: set() for r in range(n_regions)}
    heap: List[Tuple[float, int, int]] = []
    for a, b in segmentation.pairs.tolist():
        neighbours[a].add(b)
        neighbours[b].add(a)
        heap.append((-similarity(a, b), a, b))
    heapq.heapify(heap)
    alive = [True] * n_regions
    while heap:
        _, a, b = heapq.heappop(heap)
        if not (alive[a] and alive[b]):
            continue
        new = len(sizes)
        total = sizes[a] + sizes[b]
        sizes.append(total)
        boxes.append(np.array([min(boxes[a][0], boxes[b][0]), min(boxes[a][1], boxes[b][1]),
                               max(boxes[a][2], boxes[b][2]), max(boxes[a][3], boxes[b][3])]))
        colour.append((sizes[a] * colour[a] + sizes[b] * colour[b]) / total)
        texture.append((sizes[a] * texture[a] + sizes[b] * texture[b]) / total)
        alive[a] = alive[b] = False
        alive.append(True)
        around = (neighbours.pop(a) | neighbours.pop(b)) - {a, b}
        neighbours[new] = around
        for other in around:
            neighbours[other].discard(a)
            neighbours[other].discard(b)
            neighbours[other].add(new)
            heapq.heappush(heap, (-similarity(new, other), other, new))
    return boxes


def selective_search(image: np.ndarray, config: SelectiveSearchConfig = SelectiveSearchConfig()) -> np.ndarray:
    """All selective-search boxes of an RGB ``uint8`` image ``(H, W, 3)``, best-ranked first.

    Returns a float64 array ``(M, 4)`` of pixel ``xyxy`` boxes (``x2``, ``y2`` exclusive), unfiltered.
    """
    from skimage.segmentation import felzenszwalb

    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {image.shape}")
    image = np.ascontiguousarray(image[..., :3])
    scale = 1.0
    if config.max_side is not None and max(image.shape[:2]) > config.max_side:
        from PIL import Image

        scale = max(image.shape[:2]) / config.max_side
        size = (max(1, round(image.shape[1] / scale)), max(1, round(image.shape[0] / scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    rng = np.random.default_rng(config.seed)
    ranked: List[Tuple[float, Tuple[float, ...]]] = []
    for space in config.colour_spaces:
        converted = _convert(image, space)
        colour_codes = _colour_codes(converted, space)
        texture_codes = _texture_codes(converted)
        for k in config.ks:
            labels = felzenszwalb(converted, scale=k, sigma=config.sigma, min_size=config.segment_min_size)
            labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int64)  # 0..R-1
            segmentation = _describe(labels, colour_codes, texture_codes)
            for strategy in config.strategies:
                boxes = _group(segmentation, strategy)
                positions = np.arange(len(boxes), 0, -1, dtype=np.float64)  # last created -> 1
                values = positions * rng.random(len(boxes))
                ranked.extend(zip(values.tolist(), (tuple(b) for b in boxes)))
    ranked.sort(key=lambda item: item[0])
    seen = set()
    result = []
    for _, box in ranked:
        if box not in seen:
            seen.add(box)
            result.append(box)
    boxes = np.asarray(result, dtype=np.float64).reshape(-1, 4)
    return boxes * scale


def filter_proposals(boxes: np.ndarray, min_size: float = 96, max_ratio: float = 3.0, top_n: int = 100) -> np.ndarray:
    """ORL ``box_filter``: drop boxes with width or height < ``min_size`` or aspect ratio > ``max_ratio``,
    keep the first ``top_n`` (boxes must be ranked best first)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    keep = (width >= min_size) & (height >= min_size)
    with np.errstate(divide="ignore", invalid="ignore"):
        keep &= (width / height <= max_ratio) & (height / width <= max_ratio)
    return boxes[keep][:top_n]


def propose_boxes(image: np.ndarray, config: SelectiveSearchConfig = SelectiveSearchConfig()) -> np.ndarray:
    """Selective search followed by ORL's filter: at most ``config.top_n`` pixel ``xyxy`` boxes."""
    return filter_proposals(selective_search(image, config), config.min_size, config.max_ratio, config.top_n)


def proposals_to_coco_annotations(
    boxes: np.ndarray, image_id: int, first_annotation_id: int
) -> List[dict]:
    """COCO annotation dicts (category 1, ``score`` decreasing with rank) for one image's proposals."""
    annotations = []
    count = len(boxes)
    for rank, (x1, y1, x2, y2) in enumerate(np.asarray(boxes).tolist()):
        annotations.append(
            {
                "id": first_annotation_id + rank,
                "image_id": image_id,
                "category_id": 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
                "score": 1.0 - rank / max(count, 1),
            }
        )
    return annotations




