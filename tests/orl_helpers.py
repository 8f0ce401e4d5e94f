"""Small correspondence stores for the ORL tests, built by the real stage 2 on real images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from hcl_plugin.checkpoints import build_resnet
from hcl_plugin.orl.discovery import CorrespondenceSettings, discover_correspondences
from hcl_plugin.orl.inputs import read_stage2_inputs

ROOT = Path(__file__).resolve().parents[1]


def embedded_store(folder: Path, data_root: Path, knn: int = 2, seed: int = 0,
                   settings: Optional[CorrespondenceSettings] = None) -> Path:
    """A correspondence store of the training images of an embedded scene set at ``data_root``
    (``tests.data_helpers.build_embedded``), with their ground-truth boxes standing in for proposals (the
    same COCO format, no selective search to wait for), by a random-init ResNet-18 on 32 px crops."""
    inputs = read_stage2_inputs(data_root / "annotations_train.json", data_root / "images")
    torch.manual_seed(seed)
    backbone, _ = build_resnet("resnet18")
    settings = settings or CorrespondenceSettings(min_size=16, knn=knn, patch_size=32, image_size=64, batch_size=64)
    discover_correspondences(backbone, inputs.file_names, data_root / "images", inputs.image_sizes, inputs.proposals,
                             folder, settings, device=torch.device("cpu"))
    return folder


def planted_scenes(folder: Path, pairs: int = 6, size: int = 96, object_size: int = 60, seed: int = 0):
    """``2 * pairs`` images on a flat grey background; images ``2p`` and ``2p + 1`` share a pasted object
    (a saturated colour, noise-textured, at nearby positions). Each image's proposals: the object's exact
    box and 5 random 40 px boxes overlapping it by IoU < 0.3, in random rank order.

    Returns ``(coco_file, {image index: object box x, y, w, h})``; the images are under ``folder / 'images'``.
    """
    from PIL import Image

    from hcl_plugin.orl.sampling import box_iou_xywh

    rng = np.random.default_rng(seed)
    hues = [[255, 40, 40], [40, 220, 40], [40, 60, 255], [240, 220, 30], [230, 40, 230], [30, 220, 230]]
    (folder / "images").mkdir(parents=True, exist_ok=True)
    images, annotations, objects = [], [], {}
    for p in range(pairs):
        pasted = np.array(hues[p % len(hues)], float) * (0.75 + 0.25 * rng.random((object_size, object_size, 1)))
        x0, y0 = rng.integers(6, size - object_size - 6, 2)
        for q in range(2):
            x, y = int(x0 + rng.integers(-6, 7)), int(y0 + rng.integers(-6, 7))
            pixels = np.full((size, size, 3), 128.0) + rng.normal(0, 2, (size, size, 3))
            pixels[y:y + object_size, x:x + object_size] = pasted
            index = len(images)
            name = f"{p}_{q}.png"
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / "images" / name)
            box = (x, y, object_size, object_size)
            boxes: List[tuple] = [box]
            while len(boxes) < 6:
                other = (*(int(v) for v in rng.integers(0, size - 40, 2)), 40, 40)
                if box_iou_xywh(other, box) < 0.3:
                    boxes.append(other)
            order = rng.permutation(len(boxes))
            images.append({"id": index + 1, "file_name": name, "width": size, "height": size})
            for rank, b in enumerate(boxes[i] for i in order):
                annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": 1,
                                    "bbox": [float(v) for v in b], "area": float(b[2] * b[3]), "iscrowd": 0,
                                    "score": 1.0 - rank / 10})
            objects[index] = tuple(float(v) for v in box)
    coco = folder / "proposals.json"
    coco.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "object"}]}))
    return coco, objects


def planted_backbone(folder: Path, image_folder: Path, seed: int = 0) -> Path:
    """A random-init ResNet-18 whose BatchNorm statistics are those of the images (one pass in train mode, no
    gradient step), saved as ``tools/extract_backbone.py`` writes backbones. Random-init statistics make
    every feature nearly parallel; estimated ones give a usable, if untrained, encoder."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    from hcl_plugin.data.views import IMAGENET_MEAN, IMAGENET_STD

    torch.manual_seed(seed)
    backbone, _ = build_resnet("resnet18")
    batch = torch.stack([TF.normalize(TF.to_tensor(Image.open(path).convert("RGB")), IMAGENET_MEAN, IMAGENET_STD)
                         for path in sorted(image_folder.glob("*.png"))])
    for module in backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # a plain average over the pass
    backbone.train()
    with torch.no_grad():
        backbone(batch)
    path = folder / "backbone.pth"
    torch.save({"state_dict": backbone.state_dict(), "meta": {}}, path)
    return path
