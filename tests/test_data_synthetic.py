"""The embedded scene set: COCO validity (pycocotools, COCOeval AP 1.0), counts, OOC flags, determinism,
Animal-MNIST handling."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from tests.data_helpers import animals_or_skip
from hcl_plugin.data.embedded.animal_mnist import (
    ANIMAL_CLASSES,
    AnimalMNISTUnavailable,
    _NumpyOnlyUnpickler,
    fetch_animal_mnist_wheel,
    load_animal_mnist,
)
from hcl_plugin.data.readers import read_coco
from hcl_plugin.data.embedded.contexts import SCENE_CONTEXTS, context_of_class
from hcl_plugin.data.embedded.scenes import SyntheticConfig, build_synthetic_dataset

CONFIG = SyntheticConfig(num_images=40, image_size=96, seed=3, ooc_fraction=0.25, val_fraction=0.25, max_iou=0.3)


@pytest.fixture(scope="module")
def animals():
    return animals_or_skip()


@pytest.fixture(scope="module")
def built(animals, tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    summary = build_synthetic_dataset(out, CONFIG, animals=animals, progress=False)
    return out, summary


def _quiet_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_animal_mnist_arrays(animals):
    assert animals.images.shape == (10000, 28, 28) and animals.images.dtype == np.uint8
    assert np.bincount(animals.labels).tolist() == [1000] * 10
    assert animals.class_names == ANIMAL_CLASSES


def test_files_and_counts(built):
    out, summary = built
    assert summary["num_images"] == 40 and summary["num_out_of_context_images"] == 10
    assert summary["num_val_images"] == 10
    assert len(list((out / "images").glob("*.jpg"))) == 40
    document = json.loads((out / "annotations.json").read_text())
    per_image = Counter(a["image_id"] for a in document["annotations"])
    for image in document["images"]:
        assert 1 <= image["num_objects"] <= 6
        assert per_image[image["id"]] == image["num_objects"]
        assert image["context"] in {c.name for c in SCENE_CONTEXTS}
        assert (image["width"], image["height"]) == (96, 96)
    assert len({image["num_objects"] for image in document["images"]}) >= 4  # counts vary
    train = json.loads((out / "annotations_train.json").read_text())
    val = json.loads((out / "annotations_val.json").read_text())
    assert len(train["images"]) == 30 and len(val["images"]) == 10
    assert {i["split"] for i in val["images"]} == {"val"} and {i["split"] for i in train["images"]} == {"train"}
    assert len(train["annotations"]) + len(val["annotations"]) == len(document["annotations"])
    assert [c["name"] for c in document["categories"]] == list(ANIMAL_CLASSES)


def test_out_of_context_flags_match_the_request(built):
    out, _ = built
    document = json.loads((out / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in document["categories"]}
    context = {i["id"]: i["context"] for i in document["images"]}
    ooc_per_image = Counter()
    for ann in document["annotations"]:
        in_context = context_of_class(names[ann["category_id"]]) == context[ann["image_id"]]
        assert ann["out_of_context"] == (not in_context)
        ooc_per_image[ann["image_id"]] += ann["out_of_context"]
    ooc_images = [i for i, n in ooc_per_image.items() if n]
    assert len(ooc_images) == 10
    assert all(ooc_per_image[i] == 1 for i in ooc_images)  # exactly one foreign animal
    assert all(next(im for im in document["images"] if im["id"] == i)["num_objects"] >= 2 for i in ooc_images)


def test_loads_in_pycocotools_and_ground_truth_scores_ap_one(built):
    out, _ = built
    ground_truth = _quiet_coco(out / "annotations.json")
    results = [dict(ann, score=1.0) for ann in ground_truth.dataset["annotations"]]
    for iou_type in ("bbox", "segm"):
        with contextlib.redirect_stdout(io.StringIO()):
            detections = ground_truth.loadRes([dict(r) for r in results])
            evaluator = COCOeval(ground_truth, detections, iou_type)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        assert evaluator.stats[0] == pytest.approx(1.0), iou_type  # AP@[.5:.95]
        assert evaluator.stats[1] == pytest.approx(1.0), iou_type  # AP@.5


def test_masks_boxes_overlap_and_scale(built):
    out, _ = built
    coco = _quiet_coco(out / "annotations.json")
    sides = []
    for image_id, anns in coco.imgToAnns.items():
        masks = [coco.annToMask(a).astype(bool) for a in anns]
        union = np.zeros_like(masks[0], dtype=int)
        for mask, ann in zip(masks, anns):
            assert mask.sum() == ann["area"] > 0
            rows, cols = np.nonzero(mask)
            assert ann["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
            union += mask
            sides.append(max(ann["bbox"][2:]))
        assert union.max() <= 1  # visible masks never overlap
        boxes = [a["bbox"] for a in anns]
        ious = mask_utils.iou(boxes, boxes, [0] * len(boxes))
        np.fill_diagonal(ious, 0)
        assert ious.max(initial=0) <= CONFIG.max_iou + 1e-9
    assert max(sides) > 2 * min(sides)  # scale varies


def test_reader_and_images_agree(built):
    out, _ = built
    result = read_coco(out / "annotations_train.json", out / "images")
    assert len(result) == 30 and result.stats["boxes_clipped"] == 0
    assert all(r.extra["num_objects"] == r.boxes.shape[0] for r in result.records)


def test_same_seed_same_bytes_other_seed_differs(animals, built, tmp_path):
    out, _ = built
    again = tmp_path / "again"
    build_synthetic_dataset(again, CONFIG, animals=animals, progress=False)
    assert _digest(again) == _digest(out)
    other = tmp_path / "other"
    build_synthetic_dataset(other, SyntheticConfig(**{**CONFIG.__dict__, "seed": 4}), animals=animals, progress=False)
    assert _digest(other)["annotations.json"] != _digest(out)["annotations.json"]


def test_cli_writes_the_set(animals, tmp_path):
    out = tmp_path / "cli"
    result = subprocess.run(
        [sys.executable, "-m", "hcl_plugin.data.embedded.scenes", "--out", str(out), "--num-images", "6",
         "--image-size", "64", "--seed", "1", "--ooc-fraction", "0.5", "--quiet"],
        capture_output=True, text=True, check=True,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["num_images"] == 6 and summary["num_out_of_context_images"] == 3
    assert (out / "annotations.json").is_file() and len(list((out / "images").glob("*.jpg"))) == 6
    bad = subprocess.run([sys.executable, "-m", "hcl_plugin.data.embedded.scenes", "--out", str(out), "--ooc-fraction", "2"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "ooc_fraction must be in [0, 1]" in bad.stderr


def test_unavailable_animal_mnist_says_how_to_install(tmp_path, monkeypatch):
    empty_cache = tmp_path / "cache"
    with pytest.raises(AnimalMNISTUnavailable, match="pip download --no-deps animal-mnist==0.4"):
        load_animal_mnist(empty_cache, download=False)
    monkeypatch.setenv("HCL_PLUGIN_CACHE", str(empty_cache))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip cannot reach any index: the download fails
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(AnimalMNISTUnavailable, match="pip could not download animal-mnist==0.4") as info:
        build_synthetic_dataset(tmp_path / "out", SyntheticConfig(num_images=2, image_size=64), progress=False)
    assert "HCL_PLUGIN_CACHE" in str(info.value)
    assert not (tmp_path / "out" / "annotations.json").exists()  # no silent switch to noise
    result = subprocess.run([sys.executable, "-m", "hcl_plugin.data.embedded.scenes", "--out", str(tmp_path / "o2"),
                             "--num-images", "2", "--quiet"], capture_output=True, text=True)
    assert result.returncode == 2 and "animal-mnist==0.4" in result.stderr


def test_corrupted_cached_wheel_is_rejected(tmp_path):
    (tmp_path / "animal_mnist-0.4-py3-none-any.whl").write_bytes(b"not the wheel")
    with pytest.raises(AnimalMNISTUnavailable, match="SHA-256"):
        fetch_animal_mnist_wheel(tmp_path, download=False)


def test_unpickler_accepts_arrays_only():
    array = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert np.array_equal(_NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(array, protocol=4))).load(), array)
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        _NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(subprocess.run))).load()


def test_config_validation_names_the_parameter():
    with pytest.raises(ValueError, match="min_objects"):
        SyntheticConfig(min_objects=4, max_objects=2).validate()
    with pytest.raises(ValueError, match="max_objects >= 2"):
        SyntheticConfig(min_objects=1, max_objects=1, ooc_fraction=0.1).validate()
