"""Strict comparison of a checkpoint's keys with a model's: one report and one error type for the project.

Used wherever weights are loaded strictly: the analysis (:mod:`hcl_plugin.eval.checkpoint`), UHML's
``--weights`` (:mod:`hcl_plugin.uhml.embedding`) and the MMDetection pretrained-key check
(:mod:`hcl_plugin.mmdet.pretrained_keys`). A report lists the missing, unexpected and shape-mismatched
keys; :class:`KeyMismatchError` formats it the same way everywhere (shapes as ``checkpoint vs model``)
and :func:`prefix_hint` explains the usual cause (a whole pretraining checkpoint where a backbone
belongs, or the reverse).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch

__all__ = ["KeyMismatchError", "KeyReport", "compare_keys", "listing", "prefix_hint"]

#: how many keys of each kind a message lists before "... and N more"
MAX_LISTED = 25

Shape = Tuple[int, ...]


@dataclass
class KeyReport:
    """The result of comparing a model's ``state_dict`` with a checkpoint's.

    Attributes:
        missing: keys of the model the checkpoint does not have (sorted).
        unexpected: keys of the checkpoint the model does not have (sorted).
        mismatched: ``(key, shape in the checkpoint, shape in the model)`` for keys in both.
        matched: keys in both with equal shapes.
    """

    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, Shape, Shape]] = field(default_factory=list)
    matched: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is missing, unexpected or mismatched."""
        return not (self.missing or self.unexpected or self.mismatched)

    def lines(self, limit: int = MAX_LISTED, unexpected: bool = True) -> List[str]:
        """The listing of every problem, one block per kind (``unexpected=False`` leaves that block out)."""
        out: List[str] = []
        if self.missing:
            out.append(listing("missing in the checkpoint", self.missing, limit))
        if self.unexpected and unexpected:
            out.append(listing("unexpected in the checkpoint", self.unexpected, limit))
        if self.mismatched:
            out.append(listing("shape mismatch (checkpoint vs model)",
                               [f"{key}: {found} vs {expected}" for key, found, expected in self.mismatched], limit))
        return out


def _shape(value: Any) -> Shape:
    if torch.is_tensor(value):
        return tuple(value.shape)
    if isinstance(value, (torch.Size, tuple, list)):
        return tuple(int(v) for v in value)
    return tuple(getattr(value, "shape", ()))


def compare_keys(expected: Mapping[str, Any], found: Mapping[str, Any]) -> KeyReport:
    """Compare ``found`` (a checkpoint's entries) with ``expected`` (a model's ``state_dict``).

    Values may be tensors, arrays or shapes. Lists in the report are sorted.
    """
    report = KeyReport()
    for key in sorted(expected):
        if key not in found:
            report.missing.append(key)
        elif _shape(expected[key]) != _shape(found[key]):
            report.mismatched.append((key, _shape(found[key]), _shape(expected[key])))
        else:
            report.matched.append(key)
    report.unexpected = sorted(k for k in found if k not in expected)
    return report


def listing(title: str, items: Sequence[str], limit: int = MAX_LISTED) -> str:
    """``"  title (N):"`` and the first ``limit`` items, one per line, then ``... and K more``."""
    shown = list(items[:limit])
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "\n".join(f"    {s}" for s in shown) + more


class KeyMismatchError(ValueError):
    """A checkpoint's keys do not fit the model that loads them; the message lists every problem.

    Attributes:
        report: the :class:`KeyReport` (``missing``, ``unexpected``, ``shape_mismatch`` mirror it).
    """

    def __init__(self, headline: str, report: Optional[KeyReport] = None, hint: Optional[str] = None,
                 limit: int = MAX_LISTED) -> None:
        self.report = report or KeyReport()
        lines = [headline, *self.report.lines(limit)]
        if hint:
            lines.append(f"  hint: {hint}")
        super().__init__("\n".join(lines))

    @property
    def missing(self) -> List[str]:
        return self.report.missing

    @property
    def unexpected(self) -> List[str]:
        return self.report.unexpected

    @property
    def shape_mismatch(self) -> List[Tuple[str, Shape, Shape]]:
        return self.report.mismatched


def prefix_hint(missing: Iterable[str], unexpected: Iterable[str]) -> Optional[str]:
    """A one-line hint when missing and unexpected keys differ by one shared prefix, else None.

    ``backbone.layer1.0.conv1.weight`` (in the file) vs ``layer1.0.conv1.weight`` (in the module) gives
    "the checkpoint's keys carry the prefix 'backbone.' ...", the usual sign of a whole pretraining
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
