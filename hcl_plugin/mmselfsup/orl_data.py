"""ORL stage 3's data in MMSelfSup: ``ORLCorrespondenceDataset``, ``LoadORLImages``, ``ORLMultiView``.

A pipeline in MMSelfSup's style (``mmconfigs/_base_/datasets/coco_orl-stage3.py``)::

    train_pipeline = [
        dict(type='LoadORLImages'),                       # the image and the neighbour drawn for it
        dict(type='ORLMultiView',
             image_transforms=[byol_view_1, byol_view_2],  # views 0, 1: the image (RandomResizedCrop ...)
             patch_transforms=[byol_patch_1, byol_patch_2],  # views 2-5: intra-RoI and inter-RoI crops
             patch_size=96,
             scene_transforms=None),                      # HCLORL: views 6 (scene), 7 (object)
        dict(type='PackSelfSupInputs', meta_keys=['img_path', 'knn_img_path']),
    ]

The data set reads a correspondence store (stage 2, ``tools/orl_correspondence.py``), checks it when
built (:func:`hcl_plugin.orl.store.open_store`: missing images, boxes outside their image, ...), and
draws each sample's neighbour and boxes (:func:`hcl_plugin.orl.sampling.sample_orl_boxes`) from numpy's
global generator, which MMEngine seeds per worker (``randomness=dict(seed=...)``).
"""

from __future__ import annotations

import os
import random
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform, Compose
from mmengine.dataset import BaseDataset
from mmselfsup.registry import DATASETS, TRANSFORMS

from hcl_plugin.data.image_io import load_image_array
from hcl_plugin.data.views import check_view_size
from hcl_plugin.mmselfsup.transforms import crop_box
from hcl_plugin.orl.sampling import BoxJitter, sample_orl_boxes
from hcl_plugin.orl.store import CorrespondenceError, CorrespondenceStore, open_store

__all__ = ["ORLCorrespondenceDataset", "LoadORLImages", "ORLMultiView"]

Transform = Union[dict, Callable[[dict], dict]]
_BOX_KEYS = ("intra", "intra_jittered", "inter_first", "inter_second")


@DATASETS.register_module()
class ORLCorrespondenceDataset(BaseDataset):
    """The images of a correspondence store, each with a drawn neighbour and ORL's boxes.

    Each item is ``dict(img_path, knn_img_path, sample_idx, neighbour_idx, img_size, knn_img_size,
    intra_bbox, intra_jittered_bbox, inter_first_bbox, inter_second_bbox)`` with pixel ``x, y, w, h``
    boxes (float32) and the recorded ``(width, height)`` of both images.

    Args:
        correspondence: the store's folder (relative to ``data_root`` unless absolute).
        image_root: the images' folder (relative to ``data_root`` unless absolute); default: the one the
            store records.
        topk_knn_image: draw the neighbour among the first this many (default: all; the release: 10).
        jitter: the intra-RoI box jitter, ``dict(shift=(-0.5, 0.5), scale=(0.5, 2.), ratio=(0.5, 2.),
            min_iou=0.5, attempts=200)`` (the release's, the defaults).
        check_files: check that every image file exists when the data set is built.
        data_root, pipeline, test_mode, lazy_init, max_refetch: as MMEngine's ``BaseDataset``.

    Raises:
        hcl_plugin.orl.CorrespondenceError: the store is unusable (the message names the file, image, box).
    """

    def __init__(self, correspondence: str, image_root: Optional[str] = None, topk_knn_image: Optional[int] = None,
                 jitter: Optional[Dict[str, Any]] = None, check_files: bool = True, data_root: str = "",
                 pipeline: Sequence[Transform] = (), test_mode: bool = False, lazy_init: bool = False,
                 max_refetch: int = 1000) -> None:
        self.correspondence = self._under(data_root, correspondence)
        self.image_root = None if image_root is None else self._under(data_root, image_root)
        self.topk_knn_image = topk_knn_image
        self.jitter = BoxJitter(**{k: tuple(v) if isinstance(v, list) else v for k, v in (jitter or {}).items()})
        self.check_files = bool(check_files)
        self._store: Optional[CorrespondenceStore] = None
        super().__init__(ann_file="", data_root=data_root, pipeline=pipeline, test_mode=test_mode,
                         lazy_init=lazy_init, max_refetch=max_refetch, serialize_data=False)

    @staticmethod
    def _under(root: str, path: str) -> str:
        return path if os.path.isabs(path) or not root else os.path.join(root, path)

    @property
    def store(self) -> CorrespondenceStore:
        """The store, opened (memory-mapped) once per process."""
        if self._store is None:
            self._store = open_store(self.correspondence, image_root=self.image_root, check_files=False)
        return self._store

    def __getstate__(self) -> Dict[str, Any]:  # workers re-open the memory maps instead of copying them
        state = dict(self.__dict__)
        state["_store"] = None
        return state

    def load_data_list(self) -> List[dict]:
        store = open_store(self.correspondence, image_root=self.image_root, check_files=self.check_files)
        self._store = store
        k = store.num_neighbours
        if self.topk_knn_image is not None and not 1 <= int(self.topk_knn_image) <= k:
            raise ValueError(f"ORLCorrespondenceDataset: topk_knn_image must be in [1, {k}] (the neighbours per "
                             f"image in {self.correspondence}), got {self.topk_knn_image}")
        return [{"img_path": store.image_path(i), "sample_idx": i} for i in range(len(store))]

    def get_data_info(self, idx: int) -> dict:
        info = dict(super().get_data_info(idx))
        index = int(info["sample_idx"])
        store = self.store
        boxes = sample_orl_boxes(store, index, random.Random(int(np.random.randint(0, 2**31 - 1))),
                                 self.topk_knn_image, self.jitter)
        info.update(knn_img_path=store.image_path(boxes.neighbour), neighbour_idx=boxes.neighbour,
                    img_size=tuple(int(v) for v in store.image_sizes[index]),
                    knn_img_size=tuple(int(v) for v in store.image_sizes[boxes.neighbour]))
        for key in _BOX_KEYS:
            info[f"{key}_bbox"] = np.asarray(getattr(boxes, key), dtype=np.float32)
        return info


def _bgr(path: str, recorded: Optional[Sequence[int]], what: str) -> np.ndarray:
    rgb = load_image_array(path)
    if recorded is not None and (rgb.shape[1], rgb.shape[0]) != tuple(recorded):
        raise CorrespondenceError(
            f"{what} {path} is {rgb.shape[1]}x{rgb.shape[0]} px, but the correspondence store recorded "
            f"{recorded[0]}x{recorded[1]}: the file changed since stage 2 (rerun tools/orl_correspondence.py)"
        )
    return np.ascontiguousarray(rgb[..., ::-1])


@TRANSFORMS.register_module()
class LoadORLImages(BaseTransform):
    """Read ``img_path`` and ``knn_img_path`` with the project's one image loader (BGR, as MMCV's loader).

    Added keys: ``img``, ``knn_img``, ``img_shape``, ``ori_shape``.

    Raises:
        hcl_plugin.data.ImageLoadError: a file is missing or unreadable (named).
        hcl_plugin.orl.CorrespondenceError: a decoded size differs from the one the store recorded (named).
    """

    def transform(self, results: dict) -> dict:
        results["img"] = _bgr(results["img_path"], results.get("img_size"), "image")
        results["knn_img"] = _bgr(results["knn_img_path"], results.get("knn_img_size"), "neighbour image")
        results["img_shape"] = results["ori_shape"] = results["img"].shape[:2]
        return results


def _xyxy(box: np.ndarray) -> np.ndarray:
    x, y, w, h = (float(v) for v in box)
    return np.array([x, y, x + w, y + h], dtype=np.float32)


@TRANSFORMS.register_module()
class ORLMultiView(BaseTransform):
    """ORL's views of one sample, in the order ``ORL`` / ``HCLORL`` expect.

    ``results['img']`` becomes ``[image 1, image 2, intra 1, intra 2, inter 1, inter 2]`` and, with
    ``scene_transforms``, ``[..., scene, object]``:

    - image 1 / 2: ``image_transforms[0]`` / ``[1]`` of the image (BYOL's two view pipelines);
    - intra 1 / 2: the intra-RoI box and its jittered copy, each resized to ``patch_size`` square
      (bilinear, as the release), through ``patch_transforms[0]`` / ``[1]``;
    - inter 1 / 2: the inter-RoI pair's box in the image / in the neighbour, likewise;
    - scene / object (HCL): the whole image and the intra-RoI box crop through ``scene_transforms``,
      which must set one size (e.g. start with a ``Resize``): the object lies inside the scene.

    Required keys: ``img``, ``knn_img`` (``LoadORLImages``) and the boxes of ``ORLCorrespondenceDataset``.
    """

    def __init__(self, image_transforms: Sequence[List[Transform]], patch_transforms: Sequence[List[Transform]],
                 patch_size: int = 96, scene_transforms: Optional[List[Transform]] = None) -> None:
        if len(image_transforms) != 2 or len(patch_transforms) != 2:
            raise ValueError("ORLMultiView: image_transforms and patch_transforms need two pipelines each (view 1, "
                             f"view 2), got {len(image_transforms)} and {len(patch_transforms)}")
        try:
            self.patch_size = check_view_size(patch_size, "patch_size")
        except ValueError as error:
            raise ValueError(f"ORLMultiView: {error}") from None
        self.image_pipelines = [Compose(list(p)) for p in image_transforms]
        self.patch_pipelines = [Compose(list(p)) for p in patch_transforms]
        self.scene_pipeline = Compose(list(scene_transforms)) if scene_transforms is not None else None

    @staticmethod
    def _view(pipeline: Compose, results: dict, pixels: np.ndarray, name: str) -> np.ndarray:
        inputs = {k: v for k, v in results.items() if k not in ("img", "knn_img")}
        inputs.update(img=np.ascontiguousarray(pixels), img_shape=pixels.shape[:2], ori_shape=pixels.shape[:2])
        out = pipeline(inputs)
        if out is None:
            raise RuntimeError(f"ORLMultiView: the {name} pipeline returned None for {results.get('img_path')!r}")
        return out["img"]

    def _patch(self, img: np.ndarray, box: np.ndarray) -> np.ndarray:
        return mmcv.imresize(crop_box(img, _xyxy(box)), (self.patch_size, self.patch_size), interpolation="bilinear")

    def transform(self, results: dict) -> dict:
        for key in ("knn_img",) + tuple(f"{k}_bbox" for k in _BOX_KEYS):
            if key not in results:
                raise KeyError(f"ORLMultiView needs {key!r}: use ORLCorrespondenceDataset and put LoadORLImages "
                               "before it in the pipeline")
        img, knn_img = results["img"], results["knn_img"]
        views = [self._view(self.image_pipelines[i], results, img, f"image #{i + 1}") for i in range(2)]
        patches = [
            (img, results["intra_bbox"]), (img, results["intra_jittered_bbox"]),
            (img, results["inter_first_bbox"]), (knn_img, results["inter_second_bbox"]),
        ]
        for position, (source, box) in enumerate(patches):
            name = ("intra", "inter")[position // 2] + f"-RoI #{position % 2 + 1}"
            views.append(self._view(self.patch_pipelines[position % 2], results, self._patch(source, box), name))
        if self.scene_pipeline is not None:
            views.append(self._view(self.scene_pipeline, results, img, "scene"))
            views.append(self._view(self.scene_pipeline, results, crop_box(img, _xyxy(results["intra_bbox"])), "object"))
        results["img"] = views
        del results["knn_img"]
        return results

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(image_transforms={self.image_pipelines}, patch_transforms="
                f"{self.patch_pipelines}, patch_size={self.patch_size}, scene_transforms={self.scene_pipeline})")
