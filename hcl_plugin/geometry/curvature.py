"""Curvature as a module: a fixed positive number or a learnable one kept positive."""

from __future__ import annotations

import math
from typing import Union

import torch
from torch import Tensor, nn

from hcl_plugin.utils.checks import check_positive


class Curvature(nn.Module):
    r"""The curvature magnitude ``c > 0`` of a Poincaré ball (radius ``1/sqrt(c)``).

    With ``learnable=True`` it is stored as a parameter :math:`\log c` (so every optimiser step keeps
    it positive, as MERU does for its curvature) and ``forward`` returns a tensor; otherwise it is a
    Python float returned exactly (a float32 tensor would turn 0.05 into 0.0500000007).

    Args:
        c: initial value, > 0.
        learnable: whether ``c`` receives gradients.
        min_c, max_c: bounds applied to a learnable ``c`` in ``forward`` (guards against runaway).

    Example:
        >>> curv = Curvature(0.05, learnable=True)
        >>> float(curv())  # doctest: +ELLIPSIS
        0.05...
    """

    def __init__(self, c: float = 0.05, learnable: bool = False, min_c: float = 1e-4, max_c: float = 1e4) -> None:
        super().__init__()
        check_positive(c, "c")
        if not (0 < min_c <= c <= max_c):
            raise ValueError(f"need 0 < min_c <= c <= max_c, got min_c={min_c}, c={c}, max_c={max_c}")
        self.learnable = learnable
        self.min_c, self.max_c = min_c, max_c
        self.fixed_c = float(c)
        if learnable:
            self.log_c = nn.Parameter(torch.tensor(math.log(c)))

    def forward(self) -> Union[float, Tensor]:
        """Return ``c``: a float when fixed, a 0-dim tensor with gradient when learnable."""
        if not self.learnable:
            return self.fixed_c
        return self.log_c.exp().clamp(self.min_c, self.max_c)

    def extra_repr(self) -> str:
        return f"c={float(self.forward()):.4g}, learnable={self.learnable}"
