"""Metrics of ``hcl_plugin.eval`` against values computed by hand on small fixtures: AUROC, AP, mAP,
Spearman/Pearson, norm tables, Fig. 4 selection, object-scene distances, probes and kNN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hcl_plugin.eval.metrics import auroc, average_precision, correlation, mean_average_precision, pearson, spearman, top1_accuracy
from hcl_plugin.eval.norms import (
    clipped_fraction,
    euclidean_norms,
    hyperbolic_norms,
    lowest_highest_per_class,
    norm_correlations,
    norms_by_count,
    quantize_norms,
)
from hcl_plugin.eval.out_of_context import object_scene_distances, out_of_context_metrics
from hcl_plugin.eval.probes import knn_predict, knn_top1, linear_probe_top1, multi_hot, multilabel_probe_map
from hcl_plugin.geometry import expmap0


# AUROC / AP / mAP -----------------------------------------------------------------------------------

def test_auroc_hand_computed():
    # positives 0.35, 0.8; negatives 0.1, 0.4: pairs won 0.35>0.1, 0.8>0.1, 0.8>0.4 -> 3 / 4
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # ties count 1/2: positives 3, 2; negatives 3, 1, 0 -> (0.5 + 1 + 1) + (0 + 1 + 1) = 4.5 of 6
    assert auroc([1, 0, 1, 0, 0], [3, 3, 2, 1, 0]) == pytest.approx(0.75)
    assert auroc(torch.tensor([True, False]), torch.tensor([0.5, 0.5])) == pytest.approx(0.5)
    assert auroc([1, 1, 0], [0.0, 0.1, 0.9]) == pytest.approx(0.0)


def test_auroc_and_ap_undefined_without_both_classes():
    assert auroc([0, 0, 0], [0.1, 0.2, 0.3]) is None
    assert auroc([1, 1], [0.1, 0.2]) is None
    assert average_precision([0, 0], [0.1, 0.2]) is None
    assert average_precision([1, 1], [0.1, 0.2]) == pytest.approx(1.0)


def test_average_precision_hand_computed():
    # ranking 0.8(+) 0.4(-) 0.35(+) 0.1(-): precisions at the positives 1/1 and 2/3
    assert average_precision([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx((1 + 2 / 3) / 2)
    # 0.9(-) 0.8(+) 0.7(-) 0.6(+) 0.5(+): (1/2 + 2/4 + 3/5) / 3
    assert average_precision([0, 1, 0, 1, 1], [0.9, 0.8, 0.7, 0.6, 0.5]) == pytest.approx((0.5 + 0.5 + 0.6) / 3)


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="same length"):
        auroc([0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="non-finite"):
        average_precision([0, 1], [0.1, float("nan")])


def test_mean_average_precision_hand_computed():
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    scores = np.array([[0.9, 0.2, 0.3], [0.8, 0.9, 0.1], [0.1, 0.5, 0.2]])
    # class 0: 0.9(+) 0.8(-) 0.1(+) -> (1 + 2/3) / 2; class 1: 0.9(+) first -> 1; class 2: no positive, excluded
    mean_ap, per_class = mean_average_precision(targets, scores)
    assert per_class[0] == pytest.approx(5 / 6) and per_class[1] == pytest.approx(1.0) and np.isnan(per_class[2])
    assert mean_ap == pytest.approx((5 / 6 + 1) / 2)
    assert mean_average_precision(np.zeros((2, 2)), np.ones((2, 2)))[0] is None
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        mean_average_precision(np.zeros((2, 2)), np.zeros((2, 3)))


# correlations ----------------------------------------------------------------------------------------

def test_spearman_hand_computed():
    # d = rank differences [-1, 1, -1, 1, 0], sum d^2 = 4: rho = 1 - 6 * 4 / (5 * (25 - 1)) = 0.8
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    # ties -> average ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]: rho = 4.5 / sqrt(4.5 * 5)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert spearman([1, 2, 3], [30, 20, 10]) == pytest.approx(-1.0)
    # monotone but non-linear: Spearman 1, Pearson below 1
    assert spearman([1, 2, 3, 4], [1, 10, 100, 1000]) == pytest.approx(1.0)


def test_pearson_hand_computed():
    # x = [1, 2, 3], y = [1, 2, 4]: cov = 3, var_x = 2, var_y = 42/9 (sums of squares)
    assert pearson([1, 2, 3], [1, 2, 4]) == pytest.approx(3 / math.sqrt(2 * 42 / 9))
    assert pearson(torch.tensor([1.0, 2.0, 3.0, 4.0]), np.array([1, 10, 100, 1000])) < 0.99


def test_correlation_undefined_for_constant_or_tiny_input():
    assert spearman([1, 1, 1], [1, 2, 3]) is None
    assert pearson([1, 2, 3], [5, 5, 5]) is None
    assert spearman([1], [2]) is None
    out = correlation([0.5, 0.5, 0.5], [1, 2, 3])
    assert out["spearman"] is None and out["pearson"] is None and out["n"] == 3
    out = correlation([1, 2, 3, 4], [1, 3, 2, 4])
    assert out["spearman"] == pytest.approx(0.8) and 0 < out["spearman_p"] <= 1


def test_top1_accuracy():
    assert top1_accuracy([1, 2, 3, 4], [1, 2, 0, 4]) == pytest.approx(0.75)
    assert top1_accuracy([], []) is None


# norms -------------------------------------------------------------------------------------------------

def test_hyperbolic_and_euclidean_norms_hand_computed():
    x = torch.tensor([[0.5, 0.0], [0.0, 0.0], [0.3, 0.4]])
    # c = 1: d(0, x) = 2 artanh(|x|); 2 artanh(0.5) = ln 3
    expected = torch.tensor([math.log(3.0), 0.0, 2 * math.atanh(0.5)], dtype=torch.float64)
    assert torch.allclose(hyperbolic_norms(x, 1.0), expected, atol=1e-6)
    # c = 0.25 (radius 2): d = 2 / 0.5 * artanh(0.5 * 1.0) = 4 artanh(0.5) = 2 ln 3
    assert hyperbolic_norms(torch.tensor([[1.0, 0.0]]), 0.25).item() == pytest.approx(2 * math.log(3.0), abs=1e-6)
    assert torch.allclose(euclidean_norms(x), torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64))


def test_clipped_fraction_counts_points_at_twice_the_clip_radius(gen):
    # d(0, expmap0(v)) = 2 |v|: clipping at r puts the norm at exactly 2 r
    c, r = 0.1, 1.5
    v = torch.randn(40, 8, generator=gen, dtype=torch.float64)
    v = v / v.norm(dim=1, keepdim=True) * torch.where(torch.arange(40) < 30, 3.0, 0.5).unsqueeze(1).double()
    clipped = v * torch.clamp(r / v.norm(dim=1, keepdim=True), max=1.0)
    norms = hyperbolic_norms(expmap0(clipped, c), c)
    assert clipped_fraction(norms, r) == pytest.approx(0.75)
    assert clipped_fraction(norms, None) == 0.0


def test_norms_by_count_hand_computed():
    rows = norms_by_count(torch.tensor([1.0, 2.0, 3.0, 5.0, 7.0]), [1, 1, 2, 2, 4])
    assert [r["count"] for r in rows] == [1, 2, 4]
    assert [r["n"] for r in rows] == [2, 2, 1]
    assert [r["mean"] for r in rows] == pytest.approx([1.5, 4.0, 7.0])
    assert [r["std"] for r in rows] == pytest.approx([math.sqrt(0.5), math.sqrt(2.0), 0.0])  # ddof = 1


def test_norm_correlations_ignore_float_rounding():
    # all points at the clip radius, differing only in float32 rounding: correlation undefined, not noise
    noisy = torch.tensor([2.3, 2.3000002, 2.2999998, 2.3000005, 2.2999995], dtype=torch.float32)
    out = norm_correlations(noisy, [1, 2, 3, 4, 5], [1, 1, 2, 2, 3])
    assert out["objects"]["spearman"] is None and out["labels"]["pearson"] is None
    assert quantize_norms(noisy).tolist() == pytest.approx([2.3] * 5)
    # one real outlier among clipped points: the clipped ones tie (average ranks 2.5), the outlier ranks first
    mixed = torch.tensor([2.3, 2.3000002, 2.2999998, 0.5])
    out = norm_correlations(mixed, [4, 3, 2, 1], [4, 3, 2, 1])
    assert out["objects"]["spearman"] == pytest.approx(spearman([3, 3, 3, 1], [4, 3, 2, 1]))
    assert out["objects"]["spearman"] == pytest.approx(math.sqrt(0.6))
    assert out["objects"]["pearson"] == pytest.approx(pearson(mixed.double(), [4, 3, 2, 1]), rel=1e-12)


def test_lowest_highest_per_class_hand_computed():
    norms = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7, 0.2])
    cats = [torch.tensor([1]), torch.tensor([1, 2]), torch.tensor([2]), torch.tensor([1, 1]), torch.tensor([1]),
            torch.tensor([2])]
    out = lowest_highest_per_class(norms, cats, k=2)
    # class 1: images 0 (0.5), 1 (0.1), 3 (0.3), 4 (0.7); class 2: images 1 (0.1), 2 (0.9), 5 (0.2)
    assert out[1] == ([1, 3], [4, 0])
    assert out[2] == ([1, 5], [2, 5])
    with pytest.raises(ValueError, match="one category set per image"):
        lowest_highest_per_class(norms, cats[:3])


# out of context ---------------------------------------------------------------------------------------

def test_object_scene_distances_hand_computed():
    objects = torch.tensor([[0.5, 0.0], [0.5, 0.0], [0.0, 0.0]])
    scenes = torch.tensor([[0.0, 0.0], [-0.5, 0.0]])
    # c = 1: d(x, 0) = ln 3; d((0.5, 0), (-0.5, 0)) = 2 arsinh(1 / 0.75) = 2 ln 3; d(0, (-0.5, 0)) = ln 3
    d = object_scene_distances(objects, scenes, torch.tensor([0, 1, 1]), 1.0)
    assert d.dtype == torch.float64
    assert torch.allclose(d, torch.tensor([math.log(3), 2 * math.log(3), math.log(3)], dtype=torch.float64), atol=1e-6)
    with pytest.raises(ValueError, match="object_scene indices"):
        object_scene_distances(objects, scenes, torch.tensor([0, 1, 2]), 1.0)


def test_out_of_context_metrics_hand_computed():
    out = out_of_context_metrics(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([False, False, True, True]))
    assert out["auroc"] == pytest.approx(0.75) and out["ap"] == pytest.approx(5 / 6)
    assert out["num_objects"] == 4 and out["num_out_of_context"] == 2 and out["positive_rate"] == pytest.approx(0.5)
    assert out["mean_distance_out_of_context"] == pytest.approx(0.575)
    assert out["mean_distance_in_context"] == pytest.approx(0.25)
    none = out_of_context_metrics(torch.tensor([0.1, 0.2]), torch.tensor([False, False]))
    assert none["auroc"] is None and none["ap"] is None and none["mean_distance_out_of_context"] is None


# probes -----------------------------------------------------------------------------------------------

def test_knn_majority_and_weighted_votes_hand_computed():
    train = torch.tensor([[1.0, 0.01], [0.6, 0.8], [0.6, 0.8], [-1.0, 0.0]])
    labels = torch.tensor([1, 0, 0, 2])
    test = torch.tensor([[1.0, 0.0]])
    # k = 3 neighbours: one of class 1 (cos ~ 1) and two of class 0 (cos 0.6)
    assert knn_predict(train, labels, test, k=3, temperature=None).tolist() == [0]  # 2 votes vs 1
    # weights exp(cos / 0.07): e^14.3 > 2 e^8.6
    assert knn_predict(train, labels, test, k=3, temperature=0.07).tolist() == [1]
    # k = 1 is nearest-neighbour; k larger than the set is capped
    assert knn_predict(train, labels, torch.tensor([[-2.0, 0.1]]), k=1).tolist() == [2]
    assert knn_predict(train, labels, test, k=100, temperature=None).tolist() == [0]
    out = knn_top1(train, labels, torch.tensor([[1.0, 0.0], [-3.0, 0.0]]), torch.tensor([1, 0]), k=1)
    assert out["top1"] == pytest.approx(0.5) and out["num_train"] == 4 and out["num_test"] == 2


def test_knn_tie_goes_to_smallest_class():
    train = torch.tensor([[1.0, 1.0], [1.0, -1.0]])
    assert knn_predict(train, torch.tensor([7, 3]), torch.tensor([[1.0, 0.0]]), k=2, temperature=None).tolist() == [3]


def _blobs(gen, n_per_class, centres, noise=0.1):
    centres = torch.as_tensor(centres, dtype=torch.float64)
    x = torch.cat([c + noise * torch.randn(n_per_class, centres.shape[1], generator=gen, dtype=torch.float64)
                   for c in centres])
    y = torch.arange(centres.shape[0]).repeat_interleave(n_per_class)
    return x, y


def test_linear_probe_separable_and_chance(gen):
    centres = torch.eye(3, 8) * 4
    x_train, y_train = _blobs(gen, 20, centres)
    x_test, y_test = _blobs(gen, 10, centres)
    out = linear_probe_top1(x_train, y_train, x_test, y_test)
    assert out["top1"] == pytest.approx(1.0) and out["converged"] and out["num_classes"] == 3
    # the probe predicts the blob, so targets relabelled 0->1->2->0 are never hit
    assert linear_probe_top1(x_train, y_train, x_test, (y_test + 1) % 3)["top1"] == pytest.approx(0.0)
    single = linear_probe_top1(x_train, torch.zeros_like(y_train), x_test, y_test)
    assert single["top1"] is None


def test_multi_hot():
    out = multi_hot([torch.tensor([3, 1, 3]), torch.tensor([], dtype=torch.long), torch.tensor([9])], [1, 3, 5])
    assert out.tolist() == [[True, True, False], [False, False, False], [False, False, False]]


def test_multilabel_probe_hand_built(gen):
    # feature k is high exactly when class k is present; class 2 never occurs in training (constant score)
    y_train = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]] * 5, dtype=bool)
    x_train = torch.tensor(y_train[:, :2], dtype=torch.float64) * 3 + 0.1 * torch.randn(20, 2, generator=gen, dtype=torch.float64)
    y_test = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=bool)
    x_test = torch.tensor(y_test[:, :2], dtype=torch.float64) * 3
    out = multilabel_probe_map(x_train, y_train, x_test, y_test)
    assert out["constant_classes"] == [2]
    # classes 0, 1 ranked perfectly (AP 1); class 2 scored constant -> AP = positive rate 1/4
    assert out["per_class_ap"][:2] == pytest.approx([1.0, 1.0]) and out["per_class_ap"][2] == pytest.approx(0.25)
    assert out["map"] == pytest.approx((1 + 1 + 0.25) / 3)
    with pytest.raises(ValueError, match="same C"):
        multilabel_probe_map(x_train, y_train, x_test, y_test[:, :2])
