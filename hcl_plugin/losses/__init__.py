"""Losses (torch only): Euclidean InfoNCE, hyperbolic InfoNCE, the HCL combination, UHML's hierarchical log-ratio."""

from hcl_plugin.losses.hcl import HCLLoss, HCLLossOutput, combine_hcl
from hcl_plugin.losses.hierarchical_log_ratio import HierarchicalLogRatioLoss
from hcl_plugin.losses.hyperbolic_info_nce import HyperbolicInfoNCELoss
from hcl_plugin.losses.info_nce import InfoNCELoss
from hcl_plugin.losses.poincare_logsumexp import poincare_negative_logsumexp

__all__ = ["HCLLoss", "HCLLossOutput", "HierarchicalLogRatioLoss", "HyperbolicInfoNCELoss", "InfoNCELoss", "combine_hcl", "poincare_negative_logsumexp"]
