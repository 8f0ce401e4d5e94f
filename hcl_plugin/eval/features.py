"""Embeddings of whole images, scene crops and object crops, batched, with a progress bar.

Crops (all resized to the square side the model was trained on, ``EvalModel.image_size``, then
normalised with the ImageNet mean/std as the training views are; no random crop, no flip):

* **image**: the whole image.
* **scene**: the union of the image's annotated boxes, i.e. the tightest crop containing every object
  (HCL's scene crop, ``union_box``, taken over all boxes instead of a random subset); the whole
  image when it has no box.
* **object**: each annotated box.

Box edges are rounded outwards to whole pixels (at least one pixel wide). Each image is decoded
once; its crops are queued and the model runs on batches of exactly ``batch_size`` crops (the last
may be smaller). Decoding can run in ``num_workers`` DataLoader workers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hcl_plugin.data.boxes import box_to_pixel_window, union_box
from hcl_plugin.data.image_io import load_rgb_image
from hcl_plugin.eval.checkpoint import EvalModel
from hcl_plugin.eval.scenes import SceneSet

__all__ = [
    "CROP_KINDS",
    "Embeddings",
    "SceneFeatures",
    "SceneCropDataset",
    "crop_pixels",
    "preprocess_crop",
    "extract_features",
    "resolve_device",
]

CROP_KINDS = ("image", "scene", "object")
_KIND_CODE = {kind: code for code, kind in enumerate(CROP_KINDS)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resolve_device(device: Union[str, torch.device, None]) -> torch.device:
    """``"auto"``/``None`` -> CUDA when available, else CPU; otherwise ``torch.device(device)``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def crop_pixels(box: Tensor, width: int, height: int) -> Tuple[int, int, int, int]:
    """Pixel ``(left, top, right, bottom)`` of a normalised ``xyxy`` box, edges rounded outwards.

    ``right``/``bottom`` are exclusive; the crop is at least one pixel in each direction and inside
    the image: :func:`hcl_plugin.data.boxes.box_to_pixel_window` of the box scaled to pixels (the
    training crops' rule).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    return box_to_pixel_window((x1 * width, y1 * height, x2 * width, y2 * height), width, height)


def preprocess_crop(image: Image.Image, size: int, box: Optional[Tensor] = None,
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> Tensor:
    """Crop ``box`` (normalised ``xyxy``; ``None`` = whole image), resize to ``size`` x ``size``
    (bilinear, antialiased), scale to [0, 1] and normalise. Returns (3, size, size) float32."""
    from torchvision.transforms.v2 import functional as F

    if box is not None:
        image = image.crop(crop_pixels(box, image.width, image.height))
    tensor = F.to_dtype(F.to_image(image), torch.float32, scale=True)
    tensor = F.resize(tensor, [size, size], antialias=True)
    return F.normalize(tensor, mean=list(mean), std=list(std))


class SceneCropDataset(Dataset):
    """Item ``i``: all requested crops of scene ``i`` as ``(crops (M, 3, S, S), kinds (M,), objects (M,))``.

    ``kinds`` holds indices into :data:`CROP_KINDS`; ``objects`` the box index for object crops, -1 else.
    """

    def __init__(self, scene_set: SceneSet, size: int, kinds: Sequence[str] = CROP_KINDS) -> None:
        unknown = [k for k in kinds if k not in CROP_KINDS]
        if unknown:
            raise ValueError(f"unknown crop kinds {unknown}; choose from {CROP_KINDS}")
        self.scene_set, self.size, self.kinds = scene_set, int(size), tuple(kinds)

    def __len__(self) -> int:
        return len(self.scene_set)

    def num_crops(self) -> int:
        n = len(self.scene_set) * sum(k in self.kinds for k in ("image", "scene"))
        if "object" in self.kinds:
            n += self.scene_set.num_objects_total
        return n

    def __getitem__(self, index: int) -> Tuple[Tensor, Tensor, Tensor]:
        scene = self.scene_set.scenes[index]
        image = load_rgb_image(scene.path)
        crops: List[Tensor] = []
        kinds: List[int] = []
        objects: List[int] = []
        if "image" in self.kinds:
            crops.append(preprocess_crop(image, self.size))
            kinds.append(_KIND_CODE["image"])
            objects.append(-1)
        if "scene" in self.kinds:
            box = union_box(scene.boxes) if scene.boxes.shape[0] else None
            crops.append(preprocess_crop(image, self.size, box))
            kinds.append(_KIND_CODE["scene"])
            objects.append(-1)
        if "object" in self.kinds:
            for j, box in enumerate(scene.boxes):
                crops.append(preprocess_crop(image, self.size, box))
                kinds.append(_KIND_CODE["object"])
                objects.append(j)
        return torch.stack(crops), torch.tensor(kinds, dtype=torch.long), torch.tensor(objects, dtype=torch.long)


@dataclass
class Embeddings:
    """Rows of embeddings: backbone features (the input of linear probes / kNN), the Euclidean head's
    output (``None`` without that head) and points on the Poincaré ball."""

    backbone: Tensor
    euclidean: Optional[Tensor]
    hyperbolic: Tensor

    def __len__(self) -> int:
        return int(self.backbone.shape[0])


@dataclass
class SceneFeatures:
    """Embeddings of one :class:`SceneSet`.

    Attributes:
        scene_set: the scenes (row ``i`` of ``image`` / ``scene`` is ``scene_set.scenes[i]``).
        image, scene: per-scene embeddings (``None`` when not requested).
        objects: per-object embeddings in scene order, boxes in order (``None`` when not requested).
        object_scene: scene index of each object row.
        object_box: box index within its scene of each object row.
        object_category: COCO category id of each object row.
        object_out_of_context: per-object flag, ``None`` when the file has none.
        c: curvature magnitude of the ball; seconds: extraction time.
    """

    scene_set: SceneSet
    image: Optional[Embeddings]
    scene: Optional[Embeddings]
    objects: Optional[Embeddings]
    object_scene: Tensor
    object_box: Tensor
    object_category: Tensor
    object_out_of_context: Optional[Tensor]
    c: float
    seconds: float


def _collect(parts: List[Dict[str, Optional[Tensor]]], key: str) -> Optional[Tensor]:
    if not parts or parts[0][key] is None:
        return None
    return torch.cat([p[key] for p in parts])


@torch.no_grad()
def extract_features(
    model: EvalModel,
    scene_set: SceneSet,
    kinds: Sequence[str] = CROP_KINDS,
    batch_size: int = 64,
    device: Union[str, torch.device, None] = "cpu",
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "features",
) -> SceneFeatures:
    """Embed the requested crops of every scene with ``model`` (in eval mode; results on the CPU).

    Args:
        model: the :class:`EvalModel`; crops are resized to ``model.image_size``.
        scene_set: scenes to embed.
        kinds: subset of :data:`CROP_KINDS`.
        batch_size: crops per forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` ...
        num_workers: DataLoader workers that decode and crop images.
        progress: show a tqdm progress bar (counts crops).
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    start = time.perf_counter()
    device = resolve_device(device)
    was_training = model.training
    model.eval().to(device)
    dataset = SceneCropDataset(scene_set, model.image_size, kinds)
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=num_workers)
    outputs: List[Dict[str, Optional[Tensor]]] = []
    kind_rows: List[Tensor] = []
    scene_rows: List[Tensor] = []
    object_rows: List[Tensor] = []
    pending: List[Tensor] = []
    pending_count = 0

    def flush() -> None:
        nonlocal pending, pending_count
        if not pending_count:
            return
        batch = torch.cat(pending).to(device, non_blocking=True)
        out = model.embed(batch)
        outputs.append({k: (v.cpu() if v is not None else None) for k, v in out.items()})
        bar.update(batch.shape[0])
        pending, pending_count = [], 0

    try:
        with tqdm(total=dataset.num_crops(), desc=desc, unit="crop", disable=not progress) as bar:
            for index, (crops, crop_kinds, crop_objects) in enumerate(loader):
                kind_rows.append(crop_kinds)
                object_rows.append(crop_objects)
                scene_rows.append(torch.full_like(crop_kinds, index))
                offset = 0
                while offset < crops.shape[0]:
                    take = min(batch_size - pending_count, crops.shape[0] - offset)
                    pending.append(crops[offset:offset + take])
                    pending_count += take
                    offset += take
                    if pending_count == batch_size:
                        flush()
            flush()
    finally:
        model.train(was_training)

    kind = torch.cat(kind_rows) if kind_rows else torch.zeros(0, dtype=torch.long)
    scene_index = torch.cat(scene_rows) if scene_rows else torch.zeros(0, dtype=torch.long)
    object_index = torch.cat(object_rows) if object_rows else torch.zeros(0, dtype=torch.long)
    columns = {key: _collect(outputs, key) for key in ("backbone", "euclidean", "hyperbolic")}

    def subset(name: str) -> Optional[Embeddings]:
        if name not in kinds or columns["backbone"] is None:
            return None
        rows = kind == _KIND_CODE[name]
        return Embeddings(*(columns[k][rows] if columns[k] is not None else None
                            for k in ("backbone", "euclidean", "hyperbolic")))

    object_rows_mask = kind == _KIND_CODE["object"]
    object_scene = scene_index[object_rows_mask]
    object_box = object_index[object_rows_mask]
    scenes = scene_set.scenes
    if object_scene.numel():
        category = torch.stack([scenes[s].category_ids[b] for s, b in zip(object_scene.tolist(), object_box.tolist())])
    else:
        category = torch.zeros(0, dtype=torch.long)
    ooc = None
    if scene_set.has_out_of_context and "object" in kinds:
        ooc = torch.tensor([bool(scenes[s].out_of_context[b]) for s, b in zip(object_scene.tolist(), object_box.tolist())],
                           dtype=torch.bool)
    return SceneFeatures(
        scene_set=scene_set,
        image=subset("image"),
        scene=subset("scene"),
        objects=subset("object"),
        object_scene=object_scene,
        object_box=object_box,
        object_category=category,
        object_out_of_context=ooc,
        c=model.c,
        seconds=time.perf_counter() - start,
    )
