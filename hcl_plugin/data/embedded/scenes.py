"""The embedded multi-object scene data set: Animal-MNIST objects pasted onto ``skimage.data`` photos.

``python -m hcl_plugin.data.embedded.scenes --out DIR --num-images N --image-size S --seed K [--ooc-fraction F]
[--extra-val-images E]`` writes ``DIR/images/<id>.jpg``, ``DIR/annotations.json`` (all images, COCO
format) and ``DIR/annotations_train.json`` / ``DIR/annotations_val.json`` (the splits). Besides the COCO fields
(boxes, RLE instance masks, areas, categories) each image has ``num_objects``, ``context``, ``split``
and ``background``, and each annotation ``out_of_context`` and ``source_index`` (Animal-MNIST index).

Scene rules (all parameters of ``SyntheticConfig``):

* a scene has a context (``contexts.SCENE_CONTEXTS``: farm, savanna, household, mountain), one of
  the context's background photos (random square crop, flip) and ``min_objects``-``max_objects``
  animals of the context's classes;
* exactly ``round(ooc_fraction * num_images)`` scenes (chosen by the seed) hold exactly one animal of
  another context (``out_of_context = true``); those scenes have at least two animals;
* the ``num_images`` scenes are split into ``round(val_fraction * num_images)`` validation scenes
  (chosen by the seed) and training scenes; ``extra_val_images`` further scenes (indices
  ``num_images`` ... ``num_images + extra_val_images - 1``, ``round(ooc_fraction * extra_val_images)``
  of them out of context) all go to the validation split, so the validation split grows without
  changing a single training scene. The analysis wants at least 1,115 validation scenes (a standard
  error of Spearman's rho of at most 0.03, docs/eval.md): :data:`ANALYSIS_EXTRA_VAL_IMAGES` = 1,000 on
  top of the default 1,000 scenes gives 800 training and 1,200 validation scenes (about 19 ms a scene
  at 256 px on one core: some 20 s more, about 40 s for the 2,000 scenes);
* each animal's longest side is ``object_scale`` x image size (uniform), shrunk if it does not fit;
  the IoU between any two annotated boxes (and between the pasted silhouettes' boxes) is at most
  ``max_iou`` and each animal keeps at least ``min_visible_fraction`` of its mask visible (animals are
  pasted largest first);
* boxes and areas come from the visible masks (``pycocotools.mask``), so they agree exactly;
* scene ``i`` draws from ``numpy.random.default_rng([seed, i])``: the same seed gives the same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from hcl_plugin.data.embedded.animal_mnist import ANIMAL_CLASSES, AnimalMNIST, load_animal_mnist
from hcl_plugin.data.embedded.contexts import SCENE_CONTEXTS, SceneContext, context_of_class, load_background

__all__ = ["ANALYSIS_EXTRA_VAL_IMAGES", "SyntheticConfig", "SceneObject", "Scene", "compose_scene",
           "build_synthetic_dataset", "main"]

_OOC_STREAM = 2**31 + 1  # extra seed words for the set-level draws (OOC scenes, splits)
_SPLIT_STREAM = 2**31 + 2
_EXTRA_OOC_STREAM = 2**31 + 3

#: Extra validation scenes for the analysis (docs/eval.md): with the default 1,000 scenes (200 of them
#: validation) they make a 1,200-scene validation split, Spearman standard error <= 1/sqrt(1197) = 0.029.
ANALYSIS_EXTRA_VAL_IMAGES = 1000


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the embedded set (see the module docstring for the rules)."""

    num_images: int = 1000
    image_size: int = 256
    seed: int = 0
    ooc_fraction: float = 0.1
    val_fraction: float = 0.2
    min_objects: int = 1
    max_objects: int = 6
    object_scale: Tuple[float, float] = (0.15, 0.5)
    max_iou: float = 0.3
    min_visible_fraction: float = 0.5
    min_object_size: int = 10
    jpeg_quality: int = 90
    placement_attempts: int = 40
    extra_val_images: int = 0

    @property
    def total_images(self) -> int:
        """``num_images + extra_val_images``: every scene written."""
        return self.num_images + self.extra_val_images

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad parameter."""
        checks = [
            (self.num_images >= 1, "num_images must be >= 1"),
            (self.extra_val_images >= 0, "extra_val_images must be >= 0"),
            (self.image_size >= 32, "image_size must be >= 32"),
            (0.0 <= self.ooc_fraction <= 1.0, "ooc_fraction must be in [0, 1]"),
            (0.0 <= self.val_fraction < 1.0, "val_fraction must be in [0, 1)"),
            (1 <= self.min_objects <= self.max_objects, "need 1 <= min_objects <= max_objects"),
            (0 < self.object_scale[0] <= self.object_scale[1] <= 1, "object_scale must be 0 < low <= high <= 1"),
            (0.0 <= self.max_iou <= 1.0, "max_iou must be in [0, 1]"),
            (0.0 <= self.min_visible_fraction <= 1.0, "min_visible_fraction must be in [0, 1]"),
            (1 <= self.jpeg_quality <= 100, "jpeg_quality must be in [1, 100]"),
            (self.ooc_fraction == 0 or self.max_objects >= 2, "out-of-context scenes need max_objects >= 2"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{message}; got {self}")


@dataclass
class SceneObject:
    """One pasted animal: its class, its visible mask on the canvas, and where it came from."""

    class_name: str
    mask: np.ndarray
    out_of_context: bool
    source_index: int


@dataclass
class Scene:
    """A composed scene: the RGB canvas, its context, background name and objects (back to front)."""

    image: np.ndarray
    context: str
    background: str
    objects: List[SceneObject] = field(default_factory=list)


def _silhouette(animals: AnimalMNIST, index: int, side: int) -> Tuple[np.ndarray, np.ndarray]:
    """Scale animal ``index`` so its longest side is ``side`` px: (shade in [0, 1], filled mask)."""
    from scipy.ndimage import binary_fill_holes

    glyph = animals.images[index]
    rows, cols = np.nonzero(glyph > 32)
    if rows.size == 0:
        raise ValueError(f"Animal-MNIST image {index} is empty")
    glyph = glyph[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    height, width = glyph.shape
    scale = side / max(height, width)
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    shade = np.asarray(Image.fromarray(glyph).resize(size, Image.BILINEAR), dtype=np.float32) / 255.0
    mask = binary_fill_holes(shade > 0.25)
    return shade, mask


def _box_iou(a: Tuple[int, int, int, int], b: Tuple[int, int, int, int]) -> float:
    inter_w = min(a[2], b[2]) - max(a[0], b[0])
    inter_h = min(a[3], b[3]) - max(a[1], b[1])
    if inter_w <= 0 or inter_h <= 0:
        return 0.0
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _mask_box(mask: np.ndarray) -> Tuple[int, int, int, int]:
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    y1, y2 = np.argmax(rows), len(rows) - np.argmax(rows[::-1])
    x1, x2 = np.argmax(cols), len(cols) - np.argmax(cols[::-1])
    return int(x1), int(y1), int(x2), int(y2)


def _acceptable(
    full: np.ndarray, visible_masks: List[np.ndarray], full_masks: List[np.ndarray], config: "SyntheticConfig"
) -> bool:
    """Whether pasting ``full`` on top keeps every earlier animal visible enough and all boxes of the
    visible masks (the annotated boxes) within ``max_iou`` of each other."""
    if not full.any():
        return False
    after = [visible & ~full for visible in visible_masks]
    for visible, whole in zip(after, full_masks):
        if not visible.any() or visible.sum() < config.min_visible_fraction * whole.sum():
            return False
    boxes = [_mask_box(m) for m in after] + [_mask_box(full)]
    return all(
        _box_iou(boxes[i], boxes[j]) <= config.max_iou for i in range(len(boxes)) for j in range(i + 1, len(boxes))
    )


def _background(context: SceneContext, size: int, rng: np.random.Generator) -> Tuple[np.ndarray, str]:
    background = context.backgrounds[int(rng.integers(len(context.backgrounds)))]
    photo = load_background(background)
    height, width = photo.shape[:2]
    side = int(round(min(height, width) * rng.uniform(0.5, 1.0)))
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    crop = Image.fromarray(photo[top : top + side, left : left + side]).resize((size, size), Image.BILINEAR)
    canvas = np.array(crop, dtype=np.uint8)
    if rng.random() < 0.5:
        canvas = canvas[:, ::-1]
    return np.ascontiguousarray(canvas), background.name


def compose_scene(
    config: SyntheticConfig,
    animals: AnimalMNIST,
    index: int,
    out_of_context: bool,
    class_members: Optional[Dict[str, np.ndarray]] = None,
) -> Scene:
    """Compose scene ``index`` (deterministic in ``(config.seed, index)``)."""
    rng = np.random.default_rng([config.seed, index])
    size = config.image_size
    if class_members is None:
        class_members = {name: np.flatnonzero(animals.labels == i) for i, name in enumerate(ANIMAL_CLASSES)}
    context = SCENE_CONTEXTS[int(rng.integers(len(SCENE_CONTEXTS)))]
    canvas, background_name = _background(context, size, rng)

    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    if out_of_context:
        count = max(count, 2)
    classes = [context.classes[int(rng.integers(len(context.classes)))] for _ in range(count)]
    ooc_flags = [False] * count
    if out_of_context:
        foreign = [c for c in ANIMAL_CLASSES if context_of_class(c) != context.name]
        position = int(rng.integers(count))
        classes[position] = foreign[int(rng.integers(len(foreign)))]
        ooc_flags[position] = True
    sides = rng.uniform(config.object_scale[0], config.object_scale[1], size=count) * size
    order = np.argsort(-sides, kind="stable")  # paste the largest first, so small ones stay visible

    placed_boxes: List[Tuple[int, int, int, int]] = []
    full_masks: List[np.ndarray] = []
    visible_masks: List[np.ndarray] = []
    objects: List[SceneObject] = []
    for position in order:
        class_name = classes[position]
        source = int(rng.choice(class_members[class_name]))
        side = float(sides[position])
        colour = rng.uniform(0.25, 1.0, size=3).astype(np.float32) * 255.0
        for attempt in range(config.placement_attempts * 8):
            if attempt and attempt % config.placement_attempts == 0:
                side = max(config.min_object_size, side * 0.85)
            shade, mask = _silhouette(animals, source, min(int(round(side)), size))
            height, width = mask.shape
            top = int(rng.integers(0, size - height + 1))
            left = int(rng.integers(0, size - width + 1))
            box = (left, top, left + width, top + height)
            if any(_box_iou(box, other) > config.max_iou for other in placed_boxes):
                continue
            full = np.zeros((size, size), dtype=bool)
            full[top : top + height, left : left + width] = mask
            if _acceptable(full, visible_masks, full_masks, config):
                break
        else:
            raise RuntimeError(
                f"scene {index}: could not place {class_name} (object {len(objects) + 1} of {count}) with "
                f"max_iou={config.max_iou} and min_visible_fraction={config.min_visible_fraction}"
            )
        region = canvas[top : top + height, left : left + width]
        appearance = colour * (0.3 + 0.7 * shade[..., None])
        region[mask] = np.clip(appearance[mask], 0, 255).astype(np.uint8)
        for visible in visible_masks:
            visible &= ~full
        placed_boxes.append(box)
        full_masks.append(full)
        visible_masks.append(full.copy())
        objects.append(SceneObject(class_name, visible_masks[-1], ooc_flags[position], source))
    return Scene(canvas, context.name, background_name, objects)


def _exact_subset(count: int, total: int, seed: int, stream: int) -> np.ndarray:
    chosen = np.zeros(total, dtype=bool)
    chosen[np.random.default_rng([seed, stream]).permutation(total)[:count]] = True
    return chosen


def build_synthetic_dataset(
    out_dir: os.PathLike,
    config: SyntheticConfig = SyntheticConfig(),
    animals: Optional[AnimalMNIST] = None,
    progress: bool = True,
) -> Dict[str, object]:
    """Write the data set to ``out_dir`` and return a summary (counts and seconds taken).

    Raises:
        AnimalMNISTUnavailable: Animal-MNIST is not cached and cannot be fetched (never replaced by noise).
    """
    from pycocotools import mask as mask_utils
    from tqdm import tqdm

    config.validate()
    start = time.perf_counter()
    animals = animals if animals is not None else load_animal_mnist()
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    class_members = {name: np.flatnonzero(animals.labels == i) for i, name in enumerate(ANIMAL_CLASSES)}
    category_id = {name: i + 1 for i, name in enumerate(ANIMAL_CLASSES)}
    ooc = _exact_subset(int(round(config.ooc_fraction * config.num_images)), config.num_images, config.seed, _OOC_STREAM)
    val = _exact_subset(int(round(config.val_fraction * config.num_images)), config.num_images, config.seed, _SPLIT_STREAM)
    if config.extra_val_images:  # appended validation scenes: the first num_images keep their split
        extra = config.extra_val_images
        ooc = np.concatenate([ooc, _exact_subset(int(round(config.ooc_fraction * extra)), extra, config.seed,
                                                 _EXTRA_OOC_STREAM)])
        val = np.concatenate([val, np.ones(extra, dtype=bool)])

    images: List[dict] = []
    annotations: List[dict] = []
    digits = max(6, len(str(config.total_images)))
    for index in tqdm(range(config.total_images), desc="synthetic scenes", unit="img", disable=not progress):
        scene = compose_scene(config, animals, index, bool(ooc[index]), class_members)
        image_id = index + 1
        file_name = f"{image_id:0{digits}d}.jpg"
        buffer = io.BytesIO()
        Image.fromarray(scene.image).save(buffer, format="JPEG", quality=config.jpeg_quality)
        (out_dir / "images" / file_name).write_bytes(buffer.getvalue())
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": config.image_size,
                "height": config.image_size,
                "num_objects": len(scene.objects),
                "context": scene.context,
                "background": scene.background,
                "split": "val" if val[index] else "train",
            }
        )
        for obj in scene.objects:
            rle = mask_utils.encode(np.asfortranarray(obj.mask.astype(np.uint8)))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_id[obj.class_name],
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "area": float(mask_utils.area(rle)),
                    "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
                    "iscrowd": 0,
                    "out_of_context": obj.out_of_context,
                    "source_index": obj.source_index,
                }
            )
    categories = [
        {"id": category_id[name], "name": name, "supercategory": "animal", "context": context_of_class(name)}
        for name in ANIMAL_CLASSES
    ]
    info = {
        "description": "hcl_plugin embedded scene set: Animal-MNIST (MIT) animals on scikit-image photos",
        "generator": "hcl_plugin.data.embedded.scenes",
        "config": asdict(config),
        "contexts": {c.name: list(c.classes) for c in SCENE_CONTEXTS},
    }
    licenses = [{"id": 1, "name": "Animal-MNIST: MIT; backgrounds: see skimage/data/README.txt"}]

    def write(name: str, keep: Sequence[dict]) -> None:
        ids = {image["id"] for image in keep}
        document = {
            "info": info,
            "licenses": licenses,
            "images": list(keep),
            "annotations": [a for a in annotations if a["image_id"] in ids],
            "categories": categories,
        }
        with open(out_dir / name, "w", encoding="utf-8") as handle:
            json.dump(document, handle, separators=(",", ":"))

    write("annotations.json", images)
    write("annotations_train.json", [i for i in images if i["split"] == "train"])
    write("annotations_val.json", [i for i in images if i["split"] == "val"])
    return {
        "out_dir": str(out_dir),
        "num_images": len(images),
        "num_annotations": len(annotations),
        "num_out_of_context_images": int(ooc.sum()),
        "num_val_images": int(val.sum()),
        "num_train_images": int((~val).sum()),
        "seconds": time.perf_counter() - start,
    }


def _parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    defaults = SyntheticConfig()
    parser = argparse.ArgumentParser(
        prog="python -m hcl_plugin.data.embedded.scenes",
        description="Build the embedded multi-object scene data set (COCO format).",
    )
    parser.add_argument("--out", required=True, help="output folder (images/ and annotations*.json)")
    parser.add_argument("--num-images", type=int, default=defaults.num_images)
    parser.add_argument("--image-size", type=int, default=defaults.image_size, help="square side in px")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--ooc-fraction", type=float, default=defaults.ooc_fraction,
                        help="fraction of scenes with exactly one out-of-context animal")
    parser.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    parser.add_argument("--extra-val-images", type=int, default=defaults.extra_val_images,
                        help="further scenes, all in the validation split (the training split is unchanged); "
                             f"{ANALYSIS_EXTRA_VAL_IMAGES} gives the analysis' 1,200-scene validation split with the "
                             "default --num-images")
    parser.add_argument("--min-objects", type=int, default=defaults.min_objects)
    parser.add_argument("--max-objects", type=int, default=defaults.max_objects)
    parser.add_argument("--max-iou", type=float, default=defaults.max_iou)
    parser.add_argument("--object-scale", type=float, nargs=2, default=defaults.object_scale,
                        metavar=("MIN", "MAX"), help="longest animal side as a fraction of the image")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; returns the exit status."""
    from hcl_plugin.data.embedded.animal_mnist import AnimalMNISTUnavailable

    args = _parse_args(argv)
    config = SyntheticConfig(
        num_images=args.num_images,
        image_size=args.image_size,
        seed=args.seed,
        ooc_fraction=args.ooc_fraction,
        val_fraction=args.val_fraction,
        extra_val_images=args.extra_val_images,
        min_objects=args.min_objects,
        max_objects=args.max_objects,
        max_iou=args.max_iou,
        object_scale=tuple(args.object_scale),
    )
    try:
        config.validate()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        summary = build_synthetic_dataset(args.out, config, progress=not args.quiet)
    except AnimalMNISTUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
