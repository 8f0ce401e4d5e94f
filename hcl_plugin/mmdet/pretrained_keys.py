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
loading that file takes it. Only torch and MMEngine's checkpoint loader are used here.
"""

from __future__ import annotations

import fnmatch
import os.path as osp
import re
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

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
#: how many keys of each kind an error message lists before "... and N more"
_MAX_LISTED = 20


class PretrainedKeysError(ValueError):
    """The keys of a pretrained checkpoint do not match the modules that load it (message lists them)."""


@dataclass
class KeyReport:
    """The result of comparing a module's ``state_dict`` with the (prefix-applied) checkpoint keys.

    Attributes:
        missing: keys of the module the checkpoint does not have.
        unexpected: keys of the checkpoint the module does not have.
        mismatched: ``(key, shape in the module, shape in the checkpoint)`` for keys in both.
        matched: keys in both with equal shapes.
    """

    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]] = field(default_factory=list)
    matched: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing, unexpected or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)


def _shape(value: Any) -> Tuple[int, ...]:
    if torch.is_tensor(value):
        return tuple(value.shape)
    if isinstance(value, (torch.Size, tuple, list)):
        return tuple(int(v) for v in value)
    return tuple(getattr(value, "shape", ()))


def compare_keys(expected: Mapping[str, Any], found: Mapping[str, Any]) -> KeyReport:
    """Compare the keys and shapes of ``expected`` (a module's state dict) with ``found`` (a checkpoint's).

    Values may be tensors, arrays or shapes. Lists in the report are sorted.
    """
    report = KeyReport()
    for key in sorted(expected):
        if key not in found:
            report.missing.append(key)
        elif _shape(expected[key]) != _shape(found[key]):
            report.mismatched.append((key, _shape(expected[key]), _shape(found[key])))
        else:
            report.matched.append(key)
    report.unexpected = sorted(k for k in found if k not in expected)
    return report


def prefix_hint(missing: Iterable[str], unexpected: Iterable[str]) -> Optional[str]:
    """A one-line hint when missing and unexpected keys differ by one shared prefix, else None.

    ``backbone.layer1.0.conv1.weight`` (in the file) vs ``layer1.0.conv1.weight`` (in the module) gives
    "the checkpoint's keys carry the prefix 'backbone.' ...", the usual sign of a whole MMSelfSup
    checkpoint given where a backbone checkpoint belongs; the reverse case is reported as well.
    """
    missing, unexpected = set(missing), set(unexpected)
    if not missing or not unexpected:
        return None

    def _best(extra: Iterable[str], base: set) -> Optional[Tuple[str, int]]:
        counts: Counter = Counter()
        for key in extra:
            parts = key.split(".")
            for i in range(1, len(parts)):
                prefix = ".".join(parts[:i]) + "."
                if key[len(prefix):] in base:
                    counts[prefix] += 1
        if not counts:
            return None
        best = max(counts.values())
        # ties (an MMSelfSup checkpoint has the backbone twice: 'backbone.' and the momentum encoder's
        # 'encoder_k.module.0.'): prefer the online backbone, then the shortest prefix
        tied = sorted((p for p, n in counts.items() if n == best), key=lambda p: (p != "backbone.", len(p), p))
        return tied[0], best

    file_prefix = _best(unexpected, missing)
    if file_prefix and file_prefix[1] >= max(1, len(missing) // 2):
        prefix = file_prefix[0]
        option = "" if prefix == "backbone." else f" --prefix {prefix}"
        return (f"the checkpoint's keys carry the prefix {prefix!r} ({file_prefix[1]} of the {len(missing)} missing keys "
                f"are there with it), as in a whole pretraining checkpoint: extract the backbone with `python "
                f"tools/extract_backbone.py PRETRAIN_CKPT OUT.pth{option}` and point init_cfg.checkpoint at OUT.pth, "
                f"or set init_cfg.prefix={prefix[:-1]!r}")
    module_prefix = _best(missing, unexpected)
    if module_prefix and module_prefix[1] >= max(1, len(unexpected) // 2):
        prefix = module_prefix[0]
        return (f"the module's keys carry the prefix {prefix!r} that the checkpoint's keys lack ({module_prefix[1]} keys "
                f"differ only by it): the checkpoint was saved from a sub-module; load it into that sub-module")
    return None


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


def _listing(title: str, items: Sequence[str]) -> str:
    shown = list(items[:_MAX_LISTED])
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "\n".join(f"    {s}" for s in shown) + more


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
                if report.missing:
                    lines.append(_listing("missing in the checkpoint", report.missing))
                if report.mismatched:
                    lines.append(_listing("shape mismatch (module vs checkpoint)",
                                          [f"{k}: {tuple(a)} vs {tuple(b)}" for k, a, b in report.mismatched]))
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
            lines = [f"{path}: keys that no module loading it ({taker}) takes:", _listing("unexpected", unexpected)]
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
