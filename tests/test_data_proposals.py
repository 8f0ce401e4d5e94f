"""Selective search proposals, ORL's box filter, the proposals file and tools/make_proposals.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO
from torchvision.ops import box_iou

from hcl_plugin.data.proposals import SelectiveSearchConfig, filter_proposals, propose_boxes, selective_search
from hcl_plugin.data.proposals_file import images_from_coco, list_images, make_proposals_file
from hcl_plugin.data.readers import read_coco

REPO = Path(__file__).resolve().parents[1]
OBJECTS = np.array([[20, 30, 70, 90], [100, 60, 150, 110]], dtype=np.float64)


def _two_objects(noise_seed: int = 0) -> np.ndarray:
    """A 160 x 128 grey image with a red and a blue rectangle (plus mild noise)."""
    rng = np.random.default_rng(noise_seed)
    image = np.full((128, 160, 3), 128, dtype=np.float64) + rng.normal(0, 4, (128, 160, 3))
    image[30:90, 20:70] = [200, 30, 30]
    image[60:110, 100:150] = [30, 40, 210]
    return np.clip(image, 0, 255).astype(np.uint8)


def test_selective_search_finds_both_objects():
    boxes = selective_search(_two_objects())
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 2
    best = box_iou(torch.as_tensor(OBJECTS), torch.as_tensor(boxes)).max(dim=1).values
    assert (best > 0.9).all(), best
    # the whole image is the top of every hierarchy
    assert [0, 0, 160, 128] in boxes.tolist()
    assert len({tuple(b) for b in boxes.tolist()}) == len(boxes)  # no duplicates


def test_selective_search_is_deterministic_per_seed_and_handles_grayscale():
    image = _two_objects()
    first = selective_search(image, SelectiveSearchConfig(seed=1))
    assert np.array_equal(first, selective_search(image, SelectiveSearchConfig(seed=1)))
    other = selective_search(image, SelectiveSearchConfig(seed=2))
    assert sorted(map(tuple, first.tolist())) == sorted(map(tuple, other.tolist()))  # same set, other ranking
    assert len(selective_search(image[..., 0])) > 0


def test_max_side_maps_boxes_back_to_full_resolution():
    image = np.asarray(Image.fromarray(_two_objects()).resize((320, 256), Image.NEAREST))
    boxes = selective_search(image, SelectiveSearchConfig(max_side=160))
    best = box_iou(torch.as_tensor(OBJECTS * 2), torch.as_tensor(boxes)).max(dim=1).values
    assert (best > 0.85).all(), best


def test_orl_box_filter_rules():
    boxes = np.array([
        [0, 0, 100, 100],  # kept
        [0, 0, 95, 200],  # width < 96: dropped
        [0, 0, 400, 100],  # ratio 4 > 3: dropped
        [0, 0, 300, 100],  # ratio 3: kept
        [10, 10, 200, 150],  # kept
    ], dtype=np.float64)
    assert filter_proposals(boxes).tolist() == [[0, 0, 100, 100], [0, 0, 300, 100], [10, 10, 200, 150]]
    assert filter_proposals(boxes, top_n=2).tolist() == [[0, 0, 100, 100], [0, 0, 300, 100]]
    assert filter_proposals(np.zeros((0, 4))).shape == (0, 4)
    out = propose_boxes(_two_objects(), SelectiveSearchConfig(min_size=40, top_n=5))
    assert 0 < len(out) <= 5
    assert ((out[:, 2] - out[:, 0]) >= 40).all() and ((out[:, 3] - out[:, 1]) >= 40).all()


@pytest.mark.parametrize("kwargs", [{"colour_spaces": ("xyz",)}, {"strategies": ("ctq",)}, {"max_ratio": 0.5}])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        SelectiveSearchConfig(**kwargs)


@pytest.fixture()
def image_folder(tmp_path):
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(_two_objects(0)).save(root / "a.png")
    Image.fromarray(_two_objects(1)).save(root / "sub" / "b.png")
    return root


def test_proposals_file_is_coco_and_reads_in_place_of_ground_truth(image_folder, tmp_path):
    images = list_images(image_folder)
    assert [i["file_name"] for i in images] == ["a.png", "sub/b.png"]
    out = tmp_path / "proposals.json"
    config = SelectiveSearchConfig(min_size=30, top_n=10)
    stats = make_proposals_file(images, image_folder, out, config, progress=False)
    assert stats["images"] == 2 and 0 < stats["proposals"] <= 20
    coco = COCO(str(out))
    assert sorted(coco.getImgIds()) == [1, 2] and coco.loadCats(1)[0]["name"] == "object"
    scores = [a["score"] for a in coco.imgToAnns[1]]
    assert scores == sorted(scores, reverse=True)
    records = read_coco(out, image_folder)
    assert len(records) == 2 and records.records[0].boxes.shape[0] == len(coco.imgToAnns[1])
    assert images_from_coco(out) == images


def test_bad_image_raises_naming_file_or_is_skipped(image_folder, tmp_path):
    (image_folder / "c.png").write_bytes(b"broken")
    images = list_images(image_folder)
    config = SelectiveSearchConfig(min_size=30, top_n=3)
    with pytest.raises(OSError, match="c.png"):
        make_proposals_file(images, image_folder, tmp_path / "p.json", config, progress=False)
    stats = make_proposals_file(images, image_folder, tmp_path / "p.json", config, skip_bad_images=True, progress=False)
    assert stats["bad_images_skipped"] == 1 and stats["images"] == 2


def test_parallel_workers_match_serial_and_cli_runs(image_folder, tmp_path):
    config = SelectiveSearchConfig(min_size=30, top_n=10)
    images = list_images(image_folder)
    make_proposals_file(images, image_folder, tmp_path / "serial.json", config, workers=1, progress=False)
    make_proposals_file(images, image_folder, tmp_path / "parallel.json", config, workers=2, progress=False)
    assert (tmp_path / "serial.json").read_bytes() == (tmp_path / "parallel.json").read_bytes()
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_proposals.py"), "--image-root", str(image_folder),
         "--out", str(tmp_path / "cli.json"), "--min-size", "30", "--top-n", "10", "--quiet"],
        capture_output=True, text=True, check=True,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["images"] == 2 and summary["images_per_second"] > 0
    cli, serial = (json.loads((tmp_path / name).read_text()) for name in ("cli.json", "serial.json"))
    assert cli["images"] == serial["images"] and cli["annotations"] == serial["annotations"]
