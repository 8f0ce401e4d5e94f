"""HierarchicalLogRatioLoss: loop reference, exact zero on planted ratios, tiny distances, precision, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from hcl_plugin.uhml import similarity_levels
from hcl_plugin.geometry import Curvature, dist, expmap0
from hcl_plugin.losses.hierarchical_log_ratio import HierarchicalLogRatioLoss
from tests.conftest import ball_points

C = 1.0


def nested_levels(batch: int, gen: torch.Generator) -> torch.Tensor:
    """Similarity levels of random nested two-level labels (fine clusters inside coarse ones)."""
    fine = torch.randint(0, max(2, batch // 2), (batch,), generator=gen)
    coarse = fine % 3
    return similarity_levels(torch.stack([fine, coarse]))


def reference_loss(z, levels, omega, distance, c, min_distance=1e-5):
    """The paper's formula term by term: loops over anchor i, j and l, distances one pair at a time."""
    floor = min_distance / math.sqrt(c)

    def d(a, b):
        raw = dist(a, b, c) if distance == "poincare" else (a - b).norm()
        return raw.clamp_min(floor)

    terms = []
    batch = z.shape[0]
    for i in range(batch):
        for j in range(batch):
            for l in range(batch):
                if len({i, j, l}) < 3 or levels[i, j] <= levels[i, l]:
                    continue
                gap = int(levels[i, j] - levels[i, l])
                terms.append((torch.log(d(z[i], z[j]) / d(z[i], z[l])) - gap * math.log(omega)) ** 2)
    return torch.stack(terms).mean()


@pytest.mark.parametrize("distance", ["poincare", "euclidean"])
@pytest.mark.parametrize("omega", [0.1, 0.6])
def test_matches_loop_reference_in_float64(distance, omega, gen):
    z = ball_points(9, 5, C, gen)
    levels = nested_levels(9, gen)
    z_ref, z_got = z.clone().requires_grad_(), z.clone().requires_grad_()
    ref = reference_loss(z_ref, levels, omega, distance, C)
    got = HierarchicalLogRatioLoss(omega, distance, C)(z_got, levels)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=0)
    ref.backward()
    got.backward()
    torch.testing.assert_close(z_got.grad, z_ref.grad, rtol=1e-10, atol=1e-12)


def test_curvature_other_than_one_and_learnable_curvature(gen):
    c = 0.05
    z = ball_points(8, 4, c, gen, rel_norm=None)
    levels = nested_levels(8, gen)
    torch.testing.assert_close(
        HierarchicalLogRatioLoss(0.1, "poincare", c)(z, levels), reference_loss(z, levels, 0.1, "poincare", c), rtol=1e-12, atol=0
    )
    curvature = Curvature(c, learnable=True)
    loss = HierarchicalLogRatioLoss(0.1, "poincare", curvature)(z, levels)
    (grad,) = torch.autograd.grad(loss, [p for p in curvature.parameters()])
    assert torch.isfinite(grad).all() and grad.abs().item() > 0


def ultrametric_points(omega: float, distance: str, c: float, num_coarse=3, fine_per_coarse=2, per_fine=2):
    """Points whose pairwise distances are D1 (same fine), D1/omega (same coarse), D1/omega^2 (else).

    Orthonormal directions u (coarse), v (fine), w (point): x = A u + B v + Cw w, so every Euclidean
    distance depends only on the level of the pair, and all norms are equal (so the Poincaré distance is
    a fixed increasing function of the Euclidean one, which is inverted here).
    """
    num_fine = num_coarse * fine_per_coarse
    n = num_fine * per_fine
    top = 2.0
    targets = [top * omega**2, top * omega, top]  # D1 < D2 < D3
    if distance == "euclidean":
        e1, e2, e3 = targets
    else:
        s = [math.sinh(math.sqrt(c) * t / 2) / math.sqrt(c) for t in targets]
        e3 = (math.sqrt(1 + 2 * c * s[2] ** 2) - 1) / (c * s[2])
        gap = 1 - c * e3**2 / 2  # 1 - c|x|^2, the same for every point
        e1, e2, e3 = (gap * v for v in s)
    a, b, w = math.sqrt((e3**2 - e2**2) / 2), math.sqrt((e2**2 - e1**2) / 2), e1 / math.sqrt(2)
    fine = torch.arange(num_fine).repeat_interleave(per_fine)
    coarse = fine // fine_per_coarse
    eye = torch.eye(num_coarse + num_fine + n, dtype=torch.float64)
    z = a * eye[coarse] + b * eye[num_coarse + fine] + w * eye[num_coarse + num_fine + torch.arange(n)]
    return z, torch.stack([fine, coarse]), targets


@pytest.mark.parametrize("distance", ["poincare", "euclidean"])
@pytest.mark.parametrize("omega", [0.1, 0.5])
def test_zero_when_distance_ratios_match_omega_powers(distance, omega, gen):
    z, labels, targets = ultrametric_points(omega, distance, C)
    levels = similarity_levels(labels)
    # verify the construction: each pair's distance is the target of its level
    pair_dist = dist(z[:, None], z[None], C) if distance == "poincare" else torch.cdist(z, z)
    off_diagonal = ~torch.eye(z.shape[0], dtype=torch.bool)
    for level, target in zip((2, 1, 0), targets):
        at_level = pair_dist[(levels == level) & off_diagonal]
        assert at_level.numel() > 0
        torch.testing.assert_close(at_level, torch.full_like(at_level, target), rtol=1e-12, atol=0)
    loss_fn = HierarchicalLogRatioLoss(omega, distance, C)
    assert loss_fn(z, levels).item() < 1e-24
    # and it is not zero for a slightly different configuration or a different omega
    nudged = z + 1e-3 * torch.randn(z.shape, generator=gen, dtype=z.dtype)
    assert loss_fn(nudged, levels).item() > 1e-9
    assert HierarchicalLogRatioLoss(omega * 0.9, distance, C)(z, levels).item() > 1e-4


@pytest.mark.parametrize("distance", ["poincare", "euclidean"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identical_points_give_finite_gradients_and_the_floored_value(distance, dtype, gen):
    z = ball_points(10, 6, C, gen)
    z[3] = z[0]
    z[7] = z[0]  # three copies of one point
    z[5] = z[2] + 1e-9  # and a near-duplicate below the floor
    levels = nested_levels(10, gen)
    leaf = z.to(dtype).requires_grad_()
    loss = HierarchicalLogRatioLoss(0.1, distance, C)(leaf, levels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(leaf.grad).all()
    torch.testing.assert_close(
        loss.double(), reference_loss(leaf.detach().double(), levels, 0.1, distance, C), rtol=1e-12 if dtype == torch.float64 else 1e-5, atol=0
    )


def test_float32_and_autocast_match_float64_with_close_pairs(gen):
    z = ball_points(32, 16, C, gen)
    z[1] = z[0] + 1e-4 * torch.randn(16, generator=gen, dtype=torch.float64)  # a close pair (matmul form would cancel)
    z32 = z.float()
    levels = nested_levels(32, gen)
    loss_fn = HierarchicalLogRatioLoss(0.1, "poincare", C)
    ref = loss_fn(z32.double(), levels)
    got = loss_fn(z32, levels)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), ref, rtol=2e-5, atol=0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = loss_fn(z32, levels)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, got)
    assert loss_fn(z32.to(torch.bfloat16), levels).dtype == torch.float32


def test_no_valid_triplet_gives_zero_with_zero_gradient(gen):
    z = ball_points(6, 3, C, gen).requires_grad_()
    loss = HierarchicalLogRatioLoss()(z, torch.ones(6, 6, dtype=torch.int64))
    loss.backward()
    assert loss.item() == 0.0 and torch.all(z.grad == 0)


def test_batch_128_runs_with_finite_gradients(gen):
    z = expmap0(torch.randn(128, 128, generator=gen), C).requires_grad_()
    levels = similarity_levels(torch.stack([torch.arange(128) // 8, torch.arange(128) // 32]))
    loss = HierarchicalLogRatioLoss()(z, levels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"omega": 0.0}, "omega must lie in"),
        ({"omega": 1.0}, "omega must lie in"),
        ({"omega": 2.0}, "omega must lie in"),
        ({"distance": "cosine"}, "distance must be one of"),
        ({"c": -1.0}, "c must be finite and > 0"),
        ({"min_distance": 0.0}, "min_distance"),
    ],
)
def test_bad_construction_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HierarchicalLogRatioLoss(**kwargs)


def test_bad_call_arguments(gen):
    loss_fn = HierarchicalLogRatioLoss()
    z = ball_points(5, 3, C, gen)
    levels = torch.zeros(5, 5, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"z must have shape \(B, D\)"):
        loss_fn(z[0], levels)
    with pytest.raises(ValueError, match=r"levels must have shape \(B, B\)"):
        loss_fn(z, levels[:4])
    with pytest.raises(ValueError, match="levels must be an integer"):
        loss_fn(z, levels.double())
    bad = z.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"z contains 1 non-finite value\(s\).*\(2, 1\)"):
        loss_fn(bad, levels)
    with pytest.raises(ValueError, match="outside the Poincaré ball"):
        loss_fn(z * 10, levels)
    # the Euclidean option does not require the ball
    assert torch.isfinite(HierarchicalLogRatioLoss(distance="euclidean")(z * 10, nested_levels(5, gen)))
