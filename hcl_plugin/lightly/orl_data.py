r"""ORL stage 3's training views (Lightly path): image-level, intra-RoI and inter-RoI pairs, plus HCL's pair.

ORL (Xie et al., "Unsupervised Object-Level Representation Learning from Scene Images", NeurIPS 2021;
release github Jiahao000/ORL) trains stage 3 on three BYOL pairs per image ``i``, drawn from the
stage-2 correspondence store (:mod:`hcl_plugin.orl.store`) by :func:`hcl_plugin.orl.sample_orl_boxes`:

======================= ============================================================================
key                     view
======================= ============================================================================
``image_view_1``/``_2`` two BYOL views of image ``i``: RandomResizedCrop(``image_size``) + augmentation
``intra_view_1``        crop of a proposal ``b`` of image ``i``, resized to ``patch_size``
``intra_view_2``        crop of the jittered copy ``b'`` of ``b`` (same image)
``inter_view_1``        crop of the inter-RoI pair's box in image ``i``
``inter_view_2``        crop of its partner box in the neighbour image ``j`` (one of i's k-NN images)
``hyperbolic_scene``    HCL's query: the whole image ``i`` resized to ``hyperbolic_size``
``hyperbolic_object``   HCL's key: the crop of ``b`` (inside the scene) resized to ``hyperbolic_size``
======================= ============================================================================

Augmentations (BYOL, Grill et al. NeurIPS 2020, as the ORL release's stage-3 pipeline): horizontal flip,
colour jitter (brightness 0.4, contrast 0.4, saturation 0.2, hue 0.1) with p 0.8, grayscale p 0.2,
Gaussian blur (sigma 0.1-2) with p 1.0 for view 1 and 0.1 for view 2, solarisation p 0 / 0.2, ImageNet
normalisation. Image views start with RandomResizedCrop (scale 0.08-1); patch views are the box crops
resized to ``patch_size`` (release: 96 at image size 224) with the same steps minus the random crop. The
two hyperbolic views are HCL's (Ge et al. CVPR 2023): resize, then MoCo-v2's photometric steps
(:class:`~hcl_plugin.data.views.ResizeWithPhotometric`), no random crop.

Every decoded image goes through :func:`hcl_plugin.data.image_io.load_rgb_image` and
:meth:`~hcl_plugin.orl.CorrespondenceStore.check_image_size`: a missing file raises
:class:`~hcl_plugin.data.image_io.ImageLoadError`, a file whose size changed since stage 2 a
:class:`~hcl_plugin.orl.CorrespondenceError`, both naming the file. Each sample draws its boxes with a
``random.Random`` seeded from torch's RNG, so DataLoader workers (seeded by Lightning) differ and a seeded
run repeats.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2

from hcl_plugin.data.boxes import box_to_pixel_window
from hcl_plugin.data.image_io import load_rgb_image
from hcl_plugin.data.views import (IMAGENET_MEAN, IMAGENET_STD, PILGaussianBlur, ResizeWithPhotometric,
                                   check_view_size, resolve_hyperbolic_size)
from hcl_plugin.orl.sampling import BoxJitter, ORLBoxes, sample_orl_boxes
from hcl_plugin.orl.store import CorrespondenceStore

__all__ = ["ORL_VIEW_KEYS", "HYPERBOLIC_VIEW_KEYS", "ORLDataset", "ORLViews", "byol_view", "crop_box"]

Normalize = Optional[Tuple[Sequence[float], Sequence[float]]]
Transform = Callable[[Image.Image], Tensor]
BoxSampler = Callable[[CorrespondenceStore, int, random.Random], ORLBoxes]

#: ORL's six views, in the order of the release's ``img``, ``ipatch``, ``kpatch`` pairs.
ORL_VIEW_KEYS = ("image_view_1", "image_view_2", "intra_view_1", "intra_view_2", "inter_view_1", "inter_view_2")
#: HCL's two views: scene (query, online network) and object (key, momentum network).
HYPERBOLIC_VIEW_KEYS = ("hyperbolic_scene", "hyperbolic_object")
#: Boxes returned with the views (pixel ``x, y, w, h`` float tensors, in their own image).
BOX_KEYS = ("intra_box", "intra_jittered_box", "inter_first_box", "inter_second_box")


def byol_view(size: int, blur_p: float, solarize_p: float, random_crop: bool = True,
              crop_scale: Tuple[float, float] = (0.08, 1.0), normalize: Normalize = (IMAGENET_MEAN, IMAGENET_STD)
              ) -> v2.Compose:
    """One BYOL view (PIL image in, ``(3, size, size)`` float tensor out): RandomResizedCrop(``size``,
    ``crop_scale``) (or Resize to ``size`` x ``size`` with ``random_crop=False``), flip, colour jitter
    (0.4, 0.4, 0.2, 0.1) p 0.8, grayscale p 0.2, Gaussian blur sigma 0.1-2 with p ``blur_p``,
    solarisation (threshold 128) with p ``solarize_p``, normalisation (``None``: [0, 1] values).

    Source: BYOL (Grill et al., NeurIPS 2020), the ORL release's stage-3 pipelines (view 1: blur 1.0,
    solarize 0; view 2: blur 0.1, solarize 0.2).
    """
    size = check_view_size(size, "size")
    first = (v2.RandomResizedCrop(size, scale=crop_scale, antialias=True) if random_crop
             else v2.Resize((size, size), antialias=True))
    steps = [
        first,
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        v2.RandomGrayscale(p=0.2),
        v2.RandomApply([PILGaussianBlur((0.1, 2.0))], p=blur_p),
        v2.RandomSolarize(threshold=128, p=solarize_p),
        v2.PILToTensor(),
        v2.ToDtype(torch.float32, scale=True),
    ]
    if normalize is not None:
        steps.append(v2.Normalize(mean=list(normalize[0]), std=list(normalize[1])))
    return v2.Compose(steps)


@dataclass
class ORLViews:
    """The transforms of one stage-3 sample; build the release's with :meth:`default`.

    Attributes:
        image: the two image-level views' transforms (view 1, view 2).
        patch: the two transforms of each RoI pair (intra and inter alike).
        scene, object: HCL's scene and object view transforms (``None``: not produced, plain ORL).
    """

    image: Tuple[Transform, Transform]
    patch: Tuple[Transform, Transform]
    scene: Optional[Transform] = None
    object: Optional[Transform] = None

    @classmethod
    def default(cls, image_size: int = 224, patch_size: int = 96, hyperbolic: bool = True,
                hyperbolic_size: Optional[int] = None, normalize: Normalize = (IMAGENET_MEAN, IMAGENET_STD)
                ) -> "ORLViews":
        """The release's views at ``image_size`` / ``patch_size`` (release: 224 / 96); with ``hyperbolic``
        also HCL's scene and object views at ``hyperbolic_size`` (default: ``image_size``)."""
        hyp = resolve_hyperbolic_size(hyperbolic_size, image_size)
        return cls(
            image=(byol_view(image_size, 1.0, 0.0, normalize=normalize),
                   byol_view(image_size, 0.1, 0.2, normalize=normalize)),
            patch=(byol_view(patch_size, 1.0, 0.0, random_crop=False, normalize=normalize),
                   byol_view(patch_size, 0.1, 0.2, random_crop=False, normalize=normalize)),
            scene=ResizeWithPhotometric(hyp, normalize=normalize) if hyperbolic else None,
            object=ResizeWithPhotometric(hyp, normalize=normalize) if hyperbolic else None,
        )


def crop_box(image: Image.Image, box: Sequence[float]) -> Image.Image:
    """The pixels of ``image`` under the pixel ``x, y, w, h`` ``box`` (the project's crop rule,
    :func:`~hcl_plugin.data.boxes.box_to_pixel_window`: start floored, end ceiled, inside the image)."""
    x, y, w, h = (float(v) for v in box)
    return image.crop(box_to_pixel_window((x, y, x + w, y + h), image.width, image.height))


class ORLDataset(Dataset):
    """Stage-3 samples of a correspondence store: the dict of :data:`ORL_VIEW_KEYS` (and, when ``views``
    has scene/object transforms, :data:`HYPERBOLIC_VIEW_KEYS`), the boxes used (:data:`BOX_KEYS`,
    ``x, y, w, h`` tensors), ``index`` and ``neighbour`` (module docstring).

    Args:
        store: an opened :class:`~hcl_plugin.orl.CorrespondenceStore`.
        views: the transforms (default: :meth:`ORLViews.default` at 224 / 96 with HCL's views).
        topk_knn_image: draw the neighbour among the first this many (default: all stored).
        jitter: the intra-RoI box jitter (the release's defaults).
        sample_boxes: ``sample_boxes(store, index, rng) -> ORLBoxes`` (default: :func:`sample_orl_boxes`).

    Raises (from ``__getitem__``):
        ImageLoadError: an image file is missing or unreadable (names the file).
        CorrespondenceError: an image's size differs from the one recorded in stage 2 (names the file).
    """

    def __init__(self, store: CorrespondenceStore, views: Optional[ORLViews] = None,
                 topk_knn_image: Optional[int] = None, jitter: BoxJitter = BoxJitter(),
                 sample_boxes: Optional[BoxSampler] = None) -> None:
        self.store = store
        self.views = views if views is not None else ORLViews.default()
        self.topk_knn_image = topk_knn_image
        self.jitter = jitter
        if topk_knn_image is not None and not 1 <= int(topk_knn_image) <= store.num_neighbours:
            raise ValueError(f"topk_knn_image must be in [1, {store.num_neighbours}] (the neighbours stored in "
                             f"{store.folder}), got {topk_knn_image}")
        self.sample_boxes: Optional[BoxSampler] = sample_boxes

    def draw(self, index: int, rng: random.Random) -> ORLBoxes:
        """The boxes of one sample of image ``index`` (``sample_boxes`` or :func:`sample_orl_boxes`)."""
        if self.sample_boxes is not None:
            return self.sample_boxes(self.store, index, rng)
        return sample_orl_boxes(self.store, index, rng, self.topk_knn_image, self.jitter)

    def __len__(self) -> int:
        return len(self.store)

    def load(self, index: int) -> Image.Image:
        """Image ``index`` as RGB, checked against the size recorded in the store."""
        image = load_rgb_image(self.store.image_path(index))
        self.store.check_image_size(index, image.size)
        return image

    def __getitem__(self, index: int) -> Dict[str, Any]:
        if not 0 <= index < len(self.store):
            raise IndexError(f"index {index} out of range for {len(self.store)} images of {self.store.folder}")
        rng = random.Random(int(torch.randint(0, 2**62, (1,))))  # torch's RNG: per worker, seeded runs repeat
        boxes = self.draw(index, rng)
        image = self.load(index)
        neighbour = self.load(boxes.neighbour)
        first, second = self.views.image
        patch_1, patch_2 = self.views.patch
        sample: Dict[str, Any] = {
            "image_view_1": first(image),
            "image_view_2": second(image),
            "intra_view_1": patch_1(crop_box(image, boxes.intra)),
            "intra_view_2": patch_2(crop_box(image, boxes.intra_jittered)),
            "inter_view_1": patch_1(crop_box(image, boxes.inter_first)),
            "inter_view_2": patch_2(crop_box(neighbour, boxes.inter_second)),
        }
        if self.views.scene is not None and self.views.object is not None:
            sample["hyperbolic_scene"] = self.views.scene(image)
            sample["hyperbolic_object"] = self.views.object(crop_box(image, boxes.intra))
        for key, box in zip(BOX_KEYS, (boxes.intra, boxes.intra_jittered, boxes.inter_first, boxes.inter_second)):
            sample[key] = torch.tensor(box, dtype=torch.float32)
        sample["index"], sample["neighbour"] = index, boxes.neighbour
        return sample
