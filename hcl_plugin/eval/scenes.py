"""COCO-format scene sets for the analysis: images, boxes, classes and per-object flags.

Layout of a data folder (the embedded synthetic set, ``python -m hcl_plugin.data.embedded.scenes``)::

    DIR/images/000001.jpg ...
    DIR/annotations.json            all images
    DIR/annotations_train.json      train split (optional)
    DIR/annotations_val.json        val split (optional)

``split="auto"`` takes ``annotations_val.json`` when it exists, else ``annotations.json``. Any other
COCO file (e.g. ``coco/annotations/instances_val2017.json`` with images in ``coco/val2017``) is read
with :func:`read_scene_set` directly.

Boxes come from :func:`hcl_plugin.data.read_coco` (its validation, clipping and crowd handling); the
per-object ``out_of_context`` flags are re-read from the JSON and aligned with the kept boxes.
``num_objects`` is the image's ``num_objects`` field when present (the synthetic set writes it),
otherwise the number of boxes; ``num_labels`` is the number of distinct categories in the image.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from hcl_plugin.data.boxes import degenerate_mask, xywh_to_xyxy
from hcl_plugin.data.readers import AnnotationError, read_coco

__all__ = [
    "SPLITS",
    "AnnotationsNotFoundError",
    "EvalScene",
    "SceneSet",
    "read_scene_set",
    "resolve_annotation_file",
    "load_split",
    "count_array",
]

PathLike = Union[str, "os.PathLike[str]"]
SPLITS = ("auto", "val", "train", "all")


class AnnotationsNotFoundError(FileNotFoundError):
    """A data folder has no annotation file for the requested split; the message lists the paths tried."""


@dataclass
class EvalScene:
    """One image with its objects.

    Attributes:
        image_id: COCO image id.
        path: image file.
        boxes: normalised ``xyxy`` (N, 4), float32.
        category_ids: COCO category id per box (N,), int64.
        out_of_context: per-box flag (N,) bool, or ``None`` when the file has no such field.
        num_objects: the image's ``num_objects`` field, else the number of boxes.
        extra: the image's non-standard fields (``context``, ``split``, ...).
    """

    image_id: Union[int, str]
    path: str
    boxes: Tensor
    category_ids: Tensor
    out_of_context: Optional[Tensor]
    num_objects: int
    extra: Dict[str, object] = field(default_factory=dict)

    @property
    def num_labels(self) -> int:
        """Number of distinct categories among the boxes."""
        return int(torch.unique(self.category_ids).numel())


@dataclass
class SceneSet:
    """Scenes of one annotation file.

    Attributes:
        scenes: the images (sorted by image id).
        categories: ``{category id: name}`` of the file.
        annotation_file, image_root: where they came from.
        has_out_of_context: whether per-object ``out_of_context`` flags exist.
    """

    scenes: List[EvalScene]
    categories: Dict[int, str]
    annotation_file: str
    image_root: str
    has_out_of_context: bool

    def __len__(self) -> int:
        return len(self.scenes)

    @property
    def num_objects_total(self) -> int:
        return sum(int(s.boxes.shape[0]) for s in self.scenes)


def resolve_annotation_file(data_dir: PathLike, split: str = "auto") -> str:
    """The annotation file of ``split`` in a data folder (see the module docstring).

    Raises:
        ValueError: unknown split.
        FileNotFoundError: ``data_dir`` does not exist.
        AnnotationsNotFoundError: no matching annotation file; the message names every path tried.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    data_dir = os.fspath(data_dir)
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data folder {data_dir!r} does not exist")
    names = {
        "auto": ["annotations_val.json", "annotations.json"],
        "val": ["annotations_val.json"],
        "train": ["annotations_train.json"],
        "all": ["annotations.json"],
    }[split]
    tried = [os.path.join(data_dir, name) for name in names]
    for path in tried:
        if os.path.isfile(path):
            return path
    raise AnnotationsNotFoundError(
        f"no annotations for split {split!r} in data folder {data_dir!r}: looked for "
        f"{', '.join(tried)}. Expected a COCO-format folder DIR/images + DIR/annotations[_train|_val].json "
        "(python -m hcl_plugin.data.embedded.scenes --out DIR writes one)."
    )


def _aligned_annotations(annotations: Sequence[dict], width: float, height: float, kept: Tensor,
                         source: str, image_id: object) -> List[dict]:
    """The annotations ``read_coco`` kept for one image, in its order (non-crowd, non-degenerate)."""
    anns = [a for a in annotations if not a.get("iscrowd", 0)]
    if not anns:
        return []
    boxes = xywh_to_xyxy(torch.tensor([a["bbox"] for a in anns], dtype=torch.float32))
    boxes = (boxes / torch.tensor([width, height, width, height], dtype=torch.float32)).clamp(0.0, 1.0)
    keep = ~degenerate_mask(boxes)
    out = [a for a, k in zip(anns, keep.tolist()) if k]
    if len(out) != kept.shape[0] or not torch.allclose(boxes[keep], kept):
        raise AnnotationError(f"{source}: cannot align the annotations of image {image_id!r} with the boxes read")
    return out


def read_scene_set(annotation_file: PathLike, image_root: PathLike, max_images: Optional[int] = None) -> SceneSet:
    """Read a COCO-format file into a :class:`SceneSet`.

    Args:
        annotation_file: COCO instances file.
        image_root: folder the ``file_name`` entries are relative to.
        max_images: keep the first ``max_images`` images (by image id); ``None`` keeps all.

    Raises:
        FileNotFoundError: the file or an image is missing (named).
        AnnotationError: malformed file (named, with the id), or ``out_of_context`` present on some
            annotations only.
    """
    annotation_file = os.fspath(annotation_file)
    if not os.path.isfile(annotation_file):
        raise AnnotationsNotFoundError(f"annotation file {annotation_file!r} does not exist")
    result = read_coco(annotation_file, image_root)
    with open(annotation_file, "r", encoding="utf-8") as handle:
        document = json.load(handle)
    annotations = document.get("annotations", [])
    flagged = sum("out_of_context" in a for a in annotations)
    if 0 < flagged < len(annotations):
        raise AnnotationError(
            f"{annotation_file}: {flagged} of {len(annotations)} annotations have 'out_of_context'; need all or none"
        )
    has_ooc = flagged > 0 and flagged == len(annotations)
    by_image: Dict[object, List[dict]] = {}
    for ann in annotations:
        by_image.setdefault(ann["image_id"], []).append(ann)

    records = result.records if max_images is None else result.records[: int(max_images)]
    scenes: List[EvalScene] = []
    for record in records:
        ooc = None
        if has_ooc:
            anns = _aligned_annotations(by_image.get(record.image_id, []), float(record.width or 1),
                                        float(record.height or 1), record.boxes, annotation_file, record.image_id)
            ooc = torch.tensor([bool(a["out_of_context"]) for a in anns], dtype=torch.bool)
        num_objects = record.extra.get("num_objects")
        scenes.append(
            EvalScene(
                image_id=record.image_id,
                path=record.path,
                boxes=record.boxes.float(),
                category_ids=record.labels.long(),
                out_of_context=ooc,
                num_objects=int(num_objects) if num_objects is not None else int(record.boxes.shape[0]),
                extra=dict(record.extra),
            )
        )
    return SceneSet(scenes, dict(result.label_names), annotation_file, os.fspath(image_root), has_ooc)


def load_split(data_dir: PathLike, split: str = "auto", max_images: Optional[int] = None) -> SceneSet:
    """:func:`read_scene_set` on ``resolve_annotation_file(data_dir, split)`` with images in ``DIR/images``.

    Raises:
        AnnotationsNotFoundError: no annotation file (the message names the paths tried).
        FileNotFoundError: ``DIR/images`` is missing.
    """
    annotation_file = resolve_annotation_file(data_dir, split)
    image_root = os.path.join(os.fspath(data_dir), "images")
    if not os.path.isdir(image_root):
        raise FileNotFoundError(f"image folder {image_root!r} does not exist (annotations: {annotation_file})")
    return read_scene_set(annotation_file, image_root, max_images=max_images)


def count_array(scenes: Sequence[EvalScene], what: str = "objects") -> np.ndarray:
    """Per-image ``num_objects`` (``what="objects"``) or ``num_labels`` (``what="labels"``) as int array."""
    if what == "objects":
        return np.array([s.num_objects for s in scenes], dtype=np.int64)
    if what == "labels":
        return np.array([s.num_labels for s in scenes], dtype=np.int64)
    raise ValueError(f"what must be 'objects' or 'labels', got {what!r}")
