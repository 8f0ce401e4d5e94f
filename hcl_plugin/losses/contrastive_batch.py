"""Who is whose positive and negative in a contrastive batch (shared by the Euclidean and hyperbolic InfoNCE)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from hcl_plugin.utils import distributed
from hcl_plugin.utils.checks import (
    check_all_finite,
    check_floating,
    check_last_dim,
    check_ndim,
    check_nonempty,
    check_same_shape,
)


@dataclass
class ContrastiveBatch:
    """Anchors with one positive each and a shared set of negatives.

    Attributes:
        anchors: (N, D) rows that get a loss term.
        positives: (N, D) the positive of each anchor.
        negatives: (M, D) candidate negatives shared by all anchors.
        mask: optional (N, M) bool; True marks pairs that are not negatives (self, own positive).
    """

    anchors: Tensor
    positives: Tensor
    negatives: Tensor
    mask: Optional[Tensor]


def validate_pair(
    query: Tensor, positive: Tensor, negatives: Optional[Tensor], check_values: bool = True, owner: str = "loss"
) -> None:
    """Type and shape checks (errors print the shapes) and, with ``check_values``, NaN/Inf checks naming the argument.

    All shape checks run before the value checks, and the value checks read the device once.

    ``TypeError`` for non-floating tensors; ``ValueError`` for wrong shapes, an empty batch or a
    feature dimension of 0 (``owner``, the loss's name, starts those messages). The hyperbolic loss
    passes ``check_values=False``: its ball-membership check reports non-finite values itself, in
    the same pass.
    """
    check_floating(query, "query")
    check_floating(positive, "positive")
    check_ndim(query, 2, "query", "(B, D)")
    check_same_shape(query, positive, "query", "positive")
    check_nonempty(query, "query", owner)
    if query.shape[1] == 0:
        raise ValueError(f"{owner} got features of dimension 0: query has shape {tuple(query.shape)}")
    if negatives is not None:
        check_floating(negatives, "negatives")
        check_ndim(negatives, 2, "negatives", "(K, D)")
        check_last_dim([query, negatives], ["query", "negatives"])
        if negatives.shape[0] == 0:
            raise ValueError("negatives is empty: shape (0, D); pass None for in-batch negatives")
    if check_values:  # one read of the device for the three (a host synchronisation on an accelerator)
        check_all_finite([(query, "query"), (positive, "positive")] + ([] if negatives is None else [(negatives, "negatives")]))


def queue_batch(query: Tensor, positive: Tensor, negatives: Tensor) -> ContrastiveBatch:
    """MoCo layout: each query against its positive key and a queue of negatives (no mask)."""
    return ContrastiveBatch(query, positive, negatives, None)


def in_batch(query: Tensor, positive: Tensor, gather_distributed: bool = False) -> ContrastiveBatch:
    """SimCLR layout (2B-way): every one of the 2B views is an anchor, its partner view is the
    positive, and all other views (of every rank when ``gather_distributed``) are negatives.

    With W ranks of equal batch size B the negatives are the 2·B·W gathered views; the local views
    sit at offset ``rank * 2B``. Gradients flow through the gathered copies to their owners.
    """
    if query.shape[0] < 2 and not (gather_distributed and distributed.is_distributed()):
        raise ValueError(f"in-batch negatives need a batch of at least 2 pairs, got query {tuple(query.shape)}")
    local = torch.cat([query, positive], dim=0)
    partner = torch.cat([positive, query], dim=0)
    if gather_distributed:
        everything = distributed.gather_with_grad(local)
        offset = distributed.rank() * local.shape[0]
    else:
        everything, offset = local, 0
    n, b = local.shape[0], query.shape[0]
    rows = torch.arange(n, device=local.device)
    mask = torch.zeros(n, everything.shape[0], dtype=torch.bool, device=local.device)
    mask[rows, offset + rows] = True  # self
    mask[rows, offset + (rows + b) % n] = True  # own positive (handled separately)
    return ContrastiveBatch(local, partner, everything, mask)
