"""MMEngine hook that fails a detection run at start when its pretrained backbone checkpoint does not fit."""

from __future__ import annotations

from typing import Sequence

from mmengine.hooks import Hook
from mmengine.runner import BaseLoop
from mmdet.registry import HOOKS

from hcl_plugin.mmdet.pretrained_keys import check_pretrained_keys

__all__ = ["PretrainedKeysCheckHook"]


@HOOKS.register_module()
class PretrainedKeysCheckHook(Hook):
    """Check ``Pretrained`` checkpoints key for key before training (MMEngine only warns about them).

    Runs at ``before_run`` of a training run, i.e. before ``Runner`` initialises the weights, so a
    missing file or a checkpoint whose keys do not match (the ``backbone.`` prefix of a whole MMSelfSup
    checkpoint, a ResNet-50 file for a ResNet-18 backbone) stops the run in its first second with an
    error that lists the keys, instead of a detector trained from a randomly initialised backbone. Test
    and validation runs (``tools/test.py``) load a trained detector and are not checked.

    Use it with ``custom_imports=dict(imports=['hcl_plugin.mmdet'])``::

        custom_hooks = [dict(type='PretrainedKeysCheckHook', modules=['backbone'])]

    Args:
        modules: dotted sub-module names whose ``init_cfg`` is ``dict(type='Pretrained', ...)``.
        ignore_missing: ``fnmatch`` patterns of ``'<module>.<key>'`` allowed to be absent from the file.
        ignore_unexpected: ``fnmatch`` patterns of file keys no module needs to take.

    Raises (at ``before_run``):
        FileNotFoundError: a checkpoint file does not exist.
        PretrainedKeysError: keys are missing, unexpected or of a different shape (all listed).
    """

    priority = "VERY_HIGH"

    def __init__(self, modules: Sequence[str] = ("backbone",), ignore_missing: Sequence[str] = (),
                 ignore_unexpected: Sequence[str] = ()) -> None:
        if isinstance(modules, str):
            modules = [modules]
        if not modules:
            raise ValueError("PretrainedKeysCheckHook: modules is empty; name at least one sub-module, e.g. 'backbone'")
        self.modules = list(modules)
        self.ignore_missing = list(ignore_missing)
        self.ignore_unexpected = list(ignore_unexpected)

    def before_run(self, runner) -> None:
        """Check the checkpoints of a training run; log what matched."""
        if not isinstance(getattr(runner, "_train_loop", None), BaseLoop):
            return  # runner.test() / runner.val(): the weights come from load_from, not from init_cfg
        model = runner.model.module if hasattr(runner.model, "module") else runner.model
        reports = check_pretrained_keys(model, self.modules, self.ignore_missing, self.ignore_unexpected)
        if not reports:
            runner.logger.info(f"PretrainedKeysCheckHook: no local Pretrained checkpoint in {self.modules} to check")
        for where, report in reports.items():
            runner.logger.info(f"PretrainedKeysCheckHook: {where}: all {len(report.matched)} keys match")
