"""Errors raised while building an :class:`~hcl_plugin.eval.model.EvalModel` or reading a checkpoint into it.

Shared by :mod:`hcl_plugin.eval.model` (invalid hyper-parameters) and :mod:`hcl_plugin.eval.checkpoint`
(unreadable files, unknown formats, weights that do not fit), so neither module imports the other.
"""

from __future__ import annotations

from hcl_plugin.checkpoints import KeyMismatchError

__all__ = ["CheckpointFormatError", "CheckpointMismatchError"]


class CheckpointFormatError(ValueError):
    """The file is not a checkpoint this package can read; the message names the file and what is missing."""


class CheckpointMismatchError(KeyMismatchError):
    """The checkpoint's weights do not fit the architecture its hyper-parameters describe.

    A :class:`hcl_plugin.checkpoints.KeyMismatchError`: ``missing``, ``unexpected`` (under the model's
    prefixes) and ``shape_mismatch`` (``(key, checkpoint shape, model shape)``) list the keys.
    """
