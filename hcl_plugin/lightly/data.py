"""Scene data sets for the Lightly / Lightning examples: COCO, OpenImages or the embedded set."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from hcl_plugin.data.readers import ReadResult, read_coco, read_openimages
from hcl_plugin.data.box_sampler import SceneObjectSampler
from hcl_plugin.data.scene_dataset import HCLSceneDataset
from hcl_plugin.data.views import HCLViews, check_view_size

#: Where the examples build the embedded set when no ``--data`` is given.
DEFAULT_EMBEDDED_DIR = Path("data") / "embedded"


def read_scenes(image_root: os.PathLike, annotations: os.PathLike) -> ReadResult:
    """COCO JSON (``.json``; also a proposals file in COCO format) or OpenImages box CSV (``.csv``)."""
    annotations = Path(annotations)
    if not annotations.exists():
        raise FileNotFoundError(f"annotation file {str(annotations)!r} does not exist")
    if annotations.suffix.lower() == ".csv":
        return read_openimages(annotations, image_root)
    return read_coco(annotations, image_root)


def ensure_embedded_dataset(root: os.PathLike = DEFAULT_EMBEDDED_DIR, num_images: int = 1000, image_size: int = 256,
                            seed: int = 0, ooc_fraction: float = 0.1, extra_val_images: int = 0) -> Path:
    """Build the embedded Animal-MNIST scene set at ``root`` unless it is already there; return ``root``.

    ``extra_val_images`` appends that many validation scenes (``SyntheticConfig.extra_val_images``; the
    first ``num_images`` keep their split). An existing folder is used as it is.
    """
    from hcl_plugin.data.embedded.scenes import SyntheticConfig, build_synthetic_dataset

    root = Path(root)
    if not (root / "annotations.json").exists():
        config = SyntheticConfig(num_images=num_images, image_size=image_size, seed=seed, ooc_fraction=ooc_fraction,
                                 extra_val_images=extra_val_images)
        build_synthetic_dataset(root, config)
    return root


def scene_dataset(
    image_root: os.PathLike,
    annotations: os.PathLike,
    input_size: int = 224,
    min_box_size: float = 56,
    expand_to: float = 256,
    too_few_boxes: str = "resample",
    seed: Optional[int] = None,
    on_bad_image: str = "raise",
    hyperbolic_size: Optional[int] = None,
) -> HCLSceneDataset:
    """A ``torch.utils.data.Dataset`` of HCL view dicts (keys ``hcl_plugin.data.VIEW_KEYS`` + boxes).

    ``torch.utils.data.default_collate`` batches its items; each item holds ``object_view_1``,
    ``object_view_2`` (``input_size`` x ``input_size``), ``hyperbolic_scene``, ``hyperbolic_object``
    (``hyperbolic_size`` x ``hyperbolic_size``; ``None`` = ``input_size``, the official setting: 224 for
    all four views), the boxes used, ``source``, ``image_id`` and ``index``.

    Raises:
        ValueError: ``input_size`` or ``hyperbolic_size`` is not a positive integer (named in the message).
    """
    input_size = check_view_size(input_size, "input_size")
    sampler = SceneObjectSampler(min_box_area=float(min_box_size) ** 2, expand_to=expand_to, too_few_boxes=too_few_boxes)
    views = HCLViews(sampler, euclidean_size=input_size, hyperbolic_size=hyperbolic_size)
    return HCLSceneDataset(read_scenes(image_root, annotations), views, seed=seed, on_bad_image=on_bad_image)
