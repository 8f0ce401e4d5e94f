"""Image-folder reader for retrieval sets: ``root/<class>/<image>`` or ``root/<superclass>/<class>/<image>``.

UHML's data set: the training half feeds the re-clustering and the training loop, the held-out half
the Recall@K evaluation (:func:`hcl_plugin.eval.recall_at_k`); :mod:`hcl_plugin.eval` re-exports
:class:`RetrievalImageFolder` for the latter. Framework-free (PIL + numpy); the MMEngine data set
``UHMLImageFolder`` (:mod:`hcl_plugin.mmselfsup.datasets`) lists and splits the same way.

Layouts of the usual metric-learning sets:

* CUB-200-2011: ``CUB_200_2011/images/001.Black_footed_Albatross/*.jpg`` -> ``root=.../images``,
  ``layout="class"``; sorted names give the official class order 001..200, so ``split="train"`` is
  classes 1-100 and ``split="test"`` 101-200, the protocol of UHML and of deep metric learning.
* Cars196: the official release is a flat ``car_ims/`` folder plus ``cars_annos.mat``; move the images
  into one folder per class (``001``..``196``) first; then ``layout="class"`` gives 98 / 98 classes.
* Stanford Online Products: ``<superclass>_final/<product id>_<n>.JPG``; one folder per product
  (``bicycle_final/111085122871/*.JPG``) gives ``layout="superclass/class"``. The official SOP split
  is by product id (11,318 / 11,316 classes), close to but not identical with the sorted halves.

Classes are ordered by their sorted relative path (``superclass/class``); ``split="train"`` keeps the
first ``num_classes // 2`` classes, ``split="test"`` the rest, ``split="all"`` everything. Class
indices are global (the same in every split). Images are decoded by the project's one loader,
:func:`hcl_plugin.data.image_io.load_rgb_image` (PIL + numpy; 16-bit, palette, alpha and CMYK rules
in docs/data.md), the same pixels the training pipelines see.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple, Union

from PIL import Image

from hcl_plugin.data.image_io import ImageLoadError, load_rgb_image

__all__ = [
    "IMAGE_EXTENSIONS", "LAYOUTS", "SPLITS", "ImageReadError", "RetrievalImageFolder", "class_range", "detect_layout"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
LAYOUTS = ("class", "superclass/class")
SPLITS = ("all", "train", "test")
PathLike = Union[str, "os.PathLike[str]"]


ImageReadError = ImageLoadError
"""An image file could not be decoded; the message names the file (the loader's ``ImageLoadError``)."""


def class_range(num_classes: int, split: str) -> range:
    """Indices of the classes in ``split``: the first ``num_classes // 2`` for train, the rest for test."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    half = num_classes // 2
    return {"all": range(num_classes), "train": range(half), "test": range(half, num_classes)}[split]


def detect_layout(root: PathLike) -> str:
    """``"class"`` when the first visible sub-folder holds files, ``"superclass/class"`` when only folders."""
    for entry in sorted(os.scandir(os.fspath(root)), key=lambda e: e.name):
        if entry.is_dir() and not entry.name.startswith("."):
            inner = [e for e in os.scandir(entry.path) if not e.name.startswith(".")]
            return "superclass/class" if inner and all(e.is_dir() for e in inner) else "class"
    return "class"


def _sorted_dirs(folder: str) -> Tuple[List[str], int]:
    """Visible sub-directories of ``folder`` (sorted) and the number of other entries ignored."""
    dirs, ignored = [], 0
    for entry in os.scandir(folder):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            dirs.append(entry.name)
        else:
            ignored += 1
    return sorted(dirs), ignored


@dataclass
class RetrievalImageFolder:
    """Images and class labels from a folder tree, split by class halves for retrieval evaluation.

    Attributes:
        root: the top folder.
        layout: ``"class"`` (``root/class/img``) or ``"superclass/class"`` (``root/super/class/img``).
        split: ``"all"``, ``"train"`` (first half of the sorted classes) or ``"test"`` (second half).
        transform: applied to the RGB ``PIL.Image`` in ``__getitem__`` (e.g. a torchvision transform).
        class_names: every class as its relative path (``"super/class"`` in the two-level layout),
            global order; ``class_index`` below indexes this list.
        superclass_names: the superclasses (empty for ``layout="class"``).
        samples: ``(path, class_index)`` of the images in ``split``, sorted by class then file name.
        superclass_of_class: superclass index of each class (empty for ``layout="class"``).
        ignored_entries: files where class folders were expected and files without an image extension.

    Raises:
        FileNotFoundError: ``root`` is missing or not a folder.
        ValueError: unknown layout/split, no classes, or a class folder without images (named).
        ImageReadError: from ``__getitem__`` when an image cannot be decoded (names the file).
    """

    root: PathLike
    layout: str = "class"
    split: str = "all"
    transform: Optional[Callable[[Image.Image], Any]] = None
    class_names: List[str] = field(init=False, default_factory=list)
    superclass_names: List[str] = field(init=False, default_factory=list)
    superclass_of_class: List[int] = field(init=False, default_factory=list)
    samples: List[Tuple[str, int]] = field(init=False, default_factory=list)
    ignored_entries: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        root = os.fspath(self.root)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"retrieval image folder {root!r} does not exist or is not a folder")
        class_dirs = self._find_classes(root)
        if not class_dirs:
            raise ValueError(f"no class folders under {root!r} (layout {self.layout!r})")
        for index in class_range(len(class_dirs), self.split):
            self.samples.extend((path, index) for path in self._images_of(os.path.join(root, class_dirs[index])))

    def _find_classes(self, root: str) -> List[str]:
        top, ignored = _sorted_dirs(root)
        self.ignored_entries += ignored
        if self.layout == "class":
            self.class_names = top
            return top
        self.superclass_names = top
        for super_index, superclass in enumerate(top):
            classes, ignored = _sorted_dirs(os.path.join(root, superclass))
            self.ignored_entries += ignored
            for name in classes:
                self.class_names.append(f"{superclass}/{name}")
                self.superclass_of_class.append(super_index)
        return self.class_names

    def _images_of(self, folder: str) -> List[str]:
        paths = []
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            if entry.name.lower().endswith(IMAGE_EXTENSIONS):
                paths.append(entry.path)
            else:
                self.ignored_entries += 1
        if not paths:
            raise ValueError(
                f"class folder {folder!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)}); "
                f"is the layout right? (layout={self.layout!r})"
            )
        return paths

    @property
    def num_classes(self) -> int:
        """Number of classes in the whole tree (all splits)."""
        return len(self.class_names)

    @property
    def targets(self) -> List[int]:
        """Class index of every sample of the split."""
        return [label for _, label in self.samples]

    @property
    def superclass_targets(self) -> List[int]:
        """Superclass index of every sample (``layout="superclass/class"`` only)."""
        if self.layout != "superclass/class":
            raise ValueError("superclass_targets needs layout='superclass/class'")
        return [self.superclass_of_class[label] for _, label in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Tuple[Any, int]:
        path, label = self.samples[index]
        image = load_rgb_image(path)
        return (self.transform(image) if self.transform is not None else image), label
