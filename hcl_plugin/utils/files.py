"""File helpers shared by the embedded data sets (framework-free)."""

from __future__ import annotations

import hashlib
import os

__all__ = ["sha256_of_file"]


def sha256_of_file(path: "os.PathLike[str] | str", chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk_size`` blocks (checks downloaded wheels and packages)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
