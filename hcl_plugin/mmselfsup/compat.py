"""Compatibility of MMSelfSup 1.0.0 with MMEngine 0.10 (the one pin set that also takes MMDetection 3.3).

MMSelfSup 1.0.0 declares ``mmselfsup.engine.runner`` as the import location of its ``RUNNERS``,
``RUNNER_CONSTRUCTORS`` and ``LOOPS`` registries but ships no such module. MMEngine >= 0.8 imports
every declared location on the first lookup, so ``Runner.train()`` under ``default_scope='mmselfsup'``
fails with ``ModuleNotFoundError: No module named 'mmselfsup.engine.runner'`` before the first
iteration. :func:`drop_missing_registry_locations` removes locations that do not exist (the lookup
then falls back to MMEngine's parent registry, which holds the loops and runners MMSelfSup uses).
"""

from __future__ import annotations

import importlib.util
from typing import List

__all__ = ["drop_missing_registry_locations"]


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def drop_missing_registry_locations() -> List[str]:
    """Remove non-existent import locations from MMSelfSup's registries; return what was removed."""
    from mmengine.registry import Registry
    from mmselfsup import registry as mmselfsup_registry

    removed = []
    for name in dir(mmselfsup_registry):
        reg = getattr(mmselfsup_registry, name)
        if not isinstance(reg, Registry):
            continue
        missing = [loc for loc in reg._locations if not _exists(loc)]
        if missing:
            reg._locations = [loc for loc in reg._locations if loc not in missing]
            removed += [f"{name}: {loc}" for loc in missing]
    return removed
