"""Poincaré geometry against geoopt (float64), 50-digit references, properties and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hcl_plugin.geometry import (
    Curvature,
    ball_margin,
    clip_features,
    dist,
    dist0,
    expmap0,
    logmap0,
    pairwise_dist,
    project,
)
from tests.conftest import ball_points
from tests.references import direct_dist64, mp_dist

CURVATURES = [0.05, 1.0, 2.5]


def geoopt_ball(geoopt, c):
    # geoopt stores c through a float32 softplus: pass a float64 tensor for an exact c (docs/background.md).
    return geoopt.PoincareBall(c=torch.tensor(c, dtype=torch.float64))


@pytest.mark.parametrize("c", CURVATURES)
def test_maps_match_geoopt_float64(c, gen, geoopt):
    ball = geoopt_ball(geoopt, c)
    # tangent vectors with sqrt(c)|v| <= 5: geoopt projects to (1 - 1e-5) r in float64 beyond that
    v = ball_points(64, 16, c, gen) * 5.2
    torch.testing.assert_close(expmap0(v, c), ball.expmap0(v), rtol=1e-12, atol=1e-12)
    x = ball_points(64, 16, c, gen)
    torch.testing.assert_close(logmap0(x, c), ball.logmap0(x), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(dist0(x, c), ball.dist0(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("c", CURVATURES)
def test_dist_matches_geoopt_float64_random_points(c, gen, geoopt):
    ball = geoopt_ball(geoopt, c)
    x, y = ball_points(128, 16, c, gen), ball_points(128, 16, c, gen)
    torch.testing.assert_close(dist(x, y, c), ball.dist(x, y), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(pairwise_dist(x, y[:32], c), ball.dist(x[:, None], y[None, :32]), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("rel_norm", [0.98, 0.999])
@pytest.mark.parametrize("c", [0.05, 1.0])
def test_dist_near_boundary_against_50_digit_reference(rel_norm, c, gen):
    x = ball_points(12, 8, c, gen, rel_norm=rel_norm)
    y = ball_points(12, 8, c, gen, rel_norm=rel_norm)
    ref = torch.tensor([mp_dist(a, b, c) for a, b in zip(x, y)], dtype=torch.float64)
    torch.testing.assert_close(dist(x, y, c), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pairwise_dist(x, y, c).diagonal(), ref, rtol=1e-9, atol=1e-9)
    # float32: the matmul form keeps 1e-4 relative accuracy for far-apart pairs at the boundary
    torch.testing.assert_close(pairwise_dist(x.float(), y.float(), c).diagonal().double(), ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(dist(x.float(), y.float(), c).double(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rel_norm", [0.98, 0.999])
def test_near_boundary_agrees_with_geoopt_and_is_closer_to_the_exact_value(rel_norm, gen, geoopt):
    c = 0.05
    ball = geoopt_ball(geoopt, c)
    x, y = ball_points(12, 8, c, gen, rel_norm=rel_norm), ball_points(12, 8, c, gen, rel_norm=rel_norm)
    exact = torch.tensor([mp_dist(a, b, c) for a, b in zip(x, y)], dtype=torch.float64)
    ours, theirs = dist(x, y, c), ball.dist(x, y)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)  # geoopt's own float64 error is ~1e-7..1e-6
    assert (ours - exact).abs().max() <= (theirs - exact).abs().max()
    torch.testing.assert_close(expmap0(logmap0(x, c), c), ball.expmap0(ball.logmap0(x)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("c", [0.05, 1.0])
def test_identical_and_near_identical_pairs_against_geoopt(c, gen, geoopt):
    ball = geoopt_ball(geoopt, c)
    x0 = ball_points(32, 16, c, gen)
    near = x0 + 1e-7 / math.sqrt(c) * torch.randn(32, 16, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(dist(x0, near, c), ball.dist(x0, near), rtol=1e-6, atol=1e-12)
    assert torch.allclose(ball.dist(x0, x0), torch.zeros(32, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("c", [0.05, 1.0])
def test_identical_and_near_identical_pairs(c, gen):
    x = ball_points(32, 16, c, gen)
    assert torch.equal(dist(x, x, c), torch.zeros(32, dtype=torch.float64))
    assert torch.equal(dist(x.float(), x.float(), c), torch.zeros(32))
    # float32 distance of pairs 1e-6 radii apart, from the explicit difference: within 1e-4 relative
    step = torch.randn(32, 16, generator=gen, dtype=torch.float64)
    y = x + 1e-6 / math.sqrt(c) * step / step.norm(dim=1, keepdim=True)
    x32, y32 = x.float(), y.float()
    ref = torch.tensor([mp_dist(a, b, c) for a, b in zip(x32.double(), y32.double())], dtype=torch.float64)
    got = dist(x32, y32, c).double()
    assert ((got - ref).abs() / ref).max() < 1e-4


def test_dist_gradient_of_identical_pair_is_zero_and_finite(gen):
    x = ball_points(8, 4, 0.05, gen).requires_grad_()
    y = x.detach().clone().requires_grad_()
    dist(x, y, 0.05).sum().backward()
    assert torch.isfinite(x.grad).all() and torch.equal(x.grad, torch.zeros_like(x))


@pytest.mark.parametrize("fn_name", ["dist", "pairwise_dist", "expmap0", "logmap0", "dist0"])
def test_float32_gradients_match_float64_autograd(fn_name, gen):
    c = 0.05
    fns = {
        "dist": lambda a, b: dist(a, b, c),
        "pairwise_dist": lambda a, b: pairwise_dist(a, b, c),
        "expmap0": lambda a, b: expmap0(a * 3, c),
        "logmap0": lambda a, b: logmap0(a, c),
        "dist0": lambda a, b: dist0(a, c),
    }
    fn = fns[fn_name]
    x64, y64 = ball_points(16, 8, c, gen), ball_points(16, 8, c, gen)
    w = torch.randn_like(fn(x64, y64))
    grads = {}
    for dtype in (torch.float64, torch.float32):
        x, y = (t.detach().clone().to(dtype).requires_grad_() for t in (x64, y64))
        (fn(x, y) * w.to(dtype)).sum().backward()
        grads[dtype] = (x.grad, y.grad)
    for g32, g64 in zip(grads[torch.float32], grads[torch.float64]):
        if g64 is None:
            assert g32 is None
            continue
        assert torch.isfinite(g32).all()
        torch.testing.assert_close(g32.double(), g64, rtol=2e-4, atol=2e-4 * g64.abs().max().item())


def test_gradcheck_float64(gen):
    c = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    x = ball_points(5, 3, 0.3, gen).requires_grad_()
    y = ball_points(4, 3, 0.3, gen).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, cc: pairwise_dist(a, b, cc), (x, y, c))
    assert torch.autograd.gradcheck(lambda a, b, cc: dist(a, b[:1], cc), (x, y, c))
    assert torch.autograd.gradcheck(lambda a, cc: logmap0(expmap0(a, cc) * 0.9, cc), (x, c))


def test_project_is_dtype_aware_and_idempotent(gen):
    c = 0.05
    far = torch.randn(64, 8, generator=gen, dtype=torch.float64) * 100
    for dtype in (torch.float32, torch.float64):
        p = project(far.to(dtype), c)
        max_norm = (1 - ball_margin(dtype)) / math.sqrt(c)
        assert (p.norm(dim=1) <= max_norm * (1 + 4 * torch.finfo(dtype).eps)).all()
        assert torch.equal(project(p, c), p)
        assert (c * (p.double() ** 2).sum(1) < 1).all()
    inside = ball_points(16, 8, c, gen, rel_norm=0.999)
    assert torch.equal(project(inside, c), inside)  # 0.999 r is inside the float64 margin: untouched
    assert ball_margin(torch.float16) == ball_margin(torch.float32)


def test_expmap0_saturation_stays_in_ball():
    v = torch.full((2, 4), 1e4)
    x = expmap0(v, 1.0)
    assert torch.isfinite(x).all() and (x.norm(dim=1) < 1).all()
    assert torch.isfinite(logmap0(x, 1.0)).all() and torch.isfinite(dist0(x, 1.0)).all()


def test_clip_features(gen):
    v = torch.randn(100, 8, generator=gen) * 5
    clipped = clip_features(v, 2.3)
    norms = v.norm(dim=1)
    assert torch.allclose(clipped.norm(dim=1), norms.clamp(max=2.3), rtol=1e-6)
    small = norms < 2.3
    assert torch.equal(clipped[small], v[small])


# ---------------------------------------------------------------- properties (hypothesis)

finite = st.floats(-4.0, 4.0, allow_nan=False, width=64)
vectors = st.lists(finite, min_size=3, max_size=3)
curv = st.floats(0.01, 4.0)


@settings(max_examples=60, deadline=None)
@given(vectors, vectors, vectors, curv)
def test_metric_axioms(a, b, e, c):
    x, y, z = (expmap0(torch.tensor([v], dtype=torch.float64), c) for v in (a, b, e))
    assert dist(x, x, c).item() == 0.0
    assert dist(x, y, c).item() >= 0.0
    assert math.isclose(dist(x, y, c).item(), dist(y, x, c).item(), rel_tol=1e-12, abs_tol=1e-12)
    assert dist(x, z, c).item() <= dist(x, y, c).item() + dist(y, z, c).item() + 1e-9


@settings(max_examples=60, deadline=None)
@given(vectors, curv)
def test_logmap0_inverts_expmap0(v, c):
    v = torch.tensor([v], dtype=torch.float64)
    x = expmap0(v, c)
    if (math.sqrt(c) * v.norm()).item() < 8:  # beyond ~9.3, tanh passes 1 - margin and project() takes over
        torch.testing.assert_close(logmap0(x, c), v, rtol=1e-7, atol=1e-9)
    torch.testing.assert_close(expmap0(logmap0(x, c), c), x, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(project(x, c), x, rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(vectors, vectors, curv)
def test_dist0_and_direct_formula_agree(a, b, c):
    x, y = (expmap0(torch.tensor([v], dtype=torch.float64) * 0.5, c) for v in (a, b))
    torch.testing.assert_close(dist(x, y, c), direct_dist64(x, y, c), rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(dist(torch.zeros_like(x), x, c), dist0(x, c), rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- precision and autocast


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_are_computed_in_float32(dtype, gen):
    x, y = ball_points(16, 8, 0.05, gen).to(dtype), ball_points(16, 8, 0.05, gen).to(dtype)
    d = dist(x, y, 0.05)
    assert d.dtype == torch.float32
    torch.testing.assert_close(d, dist(x.float(), y.float(), 0.05))
    with torch.autocast("cpu", dtype=dtype):
        pd = pairwise_dist(x.float(), y.float(), 0.05)
    assert pd.dtype == torch.float32
    torch.testing.assert_close(pd, pairwise_dist(x.float(), y.float(), 0.05))


# ---------------------------------------------------------------- curvature and bad input


def test_curvature_module():
    fixed = Curvature(0.05)
    assert fixed() == 0.05 and not list(fixed.parameters())
    learn = Curvature(0.05, learnable=True)
    assert torch.isclose(learn(), torch.tensor(0.05))
    x = expmap0(torch.randn(4, 3), learn())
    dist0(x, learn()).sum().backward()
    assert learn.log_c.grad is not None and torch.isfinite(learn.log_c.grad)
    with pytest.raises(ValueError, match="c must be"):
        Curvature(0.0)


@pytest.mark.parametrize("bad_c", [0.0, -1.0, float("nan"), torch.tensor(-0.5)])
def test_nonpositive_curvature_raises(bad_c):
    with pytest.raises(ValueError, match="curvature c must be finite and > 0"):
        expmap0(torch.randn(2, 3), bad_c)


def test_points_outside_ball_raise_with_name_and_index():
    x = torch.zeros(3, 2)
    x[1] = torch.tensor([5.0, 0.0])
    with pytest.raises(ValueError, match=r"y has 1 point.*index \(1,\)"):
        dist(torch.zeros(3, 2), x, 0.05)
    with pytest.raises(ValueError, match="x has 1 point"):
        logmap0(x, 0.05)


def test_nan_input_is_named():
    x = torch.zeros(3, 2)
    x[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value.*\(2, 1\)"):
        pairwise_dist(x, torch.zeros(2, 2), 0.05)


def test_pairwise_shape_mismatch_prints_shapes():
    with pytest.raises(ValueError, match=r"\(4, 3\) and \(5, 2\)"):
        pairwise_dist(torch.zeros(4, 3), torch.zeros(5, 2), 0.05)


def test_batched_value_checks_read_the_device_once_and_name_the_first_bad_input(gen):
    from hcl_plugin.geometry.poincare import check_all_in_ball
    from hcl_plugin.utils.checks import check_all_finite
    from hcl_plugin.utils.sync_count import HostSyncCounter

    good = ball_points(4, 3, 0.5, gen)
    outside = torch.full((2, 3), 5.0, dtype=torch.float64)
    nan = good.clone()
    nan[1, 2] = float("nan")
    with HostSyncCounter() as syncs:
        check_all_in_ball([(good, "query"), (good, "positive"), (good, "negatives")], 0.5)
        check_all_finite([(good, "query"), (good, "positive")])
        check_all_in_ball([(good, "query")], torch.tensor(0.5, dtype=torch.float64))  # c checked in the same read
    assert syncs.count == 3, syncs.report()
    with pytest.raises(ValueError, match="positive has 2 point"):
        check_all_in_ball([(good, "query"), (outside, "positive"), (nan, "negatives")], 0.5)
    with pytest.raises(ValueError, match=r"negatives contains 1 non-finite value\(s\) \(NaN or Inf\), first at index \(1, 2\)"):
        check_all_in_ball([(good, "query"), (nan, "negatives")], 0.5)
    with pytest.raises(ValueError, match="b contains 1 non-finite"):
        check_all_finite([(good, "a"), (nan, "b"), (nan, "c")])
    with pytest.raises(ValueError, match="curvature c must be finite and > 0"):
        check_all_in_ball([(good, "x")], torch.tensor(-1.0))
