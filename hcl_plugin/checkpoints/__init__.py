"""Checkpoint reading that never runs code from the file (framework-free: torch and numpy only).

- :func:`safe_load`: ``torch.load(weights_only=True)`` with numpy arrays, dtypes and scalars rebuilt
  from validated plain data by stand-ins (:mod:`~hcl_plugin.checkpoints.safe_load`); adapters add
  stand-ins for their framework's types (MMEngine's ``HistoryBuffer``).
- :func:`parse_config_text`: the config text MMEngine stores in ``meta['cfg']``, read as literals
  instead of executed (:mod:`~hcl_plugin.checkpoints.config_text`).
- :func:`compare_keys` / :class:`KeyReport` / :class:`KeyMismatchError`: strict key comparison with one
  report and one error type (:mod:`~hcl_plugin.checkpoints.keys`).
- :func:`build_resnet` / :func:`select_prefixed`: the one ResNet builder and backbone extraction
  (:mod:`~hcl_plugin.checkpoints.backbones`).
- :class:`ModelHyperParameters`: the checkpoint hyper-parameter contract (:mod:`~hcl_plugin.checkpoints.contract`).

docs/security.md states what is refused and how each case is tested.
"""

from hcl_plugin.checkpoints.backbones import (
    BACKBONE_FEATURE_DIMS,
    STEMS,
    BackboneNotFoundError,
    build_resnet,
    check_stem,
    select_prefixed,
)
from hcl_plugin.checkpoints.config_text import UnsafeConfigTextError, parse_config_text
from hcl_plugin.checkpoints.contract import REQUIRED_HYPER_PARAMETERS, ModelHyperParameters
from hcl_plugin.checkpoints.keys import KeyMismatchError, KeyReport, compare_keys, prefix_hint
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
    "BACKBONE_FEATURE_DIMS",
    "BackboneNotFoundError",
    "CheckpointReadError",
    "KeyMismatchError",
    "KeyReport",
    "ModelHyperParameters",
    "NumpyArrayRecord",
    "NumpyDTypeRecord",
    "REQUIRED_HYPER_PARAMETERS",
    "Record",
    "STEMS",
    "UnsafeCheckpointError",
    "UnsafeConfigTextError",
    "build_resnet",
    "check_stem",
    "compare_keys",
    "materialize",
    "numpy_stand_ins",
    "parse_config_text",
    "prefix_hint",
    "safe_load",
    "select_prefixed",
]
