"""Scene/object data pipeline for HCL, framework-free (torch, torchvision, pycocotools, scikit-image).

Modules: ``boxes`` (box utilities, ``box_to_pixel_window``), ``box_sampler`` (``SceneObjectSampler``),
``views`` (``HCLViews``), ``readers`` (COCO / OpenImages / proposals), ``image_io`` (the one image
loader), ``scene_dataset`` (``HCLSceneDataset``), ``proposals`` and ``proposals_file`` (selective
search). The embedded data sets' builders and downloaders are in the subpackage ``embedded``
(``animal_mnist``, ``contexts``, ``scenes``, ``retrieval``, ``clipart``). See docs/data.md.

The old module paths ``sampler``, ``animal_mnist``, ``scene_contexts``, ``synthetic``,
``embedded_retrieval`` and ``embedded_clipart`` are deprecated aliases (one release) that forward every
name with a ``DeprecationWarning``.

Names are imported lazily on first access, so ``import hcl_plugin.data`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict, List

_EXPORTS: Dict[str, str] = {
    # boxes
    "as_boxes": "boxes",
    "xywh_to_xyxy": "boxes",
    "xyxy_to_xywh": "boxes",
    "normalize_boxes": "boxes",
    "denormalize_boxes": "boxes",
    "clip_boxes": "boxes",
    "degenerate_mask": "boxes",
    "filter_by_min_area": "boxes",
    "union_box": "boxes",
    "box_contains": "boxes",
    "expand_box_randomly": "boxes",
    "to_bounding_boxes": "boxes",
    "box_to_pixel_window": "boxes",
    # box sampler
    "SceneObjectSampler": "box_sampler",
    "CropSample": "box_sampler",
    "TooFewBoxesPolicy": "box_sampler",
    "TooFewBoxesError": "box_sampler",
    # views
    "HCLViews": "views",
    "MoCoV2TwoViews": "views",
    "VIEW_KEYS": "views",
    "BOX_KEYS": "views",
    # readers
    "SceneRecord": "readers",
    "ReadResult": "readers",
    "AnnotationError": "readers",
    "read_coco": "readers",
    "read_openimages": "readers",
    "read_proposal_boxes": "readers",
    "load_coco_document": "readers",
    "validate_box": "readers",
    # image loading (the one loader of every framework)
    "ImageLoadError": "image_io",
    "load_rgb_image": "image_io",
    "load_image_array": "image_io",
    "read_image_size": "image_io",
    # data set
    "HCLSceneDataset": "scene_dataset",
    # proposals
    "SelectiveSearchConfig": "proposals",
    "selective_search": "proposals",
    "filter_proposals": "proposals",
    "propose_boxes": "proposals",
    "make_proposals_file": "proposals_file",
    # embedded data sets (builders in the subpackage ``embedded``)
    "load_animal_mnist": "embedded.animal_mnist",
    "AnimalMNISTUnavailable": "embedded.animal_mnist",
    "ANIMAL_CLASSES": "embedded.animal_mnist",
    "SCENE_CONTEXTS": "embedded.contexts",
    "SyntheticConfig": "embedded.scenes",
    "build_synthetic_dataset": "embedded.scenes",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_EXPORTS))
