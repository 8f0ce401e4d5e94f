"""``SceneBoxDataset`` (HCL) and ``UHMLImageFolder`` (UHML): data sets registered in MMSelfSup's ``DATASETS``.

Boxes come from a COCO-format JSON (ground truth, or the unsupervised proposals the paper uses on
COCO, written by ``tools/make_proposals.py``) or an OpenImages box CSV, read by the framework-free
readers of :mod:`hcl_plugin.data.readers` (pycocotools for COCO). Each item is a dict with
``img_path``, ``img_id``, ``gt_bboxes_normalized`` (``(N, 4)`` float32 ``xyxy`` in [0, 1]),
``gt_bboxes_labels`` and, when a ``proposal_file`` is given, ``proposals_normalized`` (the fallback
boxes of the ``'proposals'`` policy). The pipeline (``LoadSceneImageFromFile``, ``SampleSceneObjectBoxes``,
``SceneObjectMultiView``, ``PackSelfSupInputs``) turns it into HCL's four views.

The configs read images with ``LoadSceneImageFromFile``, the project's one loader
(:mod:`hcl_plugin.data.image_io`, PIL + numpy; BGR order as MMCV's), so MMEngine training and the
Lightly / evaluation path see identical pixels (16-bit PNGs, palette, alpha, CMYK), and an empty or
corrupt file raises ``ImageLoadError`` naming it. A pipeline that names MMCV's ``LoadImageFromFile``
instead gets MMCV's decoding, as written.

Everything is checked when the data set is built (so a run fails at start, not at iteration N):
the annotation file (see :mod:`hcl_plugin.data.readers`), the image folder, with
``on_missing_image='raise'`` every image file, and that at least one image has enough boxes for the
``'resample'``/``'raise'`` policy of ``SampleSceneObjectBoxes`` (otherwise MMEngine would only say
"Cannot find valid image after 1000!").

``UHMLImageFolder`` lists a retrieval image tree (``root/<class>/<img>`` or
``root/<superclass>/<class>/<img>``) as the framework-free :class:`hcl_plugin.uhml.RetrievalImageFolder`
does, split by class halves, and adds each item's ``dataset_index`` for the UHML loss.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmselfsup.registry import DATASETS

from hcl_plugin.data.readers import SceneRecord, read_coco, read_openimages, read_proposal_boxes
from hcl_plugin.uhml.image_folder import LAYOUTS, RetrievalImageFolder, detect_layout

__all__ = ["SceneBoxDataset", "ANNOTATION_FORMATS", "UHMLImageFolder", "detect_layout"]

ANNOTATION_FORMATS = ("coco", "openimages")
def _step_type(step: Any) -> Optional[str]:
    """The registry name of a pipeline step given as a config dict or a transform object."""
    if isinstance(step, dict):
        kind = step.get("type")
        return kind if isinstance(kind, str) else getattr(kind, "__name__", None)
    return type(step).__name__


def _box_policy(pipeline: Sequence[Any]) -> Optional[Tuple[str, int, float]]:
    """``(too_few_boxes, min_boxes, min_box_size)`` of the pipeline's ``SampleSceneObjectBoxes``, if any."""
    for step in pipeline:
        if _step_type(step) != "SampleSceneObjectBoxes":
            continue
        if isinstance(step, dict):
            return (str(step.get("too_few_boxes", "resample")), int(step.get("min_boxes", 2)),
                    float(step.get("min_box_size", 56)))
        sampler = step.sampler
        return sampler.too_few_boxes.value, int(sampler.min_boxes), float(sampler.min_box_area) ** 0.5
    return None


def _usable_boxes(record: SceneRecord, min_box_size: float) -> int:
    """Boxes of ``record`` at least ``min_box_size`` px square (all boxes when the image size is unknown)."""
    if record.width is None or record.height is None:
        return int(record.boxes.shape[0])
    pixel = record.pixel_boxes(float(record.height), float(record.width))
    area = (pixel[:, 2] - pixel[:, 0]) * (pixel[:, 3] - pixel[:, 1])
    return int((area >= min_box_size**2 * (1 - 1e-4)).sum())


@DATASETS.register_module()
class SceneBoxDataset(BaseDataset):
    """Multi-object scene images and their boxes (COCO JSON, COCO-format proposals, OpenImages CSV).

    Args:
        ann_file: the COCO JSON (``annotations/instances_train2017.json`` or a proposals file) or the
            OpenImages box CSV; relative paths are joined to ``data_root``.
        data_root: the data set's root folder.
        data_prefix: ``dict(img_path='train2017/')``, the image folder (joined to ``data_root``).
        ann_format: ``'coco'`` or ``'openimages'``.
        proposal_file: optional COCO-format proposals used when an image has too few boxes and the
            ``SampleSceneObjectBoxes`` policy is ``'proposals'`` (joined to ``data_root``).
        include_crowd: keep COCO ``iscrowd`` boxes (default: skip, as the official code).
        image_extension: OpenImages file extension.
        on_missing_image: ``'raise'`` (a ``FileNotFoundError`` naming the file, at start) or ``'skip'``.
        **kwargs: ``pipeline``, ``test_mode``, ``lazy_init``, ``max_refetch``... as MMEngine's
            ``BaseDataset``. When a transform returns ``None`` (an image with too few boxes under the
            ``'resample'`` policy), ``BaseDataset`` draws another image, up to ``max_refetch`` times.

    Raises:
        FileNotFoundError: the annotation file, the image folder, the proposal file or (with
            ``on_missing_image='raise'``) an image does not exist; the message has the path and the
            config key to fix.
        ValueError: an unknown ``ann_format``; no image with enough boxes for the pipeline's
            ``SampleSceneObjectBoxes`` policy (names the annotation file); a ``LoadImageFromFile``
            option the project's loader does not support.
        hcl_plugin.data.AnnotationError: a malformed annotation file (names the file and the id).
    """

    def __init__(
        self,
        ann_file: str,
        data_root: str = "",
        data_prefix: Optional[Dict[str, str]] = None,
        ann_format: str = "coco",
        proposal_file: Optional[str] = None,
        include_crowd: bool = False,
        image_extension: str = ".jpg",
        on_missing_image: str = "raise",
        **kwargs: Any,
    ) -> None:
        if ann_format not in ANNOTATION_FORMATS:
            raise ValueError(f"SceneBoxDataset: ann_format must be one of {ANNOTATION_FORMATS}, got {ann_format!r}")
        self.ann_format = ann_format
        self.proposal_file = proposal_file
        self.include_crowd = include_crowd
        self.image_extension = image_extension
        self.on_missing_image = on_missing_image
        self.read_stats: Dict[str, int] = {}
        self._box_policy = _box_policy(kwargs.get("pipeline") or [])
        super().__init__(ann_file=ann_file, data_root=data_root,
                         data_prefix=data_prefix if data_prefix is not None else dict(img_path=""), **kwargs)

    def _join_root(self, path: str) -> str:
        return path if not self.data_root or os.path.isabs(path) else os.path.join(self.data_root, path)

    def load_data_list(self) -> List[dict]:
        ann_file = self.ann_file
        image_root = self.data_prefix.get("img_path", "") or self.data_root
        if not ann_file or not os.path.isfile(ann_file):
            raise FileNotFoundError(
                f"SceneBoxDataset: annotation file {ann_file!r} does not exist "
                f"(config: train_dataloader.dataset.ann_file, data_root={self.data_root!r})"
            )
        if not os.path.isdir(image_root):
            raise FileNotFoundError(
                f"SceneBoxDataset: image folder {image_root!r} does not exist "
                f"(config: train_dataloader.dataset.data_prefix.img_path, data_root={self.data_root!r})"
            )
        if self.ann_format == "coco":
            result = read_coco(ann_file, image_root, include_crowd=self.include_crowd,
                               on_missing_image=self.on_missing_image)
        else:
            result = read_openimages(ann_file, image_root, image_extension=self.image_extension,
                                     on_missing_image=self.on_missing_image)
        self.read_stats = dict(result.stats)
        self._metainfo.setdefault("classes", tuple(result.label_names[k] for k in sorted(result.label_names)))
        proposals: Dict[str, Any] = {}
        if self.proposal_file is not None:
            proposal_file = self._join_root(self.proposal_file)
            if not os.path.isfile(proposal_file):
                raise FileNotFoundError(
                    f"SceneBoxDataset: proposal file {proposal_file!r} does not exist "
                    "(config: train_dataloader.dataset.proposal_file)"
                )
            proposals = read_proposal_boxes(proposal_file, image_root)
        data_list = []
        for record in result.records:
            item = dict(
                img_path=record.path,
                img_id=record.image_id,
                gt_bboxes_normalized=record.boxes.numpy().astype(np.float32),
                gt_bboxes_labels=record.labels.numpy(),
            )
            if record.path in proposals:
                item["proposals_normalized"] = proposals[record.path].numpy().astype(np.float32)
            data_list.append(item)
        if not data_list:
            raise ValueError(f"SceneBoxDataset: {ann_file!r} lists no usable image (read stats: {self.read_stats})")
        self._check_some_image_has_boxes(ann_file, result.records)
        return data_list

    def _check_some_image_has_boxes(self, ann_file: str, records: Sequence[SceneRecord]) -> None:
        """Under the ``'resample'``/``'raise'`` policy some image needs ``min_boxes`` usable boxes.

        Otherwise every draw fails and MMEngine stops with "Cannot find valid image after 1000!"; say
        at build time that the set has no such image, naming the annotation file.
        """
        if self._box_policy is None:
            return
        policy, min_boxes, min_box_size = self._box_policy
        if policy not in ("resample", "raise"):
            return
        if any(_usable_boxes(record, min_box_size) >= min_boxes for record in records):
            return
        raise ValueError(
            f"SceneBoxDataset: no image in {ann_file!r} has {min_boxes} or more boxes of at least "
            f"{min_box_size:g} x {min_box_size:g} px ({len(records)} images, {self.read_stats.get('boxes', 0)} "
            f"boxes in all; read stats: {self.read_stats}), so SampleSceneObjectBoxes(too_few_boxes="
            f"'{policy}') has no image to use. Check the annotation file (are its annotations empty?), lower "
            "min_box_size/min_boxes, or use too_few_boxes='proposals' / 'random_crops'"
        )

    def get_cat_ids(self, idx: int) -> Sequence[int]:
        return [int(x) for x in self.get_data_info(idx)["gt_bboxes_labels"]]


@DATASETS.register_module()
class UHMLImageFolder(BaseDataset):
    """Retrieval image folder for MMEngine: ``data_root/<class>/<img>`` or ``data_root/<super>/<class>/<img>``.

    Listing and splitting are those of :class:`~hcl_plugin.uhml.RetrievalImageFolder`: classes in
    sorted order, ``split='train'`` the first ``num_classes // 2`` classes (the UHML / deep metric
    learning protocol: CUB classes 1-100), ``'test'`` the rest, ``'all'`` everything. Each item is
    ``dict(img_path=..., gt_label=<class index, unused by UHML>, dataset_index=<the index the batch
    sampler drew>)``, which ``PackSelfSupInputs(meta_keys=['img_path', 'dataset_index'])`` must pack
    for :class:`~hcl_plugin.mmselfsup.uhml_model.UHML`. (MMEngine's own ``sample_idx`` cannot be packed as a meta key: MMSelfSup's
    ``SelfSupDataSample.sample_idx`` is a property that only accepts ``InstanceData``.)

    Args:
        data_root: the top folder (e.g. ``data/CUB_200_2011/images``).
        layout: ``'class'``, ``'superclass/class'`` or ``'auto'`` (detected from the first folder).
        split: ``'train'``, ``'test'`` or ``'all'``.
        pipeline, serialize_data, lazy_init, max_refetch, indices: as in ``mmengine.dataset.BaseDataset``.

    Raises:
        FileNotFoundError: ``data_root`` missing; ValueError: unknown layout/split, no classes, a
        class folder without images (named), an empty split.
    """

    def __init__(self, data_root: str, layout: str = "auto", split: str = "train", pipeline: Sequence = (),
                 serialize_data: bool = True, lazy_init: bool = False, max_refetch: int = 1000,
                 indices: Optional[Union[int, Sequence[int]]] = None, **kwargs: Any) -> None:
        if layout != "auto" and layout not in LAYOUTS:
            raise ValueError(f"UHMLImageFolder: layout must be 'auto' or one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        self.split = split
        super().__init__(data_root=data_root, pipeline=list(pipeline), serialize_data=serialize_data,
                         lazy_init=lazy_init, max_refetch=max_refetch, indices=indices, **kwargs)

    def load_data_list(self) -> List[dict]:
        root = os.fspath(self.data_root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"UHMLImageFolder: data_root {root!r} does not exist or is not a folder")
        layout = detect_layout(root) if self.layout == "auto" else self.layout
        folder = RetrievalImageFolder(root, layout=layout, split=self.split)
        if not folder.samples:
            raise ValueError(f"UHMLImageFolder: split {self.split!r} of {root!r} is empty "
                             f"({folder.num_classes} class(es) in all; 'train' needs at least 2)")
        self._metainfo["classes"] = tuple(folder.class_names)
        self._metainfo["layout"] = layout
        return [dict(img_path=path, gt_label=label) for path, label in folder.samples]

    def get_data_info(self, idx: int) -> dict:
        """The item's info with ``dataset_index`` = MMEngine's ``sample_idx`` (the index the sampler drew)."""
        info = super().get_data_info(idx)
        info["dataset_index"] = info["sample_idx"]
        return info
