"""Fuzzing the readers and the image loader: malformed input gives a clear error naming the file, or a
valid result; never another exception type, never a crash.

Entry points: ``read_coco``, ``read_proposal_boxes`` + ``images_from_coco``, ``read_openimages`` and
``load_image_array`` / ``read_image_size``. Files are written once per example into one temporary
folder (``tempfile``: hypothesis does not mix with function-scoped fixtures).
"""

from __future__ import annotations

import atexit
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from hcl_plugin.data.image_io import ImageLoadError, load_image_array, read_image_size
from hcl_plugin.data.proposals_file import images_from_coco
from hcl_plugin.data.readers import read_coco, read_openimages, read_proposal_boxes

FUZZ = settings(max_examples=1000, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
ALLOWED = (ValueError, TypeError, FileNotFoundError)

# -------------------------------------------------------------------------- shared folder


def _make_folder() -> Path:
    root = Path(tempfile.mkdtemp(prefix="hcl_fuzz_"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(root / "b.jpg")
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "empty.jpg").write_bytes(b"")
    for name in ("img1", "img2"):
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(root / f"{name}.jpg")
    return root


ROOT = _make_folder()
FILE_NAMES = ["a.png", "b.jpg", "bad.png", "empty.jpg", "missing.png"]


def _check_error(error: BaseException, *names: str) -> None:
    """An allowed type whose message names one of ``names``."""
    assert isinstance(error, ALLOWED), f"{type(error).__name__}: {error}"
    message = str(error)
    assert any(name in message for name in names), f"{type(error).__name__} does not name the file: {message}"
    event(f"error: {type(error).__name__}")


def _check_records(result, category_ids=None) -> None:
    for record in result.records:
        boxes = record.boxes
        assert boxes.dtype == torch.float32 and boxes.dim() == 2 and boxes.shape[1] == 4
        assert torch.isfinite(boxes).all() and (boxes >= 0).all() and (boxes <= 1).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert record.labels.dtype == torch.long and record.labels.shape == (boxes.shape[0],)
        if category_ids is not None:
            assert set(record.labels.tolist()) <= category_ids
        assert os.path.isfile(record.path)


# -------------------------------------------------------------------------- COCO documents

SIZES = {"a.png": (64, 48), "b.jpg": (32, 32), "bad.png": (50, 50), "empty.jpg": (10, 10), "missing.png": (20, 20)}
junk = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.integers(min_value=2**62, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4), st.just("1,2,3,4"), st.just("1234"),
    st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.sampled_from(["id", "x"]), st.integers(0, 2), max_size=2),
)
number = st.one_of(st.integers(-20, 80), st.floats(-20, 80), st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([1e39, -1e39, 2**70]))
bad_bbox = st.one_of(st.lists(number, min_size=4, max_size=4), st.lists(st.one_of(number, junk), max_size=6), junk)


@st.composite
def coco_documents(draw) -> object:
    """Mostly well-formed COCO dicts (so the valid paths run), with 0-3 random malformations each."""
    if draw(st.integers(0, 9)) == 0:
        return draw(junk)
    names = draw(st.lists(st.sampled_from(sorted(SIZES)), max_size=4))
    images = [{"id": i + 1, "file_name": name, "width": SIZES[name][0], "height": SIZES[name][1]}
              for i, name in enumerate(names)]
    categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    annotations = []
    for ann_id in range(1, draw(st.integers(0, 6)) + 1 if images else 1):
        image = draw(st.sampled_from(images))
        x, y = draw(st.integers(-5, image["width"])), draw(st.integers(-5, image["height"]))
        annotations.append({"id": ann_id, "image_id": image["id"], "category_id": draw(st.sampled_from([1, 2])),
                            "bbox": [x, y, draw(st.integers(0, 40)), draw(st.integers(0, 40))],
                            "iscrowd": draw(st.sampled_from([0, 0, 0, 1])), "score": draw(st.floats(0, 1))})
    document = {"images": images, "annotations": annotations, "categories": categories}
    for _ in range(draw(st.integers(0, 3))):
        section = draw(st.sampled_from(["images", "annotations", "categories"]))
        kind = draw(st.sampled_from(["value", "delete_key", "duplicate", "replace_section", "drop_section", "entry"]))
        entries = document.get(section)
        if kind == "drop_section":
            document.pop(section, None)
        elif kind == "replace_section" or not isinstance(entries, list) or not entries:
            document[section] = draw(st.one_of(junk, st.just([])))
        elif kind == "duplicate":
            entry = draw(st.sampled_from(entries))
            entries.append(dict(entry) if isinstance(entry, dict) else entry)
        elif kind == "entry":
            entries[draw(st.integers(0, len(entries) - 1))] = draw(junk)
        else:
            entry = entries[draw(st.integers(0, len(entries) - 1))]
            if not isinstance(entry, dict) or not entry:
                continue
            key = draw(st.sampled_from(sorted(entry)))
            if kind == "delete_key":
                del entry[key]
            else:
                entry[key] = draw(bad_bbox if key == "bbox" else st.one_of(junk, st.integers(0, 100)))
    return document


coco_document = coco_documents()


def _write_json(name: str, document: object) -> Path:
    path = ROOT / name
    path.write_text(json.dumps(document))  # NaN / Infinity literals as Python's json writes them
    return path


@FUZZ
@given(document=coco_document, on_missing=st.sampled_from(["raise", "skip"]), crowd=st.booleans(),
       keep_empty=st.booleans())
def test_fuzz_read_coco(document, on_missing, crowd, keep_empty):
    path = _write_json("fuzz_coco.json", document)
    try:
        result = read_coco(path, ROOT, include_crowd=crowd, keep_images_without_boxes=keep_empty,
                           on_missing_image=on_missing)
    except Exception as error:  # noqa: BLE001 - the assertion is on the type
        _check_error(error, "fuzz_coco.json")
        return
    _check_records(result, set(result.label_names))
    event(f"valid: {'with' if result.stats['boxes'] else 'no'} boxes")
    ids = [r.image_id for r in result.records]
    assert len(ids) == len(set(ids))


@FUZZ
@given(document=coco_document)
def test_fuzz_read_proposal_boxes_and_images_from_coco(document):
    path = _write_json("fuzz_proposals.json", document)
    try:
        boxes = read_proposal_boxes(path, ROOT)
    except Exception as error:  # noqa: BLE001
        _check_error(error, "fuzz_proposals.json")
    else:
        event("valid proposals")
        for value in boxes.values():
            assert value.dim() == 2 and value.shape[1] == 4 and torch.isfinite(value).all()
            assert (value >= 0).all() and (value <= 1).all()
    try:
        images = images_from_coco(path)
    except Exception as error:  # noqa: BLE001
        _check_error(error, "fuzz_proposals.json")
    else:
        assert all(set(image) == {"id", "file_name"} and isinstance(image["file_name"], str) for image in images)


# -------------------------------------------------------------------------- OpenImages CSV

COLUMNS = ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax", "IsGroupOf"]
bad_cell = st.one_of(
    st.sampled_from(["", "nan", "inf", "-inf", "1e400", "zero", '"', '"a,b"', "x\ny", "\x00", "-0.3", "1.2"]),
    st.text(max_size=4),
)


@st.composite
def csv_files(draw) -> bytes:
    """Mostly well-formed OpenImages CSVs, with 0-3 malformed cells, a broken header or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    header = list(COLUMNS)
    if draw(st.integers(0, 5)) == 0:
        header = draw(st.one_of(st.permutations(COLUMNS), st.lists(st.sampled_from(COLUMNS), max_size=9)))
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        x1, x2 = sorted(draw(st.lists(st.floats(-0.2, 1.2), min_size=2, max_size=2)))
        y1, y2 = sorted(draw(st.lists(st.floats(-0.2, 1.2), min_size=2, max_size=2)))
        values = {"ImageID": draw(st.sampled_from(["img1", "img2", "missing"])), "Source": "x",
                  "LabelName": draw(st.sampled_from(["/m/01g317", "/m/0284d"])), "Confidence": "1",
                  "XMin": repr(x1), "XMax": repr(x2), "YMin": repr(y1), "YMax": repr(y2),
                  "IsGroupOf": draw(st.sampled_from(["0", "1"]))}
        rows.append([values[column] for column in header])
    for _ in range(draw(st.integers(0, 3))):
        if rows:
            row = draw(st.sampled_from(rows))
            if draw(st.booleans()) and row:
                row[draw(st.integers(0, len(row) - 1))] = draw(bad_cell)
            else:
                del row[draw(st.integers(0, len(row))):]
    text = ",".join(header) + "\n" + "".join(",".join(row) + "\n" for row in rows)
    return text.encode("utf-8") + (draw(st.binary(max_size=4)) if draw(st.integers(0, 9)) == 0 else b"")


csv_bytes = csv_files()


@FUZZ
@given(content=csv_bytes, on_missing=st.sampled_from(["raise", "skip"]), group=st.booleans())
def test_fuzz_read_openimages(content, on_missing, group):
    path = ROOT / "fuzz_boxes.csv"
    path.write_bytes(content)
    try:
        result = read_openimages(path, ROOT, skip_group_boxes=group, on_missing_image=on_missing)
    except Exception as error:  # noqa: BLE001
        _check_error(error, "fuzz_boxes.csv")
        return
    _check_records(result)
    event(f"valid: {'with' if result.stats['boxes'] else 'no'} boxes")
    for record in result.records:
        assert set(record.labels.tolist()) <= set(result.label_names)


# -------------------------------------------------------------------------- image files


def _encoded(fmt: str, mode: str) -> bytes:
    rng = np.random.default_rng(len(fmt) + len(mode))
    image = Image.fromarray(rng.integers(0, 256, (6, 5, 4), dtype=np.uint8), "RGBA").convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


VALID = [_encoded(fmt, mode) for fmt, mode in [("PNG", "RGB"), ("PNG", "LA"), ("PNG", "P"), ("PNG", "I;16"),
                                               ("JPEG", "RGB"), ("JPEG", "CMYK"), ("GIF", "P"), ("BMP", "RGB"),
                                               ("TIFF", "CMYK"), ("TIFF", "I"), ("WEBP", "RGBA"), ("TIFF", "F")]]


@st.composite
def image_bytes(draw) -> bytes:
    kind = draw(st.sampled_from(["random", "truncated", "flipped", "valid"]))
    if kind == "random":
        return draw(st.binary(max_size=300))
    data = bytearray(draw(st.sampled_from(VALID)))
    if kind == "truncated":
        return bytes(data[: draw(st.integers(0, len(data)))])
    if kind == "flipped":
        for _ in range(draw(st.integers(1, 6))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] = draw(st.integers(0, 255))
    return bytes(data)


@pytest.mark.filterwarnings("ignore::UserWarning")  # PIL warns about the corrupt TIFF/EXIF tags it skips
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@FUZZ
@given(content=image_bytes())
def test_fuzz_image_files(content):
    path = ROOT / "fuzz_image.bin"
    path.write_bytes(content)
    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = 1_000_000  # mutated headers may claim huge sizes: keep the fuzz fast
    try:
        try:
            array = load_image_array(path)
        except ImageLoadError as error:
            assert "fuzz_image.bin" in str(error)
        else:
            event("decoded")
            assert array.dtype == np.uint8 and array.ndim == 3 and array.shape[2] == 3
            assert array.shape[0] >= 1 and array.shape[1] >= 1 and array.flags["C_CONTIGUOUS"]
            assert read_image_size(path) == (array.shape[1], array.shape[0])
        try:
            width, height = read_image_size(path)
        except ImageLoadError as error:
            assert "fuzz_image.bin" in str(error)
        else:
            assert width >= 1 and height >= 1
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def test_fuzz_inputs_reach_the_valid_paths():
    """The strategies are not all-garbage: each entry point has a valid input among its examples."""
    document = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
                "annotations": [{"id": 1, "image_id": 1, "bbox": [1, 2, 30, 20], "category_id": 1, "score": 0.5}],
                "categories": [{"id": 1, "name": "x"}]}
    path = _write_json("fuzz_valid.json", document)
    assert read_coco(path, ROOT).stats["boxes"] == 1
    assert read_proposal_boxes(path, ROOT)[str(ROOT / "a.png")].shape == (1, 4)
    (ROOT / "fuzz_valid.csv").write_text(",".join(COLUMNS) + "\nimg1,x,/m/1,1,0.1,0.5,0.2,0.6,0\n")
    assert read_openimages(ROOT / "fuzz_valid.csv", ROOT).stats["boxes"] == 1
    for data in VALID[:-1]:  # all but the float TIFF decode
        (ROOT / "fuzz_valid.bin").write_bytes(data)
        assert load_image_array(ROOT / "fuzz_valid.bin").shape == (6, 5, 3)
    (ROOT / "fuzz_valid.bin").write_bytes(VALID[-1])
    with pytest.raises(ImageLoadError, match="has mode 'F'"):
        load_image_array(ROOT / "fuzz_valid.bin")
    assert math.isfinite(float(np.mean(load_image_array(ROOT / "a.png"))))
