"""Checkpoint reading that never runs code from the file (framework-free: torch and numpy only).

- :func:`safe_load`: ``torch.load(weights_only=True)`` with numpy arrays, dtypes and scalars rebuilt
  from validated plain data by stand-ins (:mod:`~hcl_plugin.checkpoints.safe_load`); adapters add
  stand-ins for their framework's types (MMEngine's ``HistoryBuffer``).
- :func:`parse_config_text`: the config text MMEngine stores in ``meta['cfg']``, read as literals
  instead of executed (:mod:`~hcl_plugin.checkpoints.config_text`).

docs/security.md states what is refused and how each case is tested.
"""

from hcl_plugin.checkpoints.config_text import UnsafeConfigTextError, parse_config_text
from hcl_plugin.checkpoints.safe_load import (
    CheckpointReadError,
    NumpyArrayRecord,
    NumpyDTypeRecord,
    Record,
    UnsafeCheckpointError,
    materialize,
    numpy_stand_ins,
    safe_load,
)

__all__ = [
    "CheckpointReadError",
    "NumpyArrayRecord",
    "NumpyDTypeRecord",
    "Record",
    "UnsafeCheckpointError",
    "UnsafeConfigTextError",
    "materialize",
    "numpy_stand_ins",
    "parse_config_text",
    "safe_load",
]
