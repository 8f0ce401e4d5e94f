"""Strict key check of pretrained backbone checkpoints against the modules that load them.

MMEngine's ``Pretrained`` initialiser (what MMDetection's ``backbone.init_cfg`` uses) loads with
``strict=False`` and only *logs* missing and unexpected keys, so a checkpoint with the wrong prefix (a
whole MMSelfSup checkpoint, ``backbone.layer1...`` instead of ``layer1...``) silently leaves the
detector's backbone at random initialisation: the "missing keys / unexpected keys" reports MMSelfSup
and MMDetection users keep filing. :func:`check_pretrained_keys` reads the same file the same way
(``state_dict`` entry, ``^module\\.`` removed, ``init_cfg.prefix`` applied) and raises
:class:`PretrainedKeysError` naming every missing, unexpected and shape-mismatched key, with a hint
when the keys differ by one shared prefix.

Several modules may load one file (the C4 Mask R-CNN: ``conv1``-``layer3`` into the backbone,
``layer4`` into the RoI head's shared ``ResLayer``): a file key is *unexpected* only when no module
loading that file takes it. The comparison and the listing are :mod:`hcl_plugin.checkpoints.keys`, shared
with the analysis and UHML; only torch and MMEngine's checkpoint loader are used here.
"""

from __future__ import annotations

import fnmatch
import os.path as osp
import re
from collections import Counter, OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from torch import nn

from hcl_plugin.checkpoints.keys import KeyMismatchError, KeyReport, compare_keys, listing, prefix_hint

__all__ = [
    "KeyReport",
    "PretrainedKeysError",
    "compare_keys",
    "prefix_hint",
    "pretrained_init_cfg",
    "is_local_checkpoint",
    "checkpoint_state_dict",
    "check_pretrained_keys",
]

#: MMEngine's ``load_checkpoint`` removes this from every key before loading (``revise_keys``)
_REVISE_KEYS: Tuple[Tuple[str, str], ...] = ((r"^module\.", ""),)


class PretrainedKeysError(KeyMismatchError):
    """The keys of a pretrained checkpoint do not match the modules that load them (message lists them)."""


def pretrained_init_cfg(module: nn.Module) -> Optional[Dict[str, Any]]:
    """The ``dict(type='Pretrained', ...)`` entry of ``module.init_cfg`` (a dict or a list of dicts), or None."""
    init_cfg = getattr(module, "init_cfg", None)
    entries = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("type") in ("Pretrained", "PretrainedInit"):
            return dict(entry)
    return None


def is_local_checkpoint(path: str) -> bool:
    """True for a file-system path (no ``scheme://`` such as ``torchvision://``, ``https://``, ``s3://``)."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", str(path)) is None


def checkpoint_state_dict(checkpoint: Any, source: str = "checkpoint", prefix: Optional[str] = None) -> Dict[str, Any]:
    """The tensors MMEngine's ``Pretrained`` init would load from a loaded checkpoint object.

    Takes ``checkpoint['state_dict']`` when present (else the object itself), removes ``module.``
    as MMEngine's ``load_checkpoint`` does, and with ``prefix`` keeps only the keys that start with it,
    without it (``_load_checkpoint_with_prefix``).

    Raises:
        PretrainedKeysError: the object is not a dict of tensors, or no key starts with ``prefix``.
    """
    if not isinstance(checkpoint, Mapping):
        raise PretrainedKeysError(f"{source}: expected a dict (state_dict), got {type(checkpoint).__name__}")
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping):
        raise PretrainedKeysError(f"{source}: 'state_dict' is a {type(state).__name__}, not a dict")
    if prefix is not None:
        prefix = prefix if prefix.endswith(".") else prefix + "."
        selected = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not selected:
            tops = Counter(k.split(".", 1)[0] + "." for k in state)
            raise PretrainedKeysError(
                f"{source}: no key starts with init_cfg.prefix={prefix!r}; top-level prefixes there: "
                + ", ".join(f"{p} ({n})" for p, n in tops.most_common(10)))
        state = selected
    out: Dict[str, Any] = OrderedDict()
    for key, value in state.items():
        for pattern, repl in _REVISE_KEYS:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def _default_loader(path: str) -> Any:
    from mmengine.runner import CheckpointLoader  # the scheme-dispatching loader Pretrained init uses

    return CheckpointLoader.load_checkpoint(path, map_location="cpu")


def check_pretrained_keys(
    model: nn.Module,
    modules: Sequence[str] = ("backbone",),
    ignore_missing: Sequence[str] = (),
    ignore_unexpected: Sequence[str] = (),
    loader: Optional[Callable[[str], Any]] = None,
) -> Dict[str, KeyReport]:
    """Check that each local ``Pretrained`` checkpoint of ``modules`` fits them key for key.

    Args:
        model: the model (e.g. an MMDetection ``MaskRCNN``).
        modules: dotted names of sub-modules whose ``init_cfg`` holds ``type='Pretrained'`` (``''`` is
            the model itself). Remote checkpoints (``torchvision://``, ``https://`` ...) are skipped.
        ignore_missing: ``fnmatch`` patterns of ``'<module>.<key>'`` that may be missing from the file
            (layers the pretraining does not have, e.g. ``'roi_head.shared_head.norm.*'``).
        ignore_unexpected: ``fnmatch`` patterns of file keys no module needs to take.
        loader: ``path -> checkpoint object``; default MMEngine's ``CheckpointLoader`` (with
            ``hcl_plugin``'s allowlisted loader installed for local files).

    Returns:
        ``{'<module> <- <file>': KeyReport}`` for each checked module.

    Raises:
        FileNotFoundError: a checkpoint file does not exist (the message names the file and the config key).
        PretrainedKeysError: some module has no ``Pretrained`` init_cfg, or keys are missing, unexpected or
            of a different shape (all of them listed, with a prefix hint where one applies).
    """
    loader = loader or _default_loader
    by_file: Dict[str, List[Tuple[str, nn.Module, Optional[str]]]] = OrderedDict()
    for name in modules:
        try:
            module = model.get_submodule(name) if name else model
        except AttributeError as error:
            raise PretrainedKeysError(f"model has no sub-module {name!r} to check ({error})") from None
        cfg = pretrained_init_cfg(module)
        if cfg is None or not cfg.get("checkpoint"):
            raise PretrainedKeysError(
                f"model.{name}.init_cfg has no dict(type='Pretrained', checkpoint=...) (init_cfg="
                f"{getattr(module, 'init_cfg', None)!r}); remove {name!r} from the hook's modules or set it")
        path = str(cfg["checkpoint"])
        if not is_local_checkpoint(path):
            continue
        by_file.setdefault(osp.expanduser(path), []).append((name, module, cfg.get("prefix")))

    reports: Dict[str, KeyReport] = OrderedDict()
    for path, members in by_file.items():
        names = ", ".join(f"model.{n}.init_cfg.checkpoint" for n, _, _ in members)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f"pretrained checkpoint {path!r} ({names}) does not exist; write it from a pretraining "
                f"checkpoint with `python tools/extract_backbone.py PRETRAIN_CKPT {path}` or set {names} "
                "(--cfg-options) to an existing file")
        checkpoint = loader(path)
        problems: List[str] = []
        taken: set = set()
        all_file_keys: set = set()
        for name, module, prefix in members:
            found = checkpoint_state_dict(checkpoint, source=path, prefix=prefix)
            file_key = (lambda k, p=prefix: (p if p.endswith(".") else p + ".") + k) if prefix else (lambda k: k)
            all_file_keys |= {file_key(k) for k in found}
            expected = module.state_dict()
            report = compare_keys(expected, found)
            qualified = (lambda k, n=name: f"{n}.{k}" if n else k)
            report.missing = [k for k in report.missing
                              if not any(fnmatch.fnmatchcase(qualified(k), pat) for pat in ignore_missing)]
            taken |= {file_key(k) for k in report.matched} | {file_key(k) for k, _, _ in report.mismatched}
            reports[f"{name or '<model>'} <- {path}"] = report
            if report.missing or report.mismatched:
                lines = [f"model.{name} ({type(module).__name__}, {len(expected)} keys) vs {path} "
                         f"({len(found)} keys{', prefix ' + repr(prefix) if prefix else ''}):"]
                lines += report.lines(unexpected=False)
                hint = prefix_hint(report.missing, [k for k in found if k not in expected])
                if hint:
                    lines.append(f"  hint: {hint}")
                problems.append("\n".join(lines))
        unexpected = sorted(k for k in all_file_keys - taken
                            if not any(fnmatch.fnmatchcase(k, pat) for pat in ignore_unexpected))
        for name, _module, _prefix in members:
            report = reports[f"{name or '<model>'} <- {path}"]
            report.unexpected = [k for k in report.unexpected if k in unexpected]
        if unexpected:
            taker = " / ".join(f"model.{n}" for n, _, _ in members)
            lines = [f"{path}: keys that no module loading it ({taker}) takes:", listing("unexpected", unexpected)]
            missing = [k for _n, m, _p in members for k in m.state_dict() if k not in all_file_keys]
            hint = prefix_hint(missing, unexpected)
            if hint and not any(hint in p for p in problems):
                lines.append(f"  hint: {hint}")
            problems.append("\n".join(lines))
        if problems:
            raise PretrainedKeysError("pretrained checkpoint does not match the model (MMEngine's Pretrained init "
                                      "would only warn and train from partly random weights):\n"
                                      + "\n".join(problems))
    return reports
