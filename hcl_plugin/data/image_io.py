"""The one image loader of the project: any image file -> RGB ``uint8`` pixels (PIL + numpy only).

Every path that decodes a scene or evaluation image goes through :func:`load_image_array` (numpy)
or :func:`load_rgb_image` (the same pixels as a PIL image): ``HCLSceneDataset`` (Lightly path),
the MMEngine path (``LoadSceneImageFromFile`` in :mod:`hcl_plugin.mmselfsup.transforms`, which
``SceneBoxDataset`` puts in place of MMCV's ``LoadImageFromFile``), the evaluation crops
(:mod:`hcl_plugin.eval.features`), retrieval folders (:mod:`hcl_plugin.uhml.image_folder`) and the
proposals tool. So every framework sees identical pixels for the same file.

Conversion rules (by PIL mode after decoding; documented in docs/data.md):

* ``RGB``: unchanged. ``1``, ``L``: the gray value in all three channels (``1`` gives 0 / 255).
* ``I;16``, ``I;16L``, ``I;16B``, ``I;16N`` (16-bit grayscale, e.g. 16-bit PNG/TIFF) and ``I``
  (32-bit integer, read as a 16-bit range): ``round(v / 257)`` after clipping ``v`` to ``[0, 65535]``
  (65535 -> 255, 32896 -> 128), never clipping at 255.
* 16-bit colour (RGB/RGBA) PNGs: Pillow's decoder keeps the high byte (``v >> 8``) before this
  function sees the pixels; it differs from ``round(v / 257)`` by at most 1.
* Transparency (``LA``, ``La``, ``PA``, ``RGBA``, ``RGBa``, and ``P``/``L``/``RGB`` with a
  ``transparency`` entry): composited on white, ``round(c * a / 255 + 255 * (1 - a / 255))`` per
  channel; fully transparent pixels are white, opaque pixels unchanged.
* ``P`` (palette) without transparency: the palette colours.
* ``CMYK``: ``round((255 - C) * (255 - K) / 255)`` for R (M and Y for G and B); Adobe's inverted
  CMYK JPEGs are un-inverted by Pillow's decoder first.
* ``YCbCr``, ``HSV``, ``LAB``, ``RGBX``: Pillow's ``convert("RGB")`` where it exists.
* ``F`` (floating point) and anything else: ``ImageLoadError`` (no silent guess of the range).
* EXIF orientation is **not** applied: COCO and OpenImages boxes refer to the stored pixels.
  Multi-frame files (GIF, TIFF) give their first frame.

Errors: a missing file or any decoding failure raises :class:`ImageLoadError` (an ``OSError``)
naming the file.
"""

from __future__ import annotations

import os
from typing import Tuple, Union

import numpy as np
from PIL import Image

__all__ = ["ImageLoadError", "load_image_array", "load_rgb_image", "read_image_size", "to_rgb"]

PathLike = Union[str, "os.PathLike[str]"]

_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
_CONVERTIBLE_MODES = ("YCbCr", "HSV", "LAB", "RGBX")


class ImageLoadError(OSError):
    """An image file is missing or cannot be decoded; the message names the file."""


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """``(H, W, 4)`` uint8 RGBA -> ``(H, W, 3)`` uint8 RGB over white, rounded to nearest."""
    colour = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    # (c * a + 255 * (255 - a)) / 255, rounded: 255 is odd, so there are no ties
    return ((colour * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


def to_rgb(image: Image.Image, name: str = "<image>") -> Image.Image:
    """A decoded PIL image in mode ``RGB`` by the module's conversion rules.

    Args:
        image: a loaded PIL image of any mode.
        name: the file name, for the error message.

    Raises:
        ImageLoadError: a mode without a defined conversion (``F``...), naming ``name``.
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        gray = ((np.clip(values, 0, 65535) * 2 + 257) // 514).astype(np.uint8)  # round(v / 257)
        return Image.fromarray(_gray_to_rgb(gray))
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in image.info):
        return Image.fromarray(_composite_on_white(np.asarray(image.convert("RGBA"))))
    if mode in ("1", "L"):
        return Image.fromarray(_gray_to_rgb(np.asarray(image.convert("L"))))
    if mode == "P":
        return image.convert("RGB")
    if mode == "CMYK":
        cmyk = np.asarray(image).astype(np.uint32)
        rgb = ((255 - cmyk[..., :3]) * (255 - cmyk[..., 3:4]) + 127) // 255
        return Image.fromarray(rgb.astype(np.uint8))
    if mode in _CONVERTIBLE_MODES:
        try:
            return image.convert("RGB")
        except ValueError as error:
            raise ImageLoadError(f"image file {name!r}: cannot convert mode {mode!r} to RGB ({error})") from None
    raise ImageLoadError(
        f"image file {name!r} has mode {mode!r}, which has no defined conversion to 8-bit RGB "
        "(supported: 1, L, LA, La, P, PA, RGB, RGBA, RGBa, RGBX, CMYK, I;16*, I, YCbCr, HSV, LAB); "
        "convert it to 8-bit first"
    )


def _open_error(path: str, error: BaseException) -> ImageLoadError:
    if isinstance(error, FileNotFoundError):
        return ImageLoadError(f"image file {path!r} does not exist")
    if isinstance(error, IsADirectoryError):
        return ImageLoadError(f"image file {path!r} is a directory")
    return ImageLoadError(f"cannot decode image file {path!r}: {type(error).__name__}: {error}")


def load_rgb_image(path: PathLike) -> Image.Image:
    """Open, fully decode and convert ``path`` to an RGB PIL image (see the module's rules).

    Raises:
        ImageLoadError: the file is missing, is not an image, is truncated/corrupt, is too large for
            Pillow's decompression-bomb limit or has an unsupported mode; the message names the file.
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb(image, path)
    except ImageLoadError:
        raise
    except Exception as error:  # any failure of the decoder means this file is unusable: name it
        raise _open_error(path, error) from None


def load_image_array(path: PathLike) -> np.ndarray:
    """The pixels of ``path`` as a C-contiguous ``(H, W, 3)`` RGB ``uint8`` array (see the module's rules).

    Raises:
        ImageLoadError: as :func:`load_rgb_image`.
    """
    return np.array(load_rgb_image(path), dtype=np.uint8, copy=True)


def read_image_size(path: PathLike) -> Tuple[int, int]:
    """``(width, height)`` of the stored pixels, from the file header only (no full decode).

    Raises:
        ImageLoadError: the file is missing or its header is not an image header (names the file).
    """
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            return int(image.width), int(image.height)
    except Exception as error:
        raise _open_error(path, error) from None
