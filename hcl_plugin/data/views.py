"""The four HCL views of a scene image, and the standard MoCo-v2 two-view pipeline for comparison.

Augmentations as in the official HCL code (github shlokk/HCL,
``openimages_dataset_hierarchy_diff_crop_gtbbox.py``: ``transform_moco`` and ``transform``), which
copies MoCo v2 (github facebookresearch/moco, ``main_moco.py`` ``--aug-plus``):

* Euclidean views (two, of the expanded object crop): RandomResizedCrop(scale 0.2-1), ColorJitter(0.4,
  0.4, 0.4, 0.1) with p 0.8, RandomGrayscale p 0.2, Gaussian blur sigma 0.1-2 with p 0.5 (PIL
  ``GaussianBlur(radius=sigma)`` as ``moco.loader.GaussianBlur``), horizontal flip, ImageNet normalisation.
* Hyperbolic views (scene crop and raw object crop): Resize to a square, then the same colour, grayscale,
  blur and flip — no random crop.

View sizes: the official code makes all four views 224 x 224. ``hyperbolic_size`` (``HCLViews``, and
the same option in :class:`hcl_plugin.lightly.HCLTransform`, ``scene_dataset``, ``--hyperbolic-size``
and MMSelfSup's ``SceneObjectMultiView``) makes the two hyperbolic views smaller (or larger) than the
Euclidean ones; ``None`` keeps them at the Euclidean size. It changes only the hyperbolic views' resize
target: the boxes, the Euclidean views and the random draws are the same (docs/data.md).

Cost: the photometric steps (colour jitter, above all its hue step, and blur) dominate, and four views
cost twice two. ``HCLViews`` therefore applies them at the smaller of the crop's and the output's
resolution (:class:`ResizeWithPhotometric`): a small object crop is jittered before it is upsampled, a
large scene crop after it is downsampled, with the blur radius scaled to the resolution it is applied
at. The colour steps are per-pixel, so the order changes the result only by interpolation rounding.
:class:`MoCoV2TwoViews`, the baseline, keeps the standard order.

Everything is built on ``torchvision.transforms.v2``; the boxes used are returned with the views.
Crops take the pixel window of :func:`hcl_plugin.data.boxes.box_to_pixel_window` (start floored, end
ceiled, inside the image), the same pixels as the MMSelfSup transforms.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import torch
from PIL import Image, ImageFilter
from torch import Tensor
from torchvision.transforms import RandomResizedCrop, v2

from hcl_plugin.data.box_sampler import CropSample, SceneObjectSampler
from hcl_plugin.data.boxes import box_to_pixel_window

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VIEW_KEYS",
    "BOX_KEYS",
    "PILGaussianBlur",
    "ResizeWithPhotometric",
    "RandomResizedCropWithPhotometric",
    "moco_v2_augmentation",
    "HCLViews",
    "MoCoV2TwoViews",
    "check_view_size",
    "resolve_hyperbolic_size",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Image tensors returned by ``HCLViews``: two Euclidean views of the (expanded) object crop, then the
#: hyperbolic scene crop (query) and object crop (key).
VIEW_KEYS = ("object_view_1", "object_view_2", "hyperbolic_scene", "hyperbolic_object")
#: Boxes (pixel ``xyxy`` in the input image) returned with the views, for analysis.
BOX_KEYS = ("object_box", "expanded_object_box", "scene_box")


class PILGaussianBlur(torch.nn.Module):
    """Gaussian blur with a random sigma, as MoCo v2's ``moco.loader.GaussianBlur`` (PIL images).

    Args:
        sigma: range of the blur radius (MoCo v2: 0.1 to 2).
    """

    def __init__(self, sigma: Tuple[float, float] = (0.1, 2.0)) -> None:
        super().__init__()
        if not 0 < sigma[0] <= sigma[1]:
            raise ValueError(f"sigma must be a range 0 < low <= high, got {sigma}")
        self.sigma = sigma

    def forward(self, image: Image.Image, radius_scale: float = 1.0) -> Image.Image:
        """Blur with a radius drawn from ``sigma`` and multiplied by ``radius_scale``."""
        low, high = self.sigma
        radius = low + (high - low) * float(torch.rand(()))
        return image.filter(ImageFilter.GaussianBlur(radius=radius * radius_scale))


class ResizeWithPhotometric(torch.nn.Module):
    """Resize a PIL crop to ``size`` x ``size`` and apply MoCo v2's photometric steps at the smaller scale.

    Colour jitter (p 0.8), grayscale (p 0.2) and blur (p 0.5, radius defined at the output resolution)
    run before the resize when the crop has fewer pixels than the output, after it otherwise; then
    flip, to-tensor and normalisation. Same distribution of augmentations as
    ``Resize`` followed by the MoCo v2 steps, at a fraction of the cost for small crops.
    """

    def __init__(
        self,
        size: int,
        blur_sigma: Tuple[float, float] = (0.1, 2.0),
        normalize: Optional[Tuple[Sequence[float], Sequence[float]]] = (IMAGENET_MEAN, IMAGENET_STD),
    ) -> None:
        super().__init__()
        self.size = size
        colour_jitter, grayscale, _ = _photometric_steps(blur_sigma)
        self.colour = v2.Compose([colour_jitter, grayscale])
        self.blur = PILGaussianBlur(blur_sigma)  # applied with p 0.5 and a radius scaled to the resolution
        self.resize = v2.Resize((size, size), antialias=True)
        self.finish = v2.Compose(_flip_and_tensor_steps(normalize))

    def photometric(self, image: Image.Image, radius_scale: float) -> Image.Image:
        image = self.colour(image)
        if float(torch.rand(())) < 0.5:
            image = self.blur(image, radius_scale)
        return image

    def forward(self, image: Image.Image) -> Tensor:
        if image.width * image.height < self.size * self.size:
            scale = ((image.width * image.height) / (self.size * self.size)) ** 0.5
            image = self.resize(self.photometric(image, scale))
        else:
            image = self.photometric(self.resize(image), 1.0)
        return self.finish(image)


class RandomResizedCropWithPhotometric(torch.nn.Module):
    """MoCo v2's view (RandomResizedCrop + photometric steps) with the photometric steps at the smaller scale."""

    def __init__(
        self,
        size: int,
        crop_scale: Tuple[float, float] = (0.2, 1.0),
        blur_sigma: Tuple[float, float] = (0.1, 2.0),
        normalize: Optional[Tuple[Sequence[float], Sequence[float]]] = (IMAGENET_MEAN, IMAGENET_STD),
    ) -> None:
        super().__init__()
        self.crop_scale = crop_scale
        self.resize = ResizeWithPhotometric(size, blur_sigma, normalize)

    def forward(self, image: Image.Image) -> Tensor:
        top, left, height, width = RandomResizedCrop.get_params(image, list(self.crop_scale), [3 / 4, 4 / 3])
        return self.resize(image.crop((left, top, left + width, top + height)))


def _photometric_steps(blur_sigma: Tuple[float, float]) -> list:
    return [
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([PILGaussianBlur(blur_sigma)], p=0.5),
    ]


def _flip_and_tensor_steps(normalize: Optional[Tuple[Sequence[float], Sequence[float]]]) -> list:
    steps = [v2.RandomHorizontalFlip(), v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)]
    if normalize is not None:
        steps.append(v2.Normalize(mean=list(normalize[0]), std=list(normalize[1])))
    return steps


def moco_v2_augmentation(
    size: int = 224,
    crop_scale: Tuple[float, float] = (0.2, 1.0),
    blur_sigma: Tuple[float, float] = (0.1, 2.0),
    normalize: Optional[Tuple[Sequence[float], Sequence[float]]] = (IMAGENET_MEAN, IMAGENET_STD),
) -> v2.Compose:
    """MoCo v2 augmentation of one view (PIL image in, float tensor ``(3, size, size)`` out)."""
    return v2.Compose(
        [v2.RandomResizedCrop(size, scale=crop_scale, antialias=True)]
        + _photometric_steps(blur_sigma)
        + _flip_and_tensor_steps(normalize)
    )


def _crop(image: Image.Image, box: Tensor) -> Image.Image:
    """The pixels of ``image`` under the pixel ``xyxy`` ``box`` (:func:`~hcl_plugin.data.boxes.box_to_pixel_window`)."""
    return image.crop(box_to_pixel_window(box, image.width, image.height))


def _as_pil(image: Union[Image.Image, Tensor]) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode != "RGB" else image
    if isinstance(image, Tensor):
        return v2.functional.to_pil_image(image).convert("RGB")
    raise TypeError(f"image must be a PIL image or a (C, H, W) tensor, got {type(image).__name__}")


def check_view_size(value: Any, name: str) -> int:
    """``value`` as a positive integer number of pixels, else ``ValueError`` naming ``name``.

    Integers and integral floats (``112.0``) pass; ``0``, negatives, fractions, booleans and
    non-numbers do not.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
            or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer (pixels), got {value!r}")
    return int(value)


def resolve_hyperbolic_size(hyperbolic_size: Optional[Any], euclidean_size: Any) -> int:
    """The side of the hyperbolic views: ``hyperbolic_size`` (validated), or ``euclidean_size`` when it is
    ``None`` (the official HCL setting: all four views 224 x 224)."""
    if hyperbolic_size is None:
        return check_view_size(euclidean_size, "euclidean_size")
    return check_view_size(hyperbolic_size, "hyperbolic_size")


class HCLViews:
    """Turn (image, boxes) into the four HCL views.

    Args:
        sampler: draws the object and scene boxes (default: official HCL rules).
        euclidean_size: side of the two Euclidean (MoCo) views (official: 224).
        hyperbolic_size: side of the hyperbolic scene and object views; ``None`` (default) = ``euclidean_size``,
            the official setting (224 for both). A smaller value makes the hyperbolic views cheaper and
            changes nothing else: same boxes, same Euclidean views, same random draws.
        crop_scale: RandomResizedCrop scale range of the Euclidean views (MoCo v2: 0.2-1).
        blur_sigma: Gaussian blur sigma range (MoCo v2: 0.1-2).
        normalize: ``(mean, std)`` or ``None`` for [0, 1] tensors.

    Calling it returns a dict with the ``VIEW_KEYS`` (float tensors ``(3, size, size)``), the
    ``BOX_KEYS`` (float tensors ``(4,)``, pixel ``xyxy``) and ``"source"`` (where the boxes came from),
    or ``None`` when the image has too few boxes and the sampler's policy is ``"resample"``.

    Raises:
        ValueError: ``euclidean_size`` or ``hyperbolic_size`` is not a positive integer (the message
            names it).

    Example:
        >>> from PIL import Image
        >>> views = HCLViews(euclidean_size=32, hyperbolic_size=16)
        >>> out = views(Image.new("RGB", (128, 96)), [[0, 0, 64, 64], [40, 30, 128, 96]])
        >>> tuple(out["object_view_1"].shape), tuple(out["hyperbolic_scene"].shape)
        ((3, 32, 32), (3, 16, 16))
    """

    def __init__(
        self,
        sampler: Optional[SceneObjectSampler] = None,
        euclidean_size: int = 224,
        hyperbolic_size: Optional[int] = None,
        crop_scale: Tuple[float, float] = (0.2, 1.0),
        blur_sigma: Tuple[float, float] = (0.1, 2.0),
        normalize: Optional[Tuple[Sequence[float], Sequence[float]]] = (IMAGENET_MEAN, IMAGENET_STD),
    ) -> None:
        euclidean_size = check_view_size(euclidean_size, "euclidean_size")
        hyperbolic_size = resolve_hyperbolic_size(hyperbolic_size, euclidean_size)
        self.euclidean_size, self.hyperbolic_size = euclidean_size, hyperbolic_size
        self.sampler = sampler if sampler is not None else SceneObjectSampler()
        self.euclidean = RandomResizedCropWithPhotometric(euclidean_size, crop_scale, blur_sigma, normalize)
        self.hyperbolic = ResizeWithPhotometric(hyperbolic_size, blur_sigma, normalize)

    def render(self, image: Union[Image.Image, Tensor], sample: CropSample) -> Dict[str, object]:
        """The four views for an already drawn ``CropSample``."""
        image = _as_pil(image)
        expanded = _crop(image, sample.expanded_object_box)
        return {
            "object_view_1": self.euclidean(expanded),
            "object_view_2": self.euclidean(expanded),
            "hyperbolic_scene": self.hyperbolic(_crop(image, sample.scene_box)),
            "hyperbolic_object": self.hyperbolic(_crop(image, sample.object_box)),
            "object_box": sample.object_box,
            "expanded_object_box": sample.expanded_object_box,
            "scene_box": sample.scene_box,
            "source": sample.source,
        }

    def __call__(
        self,
        image: Union[Image.Image, Tensor],
        boxes: object,
        generator: Optional[torch.Generator] = None,
        proposals: Optional[object] = None,
    ) -> Optional[Dict[str, object]]:
        """Draw boxes with the sampler (``generator`` or one seeded from torch's RNG) and render."""
        image = _as_pil(image)
        if generator is None:
            generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        sample = self.sampler.sample((image.height, image.width), boxes, generator, proposals=proposals)
        return None if sample is None else self.render(image, sample)


class MoCoV2TwoViews:
    """The standard MoCo v2 pipeline: two augmented views of the whole image (the baseline)."""

    def __init__(
        self,
        size: int = 224,
        crop_scale: Tuple[float, float] = (0.2, 1.0),
        blur_sigma: Tuple[float, float] = (0.1, 2.0),
        normalize: Optional[Tuple[Sequence[float], Sequence[float]]] = (IMAGENET_MEAN, IMAGENET_STD),
    ) -> None:
        self.augment = moco_v2_augmentation(size, crop_scale, blur_sigma, normalize)

    def __call__(self, image: Union[Image.Image, Tensor]) -> Tuple[Tensor, Tensor]:
        image = _as_pil(image)
        return self.augment(image), self.augment(image)
