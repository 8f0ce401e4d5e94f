"""``HCLSceneDataset``: records from a reader -> decoded image -> sampled boxes -> the four HCL views.

A plain ``torch.utils.data.Dataset`` (no training framework). Images are decoded by the project's one
loader, :func:`hcl_plugin.data.image_io.load_rgb_image` (16-bit, palette, alpha, CMYK... rules there), so
the MMEngine path sees the same pixels. Images that cannot be decoded raise ``ImageLoadError`` naming
the file, or, with ``on_bad_image="skip"``, are counted and replaced by
another image. Images with too few boxes follow the sampler's ``too_few_boxes`` policy; for
``"resample"`` another image is drawn as in the official HCL loop (github shlokk/HCL,
``OpenImages.__getitem__``: ``while n_box < 2: item = randint(...)``), at most ``max_draws`` times.
Counts live in ``dataset.stats`` and ``dataset.views.sampler.stats`` (per process: each DataLoader
worker keeps its own).
"""

from __future__ import annotations

from collections import Counter
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch.utils.data import Dataset

from hcl_plugin.data.image_io import ImageLoadError, load_rgb_image
from hcl_plugin.data.readers import ReadResult, SceneRecord
from hcl_plugin.data.views import HCLViews

__all__ = ["ImageLoadError", "load_rgb_image", "HCLSceneDataset"]  # the loader lives in image_io


class HCLSceneDataset(Dataset):
    """Scene images with boxes -> dicts of HCL views (see ``HCLViews``).

    Args:
        records: a ``ReadResult`` or a list of ``SceneRecord``.
        views: the view transform (its ``sampler`` decides the box rules and the policy).
        proposals: ``{image path: normalised boxes}`` (``read_proposal_boxes``) for the
            ``"proposals"`` policy.
        on_bad_image: ``"raise"`` (default) or ``"skip"`` (counted in ``stats["bad_images_skipped"]``).
        seed: if given, item ``i`` is drawn from a generator seeded with ``(seed, i)`` so box draws
            repeat exactly; otherwise from torch's global RNG (DataLoader seeds each worker).
        max_draws: images tried per item before giving up with ``RuntimeError``.

    Each item is the views dict plus ``"image_id"`` and ``"index"`` (the record actually used).
    """

    def __init__(
        self,
        records: Union[ReadResult, Sequence[SceneRecord]],
        views: Optional[HCLViews] = None,
        proposals: Optional[Dict[str, torch.Tensor]] = None,
        on_bad_image: str = "raise",
        seed: Optional[int] = None,
        max_draws: int = 100,
    ) -> None:
        if on_bad_image not in ("raise", "skip"):
            raise ValueError(f"on_bad_image must be 'raise' or 'skip'; got {on_bad_image!r}")
        if max_draws < 1:
            raise ValueError(f"max_draws must be >= 1, got {max_draws}")
        self.records: List[SceneRecord] = list(records.records if isinstance(records, ReadResult) else records)
        if not self.records:
            raise ValueError("HCLSceneDataset needs at least one record, got none")
        self.views = views if views is not None else HCLViews()
        self.proposals = proposals
        self.on_bad_image = on_bad_image
        self.seed = seed
        self.max_draws = int(max_draws)
        self.stats: Counter = Counter()

    def __len__(self) -> int:
        return len(self.records)

    def _generator(self, index: int) -> torch.Generator:
        if self.seed is None:
            return torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
        return torch.Generator().manual_seed(self.seed * 1_000_003 + index)

    def __getitem__(self, index: int) -> Dict[str, object]:
        generator = self._generator(index)
        current = index
        for _ in range(self.max_draws):
            record = self.records[current]
            try:
                image = load_rgb_image(record.path)
            except ImageLoadError:
                if self.on_bad_image == "raise":
                    raise
                self.stats["bad_images_skipped"] += 1
            else:
                boxes = record.pixel_boxes(image.height, image.width)
                proposals = None
                if self.proposals is not None and record.path in self.proposals:
                    proposals = self.proposals[record.path] * torch.tensor(
                        [image.width, image.height, image.width, image.height], dtype=torch.float32
                    )
                sample = self.views.sampler.sample(
                    (image.height, image.width), boxes, generator, proposals=proposals, image_name=record.path
                )
                if sample is not None:
                    try:
                        out = self.views.render(image, sample)
                    except Exception as error:  # name the file instead of failing deep inside a transform
                        raise RuntimeError(
                            f"building the HCL views failed for image {record.path!r} "
                            f"({image.width}x{image.height}, boxes {sample.object_box.tolist()} / "
                            f"{sample.scene_box.tolist()}): {error}"
                        ) from error
                    out["image_id"] = record.image_id
                    out["index"] = current
                    return out
            current = int(torch.randint(0, len(self.records), (1,), generator=generator))
        raise RuntimeError(
            f"no usable image after {self.max_draws} draws starting at index {index} "
            f"(stats: {dict(self.stats)}, sampler: {dict(self.views.sampler.stats)})"
        )
