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

__all__ = ["BACKBONE_FEATURE_DIMS", "BackboneNotFoundError", "STEMS", "build_resnet", "check_stem", "select_prefixed"]

#: Width of the pooled features of the supported torchvision ResNets.
BACKBONE_FEATURE_DIMS: Dict[str, int] = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048}

#: ResNet input stems: ``"imagenet"`` (torchvision's 7x7 stride-2 conv + 3x3 stride-2 max-pool, /4 before
#: ``layer1``) and ``"small"`` (a 3x3 stride-1 conv and no max-pool, as CIFAR recipes do: /1 before
#: ``layer1``, for inputs of at most about 96 px; a 64 px view then leaves an 8x8 map at ``layer4``).
STEMS: Tuple[str, ...] = ("imagenet", "small")


class BackboneNotFoundError(KeyError):
    """No entry of the checkpoint starts with the requested prefix; the message lists the prefixes there."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def check_stem(stem: Any, name: str = "stem") -> str:
    """``stem`` if it is one of :data:`STEMS`; ``ValueError`` naming ``name`` otherwise."""
    if stem not in STEMS:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, STEMS))}, got {stem!r}")
    return stem


def build_resnet(name: str, stem: str = "imagenet") -> Tuple[nn.Module, int]:
    """A randomly initialised torchvision ResNet with ``fc = Identity`` (torchvision key names) and its width.

    ``stem="small"`` replaces ``conv1`` by a 3x3 stride-1 convolution (no bias, like torchvision's) and
    ``maxpool`` by ``nn.Identity()``: the CIFAR recipes' stem for small inputs. The key names stay
    torchvision's; only ``conv1.weight`` changes shape, ``(64, 3, 7, 7)`` to ``(64, 3, 3, 3)``.

    Raises:
        ValueError: ``name`` is not one of :data:`BACKBONE_FEATURE_DIMS` or ``stem`` not one of
            :data:`STEMS` (the message lists them).
    """
    import torchvision

    if name not in BACKBONE_FEATURE_DIMS:
        raise ValueError(f"unsupported backbone {name!r}; supported: {', '.join(BACKBONE_FEATURE_DIMS)}")
    check_stem(stem)
    model = getattr(torchvision.models, name)(weights=None)
    if stem == "small":
        model.conv1 = nn.Conv2d(3, model.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
        model.maxpool = nn.Identity()
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
