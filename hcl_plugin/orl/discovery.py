"""ORL stage 2, correspondence discovery: image k-NN, RoI embeddings, top RoI pairs, streamed to disk.

ORL (Xie et al., "Unsupervised Object-Level Representation Learning from Scene Images", NeurIPS 2021;
release github Jiahao000/ORL, ``models/correspondence.py``, ``datasets/correspondence.py``) finds
object-level correspondences with the stage-1 (image-level BYOL) encoder:

1. **proposals**: each image's selective-search boxes, ranked, filtered as ORL's ``box_filter``: both
   sides >= ``min_size`` (96 px), aspect ratio <= ``max_ratio`` (3), a box overlapping an already kept
   one by IoU > ``max_iou`` (0.5) dropped, the first ``top_n`` (100) kept; if none passes, the best-ranked
   box is kept (the release's rule), and an image without proposals gets its whole frame;
2. **RoI embeddings**: every kept box cropped, resized to ``patch_size`` (224) x ``patch_size``, through
   the backbone, global-average pooled and L2-normalised: :math:`r = f(\\mathrm{crop}(x, b)) / \\|\\cdot\\|`;
3. **image k-NN**: the whole image resized to ``image_size`` (224) through the backbone, pooled and
   L2-normalised; the ``knn`` (10) images of highest cosine similarity, the image itself excluded;
4. **RoI pairs**: for image i and each neighbour j, the similarity matrix :math:`S = R_i R_j^\\top`
   (B_i x B_j) and its top :math:`\\max(1, \\lfloor \\rho B_i B_j \\rfloor)` entries, ``pair_ratio``
   :math:`\\rho` = 0.1 (the release's ``topk_bbox_ratio``), most similar first.

Unlike the release, which recomputes the RoI features of the 10 neighbours for every query image (11
backbone passes per box) and gathers all pairs in memory before writing one JSON document, each box is
embedded once, into a memory-mapped array on disk, and every stage writes its rows in place
(:mod:`hcl_plugin.orl.store`): memory stays bounded by a batch and a k-NN chunk whatever the number of
images, and an interrupted run resumes from its last finished batch. Under ``torch.distributed`` each
rank takes a contiguous share of the images in every pass.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor, nn

from hcl_plugin.data.views import IMAGENET_MEAN, IMAGENET_STD
from hcl_plugin.orl.store import FORMAT, META_FILE, write_meta

__all__ = [
    "CorrespondenceSettings",
    "DiscoveryResult",
    "RUN_STATE_FILE",
    "discover_correspondences",
    "filter_boxes",
    "pair_counts",
    "top_pairs",
    "nearest_images",
]

#: the per-rank progress file inside the store's ``work/`` folder
RUN_STATE_FILE = "progress_rank{rank}.json"
INCOMPLETE_FORMAT = FORMAT + "+incomplete"


@dataclass(frozen=True)
class CorrespondenceSettings:
    """Stage-2 settings; the defaults are the release's COCO settings
    (``configs/selfsup/orl/coco/stage2/r50_bs512_ep800_generate_all_correspondence.py``).

    Attributes:
        min_size: proposals need both sides >= this (px).
        max_ratio: largest aspect ratio of a proposal.
        max_iou: a proposal overlapping an already kept one by more is dropped.
        top_n: proposals kept per image.
        knn: neighbour images per image.
        pair_ratio: fraction of the B_i x B_j RoI pairs kept per (image, neighbour), at least one.
        patch_size: RoI crops are resized to this square before the backbone.
        image_size: whole images are resized to this square for the k-NN features.
        batch_size: crops per backbone forward.
        knn_chunk: query and gallery images per block of the k-NN similarity matrix.
    """

    min_size: float = 96.0
    max_ratio: float = 3.0
    max_iou: float = 0.5
    top_n: int = 100
    knn: int = 10
    pair_ratio: float = 0.1
    patch_size: int = 224
    image_size: int = 224
    batch_size: int = 64
    knn_chunk: int = 4096

    def __post_init__(self) -> None:
        for name in ("min_size", "max_ratio"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0 < self.max_iou <= 1:
            raise ValueError(f"max_iou must be in (0, 1], got {self.max_iou}")
        if not 0 < self.pair_ratio <= 1:
            raise ValueError(f"pair_ratio must be in (0, 1], got {self.pair_ratio}")
        for name in ("top_n", "knn", "patch_size", "image_size", "batch_size", "knn_chunk"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def recorded(self) -> Dict[str, Any]:
        """The settings that change the result (written to ``meta.json``; a resume must match them)."""
        values = asdict(self)
        for name in ("batch_size", "knn_chunk"):
            values.pop(name)
        return values


def filter_boxes(boxes: np.ndarray, min_size: float, max_ratio: float, max_iou: float, top_n: int,
                 image_size: Tuple[int, int]) -> np.ndarray:
    """ORL's ``box_filter`` on ranked pixel ``x, y, w, h`` boxes (best first); see the module docstring.

    The overlap rule (drop a box whose IoU with a kept box exceeds ``max_iou``, in rank order) is
    greedy NMS with the rank as the score (``torchvision.ops.nms``). Returns ``(B, 4)`` float32, B >= 1.
    """
    from torchvision.ops import nms

    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    if len(boxes) == 0:
        width, height = image_size
        return np.array([[0, 0, width, height]], dtype=np.float32)
    w, h = boxes[:, 2], boxes[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        keep = (w >= min_size) & (h >= min_size) & (w / h <= max_ratio) & (h / w <= max_ratio)
    kept = boxes[keep]
    if len(kept) == 0:
        return boxes[:1].copy()
    xyxy = torch.from_numpy(np.concatenate([kept[:, :2], kept[:, :2] + kept[:, 2:]], axis=1))
    order = nms(xyxy, torch.arange(len(kept), 0, -1, dtype=torch.float32), max_iou)  # rank order kept
    return kept[order.numpy()][:top_n]


def pair_counts(box_counts: np.ndarray, knn: np.ndarray, pair_ratio: float) -> np.ndarray:
    """Pairs kept per (image, neighbour): :math:`\\max(1, \\lfloor \\rho B_i B_j \\rfloor)`, shape (N, K)."""
    first = box_counts[:, None].astype(np.int64)
    second = box_counts[knn].astype(np.int64)
    return np.maximum(1, np.floor(pair_ratio * first * second + 1e-9).astype(np.int64))


def top_pairs(first: Tensor, second: Tensor, count: int) -> Tuple[Tensor, Tensor]:
    """Rows of ``first`` and ``second`` (L2-normalised RoI embeddings) of the ``count`` most similar pairs,
    most similar first (ties: the lower flat index first)."""
    similarity = first.float() @ second.float().T
    top = torch.topk(similarity.flatten(), count, sorted=True).indices
    return top // second.shape[0], top % second.shape[0]


def nearest_images(queries: Tensor, query_ids: Tensor, gallery_chunks: Iterator[Tuple[int, Tensor]], k: int
                   ) -> Tensor:
    """The ``k`` gallery indices most cosine-similar to each query (itself excluded), nearest first; among
    equal similarities the lower index first.

    Args:
        queries: ``(Q, D)`` L2-normalised features.
        query_ids: ``(Q,)`` their own indices in the gallery (excluded from their neighbours).
        gallery_chunks: ``(first index, (G, D) features)`` blocks covering the gallery; only one block
            is in memory at a time, with the running top ``k``.
    """
    best_values = torch.full((queries.shape[0], k), -math.inf)
    best_ids = torch.full((queries.shape[0], k), -1, dtype=torch.long)
    for start, block in gallery_chunks:
        similarity = queries.float() @ block.float().T
        ids = torch.arange(start, start + block.shape[0], device=query_ids.device)
        similarity[query_ids[:, None] == ids[None, :]] = -math.inf
        ids = ids.cpu()
        values = torch.cat([best_values, similarity.cpu()], dim=1)
        candidates = torch.cat([best_ids, ids.expand(queries.shape[0], -1)], dim=1)
        # a stable sort: among equal similarities the lower image index comes first (earlier blocks come first)
        best_values, position = torch.sort(values, dim=1, descending=True, stable=True)
        best_values, best_ids = best_values[:, :k], torch.gather(candidates, 1, position[:, :k])
    if (best_ids < 0).any():
        raise ValueError(f"k-NN: fewer than {k} other images in the gallery")
    return best_ids


class _ImageCrops(torch.utils.data.Dataset):
    """Image ``i`` as (its whole-image view, its RoI crops), normalised for an ImageNet-style backbone."""

    def __init__(self, paths: Sequence[str], sizes: np.ndarray, boxes: np.ndarray, offsets: np.ndarray,
                 indices: Sequence[int], settings: CorrespondenceSettings) -> None:
        self.paths, self.sizes, self.boxes, self.offsets = paths, sizes, boxes, offsets
        self.indices = list(indices)
        self.settings = settings

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> Tuple[int, Tensor, Tensor]:
        import torchvision.transforms.functional as TF

        from hcl_plugin.data.boxes import box_to_pixel_window
        from hcl_plugin.data.image_io import load_rgb_image
        from hcl_plugin.orl.store import CorrespondenceError

        index = self.indices[position]
        image = load_rgb_image(self.paths[index])
        if image.size != tuple(int(v) for v in self.sizes[index]):
            raise CorrespondenceError(f"image {index} ({self.paths[index]}) is {image.size[0]}x{image.size[1]} px, "
                                      f"the proposals file says {self.sizes[index][0]}x{self.sizes[index][1]}")
        tensor = TF.to_tensor(image)
        size = self.settings.image_size, self.settings.image_size
        whole = TF.resize(tensor, list(size), antialias=True)
        crops = []
        for x, y, w, h in np.asarray(self.boxes[self.offsets[index]:self.offsets[index + 1]]).tolist():
            left, top, right, bottom = box_to_pixel_window((x, y, x + w, y + h), image.width, image.height)
            crops.append(TF.resized_crop(tensor, top, left, bottom - top, right - left,
                                         [self.settings.patch_size] * 2, antialias=True))
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
        return index, TF.normalize(whole, mean, std), TF.normalize(torch.stack(crops), mean, std)


def _collate(batch: List[Tuple[int, Tensor, Tensor]]) -> List[Tuple[int, Tensor, Tensor]]:
    return batch


@torch.no_grad()
def _embed(backbone: nn.Module, images: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """L2-normalised pooled backbone features of ``images``, ``batch_size`` at a time, on the CPU."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        features = backbone(images[start:start + batch_size].to(device))
        if features.ndim == 4:  # a feature map: global average pooling
            features = features.mean(dim=(2, 3))
        out.append(nn.functional.normalize(features.float(), dim=1).cpu())
    return torch.cat(out)


def _feature_dim(backbone: nn.Module, settings: CorrespondenceSettings, device: torch.device) -> int:
    probe = torch.zeros(1, 3, settings.patch_size, settings.patch_size, device=device)
    return int(_embed(backbone, probe, 1, device).shape[1])


def _shard(count: int, rank: int, world_size: int) -> range:
    bounds = np.linspace(0, count, world_size + 1).round().astype(int)
    return range(int(bounds[rank]), int(bounds[rank + 1]))


@dataclass
class DiscoveryResult:
    """What :func:`discover_correspondences` did: the store, counts, seconds per pass and throughput."""

    folder: Path
    images: int
    proposals: int
    pairs: int
    seconds: Dict[str, float]
    resumed: bool

    def summary(self) -> Dict[str, Any]:
        """Counts, per-pass seconds and images/s of the passes run here (a resumed pass counts only its rest)."""
        out: Dict[str, Any] = {"store": str(self.folder), "images": self.images, "proposals": self.proposals,
                               "pairs": self.pairs, "resumed": self.resumed}
        out.update({f"seconds_{name}": round(value, 3) for name, value in self.seconds.items()})
        total = sum(self.seconds.values())
        out["seconds_total"] = round(total, 3)
        return out


class _RunState:
    """The per-rank progress file: how many of this rank's images each pass has finished."""

    def __init__(self, folder: Path, rank: int) -> None:
        self.path = folder / RUN_STATE_FILE.format(rank=rank)
        self.values: Dict[str, int] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def get(self, name: str) -> int:
        return int(self.values.get(name, 0))

    def set(self, name: str, value: int) -> None:
        self.values[name] = int(value)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(self.values))
        os.replace(temporary, self.path)


def _fingerprint(file_names: Sequence[str], boxes: np.ndarray, settings: CorrespondenceSettings,
                 backbone: nn.Module) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([list(file_names), settings.recorded()]).encode())
    digest.update(np.ascontiguousarray(boxes).tobytes())
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class _NoBar:
    """What a pass updates when no progress bar is shown."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _open_bar(progress: Optional[Callable[[str, int], Any]], name: str, total: int, done: int, show: bool) -> Any:
    """``progress(name, total)`` advanced by the ``done`` images of an earlier run, or a :class:`_NoBar`."""
    bar = progress(name, total) if progress is not None and show else _NoBar()
    if done:
        bar.update(done)
    return bar


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _open_or_create(path: Path, shape: Tuple[int, ...], dtype: str, create: bool) -> np.ndarray:
    from numpy.lib.format import open_memmap

    if create and not path.is_file():
        array = open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        array.flush()
        del array
    _barrier()
    return open_memmap(path, mode="r+")


def discover_correspondences(
    backbone: nn.Module,
    file_names: Sequence[str],
    image_root: os.PathLike,
    image_sizes: np.ndarray,
    proposals: Sequence[np.ndarray],
    out_dir: os.PathLike,
    settings: CorrespondenceSettings = CorrespondenceSettings(),
    device: Optional[torch.device] = None,
    workers: int = 0,
    progress: Optional[Callable[[str, int], Any]] = None,
    keep_embeddings: bool = False,
) -> DiscoveryResult:
    """Run stage 2 and write the correspondence store ``out_dir`` (resuming an unfinished one).

    Args:
        backbone: the stage-1 encoder, returning pooled features ``(N, D)`` or a feature map (pooled
            here); put in ``eval()`` mode.
        file_names: image file names relative to ``image_root``, index = image index.
        image_root: folder of the images.
        image_sizes: ``(N, 2)`` width, height of each image (checked against the decoded file).
        proposals: per image, ranked pixel ``x, y, w, h`` proposals (filtered here by ``settings``).
        out_dir: the store's folder. If it holds an unfinished store of the same inputs (file names,
            proposals, settings and backbone weights, by hash) the run resumes it; other contents are an
            error (the caller decides about overwriting).
        settings: see :class:`CorrespondenceSettings`.
        device: where the backbone runs (default: CUDA if available).
        workers: ``DataLoader`` worker processes decoding and cropping images.
        progress: ``progress(pass_name, total)`` returns a tqdm-like bar (``update(n)``, ``close()``);
            ``None`` shows none.
        keep_embeddings: keep ``work/`` (global and RoI embeddings) after finishing.

    Under ``torch.distributed`` every rank calls this with the same arguments; each works on its share
    of the images, and rank 0 writes the shared files.
    """
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    backbone = backbone.to(device).eval()
    folder, work = Path(out_dir), Path(out_dir) / "work"
    n = len(file_names)
    if n <= settings.knn:
        raise ValueError(f"stage 2 needs more than knn = {settings.knn} images, got {n}")
    sizes = np.asarray(image_sizes, dtype=np.int32).reshape(n, 2)
    if len(proposals) != n:
        raise ValueError(f"{len(proposals)} proposal lists for {n} images")
    kept = [filter_boxes(p, settings.min_size, settings.max_ratio, settings.max_iou, settings.top_n, tuple(s))
            for p, s in zip(proposals, sizes.tolist())]
    counts = np.array([len(b) for b in kept], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    boxes = np.concatenate(kept).astype(np.float32)
    if len(boxes) >= 2**31:
        raise ValueError(f"{len(boxes)} proposals in all: the store indexes boxes with int32; lower top_n")
    fingerprint = _fingerprint(file_names, boxes, settings, backbone)

    resumed = False
    if rank == 0:
        meta_path = folder / META_FILE
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("format") == FORMAT:
                raise FileExistsError(f"{folder} already holds a finished correspondence store")
            if meta.get("fingerprint") != fingerprint:
                raise FileExistsError(f"{folder} holds an unfinished store of other inputs (images, proposals, "
                                      "settings or backbone weights differ); remove it or choose another folder")
            resumed = True
        else:
            if folder.exists() and any(folder.iterdir()):
                raise FileExistsError(f"{folder} exists and is not a correspondence store; choose an empty folder")
            work.mkdir(parents=True, exist_ok=True)
            np.save(folder / "image_sizes.npy", sizes)
            np.save(folder / "boxes.npy", boxes)
            np.save(folder / "box_offsets.npy", offsets)
            write_meta(folder, {"format": INCOMPLETE_FORMAT, "fingerprint": fingerprint,
                                "image_root": os.path.abspath(os.fspath(image_root)),
                                "settings": settings.recorded(), "file_names": list(file_names)})
    if distributed:
        resumed = bool(_broadcast(resumed))
    _barrier()
    state = _RunState(work, rank)
    seconds: Dict[str, float] = {}
    dim = _feature_dim(backbone, settings, device)
    global_features = _open_or_create(work / "global.npy", (n, dim), "float32", rank == 0)
    roi_features = _open_or_create(work / "rois.npy", (len(boxes), dim), "float16", rank == 0)

    # pass 1: embeddings of the whole images and of every kept box
    mine = _shard(n, rank, world)
    done = state.get("embedded")
    start = time.perf_counter()
    paths = [os.path.join(os.fspath(image_root), name) for name in file_names]
    dataset = _ImageCrops(paths, sizes, boxes, offsets, list(mine)[done:], settings)
    loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, settings.batch_size // max(int(counts.mean()), 1)),
                                         num_workers=workers, collate_fn=_collate)
    bar = _open_bar(progress, "embed images and proposals", len(mine), done, rank == 0)
    for batch in loader:
        indices = [item[0] for item in batch]
        wholes = torch.stack([item[1] for item in batch])
        crops = torch.cat([item[2] for item in batch])
        global_features[indices] = _embed(backbone, wholes, settings.batch_size, device).numpy()
        rois = _embed(backbone, crops, settings.batch_size, device).numpy().astype(np.float16)
        row = 0
        for index in indices:
            roi_features[offsets[index]:offsets[index + 1]] = rois[row:row + counts[index]]
            row += int(counts[index])
        global_features.flush()
        roi_features.flush()
        done += len(indices)
        state.set("embedded", done)
        bar.update(len(indices))
    bar.close()
    seconds["embed"] = time.perf_counter() - start
    _barrier()

    # pass 2: image k-NN, streamed in blocks of the similarity matrix
    start = time.perf_counter()
    knn = _open_or_create(folder / "knn.npy", (n, settings.knn), "int32", rank == 0)
    done = state.get("knn")
    bar = _open_bar(progress, "image k-NN", len(mine), done, rank == 0)
    chunk = settings.knn_chunk

    def gallery() -> Iterator[Tuple[int, Tensor]]:
        for first in range(0, n, chunk):
            yield first, torch.from_numpy(np.asarray(global_features[first:first + chunk])).to(device)

    while done < len(mine):
        ids = torch.arange(mine.start + done, min(mine.start + done + chunk, mine.stop))
        queries = torch.from_numpy(np.asarray(global_features[ids.numpy()])).to(device)
        knn[ids.numpy()] = nearest_images(queries, ids.to(device), gallery(), settings.knn).cpu().numpy()
        knn.flush()
        done += len(ids)
        state.set("knn", done)
        bar.update(len(ids))
    bar.close()
    seconds["knn"] = time.perf_counter() - start
    _barrier()

    # pass 3: top RoI pairs of every (image, neighbour)
    start = time.perf_counter()
    knn_values = np.asarray(knn)
    per_pair = pair_counts(counts, knn_values, settings.pair_ratio).reshape(-1)
    pair_offsets = np.concatenate([[0], np.cumsum(per_pair)]).astype(np.int64)
    if rank == 0 and not (folder / "pair_offsets.npy").is_file():
        np.save(folder / "pair_offsets.npy", pair_offsets)
    pairs = _open_or_create(folder / "pairs.npy", (int(pair_offsets[-1]), 2), "int32", rank == 0)
    done = state.get("paired")
    bar = _open_bar(progress, "RoI pairs", len(mine), done, rank == 0)
    k = settings.knn
    for index in list(mine)[done:]:
        first = torch.from_numpy(np.asarray(roi_features[offsets[index]:offsets[index + 1]])).to(device)
        for j, neighbour in enumerate(knn_values[index].tolist()):
            second = torch.from_numpy(np.asarray(roi_features[offsets[neighbour]:offsets[neighbour + 1]])).to(device)
            row = index * k + j
            a, b = top_pairs(first, second, int(per_pair[row]))
            pairs[pair_offsets[row]:pair_offsets[row + 1], 0] = a.cpu().numpy() + offsets[index]
            pairs[pair_offsets[row]:pair_offsets[row + 1], 1] = b.cpu().numpy() + offsets[neighbour]
        done += 1
        if done % 256 == 0 or done == len(mine):
            pairs.flush()
            state.set("paired", done)
        bar.update(1)
    bar.close()
    seconds["pairs"] = time.perf_counter() - start
    del global_features, roi_features, knn, pairs
    _barrier()
    if rank == 0:
        meta = json.loads((folder / META_FILE).read_text())
        meta["format"] = FORMAT
        meta["counts"] = {"images": n, "proposals": int(len(boxes)), "pairs": int(pair_offsets[-1])}
        write_meta(folder, meta)
        if not keep_embeddings:
            shutil.rmtree(work, ignore_errors=True)
    _barrier()
    return DiscoveryResult(folder=folder, images=n, proposals=int(len(boxes)), pairs=int(pair_offsets[-1]),
                           seconds=seconds, resumed=resumed)


def _broadcast(value: Any) -> Any:
    holder = [value]
    torch.distributed.broadcast_object_list(holder, src=0)
    return holder[0]
