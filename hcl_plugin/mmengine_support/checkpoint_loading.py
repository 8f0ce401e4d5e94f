"""MMEngine's local checkpoint loading under torch >= 2.6, with an allowlist instead of full unpickling.

torch >= 2.6 loads with ``weights_only=True`` by default and MMEngine 0.10.7 passes nothing, so
``load_from`` and ``resume`` fail on MMEngine's own checkpoints: their ``message_hub`` holds
``HistoryBuffer`` objects (numpy arrays inside) whose ``_statistics_methods`` are pickled as
``getattr(<HistoryBuffer>, 'mean')`` and so on (shared DESIGN.md section 5).

:func:`install` replaces MMEngine's loader for local paths (``CheckpointLoader`` scheme ``''``) by
:func:`load_local_checkpoint`: still ``weights_only=True``, with exactly these globals allowed
besides torch's own:

- numpy arrays, dtypes and scalars (``numpy.core.multiarray._reconstruct`` / ``scalar``,
  ``numpy.ndarray``, ``numpy.dtype`` and the ``numpy.dtypes`` classes);
- ``mmengine.logging.HistoryBuffer``;
- ``builtins.getattr`` mapped to :func:`history_buffer_getattr`, which returns only a
  ``HistoryBuffer``'s registered statistics methods and raises for anything else.

Nothing in a file can run code, so a downloaded checkpoint is as safe to load as with plain
``weights_only=True``; a file that needs any other global fails with an error that names the file
and the global (decide then whether to trust it: ``torch.serialization.add_safe_globals``).
"""

from __future__ import annotations

import importlib
import os.path as osp
import pickle
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import CheckpointLoader

__all__ = ["install", "load_local_checkpoint", "history_buffer_getattr", "safe_globals", "UnsafeCheckpointError"]


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint needs a global outside the allowlist; the message names the file and the global."""


#: the statistics every HistoryBuffer registers (mmengine/logging/history_buffer.py)
_DEFAULT_STATISTICS = frozenset({"min", "max", "current", "mean"})


def history_buffer_getattr(obj: Any, name: str) -> Any:
    """``getattr`` restricted to what MMEngine pickles: a HistoryBuffer's statistics methods."""
    is_buffer = isinstance(obj, HistoryBuffer) or obj is HistoryBuffer
    allowed = _DEFAULT_STATISTICS | set(getattr(HistoryBuffer, "_statistics_methods", {}))
    if not is_buffer or name not in allowed or name.startswith("_"):
        what = obj.__name__ if isinstance(obj, type) else type(obj).__name__
        raise UnsafeCheckpointError(
            f"getattr({what}, {name!r}) is not allowed in a checkpoint (only HistoryBuffer statistics "
            f"methods: {sorted(allowed)})"
        )
    return getattr(obj, name)


def _numpy_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    numpy2 = int(np.__version__.split(".")[0]) >= 2
    multiarray = importlib.import_module("numpy._core.multiarray" if numpy2 else "numpy.core.multiarray")
    items: List[Union[Callable, Tuple[Callable, str]]] = [np.ndarray, np.dtype]
    for module_name in ("numpy.core.multiarray", "numpy._core.multiarray"):
        items += [(multiarray._reconstruct, f"{module_name}._reconstruct"), (multiarray.scalar, f"{module_name}.scalar")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        items += [getattr(dtypes, name) for name in dir(dtypes) if name.endswith("DType")]
    return items


def safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """The extra globals :func:`load_local_checkpoint` allows (for ``torch.serialization.safe_globals``)."""
    return _numpy_globals() + [HistoryBuffer, (history_buffer_getattr, "builtins.getattr")]


def load_local_checkpoint(filename: str, map_location: Optional[Union[str, torch.device, Callable]] = None) -> Any:
    """Load a local checkpoint with ``weights_only=True`` and the allowlist of :func:`safe_globals`.

    Raises:
        FileNotFoundError: ``filename`` does not exist (the message has the path).
        UnsafeCheckpointError: the file needs a global outside the allowlist.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f"checkpoint {filename!r} can not be found")
    with torch.serialization.safe_globals(safe_globals()):
        try:
            return torch.load(filename, map_location=map_location, weights_only=True)
        except UnsafeCheckpointError as error:
            raise UnsafeCheckpointError(f"{filename}: {error}") from None
        except pickle.UnpicklingError as error:
            raise UnsafeCheckpointError(
                f"{filename}: loading with weights_only=True failed: {_reason(error)}. hcl_plugin allows numpy "
                "arrays and MMEngine's HistoryBuffer besides torch's own types; if you trust this file, allow "
                "the global with torch.serialization.add_safe_globals([...]) before loading it"
            ) from None


def _reason(error: Exception) -> str:
    """The unpickler's own line (e.g. 'Unsupported global: GLOBAL posix.system ...') from torch's message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            return rest or (lines[index + 1] if index + 1 < len(lines) else line)
        if "GLOBAL" in line or "global" in line:
            return line.rstrip(".")
    return lines[0].rstrip(".") if lines else type(error).__name__


_installed = False


def install() -> None:
    """Register :func:`load_local_checkpoint` as MMEngine's loader for local paths (idempotent)."""
    global _installed
    if not _installed:
        CheckpointLoader.register_scheme(prefixes="", loader=load_local_checkpoint, force=True)
        _installed = True
