r"""Hierarchical log-ratio loss of UHML (Yan et al., CVPR 2021) on the Poincaré ball or in Euclidean space."""

from __future__ import annotations

import math
from typing import Union

import torch
from torch import Tensor, nn

from hcl_plugin.geometry import Curvature
from hcl_plugin.geometry.poincare import as_curvature, check_in_ball, compute_dtype, conformal_gap
from hcl_plugin.utils.checks import check_finite, check_floating, check_nonempty

__all__ = ["HierarchicalLogRatioLoss", "DISTANCES", "level_group_pair_sums"]

DISTANCES = ("poincare", "euclidean")


class HierarchicalLogRatioLoss(nn.Module):
    r"""UHML's hierarchical log-ratio loss [1]: distance ratios follow powers of :math:`\Omega`.

    For an anchor i and two other samples j, l with similarity levels :math:`s_{ij} > s_{il}`
    (:func:`hcl_plugin.uhml.similarity_levels`: larger = grouped at a finer level),

    .. math::
        \mathcal{L} = \frac{1}{|T|} \sum_{(i, j, l) \in T}
            \left(\log\frac{d(z_i, z_j)}{d(z_i, z_l)} - (s_{ij} - s_{il})\log\Omega\right)^2,
        \qquad T = \{(i, j, l) \text{ distinct} : s_{ij} > s_{il}\},

    so the loss is zero exactly when :math:`d(z_i, z_j) / d(z_i, z_l) = \Omega^{s_{ij} - s_{il}}` for
    every such triplet (with :math:`0 < \Omega < 1` the more similar pair is closer). ``d`` is the
    Poincaré distance of curvature :math:`-c`,
    :math:`d_c(x, y) = \frac{2}{\sqrt c}\operatorname{arsinh}\frac{\sqrt c\|x - y\|}{\sqrt{(1 - c\|x\|^2)(1 - c\|y\|^2)}}`,
    or, for the ablation, the Euclidean :math:`\|x - y\|`.

    Implementation. With :math:`a_{ij} = \log d_{ij} - s_{ij}\log\Omega` every term is
    :math:`(a_{ij} - a_{il})^2`: one (B, B) matrix. Instead of broadcasting it to all B^3 triplets,
    the sum is taken per anchor over pairs of level groups from their sizes, means and scatters
    (:func:`level_group_pair_sums`): O(B^2 V) for V distinct levels, exact, no cancellation. Distances come
    from the explicit differences :math:`x_i - x_j` (``torch.cdist`` without its matmul path), not
    from the matmul form of :func:`~hcl_plugin.geometry.pairwise_dist`, which cancels catastrophically
    for close pairs (docs/numerics.md) — and close pairs dominate a loss on log-distances.

    Stability. Distances are floored at ``min_distance / sqrt(c)`` (relative to the ball radius
    :math:`1/\sqrt c`; default :math:`10^{-5}`, about 80 float32 ulps of a coordinate of size r) by
    clamping :math:`\|x - y\|` (Euclidean) or the arsinh argument (Poincaré, the equivalent bound),
    so identical points in a batch give finite :math:`\log d` and finite (zero for that pair)
    gradients. The math runs in float32 under
    autocast and for half-precision inputs (float64 inputs stay float64).

    Where the released code (``losses/LogRatio.py``) differs, the paper is followed: the release uses
    dot products instead of distances, adds 1e-6 inside the logs, scales the target by 0.1, sums
    instead of averaging, takes the positive set from the finest level only, loops over samples in
    four nested Python loops (see ``benchmarks/bench_log_ratio.py`` for the cost) and no longer runs on current PyTorch
    (subtracting boolean masks).

    [1] J. Yan, L. Luo, C. Deng, H. Huang. "Unsupervised Hyperbolic Metric Learning". CVPR 2021.
        https://openaccess.thecvf.com/content/CVPR2021/html/Yan_Unsupervised_Hyperbolic_Metric_Learning_CVPR_2021_paper.html

    Attributes:
        omega: :math:`\Omega \in (0, 1)`, the distance ratio per level (paper/code default 0.1).
        distance: ``"poincare"`` (default) or ``"euclidean"``.
        c: curvature magnitude, a float or a :class:`~hcl_plugin.geometry.Curvature` (UHML uses 1);
            also sets the floor's scale for the Euclidean option.
        min_distance: distance floor relative to the ball radius.

    Raises:
        ValueError: omega outside (0, 1), unknown distance, c <= 0, min_distance <= 0 (at
            construction); z not (B, D) or empty (B = 0), levels not (B, B) integers, NaN/Inf in z
            (named), points on or outside the ball for the Poincaré distance (at call).
        TypeError: z not a floating-point tensor.

    Example:
        >>> from hcl_plugin.uhml import similarity_levels
        >>> from hcl_plugin.geometry import expmap0
        >>> loss_fn = HierarchicalLogRatioLoss(omega=0.1, distance="poincare", c=1.0)
        >>> z = expmap0(torch.randn(8, 16), 1.0)
        >>> labels = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3], [0, 0, 0, 0, 1, 1, 1, 1]])  # fine, coarse
        >>> loss = loss_fn(z, similarity_levels(labels))
    """

    def __init__(
        self,
        omega: float = 0.1,
        distance: str = "poincare",
        c: Union[float, Curvature] = 1.0,
        min_distance: float = 1e-5,
    ) -> None:
        super().__init__()
        if not 0 < omega < 1:
            raise ValueError(f"omega must lie in (0, 1) so that more similar pairs are closer, got {omega}")
        if distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")
        if not min_distance > 0:
            raise ValueError(f"min_distance must be > 0, got {min_distance}")
        self.omega = float(omega)
        self.distance = distance
        self.curvature = c if isinstance(c, Curvature) else Curvature(float(c))
        self.min_distance = float(min_distance)

    def log_distances(self, z: Tensor, c: Tensor) -> Tensor:
        """(B, B) matrix of :math:`\\log d(z_i, z_j)` with the floor applied (diagonal = log floor)."""
        # |z_i - z_j| from explicit differences, not |x|^2 + |y|^2 - 2<x, y> (cancels for close pairs)
        euclidean = torch.cdist(z, z, compute_mode="donot_use_mm_for_euclid_dist")
        floor = self.min_distance / c.sqrt()
        if self.distance == "euclidean":
            return torch.log(euclidean.clamp_min(floor))
        gap = conformal_gap(z, c)  # (B, 1)
        u = euclidean * torch.sqrt(c / (gap * gap.T))
        u_floor = torch.sinh(c.sqrt() * floor / 2)  # d >= floor  <=>  u >= sinh(sqrt(c) floor / 2)
        return torch.log(2 / c.sqrt() * torch.asinh(u.clamp_min(u_floor)))

    def forward(self, z: Tensor, levels: Tensor) -> Tensor:
        """Mean over the valid triplets; 0 (with zero gradient) if the batch has none. 0-dim tensor."""
        check_floating(z, "z")
        if z.dim() != 2:
            raise ValueError(f"z must have shape (B, D), got {tuple(z.shape)}")
        check_nonempty(z, "z", type(self).__name__)
        batch = z.shape[0]
        if levels.shape != (batch, batch):
            raise ValueError(f"levels must have shape (B, B) = ({batch}, {batch}) to match z, got {tuple(levels.shape)}")
        if levels.is_floating_point() or levels.is_complex() or levels.dtype == torch.bool:
            raise ValueError(f"levels must be an integer tensor (similarity levels s_ij), got {levels.dtype}")
        dtype = compute_dtype(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.to(dtype)
            check_finite(z, "z")
            c = as_curvature(self.curvature(), z)
            if self.distance == "poincare":
                check_in_ball(z, c, "z")
            levels = levels.to(z.device)
            shifted = self.log_distances(z, c) - levels.to(dtype) * math.log(self.omega)  # a_ij
            total, count = level_group_pair_sums(shifted, levels)
            if count == 0:
                return (z * 0).sum()
            return total / count

    def extra_repr(self) -> str:
        return f"omega={self.omega}, distance={self.distance!r}, min_distance={self.min_distance}"


def level_group_pair_sums(shifted: Tensor, levels: Tensor) -> tuple:
    r""":math:`\sum_i \sum_{j, l \ne i,\ s_{ij} > s_{il}} (a_{ij} - a_{il})^2` and the number of such triplets.

    For anchor i, group the others by their level, :math:`G_v = \{j \ne i : s_{ij} = v\}`, with size
    :math:`n_v`, mean :math:`\mu_v` and scatter :math:`S_v = \sum_{j \in G_v} (a_{ij} - \mu_v)^2`
    of :math:`a_{ij}`. Then for two groups (the between/within decomposition of the analysis of variance)

    .. math:: \sum_{j \in G_p} \sum_{l \in G_q} (a_{ij} - a_{il})^2 = n_q S_p + n_p S_q + n_p n_q (\mu_p - \mu_q)^2,

    summed over the pairs of levels :math:`p > q`. Every term is non-negative (no cancellation, so the
    loss is zero to rounding when the ratios match), and time and memory are O(B^2 V) for V distinct
    levels instead of the O(B^3) of broadcasting all triplets.

    Args:
        shifted: (B, B) values :math:`a_{ij}`.
        levels: (B, B) integer similarity levels.
    Returns:
        (sum, count): a 0-dim tensor and a Python int.
    """
    batch = shifted.shape[0]
    values, group = torch.unique(levels, return_inverse=True)  # sorted: group order = level order
    not_self = ~torch.eye(batch, dtype=torch.bool, device=shifted.device)
    member = torch.nn.functional.one_hot(group, values.numel()).to(shifted.dtype) * not_self[:, :, None]  # (B, B, V)
    size = member.sum(dim=1)  # (B, V)
    mean = (member * shifted[:, :, None]).sum(dim=1) / size.clamp_min(1)
    centred = shifted - mean.gather(1, group)
    scatter = (member * (centred * centred)[:, :, None]).sum(dim=1)  # (B, V)
    higher = torch.ones(values.numel(), values.numel(), dtype=torch.bool, device=shifted.device).triu(1)  # [q, p]: p > q
    size_q, size_p = size[:, :, None], size[:, None, :]
    gap = mean[:, None, :] - mean[:, :, None]
    per_pair = size_q * scatter[:, None, :] + size_p * scatter[:, :, None] + size_p * size_q * gap * gap
    count = int(torch.round((size_p * size_q)[:, higher].sum()).item())
    return per_pair[:, higher].sum(), count
