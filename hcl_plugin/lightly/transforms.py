"""``HCLTransform``: the four HCL views from an image and its boxes, in Lightly's transform style."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from PIL import Image
from torch import Tensor

from hcl_plugin.data.box_sampler import SceneObjectSampler
from hcl_plugin.data.views import IMAGENET_MEAN, IMAGENET_STD, VIEW_KEYS, HCLViews


class HCLTransform:
    """Returns ``[object_view_1, object_view_2, scene_view, object_view]`` like Lightly's multi-view
    transforms return a list of views, but from ``(image, boxes)``.

    The first two are MoCo-v2 views of an object crop (Euclidean loss); the last two are the scene crop
    (containing the object) and the object crop for the hyperbolic loss. Box rules follow the official
    HCL code (see :class:`hcl_plugin.data.SceneObjectSampler`); ``min_box_size`` and ``expand_to`` are
    in pixels of the input image. Images with fewer than ``min_boxes`` usable boxes follow
    ``too_few_boxes``: ``"random_crops"`` (default here: a transform cannot resample another image)
    or ``"proposals"`` (pass ``proposals``); use :class:`hcl_plugin.data.HCLSceneDataset` for
    ``"resample"``. Grayscale, palette and RGBA images are converted to RGB; images smaller than the
    output size are upsampled.

    Args:
        input_size: side of the two Euclidean views.
        hyperbolic_input_size: side of the scene and object views (default ``input_size``).
        min_scale: RandomResizedCrop lower scale of the Euclidean views (MoCo v2: 0.2).
        min_box_size: boxes smaller than ``min_box_size**2`` px² are not used (official: 56).
        expand_to: small object crops are grown towards this size for the Euclidean views (official: 256).
        too_few_boxes: policy for images without enough usable boxes.
        normalize: ``(mean, std)`` or None.

    Examples:
        >>> transform = HCLTransform(input_size=64, min_box_size=16, expand_to=96)
        >>> views = transform(Image.new("RGB", (128, 128)), [[0, 0, 60, 60], [50, 50, 120, 120]])
        >>> [tuple(v.shape) for v in views]
        [(3, 64, 64), (3, 64, 64), (3, 64, 64), (3, 64, 64)]
    """

    def __init__(
        self,
        input_size: int = 224,
        hyperbolic_input_size: Optional[int] = None,
        min_scale: float = 0.2,
        min_box_size: float = 56,
        expand_to: float = 256,
        too_few_boxes: str = "random_crops",
        normalize: Optional[Tuple[Sequence[float], Sequence[float]]] = (IMAGENET_MEAN, IMAGENET_STD),
    ) -> None:
        sampler = SceneObjectSampler(min_box_area=float(min_box_size) ** 2, expand_to=expand_to, too_few_boxes=too_few_boxes)
        self.views = HCLViews(
            sampler,
            euclidean_size=input_size,
            hyperbolic_size=hyperbolic_input_size or input_size,
            crop_scale=(min_scale, 1.0),
            normalize=normalize,
        )

    def __call__(
        self,
        image: Union[Image.Image, Tensor],
        boxes: object,
        proposals: Optional[object] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Optional[List[Tensor]]:
        out = self.views(image, boxes, generator=generator, proposals=proposals)
        return None if out is None else [out[key] for key in VIEW_KEYS]
