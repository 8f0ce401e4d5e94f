"""``SceneBoxDataset``: scene images with boxes for HCL pretraining, registered in MMSelfSup's ``DATASETS``.

Boxes come from a COCO-format JSON (ground truth, or the unsupervised proposals the paper uses on
COCO, written by ``tools/make_proposals.py``) or an OpenImages box CSV, read by the framework-free
readers of :mod:`hcl_plugin.data.readers` (pycocotools for COCO). Each item is a dict with
``img_path``, ``img_id``, ``gt_bboxes_normalized`` (``(N, 4)`` float32 ``xyxy`` in [0, 1]),
``gt_bboxes_labels`` and, when a ``proposal_file`` is given, ``proposals_normalized`` (the fallback
boxes of the ``'proposals'`` policy). The pipeline (``LoadImageFromFile``, ``SampleSceneObjectBoxes``,
``SceneObjectMultiView``, ``PackSelfSupInputs``) turns it into HCL's four views.

Everything is checked when the data set is built (so a run fails at start, not at iteration N):
the annotation file, the image folder and, with ``on_missing_image='raise'``, every image file.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from mmengine.dataset import BaseDataset
from mmselfsup.registry import DATASETS

from hcl_plugin.data.readers import read_coco, read_openimages, read_proposal_boxes

__all__ = ["SceneBoxDataset", "ANNOTATION_FORMATS"]

ANNOTATION_FORMATS = ("coco", "openimages")


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
        ValueError: an unknown ``ann_format``.
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
        return data_list

    def get_cat_ids(self, idx: int) -> Sequence[int]:
        return [int(x) for x in self.get_data_info(idx)["gt_bboxes_labels"]]
