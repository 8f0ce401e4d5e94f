"""Scene contexts of the embedded data set: which background photos and which animals belong together.

Backgrounds are photos that ship inside scikit-image 0.26 (``skimage/data/*.png``; the ones that
``skimage.data`` would fetch with pooch are not used, so nothing is downloaded). Grayscale textures
are tinted to give each context its own colour (green pasture, dry savanna, grey mountain rock).
Each Animal-MNIST class belongs to exactly one context, so "out of context" is well defined.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Optional, Tuple

import numpy as np

from hcl_plugin.data.embedded.animal_mnist import ANIMAL_CLASSES

__all__ = ["Background", "SceneContext", "SCENE_CONTEXTS", "context_of_class", "load_background"]


@dataclass(frozen=True)
class Background:
    """A background photo: the ``skimage.data`` loader name and an RGB tint for grayscale photos."""

    name: str
    tint: Optional[Tuple[float, float, float]] = None


@dataclass(frozen=True)
class SceneContext:
    """A context: its name, its background photos and the animal classes that belong there."""

    name: str
    backgrounds: Tuple[Background, ...]
    classes: Tuple[str, ...]


SCENE_CONTEXTS: Tuple[SceneContext, ...] = (
    SceneContext(
        "farm",
        (Background("grass", (0.55, 0.85, 0.35)), Background("gravel", (0.75, 0.6, 0.45))),
        ("cow", "horse", "sheep"),
    ),
    SceneContext(
        "savanna",
        (Background("grass", (0.95, 0.8, 0.45)), Background("moon", (1.0, 0.85, 0.6))),
        ("elephant", "giraffe", "zebra"),
    ),
    SceneContext(
        "household",
        (Background("coffee"), Background("motorcycle_left"), Background("brick", (0.95, 0.75, 0.65))),
        ("cat", "dog"),
    ),
    SceneContext(
        "mountain",
        (Background("moon", (0.7, 0.75, 0.8)), Background("camera", (0.8, 0.85, 0.9))),
        ("bear", "bird"),
    ),
)


def _check_partition() -> Dict[str, str]:
    owner: Dict[str, str] = {}
    for context in SCENE_CONTEXTS:
        for name in context.classes:
            if name in owner:
                raise AssertionError(f"class {name} is in contexts {owner[name]} and {context.name}")
            owner[name] = context.name
    missing = set(ANIMAL_CLASSES) - set(owner)
    if missing:
        raise AssertionError(f"classes without a context: {sorted(missing)}")
    return owner


_CONTEXT_OF_CLASS = _check_partition()


def context_of_class(class_name: str) -> str:
    """The context an animal class belongs to."""
    return _CONTEXT_OF_CLASS[class_name]


# skimage.data loader -> file under skimage/data (only files that ship with the package).
_SHIPPED_FILES = {
    "grass": "grass.png",
    "gravel": "gravel.png",
    "moon": "moon.png",
    "coffee": "coffee.png",
    "motorcycle_left": "motorcycle_left.png",
    "brick": "brick.png",
    "camera": "camera.png",
}


@lru_cache(maxsize=None)
def load_background(background: Background) -> np.ndarray:
    """The background as an RGB ``uint8`` array ``(H, W, 3)``, tinted if a tint is set.

    Reads the PNG that ships in ``skimage/data`` (``skimage.data.data_dir``) so no download happens.
    """
    import os

    import skimage.data
    from skimage import io

    path = os.path.join(skimage.data.data_dir, _SHIPPED_FILES[background.name])
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"background {background.name!r}: {path} is not in this scikit-image install (needs 0.21+)"
        )
    image = io.imread(path)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    image = image[..., :3].astype(np.float32)
    if background.tint is not None:
        image = image.mean(axis=2, keepdims=True) * np.asarray(background.tint, dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
