"""MMEngine checkpoint loading (``load_from``, ``resume``, ``Pretrained`` init) that never runs code from a file.

torch >= 2.6 loads with ``weights_only=True`` by default and MMEngine 0.10.7 passes nothing, so
``load_from`` and ``resume`` fail on MMEngine's own checkpoints: their ``message_hub`` holds
``HistoryBuffer`` objects (numpy arrays inside) whose statistics methods are pickled as
``getattr(HistoryBuffer, 'mean')``. Downloads (``http(s)://``, ``torchvision://``, ``open-mmlab://``)
go through ``torch.hub.load_state_dict_from_url``, which unpickles fully by default. And
``Runner.resume`` executes the config text a file carries in ``meta['config']``.

:func:`install` makes every one of these paths safe:

* local files (``CheckpointLoader`` scheme ``''``) are read by :func:`load_local_checkpoint`:
  :func:`hcl_plugin.checkpoints.safe_load` (``weights_only=True``, numpy rebuilt by validating
  stand-ins) plus the stand-ins of this module: ``HistoryBuffer`` is rebuilt from its data alone
  (``HistoryBuffer(log_history, count_history, max_length)``) — its pickled ``statistics_methods`` never
  reach the class-level registry — and ``builtins.getattr`` resolves only ``HistoryBuffer``'s
  registered statistics names, to inert references;
* config text in ``meta['cfg']`` / ``meta['config']`` must parse as literal assignments
  (:func:`hcl_plugin.checkpoints.parse_config_text`), else the file is refused; ``meta['config']``
  (a legacy key MMEngine itself never writes, but executes on ``resume``) is then replaced by a one-line
  literal holding only its ``gpu_ids``, the one value ``resume`` reads from it;
* downloads: MMEngine's ``load_url`` is replaced by :func:`load_url`, which downloads into torch's hub
  cache exactly as ``torch.hub.load_state_dict_from_url`` does and reads the file with
  :func:`load_local_checkpoint`.

Refusals raise :class:`UnsafeCheckpointError` naming the file and what was refused; nothing from the
file runs. docs/security.md lists what is tested.
"""

from __future__ import annotations

import os
import os.path as osp
import sys
from typing import Any, Callable, Dict, Optional, Union
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

from hcl_plugin.checkpoints import Record, UnsafeCheckpointError, UnsafeConfigTextError, parse_config_text, safe_load

__all__ = [
    "HistoryBufferRecord",
    "UnsafeCheckpointError",
    "check_meta_config",
    "history_buffer_getattr",
    "install",
    "load_local_checkpoint",
    "load_url",
    "mmengine_stand_ins",
]

MapLocation = Optional[Union[str, torch.device, Callable]]

#: the statistics every HistoryBuffer registers (mmengine/logging/history_buffer.py)
_DEFAULT_STATISTICS = frozenset({"min", "max", "current", "mean"})
_HISTORY_BUFFER_KEYS = frozenset({"max_length", "_log_history", "_count_history", "statistics_methods"})


class StatisticsMethodRef(Record):
    """What ``getattr(HistoryBuffer, name)`` in a file resolves to: the name of a registered statistic."""

    def __init__(self, name: str) -> None:
        self.name = name

    def materialize(self) -> str:
        return self.name


class HistoryBufferRecord(Record):
    """Stand-in for ``mmengine.logging.HistoryBuffer``: keeps the two histories and ``max_length`` only.

    :meth:`materialize` returns ``HistoryBuffer(log_history, count_history, max_length)``; the class-level
    statistics registry of the running process is never changed by a file.
    """

    def __init__(self, *args: Any) -> None:
        if args:
            raise UnsafeCheckpointError("HistoryBuffer(...) with arguments is refused (only its pickled state)")
        self.state: Optional[Dict[str, Any]] = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or not set(state) <= _HISTORY_BUFFER_KEYS:
            keys = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
            raise UnsafeCheckpointError(f"HistoryBuffer state {keys} is refused (allowed: {sorted(_HISTORY_BUFFER_KEYS)})")
        methods = state.get("statistics_methods", {})
        if not isinstance(methods, dict) or not all(
                isinstance(ref, StatisticsMethodRef) and ref.name == name for name, ref in methods.items()):
            raise UnsafeCheckpointError("HistoryBuffer statistics_methods other than getattr(HistoryBuffer, <its own "
                                        "name>) are refused")
        self.state = state

    def materialize(self) -> HistoryBuffer:
        if self.state is None:
            raise UnsafeCheckpointError("a HistoryBuffer without its state is refused")
        logs = _history(self.state.get("_log_history"), "_log_history")
        counts = _history(self.state.get("_count_history"), "_count_history")
        max_length = self.state.get("max_length", 1000000)
        if not (isinstance(max_length, int) and not isinstance(max_length, bool) and max_length > 0):
            raise UnsafeCheckpointError(f"HistoryBuffer max_length {max_length!r} is refused")
        if len(logs) != len(counts):
            raise UnsafeCheckpointError(f"HistoryBuffer with {len(logs)} values and {len(counts)} counts is refused")
        return HistoryBuffer(logs, counts, max_length)


def _history(value: Any, key: str) -> np.ndarray:
    array = value.materialize() if isinstance(value, Record) else value
    if array is None:
        return np.zeros(0)
    if not (isinstance(array, np.ndarray) and array.ndim == 1):
        raise UnsafeCheckpointError(f"HistoryBuffer {key} must be a 1-D numeric array, got {type(array).__name__}")
    return array


def history_buffer_getattr(obj: Any, name: Any) -> StatisticsMethodRef:
    """Stand-in for ``builtins.getattr``: only ``getattr(HistoryBuffer, <registered statistic>)``."""
    allowed = _DEFAULT_STATISTICS | set(getattr(HistoryBuffer, "_statistics_methods", {}))
    if obj is not HistoryBufferRecord or not isinstance(name, str) or name not in allowed or name.startswith("_"):
        what = "HistoryBuffer" if obj is HistoryBufferRecord else getattr(obj, "__name__", type(obj).__name__)
        raise UnsafeCheckpointError(
            f"getattr({what}, {name!r}) is not allowed in a checkpoint (only HistoryBuffer statistics "
            f"methods: {sorted(allowed)})"
        )
    return StatisticsMethodRef(name)


def mmengine_stand_ins() -> Dict[str, Any]:
    """The MMEngine globals a checkpoint may name -> this module's stand-ins (for :func:`safe_load`)."""
    return {
        "mmengine.logging.history_buffer.HistoryBuffer": HistoryBufferRecord,
        "builtins.getattr": history_buffer_getattr,
    }


def check_meta_config(checkpoint: Any, source: str) -> Any:
    """Refuse executable config text in ``checkpoint['meta']`` and neutralise the legacy ``'config'`` key.

    ``meta['cfg']`` (what MMEngine writes) and ``meta['config']`` (what ``Runner.resume`` executes) must
    parse as literal assignments. ``meta['config']`` is then replaced by ``gpu_ids = [...]`` (or removed
    when it has none), so MMEngine's ``resume`` still compares GPU counts but executes nothing else.

    Raises:
        UnsafeCheckpointError: naming ``source``, the key and the refused construct.
    """
    meta = checkpoint.get("meta") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        return checkpoint
    for key in ("cfg", "config"):
        if key not in meta:
            continue
        try:
            parsed = parse_config_text(meta[key])
        except UnsafeConfigTextError as error:
            raise UnsafeCheckpointError(f"{source}: meta[{key!r}] is refused: {error}") from None
        if key == "config":
            gpu_ids = parsed.get("gpu_ids")
            if isinstance(gpu_ids, (list, tuple)) and all(isinstance(i, int) for i in gpu_ids):
                meta["config"] = f"gpu_ids = {list(gpu_ids)!r}\n"
            else:
                del meta["config"]
    return checkpoint


def load_local_checkpoint(filename: str, map_location: MapLocation = None) -> Any:
    """Read a local MMEngine checkpoint without running anything from it (see the module docstring).

    Raises:
        FileNotFoundError: ``filename`` does not exist (the message has the path).
        UnsafeCheckpointError: the file needs a global outside the allowlist, a stand-in refused its
            data, or its stored config text is not literal.
        hcl_plugin.checkpoints.CheckpointReadError: not a readable torch checkpoint.
    """
    filename = osp.expanduser(filename)
    checkpoint = safe_load(filename, map_location=map_location, stand_ins=mmengine_stand_ins())
    return check_meta_config(checkpoint, filename)


def load_url(url: str, model_dir: Optional[str] = None, map_location: MapLocation = None, progress: bool = True,
             check_hash: bool = False, file_name: Optional[str] = None) -> Any:
    """Download ``url`` into torch's hub cache (as ``torch.hub.load_state_dict_from_url`` does) and read
    it with :func:`load_local_checkpoint` instead of unpickling it fully.
    """
    if model_dir is None:
        model_dir = osp.join(torch.hub.get_dir(), "checkpoints")
    os.makedirs(model_dir, exist_ok=True)
    cached = osp.join(model_dir, file_name or osp.basename(urlparse(url).path))
    if not osp.exists(cached):
        sys.stdout.write(f'Downloading: "{url}" to {cached}\n')
        match = torch.hub.HASH_REGEX.search(osp.basename(cached)) if check_hash else None
        torch.hub.download_url_to_file(url, cached, match.group(1) if match else None, progress=progress)
    return load_local_checkpoint(cached, map_location=map_location)


_installed = False


def install() -> None:
    """Make MMEngine's checkpoint loading safe, for local files and downloads alike (idempotent)."""
    global _installed
    if not _installed:
        import mmengine.runner.checkpoint as mmengine_checkpoint

        CheckpointLoader.register_scheme(prefixes="", loader=load_local_checkpoint, force=True)
        mmengine_checkpoint.load_url = load_url  # used by the http(s), torchvision and open-mmlab schemes
        _installed = True

