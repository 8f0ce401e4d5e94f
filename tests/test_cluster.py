"""hcl_plugin.uhml clustering: planted hierarchies recovered, nesting, similarity-level semantics, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from hcl_plugin.uhml import default_num_centroids, hierarchical_labels, similarity_levels
from hcl_plugin.geometry import expmap0

C = 1.0


def planted_hierarchy(gen, num_coarse=5, fine_per_coarse=4, points_per_fine=30, dim=16, scales=(6.0, 1.5, 0.15)):
    """Points whose tangent coordinates are coarse centre + fine offset + noise (scales in logmap0 units).

    Returns ``(z, fine, coarse)`` with z in the ball of curvature C (float64).
    """
    coarse_scale, fine_scale, noise_scale = scales
    coarse_centres = coarse_scale * torch.randn(num_coarse, dim, generator=gen, dtype=torch.float64)
    fine_offsets = fine_scale * torch.randn(num_coarse * fine_per_coarse, dim, generator=gen, dtype=torch.float64)
    fine = torch.arange(num_coarse * fine_per_coarse).repeat_interleave(points_per_fine)
    coarse = fine // fine_per_coarse
    tangent = coarse_centres[coarse] + fine_offsets[fine]
    tangent = tangent + noise_scale * torch.randn(tangent.shape, generator=gen, dtype=torch.float64)
    # scale down so points stay well inside the ball (the hierarchy is scale-free)
    tangent = tangent / tangent.norm(dim=1).max() * 2.0
    return expmap0(tangent, C), fine.numpy(), coarse.numpy()


def assert_nested(labels: np.ndarray) -> None:
    for fine, coarse in zip(labels[:-1], labels[1:]):
        for cluster in np.unique(fine):
            assert np.unique(coarse[fine == cluster]).size == 1, "a fine cluster is split across coarse clusters"


@pytest.mark.parametrize("scheme", ["exact", "two-stage"])
def test_planted_two_level_hierarchy_is_recovered_by_counts(scheme, gen):
    z, fine, coarse = planted_hierarchy(gen)
    options = {} if scheme == "exact" else {"max_exact": 100, "num_centroids": 200}
    labels = hierarchical_labels(z, C, n_clusters=[20, 5], seed=int(torch.randint(0, 2**31 - 1, (1,), generator=gen)), **options)
    assert labels.shape == (2, z.shape[0]) and labels.dtype == np.int64
    assert [np.unique(row).size for row in labels] == [20, 5]
    assert adjusted_rand_score(fine, labels[0]) >= 0.9
    assert adjusted_rand_score(coarse, labels[1]) >= 0.9
    assert_nested(labels)


def test_planted_hierarchy_is_recovered_by_thresholds_in_both_schemes(gen):
    z, fine, coarse = planted_hierarchy(gen)
    # Ward heights: within a fine cluster ~ noise, between fine clusters ~ fine scale * sqrt(n): pick the cut
    # between the largest merge height of each planted level, read off the exact tree
    from scipy.cluster.hierarchy import linkage

    from hcl_plugin.geometry import logmap0

    heights = np.sort(linkage(logmap0(z, C).numpy(), "ward")[:, 2])[::-1]
    # undoing the top 4 merges leaves the 5 coarse clusters, undoing the top 19 the 20 fine ones
    deltas = [float(np.sqrt(heights[18] * heights[19])), float(np.sqrt(heights[3] * heights[4]))]
    exact = hierarchical_labels(z, C, thresholds=deltas)
    assert [np.unique(row).size for row in exact] == [20, 5]
    two_stage = hierarchical_labels(z, C, thresholds=deltas, max_exact=100, num_centroids=200)
    for labels in (exact, two_stage):
        assert adjusted_rand_score(fine, labels[0]) >= 0.9
        assert adjusted_rand_score(coarse, labels[1]) >= 0.9
        assert_nested(labels)


def test_levels_are_nested_and_counts_exact_on_unstructured_data(gen):
    z = expmap0(torch.randn(400, 8, generator=gen, dtype=torch.float64), C)
    for options in ({}, {"max_exact": 50, "num_centroids": 120}):
        labels = hierarchical_labels(z, C, n_clusters=[60, 17, 3, 1], **options)
        assert [np.unique(row).size for row in labels] == [60, 17, 3, 1]
        assert_nested(labels)


def test_two_stage_is_deterministic_for_a_seed(gen):
    z, _, _ = planted_hierarchy(gen, points_per_fine=10)
    a = hierarchical_labels(z, C, n_clusters=[20, 5], max_exact=10, num_centroids=100, seed=3)
    b = hierarchical_labels(z, C, n_clusters=[20, 5], max_exact=10, num_centroids=100, seed=3)
    np.testing.assert_array_equal(a, b)


def test_accepts_float32_numpy_and_matches_torch(gen):
    z, _, _ = planted_hierarchy(gen, points_per_fine=5)
    from_torch = hierarchical_labels(z.float(), C, n_clusters=[20, 5])
    from_numpy = hierarchical_labels(z.float().numpy(), C, n_clusters=[20, 5])
    np.testing.assert_array_equal(from_torch, from_numpy)


def test_default_num_centroids():
    assert default_num_centroids(50_000, 100) == 2048
    assert default_num_centroids(50_000, 1000) == 4000
    assert default_num_centroids(60_000, 10_000) == 20_000
    assert default_num_centroids(1000, 100) == 1000
    assert default_num_centroids(50_000, None) == 2048


def test_fewer_samples_than_clusters_is_a_clear_error(gen):
    z = expmap0(torch.randn(30, 4, generator=gen, dtype=torch.float64), C)
    with pytest.raises(ValueError, match=r"fewer samples \(30\) than clusters requested \(50"):
        hierarchical_labels(z, C, n_clusters=[50, 10])
    with pytest.raises(ValueError, match="num_centroids"):
        hierarchical_labels(z, C, n_clusters=[20, 10], max_exact=10, num_centroids=15)


def test_nan_embeddings_error_names_the_input(gen):
    z = expmap0(torch.randn(30, 4, generator=gen, dtype=torch.float64), C)
    z[7, 2] = float("nan")
    with pytest.raises(ValueError, match=r"epoch 3 embeddings contains 1 non-finite.*\(7, 2\)"):
        hierarchical_labels(z, C, n_clusters=[5, 2], name="epoch 3 embeddings")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of"),
        ({"n_clusters": [5], "thresholds": [1.0]}, "exactly one of"),
        ({"n_clusters": [5, 10]}, "fine -> coarse"),
        ({"n_clusters": [5, 5]}, "fine -> coarse"),
        ({"n_clusters": [0]}, "positive integers"),
        ({"n_clusters": [2.5]}, "positive integers"),
        ({"thresholds": [2.0, 1.0]}, "fine -> coarse"),
        ({"thresholds": [-1.0]}, "finite values > 0"),
    ],
)
def test_bad_cuts_are_rejected(kwargs, message, gen):
    z = expmap0(torch.randn(30, 4, generator=gen, dtype=torch.float64), C)
    with pytest.raises(ValueError, match=message):
        hierarchical_labels(z, C, **kwargs)


def test_points_outside_the_ball_and_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="embeddings has 1 point"):
        hierarchical_labels(torch.tensor([[0.1, 0.0], [2.0, 0.0], [0.0, 0.3]]), C, n_clusters=[2])
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        hierarchical_labels(torch.zeros(5), C, n_clusters=[2])


# ---------------------------------------------------------------- similarity levels


def test_similarity_levels_hand_example():
    labels = np.array([[0, 0, 1, 2, 3], [0, 0, 0, 1, 1]])  # fine, coarse (K = 2)
    expected = np.array(
        [
            [2, 2, 1, 0, 0],
            [2, 2, 1, 0, 0],
            [1, 1, 2, 0, 0],
            [0, 0, 0, 2, 1],
            [0, 0, 0, 1, 2],
        ]
    )
    got = similarity_levels(labels)
    assert isinstance(got, np.ndarray) and got.dtype == np.int64
    np.testing.assert_array_equal(got, expected)


def test_similarity_levels_semantics_on_random_hierarchies(gen):
    n, counts = 60, [12, 6, 2]
    z = expmap0(torch.randn(n, 4, generator=gen, dtype=torch.float64), C)
    labels = torch.as_tensor(hierarchical_labels(z, C, n_clusters=counts))
    s = similarity_levels(labels)
    assert isinstance(s, torch.Tensor) and s.dtype == torch.int64
    assert torch.equal(s, s.T)
    assert torch.all(s.diagonal() == len(counts))
    for i in range(n):
        for j in range(n):
            shared = [k for k in range(len(counts)) if labels[k, i] == labels[k, j]]
            assert s[i, j] == (len(counts) - shared[0] if shared else 0)


def test_similarity_levels_first_shared_level_counts_when_not_nested():
    labels = torch.tensor([[0, 0, 1], [0, 1, 1]])  # 0~1 at level 0, 1~2 only at level 1
    s = similarity_levels(labels)
    assert s[0, 1] == 2 and s[1, 2] == 1 and s[0, 2] == 0


@pytest.mark.parametrize("bad", [np.zeros(5, dtype=int), np.zeros((0, 5), dtype=int), np.zeros((2, 5))])
def test_similarity_levels_bad_input(bad):
    with pytest.raises(ValueError, match="labels must"):
        similarity_levels(bad)


def test_uhml_modules_import_no_training_framework():
    import subprocess
    import sys

    frameworks = ["lightly", "pytorch_lightning", "lightning", "mmcv", "mmengine", "mmselfsup", "mmdet"]
    code = (
        "import sys, hcl_plugin.uhml, hcl_plugin.eval, hcl_plugin.losses.hierarchical_log_ratio\n"
        f"print(','.join(m for m in {frameworks!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "", f"UHML modules imported {out}"
