"""Shared helpers for the tests of ``hcl_plugin.data`` (small files written into pytest's tmp dirs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import pytest
import torch
from PIL import Image


def write_image(path: Path, size: Tuple[int, int] = (64, 48), seed: int = 0) -> Path:
    """A small random RGB JPEG of ``size`` = (width, height)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def write_coco(path: Path, images: Sequence[Dict], annotations: Sequence[Dict], categories: Sequence[Dict] = ()) -> Path:
    """Write a COCO dict; categories default to one ``{"id": 1, "name": "thing"}``."""
    document = {
        "images": list(images),
        "annotations": list(annotations),
        "categories": list(categories) or [{"id": 1, "name": "thing"}],
    }
    path.write_text(json.dumps(document))
    return path


def annotation(ann_id: int, image_id: int, bbox: List[float], iscrowd: int = 0, category_id: int = 1) -> Dict:
    return {"id": ann_id, "image_id": image_id, "bbox": bbox, "category_id": category_id, "iscrowd": iscrowd,
            "area": float(bbox[2] * bbox[3])}


def animals_or_skip():
    """Animal-MNIST, or a skip that says exactly what is missing and how to get it."""
    from hcl_plugin.data.embedded.animal_mnist import AnimalMNISTUnavailable, load_animal_mnist

    try:
        return load_animal_mnist()
    except AnimalMNISTUnavailable as error:
        pytest.skip(f"Animal-MNIST wheel (animal-mnist==0.4 from PyPI) is not available: {error}")


class FixedBatch(torch.utils.data.Dataset):
    """``length`` copies of one ready batch (a DataLoader with ``batch_size=None`` yields it as is)."""

    def __init__(self, batch, length: int) -> None:
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index):
        return self.batch


def build_embedded(root: Path, num_images: int = 24, image_size: int = 128, seed: int = 3) -> Path:
    """A small Animal-MNIST scene set in COCO format at ``root`` (skips with the reason if the wheel is missing)."""
    from hcl_plugin.data.embedded.scenes import SyntheticConfig, build_synthetic_dataset

    build_synthetic_dataset(root, SyntheticConfig(num_images=num_images, image_size=image_size, seed=seed),
                            animals=animals_or_skip(), progress=False)
    return root
