"""Readers that turn box annotations into ``SceneRecord`` lists: COCO JSON, OpenImages box CSV, proposals.

* ``read_coco``: any COCO-format instances file through ``pycocotools`` — COCO train2017
  (``annotations/instances_train2017.json`` + ``train2017/``), the embedded synthetic set, or a
  proposals file written by ``tools/make_proposals.py`` (same format, one category ``"object"``).
* ``read_openimages``: an OpenImages box CSV (``oidv6-train-annotations-bbox.csv`` and friends) with
  the columns ``ImageID, LabelName, XMin, XMax, YMin, YMax`` (normalised coordinates); images are
  ``<image_root>/<ImageID>.jpg`` as in the official OpenImages layout and the official HCL loader
  (github shlokk/HCL, ``get_all_gt_bbox`` reads columns 4-7 = XMin, XMax, YMin, YMax).
* ``read_proposal_boxes``: a proposals file as ``{file_name: boxes}`` to attach to ground-truth
  records for the sampler's ``"proposals"`` policy.

Boxes are stored normalised (``xyxy`` in fractions of the image), because OpenImages does not record
image sizes; ``SceneRecord.pixel_boxes`` converts them once the image is decoded. Boxes outside the
image are clipped and counted, degenerate boxes dropped and counted, in ``ReadStats``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from hcl_plugin.data.boxes import as_boxes, degenerate_mask, denormalize_boxes, xywh_to_xyxy

__all__ = [
    "SceneRecord",
    "ReadResult",
    "AnnotationError",
    "read_coco",
    "read_openimages",
    "read_proposal_boxes",
    "OPENIMAGES_COLUMNS",
]

PathLike = Union[str, "os.PathLike[str]"]
OPENIMAGES_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")


class AnnotationError(ValueError):
    """An annotation file is malformed; the message names the file and the offending key/id/line."""


@dataclass
class SceneRecord:
    """One image and its boxes.

    Attributes:
        image_id: COCO image id, or the OpenImages ``ImageID``.
        path: the image file.
        boxes: normalised ``xyxy`` float32 tensor ``(N, 4)``, clipped to ``[0, 1]``.
        labels: int64 tensor ``(N,)`` (COCO ``category_id``; index into the label names for OpenImages).
        width: image width from the annotation file, ``None`` if unknown (OpenImages).
        height: image height from the annotation file, ``None`` if unknown.
        extra: per-image fields of the file other than the standard ones (e.g. ``num_objects``).
    """

    image_id: Union[int, str]
    path: str
    boxes: Tensor
    labels: Tensor
    width: Optional[int] = None
    height: Optional[int] = None
    extra: Dict[str, object] = field(default_factory=dict)

    def pixel_boxes(self, height: int, width: int) -> Tensor:
        """Boxes in pixel ``xyxy`` for a decoded image of ``height`` x ``width``."""
        return denormalize_boxes(self.boxes, (height, width))


@dataclass
class ReadResult:
    """Records plus counts of everything the reader changed or skipped.

    ``stats`` keys: ``images``, ``boxes``, ``boxes_clipped``, ``boxes_degenerate``, ``crowd_skipped``,
    ``group_skipped``, ``images_without_boxes``, ``images_dropped_without_boxes``,
    ``images_missing_skipped``. ``label_names`` maps label index to name.
    """

    records: List[SceneRecord]
    stats: Counter
    label_names: Dict[int, str]

    def __len__(self) -> int:
        return len(self.records)


def _normalise_and_clean(
    boxes_px: Tensor, width: float, height: float, stats: Counter
) -> Tuple[Tensor, Tensor]:
    """Normalise pixel boxes, clip to [0, 1], drop degenerate ones; returns (boxes, kept mask)."""
    boxes = boxes_px / torch.tensor([width, height, width, height], dtype=torch.float32)
    return _clip_normalised(boxes, stats)


def _clip_normalised(boxes: Tensor, stats: Counter) -> Tuple[Tensor, Tensor]:
    clipped = boxes.clamp(0.0, 1.0)
    stats["boxes_clipped"] += int((clipped != boxes).any(dim=1).sum())
    keep = ~degenerate_mask(clipped)
    stats["boxes_degenerate"] += int((~keep).sum())
    return clipped[keep], keep


def _check_image_file(path: str, on_missing_image: str, stats: Counter, source: str) -> bool:
    if os.path.isfile(path):
        return True
    if on_missing_image == "skip":
        stats["images_missing_skipped"] += 1
        return False
    raise FileNotFoundError(f"image file {path!r} (listed in {source}) does not exist")


def _check_choice(value: str, name: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def read_coco(
    annotation_file: PathLike,
    image_root: PathLike,
    include_crowd: bool = False,
    keep_images_without_boxes: bool = True,
    on_missing_image: str = "raise",
) -> ReadResult:
    """Read a COCO-format file (instances JSON or a proposals file) with ``pycocotools``.

    Args:
        annotation_file: e.g. ``coco/annotations/instances_train2017.json``.
        image_root: folder that ``images[i].file_name`` is relative to, e.g. ``coco/train2017``.
        include_crowd: keep ``iscrowd = 1`` boxes (default: skip them, counted).
        keep_images_without_boxes: keep images that end up with no box (the sampler's
            ``too_few_boxes`` policy then decides); otherwise drop them (counted).
        on_missing_image: ``"raise"`` (``FileNotFoundError`` naming the file) or ``"skip"`` (counted).

    Raises:
        AnnotationError: a missing key, an annotation whose ``image_id`` is not in ``images``, or a
            malformed ``bbox`` — the message names the file and the id.
    """
    from pycocotools.coco import COCO

    _check_choice(on_missing_image, "on_missing_image", ("raise", "skip"))
    annotation_file = os.fspath(annotation_file)
    image_root = os.fspath(image_root)
    try:
        with open(annotation_file, "r", encoding="utf-8") as handle:
            dataset = json.load(handle)
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{annotation_file}: not valid JSON ({error})") from None
    if not isinstance(dataset, dict):
        raise AnnotationError(
            f"{annotation_file}: expected a COCO dict with 'images', got a {type(dataset).__name__} "
            "(a detection-results list needs the matching instances file)"
        )
    if "images" not in dataset:
        raise AnnotationError(f"{annotation_file}: missing key 'images'")
    image_ids = set()
    for position, image in enumerate(dataset["images"]):
        for key in ("id", "file_name"):
            if key not in image:
                raise AnnotationError(f"{annotation_file}: images[{position}] has no key {key!r}")
        image_ids.add(image["id"])
    for position, ann in enumerate(dataset.get("annotations", [])):
        ann_id = ann.get("id", f"at position {position}")
        for key in ("image_id", "bbox"):
            if key not in ann:
                raise AnnotationError(f"{annotation_file}: annotation {ann_id} has no key {key!r}")
        if ann["image_id"] not in image_ids:
            raise AnnotationError(
                f"{annotation_file}: annotation {ann_id} points to image_id {ann['image_id']!r}, "
                "which is not in 'images'"
            )
        if len(ann["bbox"]) != 4:
            raise AnnotationError(f"{annotation_file}: annotation {ann_id} has bbox {ann['bbox']!r}, need 4 numbers")
    dataset.setdefault("annotations", [])
    dataset.setdefault("categories", [])

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
        coco.createIndex()

    stats: Counter = Counter()
    records: List[SceneRecord] = []
    label_names = {int(c["id"]): str(c.get("name", c["id"])) for c in dataset["categories"]}
    standard = {"id", "file_name", "width", "height", "license", "coco_url", "flickr_url", "date_captured"}
    for image_id in sorted(coco.imgs):
        image = coco.imgs[image_id]
        path = os.path.join(image_root, image["file_name"])
        if not _check_image_file(path, on_missing_image, stats, annotation_file):
            continue
        width, height = image.get("width"), image.get("height")
        anns = coco.imgToAnns.get(image_id, [])
        if not include_crowd:
            crowd = [a for a in anns if a.get("iscrowd", 0)]
            stats["crowd_skipped"] += len(crowd)
            anns = [a for a in anns if not a.get("iscrowd", 0)]
        if anns and (not width or not height):
            raise AnnotationError(f"{annotation_file}: image {image_id} has boxes but no width/height")
        if anns:
            boxes_px = xywh_to_xyxy(as_boxes([a["bbox"] for a in anns], f"{annotation_file} image {image_id} bbox"))
            boxes, keep = _normalise_and_clean(boxes_px, float(width), float(height), stats)
            labels = torch.tensor([int(a.get("category_id", 1)) for a in anns], dtype=torch.long)[keep]
        else:
            boxes, labels = torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
        if boxes.shape[0] == 0:
            stats["images_without_boxes"] += 1
            if not keep_images_without_boxes:
                stats["images_dropped_without_boxes"] += 1
                continue
        stats["images"] += 1
        stats["boxes"] += int(boxes.shape[0])
        extra = {k: v for k, v in image.items() if k not in standard}
        records.append(SceneRecord(image_id, path, boxes, labels, width, height, extra))
    return ReadResult(records, stats, label_names)


def read_openimages(
    box_csv: PathLike,
    image_root: PathLike,
    image_extension: str = ".jpg",
    skip_group_boxes: bool = False,
    on_missing_image: str = "raise",
) -> ReadResult:
    """Read an OpenImages box CSV (``ImageID, LabelName, XMin, XMax, YMin, YMax``, normalised).

    Args:
        box_csv: e.g. ``openimages/oidv6-train-annotations-bbox.csv``.
        image_root: folder holding ``<ImageID><image_extension>``, e.g. ``openimages/train``.
        skip_group_boxes: drop rows with ``IsGroupOf = 1`` (counted); the official HCL code keeps them.
        on_missing_image: ``"raise"`` or ``"skip"`` (counted).

    Raises:
        AnnotationError: a required column is missing or a coordinate is not a number (names the line).
    """
    _check_choice(on_missing_image, "on_missing_image", ("raise", "skip"))
    box_csv = os.fspath(box_csv)
    image_root = os.fspath(image_root)
    stats: Counter = Counter()
    per_image: Dict[str, List[Tuple[List[float], str]]] = {}
    with open(box_csv, "r", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in OPENIMAGES_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise AnnotationError(f"{box_csv}: missing column(s) {', '.join(missing)}; found {reader.fieldnames}")
        for row in reader:
            if skip_group_boxes and row.get("IsGroupOf", "0") == "1":
                stats["group_skipped"] += 1
                continue
            try:
                x_min, x_max = float(row["XMin"]), float(row["XMax"])
                y_min, y_max = float(row["YMin"]), float(row["YMax"])
            except (TypeError, ValueError):
                raise AnnotationError(
                    f"{box_csv}: line {reader.line_num} (ImageID {row.get('ImageID')!r}) has a coordinate "
                    "that is not a number"
                ) from None
            per_image.setdefault(row["ImageID"], []).append(([x_min, y_min, x_max, y_max], row["LabelName"]))

    names = sorted({label for rows in per_image.values() for _, label in rows})
    label_index = {name: i for i, name in enumerate(names)}
    records: List[SceneRecord] = []
    for image_id in sorted(per_image):
        path = os.path.join(image_root, image_id + image_extension)
        if not _check_image_file(path, on_missing_image, stats, box_csv):
            continue
        rows = per_image[image_id]
        boxes, keep = _clip_normalised(as_boxes([r[0] for r in rows], f"{box_csv} ImageID {image_id}"), stats)
        labels = torch.tensor([label_index[r[1]] for r in rows], dtype=torch.long)[keep]
        if boxes.shape[0] == 0:
            stats["images_without_boxes"] += 1
        stats["images"] += 1
        stats["boxes"] += int(boxes.shape[0])
        records.append(SceneRecord(image_id, path, boxes, labels))
    return ReadResult(records, stats, dict(enumerate(names)))


def read_proposal_boxes(proposals_file: PathLike, image_root: PathLike = "") -> Dict[str, Tensor]:
    """A proposals file (COCO format) as ``{image path: normalised xyxy boxes}``, best-ranked first.

    The paths are ``os.path.join(image_root, file_name)``, matching ``SceneRecord.path`` of a reader
    given the same ``image_root``. Image files are not checked here.
    """
    proposals_file = os.fspath(proposals_file)
    with open(proposals_file, "r", encoding="utf-8") as handle:
        dataset = json.load(handle)
    for key in ("images", "annotations"):
        if key not in dataset:
            raise AnnotationError(f"{proposals_file}: missing key {key!r}")
    images = {image["id"]: image for image in dataset["images"]}
    grouped: Dict[object, List[dict]] = {image_id: [] for image_id in images}
    for ann in dataset["annotations"]:
        if ann["image_id"] not in images:
            raise AnnotationError(
                f"{proposals_file}: annotation {ann.get('id')} points to image_id {ann['image_id']!r}, "
                "which is not in 'images'"
            )
        grouped[ann["image_id"]].append(ann)
    stats: Counter = Counter()
    result_boxes: Dict[str, Tensor] = {}
    for image_id, anns in grouped.items():
        image = images[image_id]
        anns = sorted(anns, key=lambda a: -float(a.get("score", 0.0)))
        path = os.path.join(os.fspath(image_root), image["file_name"])
        if not anns:
            result_boxes[path] = torch.zeros(0, 4)
            continue
        if not image.get("width") or not image.get("height"):
            raise AnnotationError(f"{proposals_file}: image {image_id} has proposals but no width/height")
        boxes_px = xywh_to_xyxy(as_boxes([a["bbox"] for a in anns], f"{proposals_file} image {image_id} bbox"))
        result_boxes[path] = _normalise_and_clean(boxes_px, float(image["width"]), float(image["height"]), stats)[0]
    return result_boxes
