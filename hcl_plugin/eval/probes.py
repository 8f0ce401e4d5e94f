r"""Transfer proxies on frozen backbone features: linear probe, multi-label linear probe, kNN.

All three read the backbone's pooled features (the standard input of a linear probe; the projection
heads are discarded for transfer). Probes train on one split and are tested on another.

* **Linear probe** (object crops, single label): features standardised with the training mean and
  standard deviation, then multinomial logistic regression (scikit-learn ``LogisticRegression``,
  L2, ``C = 1``, L-BFGS); top-1 accuracy on the test crops.
* **Multi-label probe** (whole images): one binary logistic regression per class on standardised
  features (one-vs-rest, target = "the image holds an object of this class"); decision values are
  ranked per class and the mean average precision over the classes with a positive in the test set
  is reported (:func:`~hcl_plugin.eval.metrics.mean_average_precision`). A class with only one
  target value in the training set gets a constant score (its AP is then the positive rate).
* **kNN** (object crops): cosine similarity to every training crop, the ``k`` most similar vote with
  weights :math:`\exp(\cos/\tau)` (:math:`\tau = 0.07`, the weighted kNN of Wu et al. [1] used to
  monitor MoCo/DINO training; ``temperature=None`` gives a plain majority vote); the class with the
  largest summed weight wins, ties go to the smallest class id.

[1] Z. Wu, Y. Xiong, S. X. Yu, D. Lin. "Unsupervised Feature Learning via Non-Parametric Instance
    Discrimination". CVPR 2018.
"""

from __future__ import annotations

import warnings
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from hcl_plugin.eval.metrics import mean_average_precision, to_numpy, top1_accuracy

__all__ = [
    "knn_predict",
    "knn_top1",
    "linear_probe_top1",
    "multilabel_probe_map",
    "multi_hot",
]


def _standardise(train: np.ndarray, test: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std < 1e-12] = 1.0
    return (train - mean) / std, (test - mean) / std


def _logistic(C: float, max_iter: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, max_iter=max_iter)


def _fit(model, x: np.ndarray, y: np.ndarray) -> bool:
    """Fit and return whether L-BFGS converged (a ConvergenceWarning is recorded, not printed)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    return not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def linear_probe_top1(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor,
    C: float = 1.0, max_iter: int = 1000,
) -> Dict[str, Optional[float]]:
    """Top-1 accuracy of a multinomial logistic-regression probe.

    Returns:
        ``{"top1", "num_train", "num_test", "num_classes", "converged"}``; ``top1`` is ``None`` when
        either set is empty or the training set has a single class.
    """
    x_train, x_test = to_numpy(train_features, np.float64), to_numpy(test_features, np.float64)
    y_train, y_test = to_numpy(train_labels).ravel(), to_numpy(test_labels).ravel()
    out: Dict[str, Optional[float]] = {"top1": None, "num_train": int(y_train.size), "num_test": int(y_test.size),
                                       "num_classes": int(np.unique(y_train).size), "converged": None}
    if y_train.size == 0 or y_test.size == 0 or np.unique(y_train).size < 2:
        return out
    x_train, x_test = _standardise(x_train, x_test)
    model = _logistic(C, max_iter)
    out["converged"] = _fit(model, x_train, y_train)
    out["top1"] = top1_accuracy(model.predict(x_test), y_test)
    return out


def multi_hot(label_sets: Sequence[Tensor], classes: Sequence[int]) -> np.ndarray:
    """(N, C) binary matrix: row ``i`` marks the ``classes`` present in ``label_sets[i]``."""
    position = {int(c): k for k, c in enumerate(classes)}
    out = np.zeros((len(label_sets), len(classes)), dtype=bool)
    for i, labels in enumerate(label_sets):
        for label in to_numpy(labels).ravel():
            if int(label) in position:
                out[i, position[int(label)]] = True
    return out


def multilabel_probe_map(
    train_features: Tensor, train_targets: np.ndarray, test_features: Tensor, test_targets: np.ndarray,
    C: float = 1.0, max_iter: int = 1000,
) -> Dict[str, object]:
    """mAP of one-vs-rest logistic-regression probes.

    Args:
        train_targets, test_targets: (N, C) binary matrices over the same classes (:func:`multi_hot`).
    Returns:
        ``{"map", "per_class_ap" (list, NaN = no positive in the test set), "num_train", "num_test",
        "constant_classes" (class positions with one target value in training), "converged"}``.
    """
    x_train, x_test = to_numpy(train_features, np.float64), to_numpy(test_features, np.float64)
    y_train, y_test = np.asarray(train_targets, dtype=bool), np.asarray(test_targets, dtype=bool)
    if y_train.ndim != 2 or y_test.ndim != 2 or y_train.shape[1] != y_test.shape[1]:
        raise ValueError(f"targets must be (N, C) with the same C, got {y_train.shape} and {y_test.shape}")
    if y_train.shape[0] != x_train.shape[0] or y_test.shape[0] != x_test.shape[0]:
        raise ValueError("need one target row per feature row")
    out: Dict[str, object] = {"map": None, "per_class_ap": [], "num_train": int(x_train.shape[0]),
                              "num_test": int(x_test.shape[0]), "constant_classes": [], "converged": None}
    if x_train.shape[0] == 0 or x_test.shape[0] == 0:
        return out
    x_train, x_test = _standardise(x_train, x_test)
    scores = np.zeros(y_test.shape, dtype=np.float64)
    converged = True
    for k in range(y_train.shape[1]):
        column = y_train[:, k]
        if column.all() or not column.any():
            out["constant_classes"].append(k)
            scores[:, k] = float(column.mean())
            continue
        model = _logistic(C, max_iter)
        converged &= _fit(model, x_train, column)
        scores[:, k] = model.decision_function(x_test)
    mean_ap, per_class = mean_average_precision(y_test, scores)
    out.update({"map": mean_ap, "per_class_ap": per_class.tolist(), "converged": converged})
    return out


@torch.no_grad()
def knn_predict(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, k: int = 20,
    temperature: Optional[float] = 0.07, block_size: int = 1024,
) -> Tensor:
    """Labels predicted by a cosine-similarity kNN vote (see the module docstring).

    Args:
        k: neighbours (capped at the number of training rows).
        temperature: vote weight :math:`\\exp(\\cos/\\tau)`; ``None`` = every neighbour weighs 1.
        block_size: test rows per block (memory O(block_size x N_train)).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    train = torch.nn.functional.normalize(torch.as_tensor(train_features).double(), dim=1)
    test = torch.nn.functional.normalize(torch.as_tensor(test_features).double(), dim=1)
    labels = torch.as_tensor(train_labels).long().ravel()
    if train.shape[0] != labels.shape[0]:
        raise ValueError(f"need one label per training row: {labels.shape[0]} vs {train.shape[0]}")
    if train.shape[0] == 0:
        raise ValueError("kNN needs at least one training row")
    classes, index = torch.unique(labels, return_inverse=True)
    k = min(k, train.shape[0])
    predictions = []
    for start in range(0, test.shape[0], block_size):
        sim = test[start:start + block_size] @ train.T
        top_sim, top_idx = sim.topk(k, dim=1)
        weights = torch.ones_like(top_sim) if temperature is None else (top_sim / temperature).exp()
        votes = torch.zeros(sim.shape[0], classes.numel(), dtype=torch.float64)
        votes.scatter_add_(1, index[top_idx], weights)
        predictions.append(classes[votes.argmax(dim=1)])  # argmax returns the first maximum
    return torch.cat(predictions) if predictions else torch.zeros(0, dtype=torch.long)


def knn_top1(
    train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor,
    k: int = 20, temperature: Optional[float] = 0.07,
) -> Dict[str, Optional[float]]:
    """Top-1 accuracy of :func:`knn_predict`; ``top1`` is ``None`` when a set is empty."""
    n_train, n_test = int(torch.as_tensor(train_labels).numel()), int(torch.as_tensor(test_labels).numel())
    out: Dict[str, Optional[float]] = {"top1": None, "k": k, "temperature": temperature,
                                       "num_train": n_train, "num_test": n_test}
    if n_train == 0 or n_test == 0:
        return out
    predictions = knn_predict(train_features, train_labels, test_features, k=k, temperature=temperature)
    out["top1"] = top1_accuracy(predictions, test_labels)
    return out
