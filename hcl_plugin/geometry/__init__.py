"""Poincaré-ball geometry (torch only, no framework imports)."""

from hcl_plugin.geometry.curvature import Curvature
from hcl_plugin.geometry.gradient import norm_only, riemannian_expmap0, riemannian_gradient
from hcl_plugin.geometry.poincare import (
    ball_margin,
    ball_radius,
    check_all_in_ball,
    check_in_ball,
    clip_features,
    conformal_gap,
    dist,
    dist0,
    expmap0,
    logmap0,
    pairwise_dist,
    project,
)

__all__ = [
    "Curvature",
    "ball_margin",
    "ball_radius",
    "check_all_in_ball",
    "check_in_ball",
    "clip_features",
    "conformal_gap",
    "dist",
    "dist0",
    "expmap0",
    "logmap0",
    "norm_only",
    "pairwise_dist",
    "project",
    "riemannian_expmap0",
    "riemannian_gradient",
]
