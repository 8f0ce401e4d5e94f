"""The project's one ResNet builder and backbone extraction (torchvision key names everywhere).

Every trained model in the project keeps a torchvision ResNet with ``fc = nn.Identity()`` under a
``backbone.`` prefix (Lightly examples, MMSelfSup's ``ResNet`` uses the same parameter names), so one
builder serves the Lightly examples, the analysis and UHML, and one function picks the backbone
entries out of a checkpoint. torchvision is imported when a backbone is built, not on import.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Dict, Mapping, Sequence, Tuple

from torch import Tensor, nn

__all__ = ["BACKBONE_FEATURE_DIMS", "BackboneNotFoundError", "build_resnet", "select_prefixed"]

#: Width of the pooled features of the supported torchvision ResNets.
BACKBONE_FEATURE_DIMS: Dict[str, int] = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}


class BackboneNotFoundError(KeyError):
    """No entry of the checkpoint starts with the requested prefix; the message lists the prefixes there."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def build_resnet(name: str) -> Tuple[nn.Module, int]:
    """A randomly initialised torchvision ResNet with ``fc = Identity`` (torchvision key names) and its width.

    Raises:
        ValueError: ``name`` is not one of :data:`BACKBONE_FEATURE_DIMS` (the message lists them).
    """
    import torchvision

    if name not in BACKBONE_FEATURE_DIMS:
        raise ValueError(f"unsupported backbone {name!r}; supported: {', '.join(BACKBONE_FEATURE_DIMS)}")
    model = getattr(torchvision.models, name)(weights=None)
    model.fc = nn.Identity()
    return model, BACKBONE_FEATURE_DIMS[name]


def select_prefixed(state: Mapping[str, Any], prefixes: Sequence[str], source: str = "checkpoint"
                    ) -> Tuple[Dict[str, Tensor], str]:
    """The tensors under the first of ``prefixes`` present in ``state``, with the prefix removed, and that prefix.

    Raises:
        BackboneNotFoundError: no tensor key starts with any of ``prefixes`` (lists the prefixes present).
    """
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    for prefix in prefixes:
        picked = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if picked:
            return picked, prefix
    tops = Counter(k.split(".", 1)[0] + "." for k in state)
    raise BackboneNotFoundError(
        f"{source}: no key starts with {' or '.join(repr(p) for p in prefixes)}; top-level prefixes there: "
        + (", ".join(f"{p} ({n})" for p, n in tops.most_common(10)) or "none")
    )
