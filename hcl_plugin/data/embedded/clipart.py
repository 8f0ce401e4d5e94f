"""A class-disjoint retrieval set of real clip art: Debian's ``openclipart-png`` in superclass/class folders.

Source: the Debian package ``openclipart-png`` 1:0.18+dfsg-19 (bookworm, ``pool/main/o/openclipart``,
131 MB, SHA-256 :data:`DEB_SHA256`): 8,121 PNG drawings with alpha from openclipart.org 0.18, in a
category tree ``usr/share/openclipart/png/<category>/<sub>/.../<name>.png``. Licence: Creative Commons
Public Domain Dedication (the package's ``copyright`` file); no attribution is required.

No CUB/Cars/SOP can be downloaded here (docs/background.md, data available offline); this is the
benchmark set for UHML (``benchmarks/uhml_retrieval.py``) because it has many classes, colour and shape variation within a
class, and clip art of one folder is *not* near-duplicate pixels (raw-pixel nearest neighbours are a
weak baseline, reported by the benchmark).

Classes. Every folder of the tree that directly holds images is one class: its top-level category is
the superclass, the rest of its path joined with ``-`` the class name (``signs_and_symbols/flags/europe``
-> superclass ``signs_and_symbols``, class ``flags-europe``; images directly in a category folder form
the class ``misc``). Categories in :data:`EXCLUDED_CATEGORIES` (``unsorted``: no label) are dropped, and
so are folders with fewer than ``min_per_class`` images. Folders with more than ``max_per_class``
images keep ``max_per_class`` of them, evenly spaced in file-name order (``shapes/stars`` has 1,378
near-identical stars; uncapped, it would be a fifth of the set).

Duplicates. The package stores 1,221 of its 8,121 PNGs as symbolic links to a drawing filed under
another category (e.g. ``special/gradients/container_for_other_ico_01.png`` ->
``computer/icons/...``); links are skipped (not extracted, and ignored in a tree extracted with
``dpkg -x``), so no drawing appears in two classes, or on both sides of the split. 6,900 files remain.

Images. Each drawing is composited over a white background with its alpha channel
(:math:`I = \\alpha F + (1 - \\alpha) \\cdot 255`), scaled so its longer side is ``image_size`` pixels
(Lanczos, aspect ratio kept), centred on a white ``image_size`` x ``image_size`` square and written as
RGB PNG to ``root/<superclass>/<class>/<name>.png``, the ``layout="superclass/class"`` of
:class:`hcl_plugin.uhml.RetrievalImageFolder`, whose sorted class halves are the class-disjoint
training / held-out split (the first classes in alphabetical ``superclass/class`` order train).

Fetching. The ``.deb`` goes to ``<cache>/debs`` (``$HCL_PLUGIN_CACHE`` or ``~/.cache/hcl_plugin``) with
``apt-get download openclipart-png`` (no installation, no root needed beyond apt's cache) or, where
apt-get is missing or fails, over HTTP from :data:`DEB_URL`; its SHA-256 is checked; its
``data.tar.xz`` is read with the standard library (``ar`` + ``tarfile``; no ``dpkg``) and only the PNGs
are extracted to ``<cache>/openclipart-png-0.18``. Nothing is installed system-wide.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import urllib.request
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from hcl_plugin.data.embedded.animal_mnist import cache_dir
from hcl_plugin.utils.files import sha256_of_file

__all__ = [
    "ClipartUnavailable",
    "DEB_NAME",
    "DEB_SHA256",
    "DEB_URL",
    "DEFAULT_CLIPART_RETRIEVAL_DIR",
    "EXCLUDED_CATEGORIES",
    "PNG_PREFIX",
    "build_clipart_retrieval_set",
    "clipart_classes",
    "ensure_clipart_retrieval_set",
    "extract_openclipart_pngs",
    "fetch_openclipart_deb",
    "find_openclipart_pngs",
]

DEB_NAME = "openclipart-png_0.18+dfsg-19_all.deb"
DEB_SHA256 = "f07f1545a2970c2cf3fa339bc2405da1a95cf2b1827bfa05bf73eb1c20291c02"
DEB_URL = "http://deb.debian.org/debian/pool/main/o/openclipart/" + DEB_NAME
#: Path of the PNG tree inside the package's data archive.
PNG_PREFIX = "usr/share/openclipart/png"
#: Top-level categories without a meaningful label.
EXCLUDED_CATEGORIES: Tuple[str, ...] = ("unsorted",)
#: Where the benchmark builds the set (relative to the working directory).
DEFAULT_CLIPART_RETRIEVAL_DIR = Path("data") / "clipart_retrieval"
#: Larger drawings are skipped (a few are rendered at tens of thousands of pixels a side).
MAX_PIXELS = 40_000_000
_EXTRACTED = "openclipart-png-0.18"
_DONE = ".complete"
INSTALL_HINT = (
    "The clip-art retrieval set needs Debian's openclipart-png package (131 MB, public domain). Fetch it with\n"
    "    mkdir -p {debs} && cd {debs} && apt-get download openclipart-png\n"
    "or download {url} into {debs} (any Debian mirror), or set HCL_PLUGIN_CACHE to a folder whose debs/ "
    "holds it. Expected SHA-256: {sha}."
)


class ClipartUnavailable(RuntimeError):
    """The openclipart-png package is neither cached nor downloadable; the message says how to get it."""


def _hint(cache: Path) -> str:
    return INSTALL_HINT.format(debs=cache / "debs", url=DEB_URL, sha=DEB_SHA256)


def _cached_deb(debs: Path) -> Optional[Path]:
    """A cached ``openclipart-png_*_all.deb`` (apt-get writes the epoch as ``1%3a``)."""
    candidates = sorted(debs.glob("openclipart-png_*_all.deb")) if debs.is_dir() else []
    return candidates[0] if candidates else None


def fetch_openclipart_deb(cache: Optional[Path] = None, download: bool = True) -> Path:
    """Path of the verified ``openclipart-png`` ``.deb`` in ``<cache>/debs``; download it first if absent.

    Download: ``apt-get download openclipart-png`` in ``<cache>/debs``, else HTTP from :data:`DEB_URL`.

    Raises:
        ClipartUnavailable: not cached and ``download`` is false or both downloads failed, or the
            file's SHA-256 is not :data:`DEB_SHA256` (the message names the file and the two hashes).
    """
    cache = Path(cache) if cache is not None else cache_dir()
    debs = cache / "debs"
    deb = _cached_deb(debs)
    if deb is None:
        if not download:
            raise ClipartUnavailable(f"no openclipart-png_*_all.deb in {debs} and download=False.\n{_hint(cache)}")
        debs.mkdir(parents=True, exist_ok=True)
        errors: List[str] = []
        if shutil.which("apt-get"):
            try:
                result = subprocess.run(["apt-get", "download", "openclipart-png"], cwd=debs, capture_output=True,
                                        text=True, timeout=900)
                if result.returncode != 0:
                    errors.append(f"apt-get download exited {result.returncode}: "
                                  + " | ".join((result.stderr or result.stdout).strip().splitlines()[-2:]))
            except (OSError, subprocess.TimeoutExpired) as error:
                errors.append(f"apt-get download failed: {error}")
        else:
            errors.append("apt-get is not available")
        deb = _cached_deb(debs)
        if deb is None:
            target = debs / DEB_NAME
            partial = target.with_suffix(".part")
            try:
                with urllib.request.urlopen(DEB_URL, timeout=60) as response, open(partial, "wb") as handle:
                    shutil.copyfileobj(response, handle, 1 << 20)
                partial.replace(target)
                deb = target
            except OSError as error:
                partial.unlink(missing_ok=True)
                errors.append(f"HTTP download of {DEB_URL} failed: {error}")
                raise ClipartUnavailable("could not download openclipart-png (" + "; ".join(errors) + ").\n"
                                         + _hint(cache)) from None
    actual = sha256_of_file(deb)
    if actual != DEB_SHA256:
        raise ClipartUnavailable(f"{deb} has SHA-256 {actual}, expected {DEB_SHA256}; delete it and fetch it "
                                 f"again.\n{_hint(cache)}")
    return deb


def _ar_member(deb: Path, prefix: str) -> Tuple[int, int, str]:
    """(offset, size, name) of the first member of the ``ar`` archive ``deb`` whose name starts with ``prefix``.

    ``ar`` format: the magic ``!<arch>\\n``, then per member a 60-byte header (name 16, mtime 12,
    uid 6, gid 6, mode 8, size 10, ``\\x60\\n``) followed by the data, padded to an even length.
    """
    with open(deb, "rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise ClipartUnavailable(f"{deb} is not a Debian package (no ar magic)")
        while True:
            header = handle.read(60)
            if len(header) < 60:
                raise ClipartUnavailable(f"{deb} has no {prefix}* member")
            name = header[:16].decode("ascii").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
            if name.startswith(prefix):
                return handle.tell(), size, name
            handle.seek(size + (size & 1), os.SEEK_CUR)


def extract_openclipart_pngs(deb: Path, cache: Optional[Path] = None) -> Path:
    """Extract the PNG tree of ``deb`` into ``<cache>/openclipart-png-0.18`` (once); return the ``png`` folder.

    Only regular ``.png`` members under :data:`PNG_PREFIX` are written, with their path checked to
    stay inside the target folder (no absolute paths, no ``..``).
    """
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / _EXTRACTED
    png_root = target / PNG_PREFIX
    if (target / _DONE).is_file():
        return png_root
    offset, _, name = _ar_member(Path(deb), "data.tar")
    count = 0
    with open(deb, "rb") as handle:
        handle.seek(offset)
        with tarfile.open(fileobj=handle, mode="r|*") as archive:
            for member in archive:
                path = member.name.lstrip("./")
                if not (member.isfile() and path.startswith(PNG_PREFIX + "/") and path.endswith(".png")):
                    continue
                parts = Path(path).parts
                if ".." in parts:
                    continue
                out = target.joinpath(*parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                source = archive.extractfile(member)
                if source is None:
                    continue
                with open(out, "wb") as sink:
                    shutil.copyfileobj(source, sink)
                count += 1
    if count == 0:
        raise ClipartUnavailable(f"{deb} ({name}) holds no PNG under {PNG_PREFIX}/")
    (target / _DONE).write_text(f"{count} PNGs from {Path(deb).name}\n")
    return png_root


def find_openclipart_pngs(cache: Optional[Path] = None, download: bool = True) -> Path:
    """The extracted PNG tree, fetching and extracting the package when needed."""
    cache = Path(cache) if cache is not None else cache_dir()
    target = cache / _EXTRACTED
    if (target / _DONE).is_file():
        return target / PNG_PREFIX
    return extract_openclipart_pngs(fetch_openclipart_deb(cache, download=download), cache)


def clipart_classes(
    png_root: "os.PathLike[str] | str",
    min_per_class: int = 20,
    max_per_class: Optional[int] = 80,
    exclude: Sequence[str] = EXCLUDED_CATEGORIES,
) -> Dict[Tuple[str, str], List[Path]]:
    """``{(superclass, class): image paths}`` of the folders with at least ``min_per_class`` PNGs.

    See the module docstring for the naming and the capping (``max_per_class`` evenly spaced files in
    name order; ``None``: keep all). Sorted by ``(superclass, class)``.

    Raises:
        FileNotFoundError: ``png_root`` is not a folder.
        ValueError: ``min_per_class < 2`` or ``max_per_class < min_per_class``.
    """
    root = Path(png_root)
    if not root.is_dir():
        raise FileNotFoundError(f"clip-art PNG tree {root} does not exist or is not a folder")
    if min_per_class < 2:
        raise ValueError(f"min_per_class must be >= 2 (retrieval needs a second image of the class), got {min_per_class}")
    if max_per_class is not None and max_per_class < min_per_class:
        raise ValueError(f"max_per_class ({max_per_class}) must be >= min_per_class ({min_per_class})")
    by_folder: Dict[Tuple[str, ...], List[Path]] = defaultdict(list)
    for path in root.rglob("*.png"):
        if path.is_symlink():  # Debian replaces duplicate drawings by symbolic links: keep one copy
            continue
        relative = path.relative_to(root).parts[:-1]
        if not relative or relative[0] in exclude or any(p.startswith(".") for p in relative):
            continue
        by_folder[relative].append(path)
    classes: Dict[Tuple[str, str], List[Path]] = {}
    for folder, paths in by_folder.items():
        if len(paths) < min_per_class:
            continue
        paths = sorted(paths)
        if max_per_class is not None and len(paths) > max_per_class:
            keep = np.unique(np.linspace(0, len(paths) - 1, max_per_class).round().astype(int))
            paths = [paths[i] for i in keep]
        name = "-".join(folder[1:]) if len(folder) > 1 else "misc"
        classes[(folder[0], name)] = paths
    return dict(sorted(classes.items()))


def _composite(path: Path, image_size: int):
    """The drawing over white, longer side ``image_size``, centred on a white square (RGB PIL image)."""
    from PIL import Image

    with warnings.catch_warnings(), Image.open(path) as image:  # PIL refuses > 179 M pixels (DecompressionBombError)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        if image.width * image.height > MAX_PIXELS:
            raise ValueError(f"{image.width} x {image.height} pixels exceed MAX_PIXELS = {MAX_PIXELS}")
        image = image.convert("RGBA")
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    image = Image.alpha_composite(background, image).convert("RGB")
    scale = image_size / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    image = image.resize(size, Image.LANCZOS)
    square = Image.new("RGB", (image_size, image_size), (255, 255, 255))
    square.paste(image, ((image_size - size[0]) // 2, (image_size - size[1]) // 2))
    return square


def build_clipart_retrieval_set(
    png_root: "os.PathLike[str] | str",
    out: "os.PathLike[str] | str",
    image_size: int = 64,
    min_per_class: int = 20,
    max_per_class: Optional[int] = 80,
    exclude: Sequence[str] = EXCLUDED_CATEGORIES,
) -> Path:
    """Write the composited, resized images of :func:`clipart_classes` to ``out/<superclass>/<class>/``.

    Returns ``out``. Done once: a hidden marker file records a complete build (an interrupted build is
    redone). Unreadable PNGs are skipped; a class left with fewer than ``min_per_class`` images is
    removed again, so every class folder satisfies the minimum.

    Raises:
        ValueError: ``image_size < 8``, or fewer than 4 classes qualify (no two-class halves).
    """
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8 pixels, got {image_size}")
    out = Path(out)
    if (out / _DONE).is_file():
        return out
    classes = clipart_classes(png_root, min_per_class, max_per_class, exclude)
    if len(classes) < 4:
        raise ValueError(f"{png_root}: only {len(classes)} folder(s) hold >= {min_per_class} PNGs; need >= 4 "
                         "classes for a class-disjoint split")
    from PIL import Image

    written_classes, written_images, skipped = 0, 0, []
    for (superclass, name), paths in classes.items():
        folder = out / superclass / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        count = 0
        for index, path in enumerate(paths):
            try:
                image = _composite(path, image_size)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
                skipped.append(f"{path}: {error}")
                continue
            image.save(folder / f"{index:04d}_{path.stem}.png")
            count += 1
        if count < min_per_class:
            shutil.rmtree(folder)
            continue
        written_classes += 1
        written_images += count
    if written_classes < 4:
        raise ValueError(f"{png_root}: only {written_classes} class(es) kept >= {min_per_class} readable images")
    (out / _DONE).write_text(
        f"openclipart-png 0.18: {written_classes} classes, {written_images} images, {image_size} px, "
        f"min {min_per_class} / max {max_per_class} per class, {len(skipped)} unreadable skipped\n")
    return out


def ensure_clipart_retrieval_set(
    root: "os.PathLike[str] | str" = DEFAULT_CLIPART_RETRIEVAL_DIR,
    image_size: int = 64,
    min_per_class: int = 20,
    max_per_class: Optional[int] = 80,
    cache: Optional[Path] = None,
    download: bool = True,
) -> Path:
    """Fetch, extract and build the set into ``root/openclipart_<image_size>px_<min>-<max>``; return that folder.

    Raises:
        ClipartUnavailable: the package cannot be found or fetched (the message says how to get it).
    """
    cap = "all" if max_per_class is None else str(max_per_class)
    out = Path(root) / f"openclipart_{image_size}px_{min_per_class}-{cap}"
    if (out / _DONE).is_file():
        return out
    png_root = find_openclipart_pngs(cache, download=download)
    return build_clipart_retrieval_set(png_root, out, image_size, min_per_class, max_per_class)
