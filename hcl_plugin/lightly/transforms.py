"""``HCLTransform``: the four HCL views from an image and its boxes, in Lightly's transform style."""

from __future__ import annotations

import warnings
from typing import List, Optional, Sequence, Tuple, Union

import torch
from PIL import Image
from torch import Tensor

from hcl_plugin.data.box_sampler import SceneObjectSampler
from hcl_plugin.data.views import IMAGENET_MEAN, IMAGENET_STD, VIEW_KEYS, HCLViews, check_view_size


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

    Fall-backs are never silent: the first image with too few usable boxes raises a ``UserWarning``
    (once per transform and process) that describes its boxes -- ``[x, y, w, h]`` boxes instead of
    pixel ``[x1, y1, x2, y2]``, boxes outside the image, empty box lists -- and every fall-back is
    counted in :attr:`stats` (the sampler's counters: ``too_few_boxes``, ``sampled_random_crops``,
    ``boxes_degenerate``, ...). :meth:`fallback_report` summarises them; the Lightly examples' trainer
    (:class:`hcl_plugin.lightly.training.FallbackReport`) warns with it once per epoch.

    Args:
        input_size: side of the two Euclidean views (official: 224).
        hyperbolic_size: side of the scene and object views; ``None`` (default) = ``input_size``, the
            official setting (224 for all four views). A smaller value makes the hyperbolic views cheaper
            and leaves the Euclidean views as they are (:class:`hcl_plugin.data.HCLViews`).
        min_scale: RandomResizedCrop lower scale of the Euclidean views (MoCo v2: 0.2).
        min_box_size: boxes smaller than ``min_box_size**2`` px² are not used (official: 56).
        expand_to: small object crops are grown towards this size for the Euclidean views (official: 256).
        too_few_boxes: policy for images without enough usable boxes.
        normalize: ``(mean, std)`` or None.
        hyperbolic_input_size: deprecated alias of ``hyperbolic_size`` (``DeprecationWarning``;
            ``ValueError`` with both).

    Raises:
        ValueError: ``input_size`` or ``hyperbolic_size`` is not a positive integer (named in the message).

    Examples:
        >>> transform = HCLTransform(input_size=64, min_box_size=16, expand_to=96)
        >>> views = transform(Image.new("RGB", (128, 128)), [[0, 0, 60, 60], [50, 50, 120, 120]])
        >>> [tuple(v.shape) for v in views]
        [(3, 64, 64), (3, 64, 64), (3, 64, 64), (3, 64, 64)]
        >>> small = HCLTransform(input_size=64, hyperbolic_size=32, min_box_size=16, expand_to=96)
        >>> views = small(Image.new("RGB", (128, 128)), [[0, 0, 60, 60], [50, 50, 120, 120]])
        >>> [tuple(v.shape) for v in views]
        [(3, 64, 64), (3, 64, 64), (3, 32, 32), (3, 32, 32)]
    """

    def __init__(
        self,
        input_size: int = 224,
        hyperbolic_size: Optional[int] = None,
        min_scale: float = 0.2,
        min_box_size: float = 56,
        expand_to: float = 256,
        too_few_boxes: str = "random_crops",
        normalize: Optional[Tuple[Sequence[float], Sequence[float]]] = (IMAGENET_MEAN, IMAGENET_STD),
        *,
        hyperbolic_input_size: Optional[int] = None,
    ) -> None:
        if hyperbolic_input_size is not None:
            if hyperbolic_size is not None:
                raise ValueError(f"HCLTransform: both hyperbolic_size={hyperbolic_size!r} and its deprecated alias "
                                 f"hyperbolic_input_size={hyperbolic_input_size!r} given; pass hyperbolic_size only")
            warnings.warn("HCLTransform: hyperbolic_input_size is deprecated and will be removed in the next release; "
                          "use hyperbolic_size", DeprecationWarning, stacklevel=2)
            hyperbolic_size = hyperbolic_input_size
        input_size = check_view_size(input_size, "input_size")
        sampler = SceneObjectSampler(min_box_area=float(min_box_size) ** 2, expand_to=expand_to, too_few_boxes=too_few_boxes)
        self.views = HCLViews(
            sampler,
            euclidean_size=input_size,
            hyperbolic_size=hyperbolic_size,
            crop_scale=(min_scale, 1.0),
            normalize=normalize,
        )

    @property
    def sampler(self) -> SceneObjectSampler:
        """The box sampler (its ``stats`` and ``first_fallback``)."""
        return self.views.sampler

    @property
    def stats(self):
        """The sampler's counters (a ``collections.Counter``; per process: each DataLoader worker counts its own)."""
        return self.views.sampler.stats

    def fallback_report(self) -> Optional[str]:
        """A summary of the fall-backs so far with the first offending image, or ``None`` when there were none."""
        from hcl_plugin.lightly.training import fallback_message

        return fallback_message(dict(self.stats), self.views.sampler.first_fallback)

    def __call__(
        self,
        image: Union[Image.Image, Tensor],
        boxes: object,
        proposals: Optional[object] = None,
        generator: Optional[torch.Generator] = None,
    ) -> Optional[List[Tensor]]:
        sampler = self.views.sampler
        before = sampler.stats["too_few_boxes"]
        out = self.views(image, boxes, generator=generator, proposals=proposals)
        if sampler.stats["too_few_boxes"] > before and not getattr(self, "_warned", False):
            self._warned = True
            warnings.warn(f"HCLTransform: too few usable boxes, fell back to the {sampler.too_few_boxes.value!r} "
                          f"policy for {sampler.first_fallback}. Further fall-backs are counted in "
                          "HCLTransform.stats (this warning is shown once)", UserWarning, stacklevel=2)
        return None if out is None else [out[key] for key in VIEW_KEYS]
