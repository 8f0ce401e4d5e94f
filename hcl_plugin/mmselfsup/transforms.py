"""HCL's crops as MMSelfSup transforms: ``SampleSceneObjectBoxes``, ``SceneObjectMultiView`` and the
image loader ``LoadSceneImageFromFile``.

A pipeline in MMSelfSup's style::

    train_pipeline = [
        dict(type='LoadSceneImageFromFile'),   # the project's one image loader
        dict(type='SampleSceneObjectBoxes', min_box_size=56),          # object box + scene box
        dict(type='SceneObjectMultiView',
             object_transforms=mocov2_view_pipeline,                    # views 0, 1 (baseline)
             scene_transforms=hyperbolic_view_pipeline,                 # views 2 (scene), 3 (object)
             hyperbolic_size=None),                                     # None: the scene pipeline's size
        dict(type='PackSelfSupInputs', meta_keys=['img_path', 'scene_bbox', 'object_bbox']),
    ]

``LoadSceneImageFromFile`` calls the project's one loader, :func:`hcl_plugin.data.image_io.load_image_array`,
so this pipeline and the Lightly / evaluation path decode every file (16-bit PNG, palette, alpha, CMYK)
to the same pixels.

The box rules are those of the official HCL code [1] (:class:`hcl_plugin.data.SceneObjectSampler`:
boxes under 56 x 56 px dropped, images with fewer than 2 boxes re-drawn, object = one random box,
expanded at random towards 256 px for the Euclidean views, scene = union of 2-5 random boxes and the
object). The hyperbolic views are the crops resized without a random crop, plus the photometric
augmentations [1, sec. 4]. The official code makes all four views 224 x 224; ``SceneObjectMultiView``'s
``hyperbolic_size`` makes the two hyperbolic views another size (cheaper when smaller) and leaves the
object views as they are, like ``hyperbolic_size`` of :class:`hcl_plugin.data.HCLViews` on the Lightly path.

[1] S. Ge, S. Mishra et al. "Hyperbolic Contrastive Learning for Visual Representations beyond
    Objects". CVPR 2023. https://arxiv.org/abs/2212.00653 ; code: https://github.com/shlokk/HCL
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmcv.transforms import BaseTransform, Compose
from mmselfsup.registry import TRANSFORMS

from hcl_plugin.data.image_io import load_image_array
from hcl_plugin.data.box_sampler import SceneObjectSampler
from hcl_plugin.data.boxes import box_to_pixel_window
from hcl_plugin.data.views import check_view_size

__all__ = ["LoadSceneImageFromFile", "SampleSceneObjectBoxes", "SceneObjectMultiView", "crop_box"]

CHANNEL_ORDERS = ("bgr", "rgb")

Transform = Union[dict, Callable[[dict], dict]]

#: The transforms that may start a hyperbolic view pipeline when ``hyperbolic_size`` is set, and the
#: arguments ``hyperbolic_size`` replaces in them (registry scopes such as ``mmcv.`` are allowed).
SIZING_STEPS = {"Resize": ("scale", "scale_factor"), "RandomResizedCrop": ("size",)}


def _with_view_size(step: Optional[Transform], size: int) -> dict:
    """The config ``step`` (the first of a hyperbolic view pipeline) resizing to ``size`` x ``size``."""
    kind = step.get("type") if isinstance(step, dict) else None
    kind = kind.rsplit(".", 1)[-1] if isinstance(kind, str) else kind
    if kind not in SIZING_STEPS:
        described = (f"type={step.get('type')!r}" if isinstance(step, dict) else
                     "nothing (an empty list)" if step is None else type(step).__name__)
        raise ValueError(
            f"SceneObjectMultiView: hyperbolic_size={size} needs scene_transforms to start with the step that "
            f"sets the view size, a config dict of type {' or '.join(sorted(SIZING_STEPS))}; it starts with {described}"
        )
    step = {key: value for key, value in step.items() if key not in SIZING_STEPS[kind]}
    if kind == "Resize":
        step.update(scale=(size, size), keep_ratio=False)
    else:
        step.update(size=size)
    return step


def crop_box(img: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The pixels of ``img`` (H, W, C) under the pixel ``xyxy`` box.

    The window is :func:`hcl_plugin.data.boxes.box_to_pixel_window` (start floored, end ceiled, clipped
    to the image, at least 1 px): the same pixels as the Lightly/torchvision views of the same box.
    """
    height, width = img.shape[:2]
    x1, y1, x2, y2 = box_to_pixel_window(box, width, height)
    return img[y1:y2, x1:x2]


@TRANSFORMS.register_module()
class LoadSceneImageFromFile(BaseTransform):
    """Read ``results['img_path']`` with the project's one image loader (PIL + numpy).

    The pixels are those of :func:`hcl_plugin.data.image_io.load_image_array` (the Lightly and
    evaluation path's), stored in ``channel_order``: ``'bgr'`` by default, the order MMCV's
    ``LoadImageFromFile`` gives and the configs' data preprocessors expect (``bgr_to_rgb=True``), so
    the network sees identical RGB values on both paths.

    Required keys: ``img_path``. Added keys: ``img`` (``(H, W, 3)`` uint8, or float32 with
    ``to_float32``), ``img_shape``, ``ori_shape``.

    Args:
        to_float32: return float32 pixels (as MMCV's ``LoadImageFromFile``).
        channel_order: ``'bgr'`` or ``'rgb'``.

    Raises:
        hcl_plugin.data.ImageLoadError: the file is missing, empty, corrupt or of an unsupported mode;
            the message names the file (MMCV/OpenCV would fail with a bare assertion).
    """

    def __init__(self, to_float32: bool = False, channel_order: str = "bgr") -> None:
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"LoadSceneImageFromFile: channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        self.to_float32 = bool(to_float32)
        self.channel_order = channel_order

    def transform(self, results: dict) -> dict:
        img = load_image_array(results["img_path"])
        if self.channel_order == "bgr":
            img = np.ascontiguousarray(img[..., ::-1])
        if self.to_float32:
            img = img.astype(np.float32)
        results["img"] = img
        results["img_shape"] = img.shape[:2]
        results["ori_shape"] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(to_float32={self.to_float32}, channel_order='{self.channel_order}')"


@TRANSFORMS.register_module()
class SampleSceneObjectBoxes(BaseTransform):
    """Draw an object box and a scene box that contains it (HCL's crop rule).

    Required keys: ``img``, ``gt_bboxes_normalized`` (``(N, 4)`` ``xyxy`` in [0, 1]); optional
    ``proposals_normalized``. Added keys: ``object_bbox``, ``expanded_object_bbox``, ``scene_bbox``
    (float32 pixel ``xyxy``) and ``crop_source`` (``'boxes'``, ``'proposals'``, ``'random_crops'``).

    Args:
        min_box_size: boxes under ``min_box_size ** 2`` px are unusable (official: 56).
        min_boxes: usable boxes an image needs (official: 2).
        scene_boxes: range of random boxes united into the scene (official: (2, 5)).
        expand_to: small objects are grown towards this side for the Euclidean views (official: 256).
        too_few_boxes: ``'resample'`` (return ``None``: MMEngine's ``BaseDataset`` draws another image,
            the official behaviour), ``'proposals'``, ``'random_crops'`` or ``'raise'``.

    Randomness comes from numpy's global generator (seeded per worker by MMEngine), so ``randomness=dict(seed=...)``
    in a config makes the draws repeat.
    """

    def __init__(
        self,
        min_box_size: float = 56,
        min_boxes: int = 2,
        scene_boxes: Tuple[int, int] = (2, 5),
        expand_to: float = 256,
        too_few_boxes: str = "resample",
    ) -> None:
        self.sampler = SceneObjectSampler(
            min_box_area=float(min_box_size) ** 2, min_boxes=min_boxes, scene_boxes=tuple(scene_boxes),
            expand_to=expand_to, too_few_boxes=too_few_boxes,
        )

    def transform(self, results: dict) -> Optional[dict]:
        img = results["img"]
        height, width = img.shape[:2]
        scale = np.array([width, height, width, height], dtype=np.float32)
        boxes = torch.from_numpy(np.asarray(results["gt_bboxes_normalized"], dtype=np.float32).reshape(-1, 4) * scale)
        proposals = results.get("proposals_normalized")
        if proposals is not None:
            proposals = torch.from_numpy(np.asarray(proposals, dtype=np.float32).reshape(-1, 4) * scale)
        generator = torch.Generator().manual_seed(int(np.random.randint(0, 2**31 - 1)))
        sample = self.sampler.sample(
            (height, width), boxes, generator, proposals=proposals, image_name=str(results.get("img_path", "<image>"))
        )
        if sample is None:
            return None
        results["object_bbox"] = sample.object_box.numpy()
        results["expanded_object_bbox"] = sample.expanded_object_box.numpy()
        results["scene_bbox"] = sample.scene_box.numpy()
        results["crop_source"] = sample.source
        return results

    def __repr__(self) -> str:
        s = self.sampler
        return (f"{type(self).__name__}(min_box_size={math.sqrt(s.min_box_area):g}, min_boxes={s.min_boxes}, "
                f"scene_boxes={s.scene_boxes}, expand_to={s.expand_to:g}, too_few_boxes='{s.too_few_boxes.value}')")


@TRANSFORMS.register_module()
class SceneObjectMultiView(BaseTransform):
    """Crop the sampled boxes and make HCL's four views, in the order the HCL algorithms expect.

    ``results['img']`` becomes ``[object view, object view, scene view, object view]``: the first
    ``num_object_views`` come from ``object_transforms`` applied to the expanded object crop (the
    baseline's views, e.g. MMSelfSup's MoCo-v2 pipeline), the last two from ``scene_transforms``
    applied to the scene crop and the object crop (the hyperbolic views).

    Args:
        object_transforms: transform configs for the Euclidean object views.
        scene_transforms: transform configs for the hyperbolic scene and object views; every view must
            end at one fixed size so MMSelfSup's data preprocessor can stack them.
        num_object_views: Euclidean object views (2 for MoCo-v2/DenseCL).
        hyperbolic_views: ``False`` makes only the object views: the baselines' configs use it, so
            HCL and its baseline see the same object crops.
        hyperbolic_size: side of the two hyperbolic views in pixels; ``None`` (default) keeps the size
            ``scene_transforms`` set (the configs: ``input_size``, like the object views; official HCL:
            224 for all four). Set, it replaces the size of the first scene transform, which must be a
            ``Resize`` (``scale=(size, size)``, ``keep_ratio=False``) or ``RandomResizedCrop``
            (``size``) config dict; the object views, the boxes and the other steps are unchanged.
            Ignored with ``hyperbolic_views=False`` (the baselines' pipelines derive from HCL's).

    Raises:
        ValueError: ``hyperbolic_size`` is not a positive integer, or is set while ``scene_transforms``
            does not start with a sizing step (the message names ``hyperbolic_size``).
    """

    def __init__(self, object_transforms: List[Transform], scene_transforms: Optional[List[Transform]] = None,
                 num_object_views: int = 2, hyperbolic_views: bool = True,
                 hyperbolic_size: Optional[int] = None) -> None:
        if num_object_views < 1:
            raise ValueError(f"SceneObjectMultiView: num_object_views must be >= 1, got {num_object_views}")
        if hyperbolic_views and scene_transforms is None:
            raise ValueError("SceneObjectMultiView: hyperbolic_views=True needs scene_transforms")
        if hyperbolic_size is not None:
            try:
                hyperbolic_size = check_view_size(hyperbolic_size, "hyperbolic_size")
            except ValueError as error:
                raise ValueError(f"SceneObjectMultiView: {error}") from None
            if hyperbolic_views:
                first, *rest = list(scene_transforms) or [None]
                scene_transforms = [_with_view_size(first, hyperbolic_size)] + rest
        self.object_pipeline = Compose(object_transforms)
        self.scene_pipeline = Compose(scene_transforms) if hyperbolic_views else None
        self.num_object_views = int(num_object_views)
        self.hyperbolic_views = bool(hyperbolic_views)
        self.hyperbolic_size = hyperbolic_size

    @staticmethod
    def _view(pipeline: Compose, results: dict, crop: np.ndarray, name: str) -> np.ndarray:
        # a shallow copy: the view pipelines add or replace keys, they do not edit the shared values
        inputs = {k: v for k, v in results.items() if k != "img"}
        inputs.update(img=np.ascontiguousarray(crop), img_shape=crop.shape[:2], ori_shape=crop.shape[:2])
        try:
            out = pipeline(inputs)
        except Exception as error:  # name the image instead of failing deep inside a transform
            raise RuntimeError(
                f"SceneObjectMultiView: the {name} view of {results.get('img_path', '<image>')!r} failed "
                f"(crop {crop.shape[1]}x{crop.shape[0]} px): {error}"
            ) from error
        if out is None:
            raise RuntimeError(f"SceneObjectMultiView: the {name} pipeline returned None for {results.get('img_path')!r}")
        return out["img"]

    def transform(self, results: dict) -> dict:
        for key in ("object_bbox", "expanded_object_bbox", "scene_bbox"):
            if key not in results:
                raise KeyError(f"SceneObjectMultiView needs {key!r}: put SampleSceneObjectBoxes before it in the pipeline")
        img = results["img"]
        expanded = crop_box(img, results["expanded_object_bbox"])
        views = [self._view(self.object_pipeline, results, expanded, f"object #{i}") for i in range(self.num_object_views)]
        if self.scene_pipeline is not None:
            views.append(self._view(self.scene_pipeline, results, crop_box(img, results["scene_bbox"]), "scene"))
            views.append(self._view(self.scene_pipeline, results, crop_box(img, results["object_bbox"]),
                                    "hyperbolic object"))
        results["img"] = views
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(object_transforms={self.object_pipeline}, "
                f"scene_transforms={self.scene_pipeline}, num_object_views={self.num_object_views}, "
                f"hyperbolic_views={self.hyperbolic_views}, hyperbolic_size={self.hyperbolic_size})")
