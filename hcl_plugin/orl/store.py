"""ORL's stage-2 output, the correspondence store: a folder of ``.npy`` arrays and one ``meta.json``.

ORL (Xie et al., NeurIPS 2021; release github Jiahao000/ORL) writes stage 2 as one JSON document of
nested lists (``pseudo_annotations.bbox`` and ``knn_bbox_pair``, N x K x pairs x 8 numbers). At COCO
size that document is gigabytes of text that stage 3 must parse into memory. The store keeps the same
information as flat arrays that are written row by row and read by memory mapping
(``numpy.load(mmap_mode='r')``, never ``allow_pickle``):

================== ============ ==================================================================
file               shape, dtype content
================== ============ ==================================================================
``meta.json``      --           format tag, image file names (relative to ``image_root``), settings
``image_sizes.npy`` (N, 2) int32  width, height of every image (checked against the file on read)
``boxes.npy``      (M, 4) float32 the filtered proposals of all images, pixel ``x, y, w, h``
``box_offsets.npy`` (N + 1,) int64 image ``i``'s proposals are rows ``box_offsets[i]:box_offsets[i+1]``
``knn.npy``        (N, K) int32   the K nearest images of each image (never itself), nearest first
``pairs.npy``      (P, 2) int32   RoI pairs: (row in ``boxes`` of image i, row in ``boxes`` of neighbour)
``pair_offsets.npy`` (N*K + 1,) int64 pairs of (image i, its k-th neighbour) are rows
                                ``pair_offsets[i*K+k]:pair_offsets[i*K+k+1]``, most similar first
================== ============ ==================================================================

:func:`open_store` checks everything a stage-3 sampler relies on before training starts, and names the
image, box or pair at fault: files missing, shapes, offsets, neighbour indices, boxes outside their
image, pair rows outside their image's boxes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = [
    "ARRAY_FILES",
    "describe",
    "FORMAT",
    "CorrespondenceError",
    "CorrespondenceStore",
    "META_FILE",
    "open_store",
    "write_meta",
]

#: ``meta.json["format"]`` of a complete store.
FORMAT = "hcl_plugin.orl_correspondence/1"
META_FILE = "meta.json"
#: The arrays of a store, with their dtype and number of columns (``None``: one-dimensional).
ARRAY_FILES: Dict[str, Tuple[str, Optional[int]]] = {
    "image_sizes": ("int32", 2),
    "boxes": ("float32", 4),
    "box_offsets": ("int64", None),
    "knn": ("int32", None),
    "pairs": ("int32", 2),  # box rows: < 2**31 boxes in all
    "pair_offsets": ("int64", None),
}
_CHECK_CHUNK = 1 << 16  # (image, neighbour) rows checked at a time


class CorrespondenceError(ValueError):
    """A correspondence store that stage 3 cannot use; the message names the file, image, box or pair."""


def write_meta(folder: os.PathLike, meta: Dict[str, Any]) -> Path:
    """Write ``meta.json`` into ``folder`` atomically (a temporary file renamed over it)."""
    path = Path(folder) / META_FILE
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    os.replace(temporary, path)
    return path


def _load_array(folder: Path, name: str) -> np.ndarray:
    path = folder / f"{name}.npy"
    if not path.is_file():
        raise CorrespondenceError(f"{folder}: {path.name} is missing; is this a complete correspondence store "
                                  "(written by tools/orl_correspondence.py)?")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:  # object arrays need pickles: refused
        raise CorrespondenceError(f"{path}: not a plain numeric array ({error})") from None
    dtype, columns = ARRAY_FILES[name]
    if array.dtype != np.dtype(dtype):
        raise CorrespondenceError(f"{path}: dtype {array.dtype}, expected {dtype}")
    if columns is not None and (array.ndim != 2 or array.shape[1] != columns):
        raise CorrespondenceError(f"{path}: shape {array.shape}, expected (rows, {columns})")
    return array


@dataclass
class CorrespondenceStore:
    """A read-only, memory-mapped correspondence store (see the module docstring); make it with :func:`open_store`.

    Attributes:
        folder: the store's folder.
        image_root: folder the image file names are relative to.
        file_names: image file names, index = image index.
        settings: the stage-2 settings recorded in ``meta.json`` (proposal filter, K, pair ratio, ...).
    """

    folder: Path
    image_root: Path
    file_names: List[str]
    settings: Dict[str, Any]
    image_sizes: np.ndarray
    boxes: np.ndarray
    box_offsets: np.ndarray
    knn: np.ndarray
    pairs: np.ndarray
    pair_offsets: np.ndarray
    _checked_sizes: Dict[int, bool] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.file_names)

    @property
    def num_neighbours(self) -> int:
        """K, the neighbours stored per image."""
        return int(self.knn.shape[1])

    def image_path(self, index: int) -> str:
        """The path of image ``index`` (``image_root`` / its file name)."""
        return os.path.join(os.fspath(self.image_root), self.file_names[index])

    def image_boxes(self, index: int) -> np.ndarray:
        """The filtered proposals of image ``index``, ``(B, 4)`` pixel ``x, y, w, h``."""
        return np.asarray(self.boxes[self.box_offsets[index]:self.box_offsets[index + 1]])

    def neighbour_pairs(self, index: int, k: int) -> Tuple[int, np.ndarray]:
        """The ``k``-th neighbour of image ``index`` and their RoI pairs ``(P, 8)``: the box in image
        ``index`` then the box in the neighbour, pixel ``x, y, w, h`` each, most similar first."""
        neighbour = int(self.knn[index, k])
        row = index * self.num_neighbours + k
        pairs = np.asarray(self.pairs[self.pair_offsets[row]:self.pair_offsets[row + 1]])
        return neighbour, np.concatenate([self.boxes[pairs[:, 0]], self.boxes[pairs[:, 1]]], axis=1)

    def check_image_size(self, index: int, size: Tuple[int, int]) -> None:
        """Raise :class:`CorrespondenceError` if the decoded image ``index`` is not ``size`` (width, height)
        as recorded: its boxes would then point at other pixels (the file changed since stage 2)."""
        recorded = tuple(int(v) for v in self.image_sizes[index])
        if tuple(size) != recorded:
            raise CorrespondenceError(
                f"{self.folder}: image {index} ({self.image_path(index)}) is {size[0]}x{size[1]} px, but the store "
                f"recorded {recorded[0]}x{recorded[1]}: the file changed since stage 2; rerun tools/orl_correspondence.py"
            )


def _check_offsets(offsets: np.ndarray, count: int, rows: int, what: str, folder: Path) -> None:
    if offsets.ndim != 1 or len(offsets) != count + 1:
        raise CorrespondenceError(f"{folder}: {what}_offsets has shape {offsets.shape}, expected ({count + 1},)")
    if offsets[0] != 0 or offsets[-1] != rows or np.any(np.diff(offsets) < 0):
        raise CorrespondenceError(f"{folder}: {what}_offsets must rise from 0 to {rows} (the rows of {what}s.npy)")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def open_store(folder: os.PathLike, image_root: Optional[os.PathLike] = None, check_files: bool = True
               ) -> CorrespondenceStore:
    """Open and check a correspondence store.

    Args:
        folder: the store's folder (or its ``meta.json``).
        image_root: where the images are; default: the ``image_root`` recorded in ``meta.json``.
        check_files: also check that every image file exists (one ``stat`` per image).

    Raises:
        CorrespondenceError: a file is missing or malformed, an image file is missing, a box lies outside
            its image or is empty, a neighbour index is out of range or the image itself, a pair's box
            belongs to another image, an image or neighbour has no pairs (the message names the file and
            the image / box / pair).
    """
    folder = Path(folder)
    if folder.name == META_FILE:
        folder = folder.parent
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise CorrespondenceError(f"{folder}: no {META_FILE}; not a correspondence store (tools/orl_correspondence.py "
                                  "writes one)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise CorrespondenceError(f"{meta_path}: not JSON ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CorrespondenceError(f"{meta_path}: format {found!r}, expected {FORMAT!r} (an unfinished stage 2 "
                                  "leaves no format tag: rerun tools/orl_correspondence.py to finish it)")
    names = meta.get("file_names")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise CorrespondenceError(f"{meta_path}: 'file_names' must be a list of non-empty strings")
    arrays = {name: _load_array(folder, name) for name in ARRAY_FILES}
    n = len(names)
    root = Path(image_root) if image_root is not None else Path(meta.get("image_root", ""))
    sizes, boxes, knn, pairs = arrays["image_sizes"], arrays["boxes"], arrays["knn"], arrays["pairs"]
    if sizes.shape[0] != n:
        raise CorrespondenceError(f"{folder}: image_sizes.npy has {sizes.shape[0]} rows for {n} images")
    if knn.ndim != 2 or knn.shape[0] != n or knn.shape[1] < 1:
        raise CorrespondenceError(f"{folder}: knn.npy has shape {knn.shape}, expected ({n}, K >= 1)")
    k = knn.shape[1]
    _check_offsets(arrays["box_offsets"], n, boxes.shape[0], "box", folder)
    _check_offsets(arrays["pair_offsets"], n * k, pairs.shape[0], "pair", folder)
    box_offsets = np.asarray(arrays["box_offsets"])
    counts = np.diff(box_offsets)
    if np.any(counts == 0):
        i = _first(counts == 0)
        raise CorrespondenceError(f"{folder}: image {i} ({names[i]}) has no proposals")
    # boxes inside their image, not empty
    owner = np.repeat(np.arange(n), counts)
    box_values = np.asarray(boxes, dtype=np.float64)
    widths, heights = sizes[owner, 0].astype(np.float64), sizes[owner, 1].astype(np.float64)
    x, y, w, h = box_values.T
    bad = ~np.isfinite(box_values).all(axis=1) | (w <= 0) | (h <= 0) | (x < 0) | (y < 0) \
        | (x + w > widths + 1e-3) | (y + h > heights + 1e-3)
    if bad.any():
        row = _first(bad)
        i = int(owner[row])
        raise CorrespondenceError(
            f"{folder}: box {row - box_offsets[i]} of image {i} ({names[i]}), x y w h = {box_values[row].tolist()}, "
            f"is empty or outside the {int(sizes[i, 0])}x{int(sizes[i, 1])} px image"
        )
    knn_values = np.asarray(knn)
    bad_knn = (knn_values < 0) | (knn_values >= n) | (knn_values == np.arange(n)[:, None])
    if bad_knn.any():
        i, j = np.argwhere(bad_knn)[0]
        raise CorrespondenceError(f"{folder}: neighbour {j} of image {i} ({names[i]}) is {knn_values[i, j]}, not "
                                  f"another image index in [0, {n})")
    pair_counts = np.diff(np.asarray(arrays["pair_offsets"]))
    if np.any(pair_counts == 0):
        row = _first(pair_counts == 0)
        raise CorrespondenceError(f"{folder}: image {row // k} ({names[row // k]}) has no RoI pair with its "
                                  f"neighbour {row % k}")
    pair_offsets = np.asarray(arrays["pair_offsets"])
    flat_knn = knn_values.reshape(-1)
    for start in range(0, n * k, _CHECK_CHUNK):  # in chunks: COCO has ~1e8 pairs
        stop = min(start + _CHECK_CHUNK, n * k)
        values = np.asarray(pairs[pair_offsets[start]:pair_offsets[stop]])
        pair_row = np.repeat(np.arange(start, stop), pair_counts[start:stop])
        for column, image_of_pair in ((0, pair_row // k), (1, flat_knn[pair_row])):
            rows = values[:, column]
            wrong = (rows < box_offsets[image_of_pair]) | (rows >= box_offsets[image_of_pair + 1])
            if wrong.any():
                p = _first(wrong)
                i = int(pair_row[p] // k)
                raise CorrespondenceError(
                    f"{folder}: pair {int(pair_offsets[start]) + p} (image {i} ({names[i]}), neighbour "
                    f"{int(pair_row[p] % k)}) points at box row {int(rows[p])}, which is not a box of image "
                    f"{int(image_of_pair[p])}"
                )
    if check_files:
        for i, name in enumerate(names):
            path = root / name
            if not path.is_file():
                raise CorrespondenceError(f"{folder}: image {i}, {path}, does not exist (image_root {str(root)!r})")
    return CorrespondenceStore(
        folder=folder, image_root=root, file_names=list(names), settings=dict(meta.get("settings", {})),
        image_sizes=sizes, boxes=boxes, box_offsets=box_offsets, knn=knn, pairs=pairs,
        pair_offsets=pair_offsets,
    )


def describe(store: CorrespondenceStore) -> Dict[str, Any]:
    """Counts of a store for logs: images, K, proposals per image, pairs per neighbour."""
    n = len(store)
    return {
        "images": n,
        "neighbours": store.num_neighbours,
        "proposals_per_image": round(float(store.boxes.shape[0]) / max(n, 1), 2),
        "pairs_per_neighbour": round(float(store.pairs.shape[0]) / max(n * store.num_neighbours, 1), 2),
    }
