"""File helpers (framework-free): checksums of downloads, output folders and files that never clobber
what a user wrote (refused unless an explicit flag), atomic writes through exclusive temporary files."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from typing import Iterable, Iterator, List

__all__ = ["OUTPUT_MANIFEST", "atomic_output", "check_output_dir", "prepare_output_dir", "record_outputs", "recorded_outputs", "sha256_of_file"]


def sha256_of_file(path: "os.PathLike[str] | str", chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``chunk_size`` blocks (checks downloaded wheels and packages)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: Name of the list of files a run of this project wrote into an output folder.
OUTPUT_MANIFEST = ".hcl_plugin_outputs.json"


def prepare_output_dir(path: "os.PathLike[str] | str", producer: str, overwrite: bool = False,
                       flag: str = "--overwrite") -> str:
    """Create the output folder ``path``, refusing one that already holds files unless ``overwrite``.

    With ``overwrite``, the files that an earlier run of the same ``producer`` listed in
    ``path/.hcl_plugin_outputs.json`` (:func:`record_outputs`) are removed first, so stale plots do not
    sit beside a new report; nothing else in the folder is deleted (same-named files are overwritten).

    Raises:
        NotADirectoryError: ``path`` exists and is not a folder.
        FileExistsError: ``path`` is not empty and ``overwrite`` is false (the message names the folder,
            a few of its entries and ``flag``).
    """
    folder = check_output_dir(path, overwrite, flag)
    for name in recorded_outputs(folder, producer):
        target = os.path.join(folder, name)
        if os.path.isfile(target) and not os.path.islink(target):
            os.remove(target)
    os.makedirs(folder, exist_ok=True)
    return folder


def check_output_dir(path: "os.PathLike[str] | str", overwrite: bool = False, flag: str = "--overwrite") -> str:
    """Raise unless ``path`` is a new or empty folder (or ``overwrite``); creates and changes nothing.

    Raises:
        NotADirectoryError, FileExistsError: as :func:`prepare_output_dir`.
    """
    folder = os.fspath(path)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise NotADirectoryError(f"output folder {folder!r} exists and is not a folder")
    entries = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
    if entries and not overwrite:
        shown = ", ".join(entries[:5]) + (f", ... ({len(entries)} entries)" if len(entries) > 5 else "")
        raise FileExistsError(
            f"output folder {folder!r} is not empty ({shown}); choose a new folder, or pass {flag} to replace "
            "the files an earlier run wrote there"
        )
    return folder


def recorded_outputs(path: "os.PathLike[str] | str", producer: str) -> List[str]:
    """The file names ``producer`` recorded in ``path`` (empty when another producer or nobody wrote it)."""
    manifest = os.path.join(os.fspath(path), OUTPUT_MANIFEST)
    try:
        with open(manifest, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return []
    if not (isinstance(record, dict) and record.get("producer") == producer and isinstance(record.get("files"), list)):
        return []
    # only plain names inside the folder: a manifest cannot point a deletion elsewhere
    return [n for n in record["files"] if isinstance(n, str) and n and os.path.basename(n) == n and n not in (".", "..")]


def record_outputs(path: "os.PathLike[str] | str", producer: str, files: Iterable["os.PathLike[str] | str"]) -> None:
    """List the files ``producer`` wrote into ``path`` (names only) in ``path/.hcl_plugin_outputs.json``."""
    folder = os.fspath(path)
    names = {os.path.basename(os.fspath(f)) for f in files} | set(recorded_outputs(folder, producer))
    with open(os.path.join(folder, OUTPUT_MANIFEST), "w", encoding="utf-8") as handle:
        json.dump({"producer": producer, "files": sorted(names - {OUTPUT_MANIFEST})}, handle, indent=1)


@contextlib.contextmanager
def atomic_output(path: "os.PathLike[str] | str", overwrite: bool = False, flag: str = "--overwrite") -> Iterator[str]:
    """Yield a fresh temporary file next to ``path``; on success it replaces ``path``, on failure it is removed.

    The temporary file is created exclusively (``tempfile.mkstemp``, mode 0600) in ``path``'s folder, so a
    file or symlink planted under a predictable name is never written through, and an interrupted write
    leaves neither a half-written ``path`` nor a stray temporary file.

    Raises:
        IsADirectoryError: ``path`` is a folder.
        FileExistsError: ``path`` exists and ``overwrite`` is false (the message names ``flag``).
    """
    target = os.fspath(path)
    if os.path.isdir(target):
        raise IsADirectoryError(f"output {target!r} is a folder; give a file name, e.g. {os.path.join(target, 'backbone.pth')!r}")
    if os.path.lexists(target) and not overwrite:
        raise FileExistsError(f"output {target!r} exists; pass {flag} to replace it")
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=folder)
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        if os.path.lexists(temporary):
            os.remove(temporary)
        raise
