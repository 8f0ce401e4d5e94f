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
image are clipped and counted, zero-size boxes dropped and counted, in ``ReadStats``.

Everything else that is malformed raises ``AnnotationError`` (a ``ValueError``) naming the file and the
offending key, id, index or CSV line, and the value (``validate_box`` is the one box check of all
readers; ``load_coco_document`` the one structural check of COCO files). A COCO image whose file
header disagrees with its ``width``/``height`` is an error too (checked from the header, no decode).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from hcl_plugin.data.boxes import degenerate_mask, denormalize_boxes, xywh_to_xyxy
from hcl_plugin.data.image_io import ImageLoadError, read_image_size

__all__ = [
    "SceneRecord",
    "ReadResult",
    "AnnotationError",
    "read_coco",
    "read_openimages",
    "read_proposal_boxes",
    "load_coco_document",
    "validate_box",
    "OPENIMAGES_COLUMNS",
]

PathLike = Union[str, "os.PathLike[str]"]
OPENIMAGES_COLUMNS = ("ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax")
_FLOAT32_MAX = 3.4028234663852886e38
_INT64_RANGE = (-(2**63), 2**63 - 1)


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


# ------------------------------------------------------------------------------------ value checks


def _finite_float(value: object) -> Optional[float]:
    """``value`` as a float if it is a JSON number (not a bool) that is finite in float32, else ``None``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        return None
    return number if math.isfinite(number) and abs(number) <= _FLOAT32_MAX else None


def _is_id(value: object) -> bool:
    """COCO ids: integers (not bools) or strings."""
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _is_int64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and _INT64_RANGE[0] <= value <= _INT64_RANGE[1]


def validate_box(values: object, box_format: str, where: str) -> List[float]:
    """Check one box and return its four coordinates as floats (the box check of every reader).

    Args:
        values: the box as read: a list/tuple of four numbers.
        box_format: ``"xywh"`` (COCO ``[x, y, width, height]``) or ``"xyxy"`` (``[x1, y1, x2, y2]``).
        where: names the box in the message, e.g. ``"ann.json: annotation 7"``.

    Zero-size boxes pass (the readers drop and count them as degenerate); boxes outside the image pass
    (clipped and counted).

    Raises:
        AnnotationError: not four numbers (a string, ``null``, a bool, a nested list...), a coordinate
            that is NaN, infinite or beyond float32, or a negative width/height (``x2 < x1`` /
            ``y2 < y1``); the message starts with ``where`` and shows the value.
    """
    if box_format not in ("xywh", "xyxy"):
        raise ValueError(f"box_format must be 'xywh' or 'xyxy', got {box_format!r}")
    if not isinstance(values, (list, tuple)) or len(values) != 4:
        raise AnnotationError(f"{where} has bbox {values!r}, need 4 numbers [{', '.join(box_format)}]")
    coords = [_finite_float(v) for v in values]
    if any(c is None for c in coords):
        raise AnnotationError(f"{where} has bbox {values!r}: every coordinate must be a finite number")
    a, b, c, d = coords
    if box_format == "xywh":
        if c < 0 or d < 0:
            raise AnnotationError(f"{where} has bbox {values!r} with a negative width or height")
        if _finite_float(a + c) is None or _finite_float(b + d) is None:
            raise AnnotationError(f"{where} has bbox {values!r}: x + width or y + height is beyond float32")
    elif c < a or d < b:
        raise AnnotationError(f"{where} has box {values!r} (x1, y1, x2, y2) with x2 < x1 or y2 < y1")
    return [a, b, c, d]


# ------------------------------------------------------------------------------------ COCO documents


def _read_json(path: str) -> object:
    try:
        with open(path, "r", encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{path}: not valid JSON ({error})") from None
    except UnicodeDecodeError as error:
        raise AnnotationError(f"{path}: not UTF-8 text ({error})") from None
    except (ValueError, RecursionError) as error:  # e.g. an integer literal over Python's digit limit
        raise AnnotationError(f"{path}: cannot parse the JSON ({type(error).__name__}: {error})") from None


def _list_of_dicts(dataset: dict, key: str, source: str) -> List[dict]:
    value = dataset[key]
    if not isinstance(value, list):
        raise AnnotationError(f"{source}: {key!r} must be a list, got {type(value).__name__}")
    for position, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise AnnotationError(f"{source}: {key}[{position}] must be a dict, got {entry!r}")
    return value


_SINGULAR = {"images": "image", "annotations": "annotation", "categories": "category"}


def _unique_id(entry: dict, section: str, position: int, seen: Dict[object, int], source: str,
               integer_only: bool = False) -> object:
    """``entry["id"]`` of ``section[position]``, checked to be present, of a valid type and not seen before."""
    if "id" not in entry:
        raise AnnotationError(f"{source}: {section}[{position}] has no key 'id'")
    entry_id = entry["id"]
    if not (_is_int64(entry_id) if integer_only else _is_id(entry_id)):
        need = "an integer" if integer_only else "an integer or a string"
        raise AnnotationError(f"{source}: {section}[{position}] has id {entry_id!r}; need {need}")
    if entry_id in seen:
        raise AnnotationError(
            f"{source}: duplicate {_SINGULAR[section]} id {entry_id!r} ({section}[{seen[entry_id]}] and "
            f"{section}[{position}]); each needs its own id"
        )
    seen[entry_id] = position
    return entry_id


def _check_images(images: List[dict], source: str) -> None:
    first_position: Dict[object, int] = {}
    for position, image in enumerate(images):
        image_id = _unique_id(image, "images", position, first_position, source)
        if "file_name" not in image:
            raise AnnotationError(f"{source}: images[{position}] has no key 'file_name'")
        if not isinstance(image["file_name"], str) or not image["file_name"]:
            raise AnnotationError(
                f"{source}: image {image_id!r} (images[{position}]) has file_name {image['file_name']!r}; "
                "need a non-empty string"
            )
        for key in ("width", "height"):
            value = image.get(key)
            if value is not None and ((_finite_float(value) or 0.0) <= 0):
                raise AnnotationError(
                    f"{source}: image {image_id!r} ({image['file_name']}) has {key} {value!r}; "
                    "need a positive number (or no key)"
                )


def _check_categories(categories: List[dict], source: str) -> Dict[int, str]:
    names: Dict[int, str] = {}
    seen: Dict[object, int] = {}
    for position, category in enumerate(categories):
        category_id = _unique_id(category, "categories", position, seen, source, integer_only=True)
        names[category_id] = str(category.get("name", category_id))
    return names


def _check_annotations(annotations: List[dict], image_ids: set, category_ids: Optional[set], source: str) -> None:
    seen: Dict[object, int] = {}
    for position, ann in enumerate(annotations):
        ann_id = _unique_id(ann, "annotations", position, seen, source)
        for key in ("image_id", "bbox"):
            if key not in ann:
                raise AnnotationError(f"{source}: annotation {ann_id!r} has no key {key!r}")
        if not _is_id(ann["image_id"]) or ann["image_id"] not in image_ids:
            raise AnnotationError(
                f"{source}: annotation {ann_id!r} points to image_id {ann['image_id']!r}, which is not in 'images'"
            )
        validate_box(ann["bbox"], "xywh", f"{source}: annotation {ann_id!r}")
        if category_ids is not None and "category_id" not in ann:
            raise AnnotationError(f"{source}: annotation {ann_id!r} has no key 'category_id'")
        if category_ids is not None and (not _is_int64(ann["category_id"]) or ann["category_id"] not in category_ids):
            raise AnnotationError(
                f"{source}: annotation {ann_id!r} has category_id {ann['category_id']!r}, which is not in "
                f"'categories' (ids: {sorted(category_ids)[:20]})"
            )
        if ann.get("iscrowd", 0) not in (0, 1):  # True/False compare equal to 1/0
            raise AnnotationError(f"{source}: annotation {ann_id!r} has iscrowd {ann['iscrowd']!r}; need 0 or 1")
        if "score" in ann and _finite_float(ann["score"]) is None:
            raise AnnotationError(f"{source}: annotation {ann_id!r} has score {ann['score']!r}; need a finite number")


def load_coco_document(
    path: PathLike,
    require_annotations: bool = False,
    check_annotations: bool = True,
    check_categories: bool = True,
) -> dict:
    """Read a COCO-format JSON file and check its structure; the one COCO check of every reader.

    Checks: a dict with a list ``images`` of dicts with a unique integer/string ``id``, a non-empty
    string ``file_name`` and, when present, positive ``width``/``height``; with ``check_annotations``,
    a list ``annotations`` (required if ``require_annotations``) of dicts with a unique ``id``, an
    ``image_id`` that is in ``images`` and a ``bbox`` that passes :func:`validate_box` (``xywh``),
    ``iscrowd`` 0/1 and a finite ``score`` if given; with ``check_categories`` also an integer
    ``category_id`` listed in ``categories`` (unique integer ids).

    Returns:
        The document, with ``annotations`` and ``categories`` defaulted to ``[]``.

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: anything else; the message names the file and the key / id / index and value.
    """
    path = os.fspath(path)
    dataset = _read_json(path)
    if not isinstance(dataset, dict):
        raise AnnotationError(
            f"{path}: expected a COCO dict with 'images', got a {type(dataset).__name__} "
            "(a detection-results list needs the matching instances file)"
        )
    required = ("images", "annotations") if require_annotations else ("images",)
    for key in required:
        if key not in dataset:
            raise AnnotationError(f"{path}: missing key {key!r}")
    images = _list_of_dicts(dataset, "images", path)
    _check_images(images, path)
    if not check_annotations:
        return dataset
    dataset.setdefault("annotations", [])
    dataset.setdefault("categories", [])
    annotations = _list_of_dicts(dataset, "annotations", path)
    category_ids = None
    if check_categories:
        category_ids = set(_check_categories(_list_of_dicts(dataset, "categories", path), path))
    _check_annotations(annotations, {image["id"] for image in images}, category_ids, path)
    return dataset


# ------------------------------------------------------------------------------------ shared steps


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


def _check_image_size(path: str, image: dict, source: str) -> None:
    """The file header's size must equal the annotation's ``width``/``height`` (when both are given).

    A file whose header cannot be read is left to the decoder (``ImageLoadError`` naming it, or
    skipped by ``on_bad_image="skip"``).
    """
    width, height = image.get("width"), image.get("height")
    if width is None or height is None:
        return
    try:
        file_width, file_height = read_image_size(path)
    except ImageLoadError:
        return
    if (file_width, file_height) != (width, height):
        raise AnnotationError(
            f"{source}: image {image['id']!r} ({image['file_name']}) is {file_width}x{file_height} px in the file "
            f"{path!r} but width x height = {width}x{height} in the annotations; its boxes would be rescaled. "
            "Is this the annotation file of these images?"
        )


def _bbox_tensor(anns: Sequence[dict]) -> Tensor:
    """The (already validated) ``bbox`` values of ``anns`` as a float32 ``(N, 4)`` tensor."""
    return torch.tensor([[float(v) for v in a["bbox"]] for a in anns], dtype=torch.float32)


def _check_choice(value: str, name: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _id_order(image_id: Union[int, str]) -> Tuple[bool, Union[int, str]]:
    """Sort key for image ids: integers first, then strings."""
    return isinstance(image_id, str), image_id


# ------------------------------------------------------------------------------------ readers


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
        AnnotationError: any structural problem found by :func:`load_coco_document` (a missing key, a
            duplicate image or annotation id, an annotation whose ``image_id`` is not in ``images`` or
            whose ``category_id`` is not in ``categories``, a malformed ``bbox``), an image with boxes
            but no width/height, or an image file whose header size differs from its
            ``width``/``height``; the message names the file and the id.
        FileNotFoundError: the annotation file, or (``on_missing_image="raise"``) an image file.
    """
    from pycocotools.coco import COCO

    _check_choice(on_missing_image, "on_missing_image", ("raise", "skip"))
    annotation_file = os.fspath(annotation_file)
    image_root = os.fspath(image_root)
    dataset = load_coco_document(annotation_file)

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
        coco.createIndex()

    stats: Counter = Counter()
    records: List[SceneRecord] = []
    label_names = {int(c["id"]): str(c.get("name", c["id"])) for c in dataset["categories"]}
    standard = {"id", "file_name", "width", "height", "license", "coco_url", "flickr_url", "date_captured"}
    for image_id in sorted(coco.imgs, key=_id_order):
        image = coco.imgs[image_id]
        path = os.path.join(image_root, image["file_name"])
        if not _check_image_file(path, on_missing_image, stats, annotation_file):
            continue
        _check_image_size(path, image, annotation_file)
        width, height = image.get("width"), image.get("height")
        anns = coco.imgToAnns.get(image_id, [])
        if not include_crowd:
            crowd = [a for a in anns if a.get("iscrowd", 0)]
            stats["crowd_skipped"] += len(crowd)
            anns = [a for a in anns if not a.get("iscrowd", 0)]
        if anns and (width is None or height is None):
            raise AnnotationError(f"{annotation_file}: image {image_id!r} has boxes but no width/height")
        if anns:
            boxes_px = xywh_to_xyxy(_bbox_tensor(anns))
            boxes, keep = _normalise_and_clean(boxes_px, float(width), float(height), stats)
            labels = torch.tensor([a["category_id"] for a in anns], dtype=torch.long)[keep]
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


def _csv_rows(box_csv: str):
    """``(line number, row dict)`` of a CSV with the OpenImages columns; malformed CSV named by line."""
    with open(box_csv, "r", encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            fieldnames = reader.fieldnames
            missing = [c for c in OPENIMAGES_COLUMNS if c not in (fieldnames or [])]
            if missing:
                raise AnnotationError(f"{box_csv}: missing column(s) {', '.join(missing)}; found {fieldnames}")
            for row in reader:
                yield reader.line_num, row
        except UnicodeDecodeError as error:
            raise AnnotationError(f"{box_csv}: not UTF-8 text after line {reader.line_num} ({error})") from None
        except csv.Error as error:
            raise AnnotationError(f"{box_csv}: line {reader.line_num + 1}: malformed CSV ({error})") from None


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
        AnnotationError: a required column is missing, a row lacks ``ImageID``/``LabelName``, a
            coordinate is not a finite number, ``XMax < XMin`` or ``YMax < YMin``, or the file is not
            UTF-8 CSV; the message names the file, the line, the ``ImageID`` and the value.
        FileNotFoundError: the CSV, or (``on_missing_image="raise"``) an image file.
    """
    _check_choice(on_missing_image, "on_missing_image", ("raise", "skip"))
    box_csv = os.fspath(box_csv)
    image_root = os.fspath(image_root)
    stats: Counter = Counter()
    per_image: Dict[str, List[Tuple[List[float], str]]] = {}
    for line, row in _csv_rows(box_csv):
        for column in ("ImageID", "LabelName"):
            if not row.get(column):
                raise AnnotationError(f"{box_csv}: line {line} has no {column} (value {row.get(column)!r})")
        image_id = row["ImageID"]
        if skip_group_boxes and row.get("IsGroupOf", "0") == "1":
            stats["group_skipped"] += 1
            continue
        coords = []
        for column in ("XMin", "YMin", "XMax", "YMax"):
            try:
                value = float(row[column])
            except (TypeError, ValueError):
                value = None
            if value is None or _finite_float(value) is None:
                raise AnnotationError(
                    f"{box_csv}: line {line} (ImageID {image_id!r}) has {column} = {row[column]!r}, "
                    "which is not a finite number"
                )
            coords.append(value)
        validate_box(coords, "xyxy", f"{box_csv}: line {line} (ImageID {image_id!r})")
        per_image.setdefault(image_id, []).append((coords, row["LabelName"]))

    names = sorted({label for rows in per_image.values() for _, label in rows})
    label_index = {name: i for i, name in enumerate(names)}
    records: List[SceneRecord] = []
    for image_id in sorted(per_image):
        path = os.path.join(image_root, image_id + image_extension)
        if not _check_image_file(path, on_missing_image, stats, box_csv):
            continue
        rows = per_image[image_id]
        boxes, keep = _clip_normalised(torch.tensor([r[0] for r in rows], dtype=torch.float32), stats)
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
    given the same ``image_root``. Image files are not checked here; categories are not needed.

    Raises:
        AnnotationError: a structural problem (see :func:`load_coco_document`; ``annotations`` is
            required), two images with the same ``file_name``, or an image with proposals but no
            width/height; the message names the file and the id.
        FileNotFoundError: no such proposals file.
    """
    proposals_file = os.fspath(proposals_file)
    dataset = load_coco_document(proposals_file, require_annotations=True, check_categories=False)
    images: Dict[object, dict] = {}
    owner: Dict[str, object] = {}
    for image in dataset["images"]:
        path = os.path.join(os.fspath(image_root), image["file_name"])
        if path in owner:
            raise AnnotationError(
                f"{proposals_file}: images {owner[path]!r} and {image['id']!r} have the same file_name "
                f"{image['file_name']!r}"
            )
        owner[path] = image["id"]
        images[image["id"]] = image
    grouped: Dict[object, List[dict]] = {image_id: [] for image_id in images}
    for ann in dataset["annotations"]:
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
        if image.get("width") is None or image.get("height") is None:
            raise AnnotationError(f"{proposals_file}: image {image_id!r} has proposals but no width/height")
        boxes_px = xywh_to_xyxy(_bbox_tensor(anns))
        result_boxes[path] = _normalise_and_clean(boxes_px, float(image["width"]), float(image["height"]), stats)[0]
    return result_boxes
