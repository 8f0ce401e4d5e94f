"""Count the calls that force a device-to-host synchronisation, on any device (the CPU included).

On an accelerator, reading a value computed on the device (``tensor.item()``, ``bool(tensor)``, a
``nonzero`` whose output size depends on the data, ...) blocks the host until the device has caught
up, which stalls the launch queue. On the CPU these calls cost nothing, so a training step that is
fast on the CPU can still be slow on a GPU. :class:`HostSyncCounter` instruments the Python entry
points of those calls and records where each one was made, so a CPU-only test can assert that a
training step does not read device values (``torch.cuda.set_sync_debug_mode`` does the same on a
CUDA device, but needs one).

Instrumented (each is a device-to-host sync on CUDA):

* ``Tensor.item``, ``Tensor.tolist``, ``Tensor.__bool__``, ``Tensor.__int__``, ``Tensor.__float__``,
  ``Tensor.__index__`` (reading values on the host; ``if tensor:`` and ``int(tensor)`` included);
* ``Tensor.cpu``, ``Tensor.numpy`` (copies to the host);
* ``Tensor.nonzero`` / ``torch.nonzero`` / ``torch.argwhere``, ``torch.where(cond)`` with a single
  argument, ``torch.unique`` / ``Tensor.unique``, ``torch.masked_select`` (output size depends on
  the data; ``torch.nonzero_static`` is not counted: its size is given);
* ``Tensor.__getitem__`` / ``Tensor.__setitem__`` with a bool tensor index (a ``nonzero`` inside).

Not instrumented: copies with ``Tensor.to(...)`` (on the CPU every device argument is the CPU, so
they cannot be told apart from no-ops) and syncs made inside C++ code that Python never sees.

Each call is recorded once (a call made by another instrumented call is not counted again) with
``site``, the first (innermost) frame inside the package being measured (``hcl_plugin`` by
default), i.e. the project line responsible for it; ``callers``, the next frames inside the package
(so a shared helper such as ``check_finite`` is reported with the line that called it); and
``origin``, the innermost frame outside ``torch`` (where the call is written; the same as ``site``
when the project makes the call itself).

Example:
    >>> with HostSyncCounter() as syncs:
    ...     x = torch.ones(3)
    ...     _ = bool(x.sum() > 0)
    >>> syncs.count
    1
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["HostSyncCounter", "SyncRecord"]

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_THIS_FILE = os.path.abspath(__file__)


@dataclass(frozen=True)
class SyncRecord:
    """One instrumented call: ``kind`` (e.g. ``"Tensor.item"``); ``site``, ``callers`` and ``origin`` as
    ``path:line (function)`` (module doc)."""

    kind: str
    site: str
    origin: str
    callers: Tuple[str, ...] = ()

    @property
    def where(self) -> str:
        """``origin -> site <- callers``, shortened when they coincide."""
        chain = " <- ".join((self.site,) + self.callers)
        return chain if self.site == self.origin else f"{self.origin} -> {chain}"


def _has_bool_index(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, Tensor) and i.dtype == torch.bool for i in items)


class HostSyncCounter:
    """Context manager that counts device-to-host synchronising calls (module doc) and records their sites.

    Args:
        package: name of the package whose frames locate a call (``site``); default ``"hcl_plugin"``.
        root: directory that ``site``/``origin`` paths are shown relative to; default the parent of
            the package's directory.
        depth: how many package frames are recorded per call (``site`` and ``depth - 1`` callers).

    Attributes:
        records: one :class:`SyncRecord` per counted call, in order.

    Not re-entrant and not thread-safe: the instrumentation patches ``torch.Tensor`` and ``torch``
    attributes for the duration of the ``with`` block and restores them on exit.
    """

    def __init__(self, package: str = "hcl_plugin", root: Optional[str] = None, depth: int = 4) -> None:
        module = sys.modules.get(package) or __import__(package)
        self.package_dir = os.path.dirname(os.path.abspath(module.__file__)) + os.sep
        self.root = os.path.abspath(root) if root is not None else os.path.dirname(self.package_dir.rstrip(os.sep))
        self.depth = depth
        self.records: List[SyncRecord] = []
        self._saved: List[Tuple[Any, str, Any]] = []
        self._depth = 0

    # ------------------------------------------------------------------ results

    @property
    def count(self) -> int:
        """Number of synchronising calls counted."""
        return len(self.records)

    def sites(self) -> Dict[str, int]:
        """``{"<where> [kind]": count}`` (:attr:`SyncRecord.where`), most frequent first."""
        return dict(Counter(f"{r.where} [{r.kind}]" for r in self.records).most_common())

    def reset(self) -> None:
        """Forget the records (the instrumentation stays active inside the ``with`` block)."""
        self.records.clear()

    # ------------------------------------------------------------------ instrumentation

    def _where(self) -> Tuple[str, str, Tuple[str, ...]]:
        frame = sys._getframe(2)
        origin = None
        stack: List[str] = []
        while frame is not None and len(stack) < self.depth:
            filename = os.path.abspath(frame.f_code.co_filename)
            if filename != _THIS_FILE:
                if origin is None and not filename.startswith(_TORCH_DIR):
                    origin = self._format(frame, filename)
                if filename.startswith(self.package_dir):
                    stack.append(self._format(frame, filename))
            frame = frame.f_back
        origin = origin or "<torch>"
        return (stack[0] if stack else origin), origin, tuple(stack[1:])

    def _format(self, frame: Any, filename: str) -> str:
        path = os.path.relpath(filename, self.root) if filename.startswith(self.root) else filename
        return f"{path}:{frame.f_lineno} ({frame.f_code.co_name})"

    def _record(self, kind: str) -> None:
        site, origin, callers = self._where()
        self.records.append(SyncRecord(kind, site, origin, callers))

    def _wrap(self, owner: Any, name: str, kind: str, counts: Optional[Callable[..., bool]] = None) -> None:
        original = getattr(owner, name)
        counter = self

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if counter._depth == 0 and (counts is None or counts(*args, **kwargs)):
                counter._record(kind)
            counter._depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                counter._depth -= 1

        wrapper.__name__ = getattr(original, "__name__", name)
        wrapper.__doc__ = getattr(original, "__doc__", None)
        self._saved.append((owner, name, owner.__dict__.get(name, _MISSING) if isinstance(owner, type) else original))
        setattr(owner, name, wrapper)

    def __enter__(self) -> "HostSyncCounter":
        if self._saved:
            raise RuntimeError("HostSyncCounter is not re-entrant")
        T = torch.Tensor
        for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "cpu", "numpy"):
            self._wrap(T, name, f"Tensor.{name}")
        self._wrap(T, "nonzero", "Tensor.nonzero")
        self._wrap(T, "unique", "Tensor.unique")
        self._wrap(T, "__getitem__", "Tensor.__getitem__[bool]", lambda self_, index: _has_bool_index(index))
        self._wrap(T, "__setitem__", "Tensor.__setitem__[bool]", lambda self_, index, value: _has_bool_index(index))
        self._wrap(torch, "nonzero", "torch.nonzero")
        self._wrap(torch, "argwhere", "torch.argwhere")
        self._wrap(torch, "unique", "torch.unique")
        self._wrap(torch, "masked_select", "torch.masked_select")
        self._wrap(T, "masked_select", "Tensor.masked_select")
        self._wrap(torch, "where", "torch.where(cond)", lambda *a, **k: len(a) + len(k) == 1)
        return self

    def __exit__(self, *exc: Any) -> None:
        while self._saved:
            owner, name, original = self._saved.pop()
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)

    def report(self, limit: Optional[int] = None) -> str:
        """The count and the sites, one per line (``limit``: at most that many sites)."""
        lines = [f"{self.count} host sync(s)"]
        for key, n in list(self.sites().items())[:limit]:
            lines.append(f"  {n:4d} x {key}")
        return "\n".join(lines)


_MISSING = object()
