"""Deprecated module paths: a module that moved keeps its old path for one release (framework-free).

The old module keeps only a docstring and two lines::

    from hcl_plugin.utils.deprecation import moved_module

    __getattr__, __dir__ = moved_module(__name__, "hcl_plugin.data.embedded.scenes")

Every name read from the old module (``old.name``, ``from old import name``, ``from old import *``) is
the new module's object and emits a :class:`DeprecationWarning` naming the new path, as SciPy and
NumPy do for their moved submodules (a PEP 562 module ``__getattr__``; the warning is raised on each
use, not once per process at import). Private names are forwarded too, so code that reached into the
old module keeps working. A module that was run with ``python -m`` keeps a ``__main__`` block that warns
and calls the new module's ``main``.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, List, Tuple

__all__ = ["moved_module", "moved_module_message"]


def moved_module_message(old: str, new: str) -> str:
    """The warning text for ``old`` (a dotted module path) having moved to ``new``."""
    return f"{old} is deprecated and will be removed in the next release; use {new} (same names)."


def moved_module(old: str, new: str) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """``(__getattr__, __dir__)`` for the old module ``old`` that forward to the module ``new``.

    Args:
        old: the old module's dotted path (pass ``__name__``; ``"__main__"`` under ``python -m``).
        new: the dotted path of the module the names moved to.

    Returns:
        A module ``__getattr__`` that imports ``new`` on first use, warns with
        :class:`DeprecationWarning` (attributed to the caller) and returns ``getattr(new, name)``
        (``AttributeError`` naming the old module when ``new`` lacks it), and a ``__dir__`` listing
        ``new``'s names.
    """
    message = moved_module_message(old, new)

    def __getattr__(name: str) -> Any:
        if name.startswith("__") and name.endswith("__") and name != "__all__":
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        target = importlib.import_module(new)
        if not hasattr(target, name):
            raise AttributeError(f"module {old!r} has no attribute {name!r} (it moved to {new})")
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return getattr(target, name)

    def __dir__() -> List[str]:
        return sorted(dir(importlib.import_module(new)))

    return __getattr__, __dir__
