"""Numerical hardening of the core (issue 12): each fix has a test that raises or computes the right value.

1. float32 gradients of the hyperbolic loss for near-duplicate negatives and collapsed batches
   (queue and in-batch mode, also at 0.999 of the radius) against a float64 geoopt reference;
2. huge finite inputs to expmap0 / project / clip_features keep their direction; NaN/Inf raise;
3. float64 keys enqueued into a float32 HyperbolicMemoryBank stay strictly inside the ball;
4. infinite or NaN temperature / lambda / curvature raise at construction;
5. an empty batch raises one ValueError naming the input, at every public entry point.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from hcl_plugin.geometry import (
    Curvature,
    ball_margin,
    check_in_ball,
    clip_features,
    dist,
    dist0,
    expmap0,
    logmap0,
    project,
)
from hcl_plugin.lightly import HCLLoss as LightlyHCLLoss
from hcl_plugin.lightly import HyperbolicNTXentLoss
from hcl_plugin.losses import HCLLoss, HierarchicalLogRatioLoss, HyperbolicInfoNCELoss, InfoNCELoss
from hcl_plugin.losses import poincare_logsumexp as lse_module
from hcl_plugin.losses.contrastive_batch import in_batch as in_batch_layout
from hcl_plugin.losses.poincare_logsumexp import (
    PoincareNegativeLogSumExp,
    augment_key,
    augment_query,
    near_ratio,
    poincare_negative_logsumexp,
)
from hcl_plugin.modules import HyperbolicMemoryBank, MemoryBank, PoincareProjectionHead
from tests.conftest import ball_points

C, TAU = 0.05, 0.2
RADIUS = C**-0.5
GRAD_RTOL = 1e-3  # per row of the gradient, float32 against float64
NEAR_SCALES = (1e-6, 1e-5, 1e-4, 1e-3)  # perturbations, relative to the radius


# ---------------------------------------------------------------- helpers


def geoopt_ball(geoopt, c: float):
    # geoopt stores c through a float32 softplus: a float64 tensor keeps c exact
    return geoopt.PoincareBall(c=torch.tensor(c, dtype=torch.float64))


def within(x: torch.Tensor, rel_max: float) -> torch.Tensor:
    """Rows of ``x`` pulled back to at most ``rel_max`` of the radius, rounded to float32 (exact in float64)."""
    norm = x.norm(dim=1, keepdim=True)
    return (x * torch.clamp(rel_max * RADIUS / norm, max=1.0)).float().double()


def perturbed(x: torch.Tensor, scale: float, gen: torch.Generator) -> torch.Tensor:
    """``x`` plus random perturbations of norm ``scale`` radii."""
    u = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    return x + scale * RADIUS * u / u.norm(dim=1, keepdim=True)


def reference_loss(ball, q: torch.Tensor, p: torch.Tensor, negatives) -> torch.Tensor:
    """Hyperbolic InfoNCE in float64 with geoopt's distance (queue mode, or in-batch for negatives=None)."""
    if negatives is not None:
        logits = -torch.cat([ball.dist(q, p)[:, None], ball.dist(q[:, None], negatives[None])], dim=1) / TAU
        return -F.log_softmax(logits, dim=1)[:, 0].mean()
    z = torch.cat([q, p])
    n, b = z.shape[0], q.shape[0]
    rows, cols = (~torch.eye(n, dtype=torch.bool)).nonzero(as_tuple=True)  # no self pairs: d(z, z) has no gradient
    logits = torch.full((n, n), float("-inf"), dtype=z.dtype).index_put((rows, cols), -ball.dist(z[rows], z[cols]) / TAU)
    return F.cross_entropy(logits, (torch.arange(n) + b) % n)


def loss_and_grads(fn, *tensors: torch.Tensor, dtype: torch.dtype):
    leaves = [t.detach().clone().to(dtype).requires_grad_() for t in tensors]
    loss = fn(*leaves)
    return loss, torch.autograd.grad(loss, leaves)


def row_errors(got: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Relative error of each row of a gradient: |got_i - ref_i| / |ref_i|."""
    return (got.double() - ref).norm(dim=1) / ref.norm(dim=1)


def near_duplicate_case(mode: str, rel_norm, scale: float, gen: torch.Generator):
    """(query, positive, negatives) in float32 values held as float64; negatives None = in-batch."""
    rel_max = 0.999 if rel_norm else 0.95
    if mode == "queue":
        q = within(ball_points(16, 32, C, gen, rel_norm), rel_max)
        p = within(ball_points(16, 32, C, gen, rel_norm), rel_max)
        near = [perturbed(q, s, gen) for s in NEAR_SCALES]
        negatives = within(torch.cat(near + [ball_points(32, 32, C, gen, rel_norm)]), rel_max)
        return q, p, negatives
    # collapsed in-batch embeddings: every view within `scale` radii of one point
    z = within(perturbed(ball_points(1, 32, C, gen, rel_norm).expand(32, 32), scale, gen), rel_max)
    return z[:16], z[16:], None


# ---------------------------------------------------------------- 1. near pairs


@pytest.mark.parametrize(
    "mode, scale, rel_norm",
    [
        ("queue", None, None),
        ("in_batch", 1e-6, None),
        ("in_batch", 1e-4, None),
        ("in_batch", 1e-3, None),
        ("queue", None, 0.999),
        ("in_batch", 1e-6, 0.999),
        ("in_batch", 1e-4, 0.999),
        # not ("in_batch", 1e-3, 0.999): views spread over 1e-3 radii at 0.999 r reach ~1e-3 in float32
        # with any algorithm (1 - c|x|^2 ~ 2e-3 holds only ~4 significant digits); an explicit-difference
        # float32 computation errs as much there
    ],
)
def test_float32_gradients_of_near_pairs_match_float64(mode, scale, rel_norm, gen, geoopt):
    q, p, negatives = near_duplicate_case(mode, rel_norm, scale, gen)
    ball = geoopt_ball(geoopt, C)
    inputs = (q, p) if negatives is None else (q, p, negatives)
    ref, ref_grads = loss_and_grads(lambda *t: reference_loss(ball, t[0], t[1], t[2] if len(t) > 2 else None),
                                    *inputs, dtype=torch.float64)
    loss_fn = HyperbolicInfoNCELoss(TAU, C)
    got, got_grads = loss_and_grads(lambda *t: loss_fn(*t), *inputs, dtype=torch.float32)
    assert got.dtype == torch.float32
    loss_rtol = 2e-5 if rel_norm else 1e-6  # the loss is conditioned like the gradient near the boundary
    assert abs(got.item() - ref.item()) <= loss_rtol * abs(ref.item())
    # query and positive rows always; the queue's rows are left out: a far key's gradient is
    # exp(-d/τ) ~ 1e-70 at the boundary, below float32's range
    for name, g, r in zip(("query", "positive"), got_grads, ref_grads):
        err = row_errors(g, r)
        assert err.max().item() <= GRAD_RTOL, f"{name}: row {err.argmax().item()} off by {err.max().item():.3g}"


@pytest.mark.parametrize("flags_per_call", [False, True])
def test_near_pairs_are_recomputed_and_far_pairs_are_not(flags_per_call, gen, monkeypatch):
    monkeypatch.setattr(lse_module, "keep_near_flags", lambda device: flags_per_call)  # True: the accelerator path
    monkeypatch.setattr(lse_module, "MIN_BLOCK_ROWS", 1)
    q = ball_points(8, 16, C, gen).float()
    k = torch.cat([q[:3] + 1e-5, ball_points(8, 16, C, gen).float()])
    c = torch.tensor(C)
    _, near = PoincareNegativeLogSumExp.apply(augment_query(q, c), augment_key(k, c), 2 / (TAU * C**0.5),
                                              None, 22, None, near_ratio(torch.float32))  # 2-row blocks
    listed = near[near >= 0]  # the device path pads its fixed-size list with -1
    assert sorted(listed.tolist()) == [i * k.shape[0] + i for i in range(3)]  # (i, i) for the 3 perturbed copies
    if flags_per_call:
        assert near.numel() == lse_module.near_capacity(q.shape[0], k.shape[0])


@pytest.mark.parametrize("mode", ["queue", "in_batch"])
def test_the_accelerator_flag_path_gives_the_same_result(mode, gen, monkeypatch):
    """Flags kept for one gather per call (accelerators) or gathered per block (CPU): the same pairs, bit for bit."""
    q, p, negatives = near_duplicate_case(mode, None, 1e-4, gen)
    inputs = (q, p) if negatives is None else (q, p, negatives)
    monkeypatch.setattr(lse_module, "MIN_BLOCK_ROWS", 5)
    loss = HyperbolicInfoNCELoss(TAU, C, block_elements=1)  # blocks of 5 rows
    per_block, g_block = loss_and_grads(loss, *inputs, dtype=torch.float32)
    monkeypatch.setattr(lse_module, "keep_near_flags", lambda device: True)
    per_call, g_call = loss_and_grads(loss, *inputs, dtype=torch.float32)
    assert torch.equal(per_block, per_call)
    for a, b in zip(g_block, g_call):
        assert torch.equal(a, b)


@pytest.mark.parametrize("capacity_per_row", [0, 1, 2])
def test_device_path_beyond_its_capacity_keeps_the_product_value_of_the_rows_that_do_not_fit(
        capacity_per_row, gen, monkeypatch):
    """Device path, more near pairs than it recomputes: the rows that fit match the CPU path, the later
    rows get the matrix-product value of all their pairs (finite), and nothing reads the device."""
    from hcl_plugin.utils.sync_count import HostSyncCounter

    q = ball_points(6, 8, C, gen)
    k = torch.cat([q + 1e-9, q - 1e-9, ball_points(4, 8, C, gen)])  # every row has 2 near negatives
    c = torch.tensor(C, dtype=torch.float64)
    monkeypatch.setattr(lse_module, "MIN_BLOCK_ROWS", 2)
    monkeypatch.setattr(lse_module, "MIN_NEAR_CHUNK", 1)
    monkeypatch.setattr(lse_module, "NEAR_CAPACITY_PER_ROW", capacity_per_row)
    exact = poincare_negative_logsumexp(q, k, c, TAU, block_elements=1)  # the CPU path: no capacity
    monkeypatch.setattr(lse_module, "keep_near_flags", lambda device: True)
    workspace = lse_module.BlockWorkspace()
    qq = q.clone().requires_grad_()
    with HostSyncCounter() as syncs:
        got = poincare_negative_logsumexp(qq, k, c, TAU, block_elements=1, workspace=workspace)
        got.sum().backward()
    assert syncs.count == 0, syncs.report()
    fit = min(q.shape[0], capacity_per_row * q.shape[0] // 2)  # rows whose 2 near pairs fit
    torch.testing.assert_close(got[:fit], exact[:fit], rtol=1e-12, atol=0)
    plain = PoincareNegativeLogSumExp.apply(augment_query(q, c), augment_key(k, c), 2 / (TAU * c.sqrt()), None, 1)
    torch.testing.assert_close(got[fit:], plain[fit:], rtol=1e-12, atol=0)
    assert torch.isfinite(qq.grad).all()
    assert int(workspace.near_pairs_flagged) == 2 * q.shape[0]


def test_collapsed_in_batch_loss_and_gradient_are_exact(gen, geoopt):
    """Before the fix the float32 gradient of a collapsed batch pointed the wrong way (cosine < 0.5)."""
    q, p, _ = near_duplicate_case("in_batch", None, 1e-5, gen)
    ref, (ref_q, ref_p) = loss_and_grads(lambda a, b: reference_loss(geoopt_ball(geoopt, C), a, b, None), q, p,
                                         dtype=torch.float64)
    got, (got_q, got_p) = loss_and_grads(HyperbolicInfoNCELoss(TAU, C), q, p, dtype=torch.float32)
    cosine = F.cosine_similarity(torch.cat([got_q, got_p]).double().flatten(), torch.cat([ref_q, ref_p]).flatten(), dim=0)
    assert cosine.item() >= 1 - 1e-6
    assert abs(got.item() - ref.item()) <= 1e-6 * abs(ref.item())


def test_learnable_curvature_gradient_with_near_pairs(gen):
    q, p, negatives = near_duplicate_case("queue", None, None, gen)
    grads = {}
    for dtype in (torch.float64, torch.float32):
        curv = Curvature(C, learnable=True).to(dtype)
        with torch.no_grad():
            curv.log_c.fill_(math.log(C))
        HyperbolicInfoNCELoss(TAU, curv)(q.to(dtype), p.to(dtype), negatives.to(dtype)).backward()
        grads[dtype] = curv.log_c.grad.item()
    assert abs(grads[torch.float32] - grads[torch.float64]) <= GRAD_RTOL * abs(grads[torch.float64])


@pytest.mark.parametrize("in_batch", [False, True])
def test_gradcheck_with_a_mix_of_near_and_far_pairs(in_batch, gen, monkeypatch):
    """float64 gradcheck (queries, negatives and c) with θ raised so that about half the pairs take the exact path."""
    monkeypatch.setattr(lse_module, "NEAR_EPS_MULTIPLE", 0.3 / torch.finfo(torch.float64).eps)
    monkeypatch.setattr(lse_module, "MIN_NEAR_CHUNK", 3)  # several chunks
    q = ball_points(5, 4, C, gen).requires_grad_()
    p = ball_points(5, 4, C, gen).requires_grad_()
    k = torch.cat([q.detach()[:3] + 0.05, ball_points(6, 4, C, gen)]).requires_grad_()
    c = torch.tensor(C, dtype=torch.float64, requires_grad=True)
    qa, ka = augment_query(q.detach(), c.detach()), augment_key(k.detach(), c.detach())
    _, near = PoincareNegativeLogSumExp.apply(qa, ka, 1.0, None, 1 << 20, None, lse_module.near_ratio(torch.float64))
    assert 0 < near.numel() < q.shape[0] * k.shape[0]
    if in_batch:
        assert torch.autograd.gradcheck(HyperbolicInfoNCELoss(TAU, C), (q, p))

        def in_batch_lse(a, b, cc):
            batch = in_batch_layout(a, b)
            return poincare_negative_logsumexp(batch.anchors, batch.negatives, cc, TAU, batch.mask, block_elements=1)

        assert torch.autograd.gradcheck(in_batch_lse, (q, p, c))
    else:
        assert torch.autograd.gradcheck(
            lambda a, b, cc: poincare_negative_logsumexp(a, b, cc, TAU, block_elements=1), (q, k, c)
        )


def test_near_pair_chunks_do_not_change_the_result(gen, monkeypatch):
    q, p, _ = near_duplicate_case("in_batch", None, 1e-4, gen)
    loss = HyperbolicInfoNCELoss(TAU, C)
    one, g_one = loss_and_grads(loss, q, p, dtype=torch.float64)
    monkeypatch.setattr(lse_module, "MIN_NEAR_CHUNK", 7)
    many, g_many = loss_and_grads(HyperbolicInfoNCELoss(TAU, C, block_elements=1), q, p, dtype=torch.float64)
    torch.testing.assert_close(many, one, rtol=1e-13, atol=0)
    for a, b in zip(g_many, g_one):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


def test_near_pair_path_runs_on_the_row_with_no_far_pair(gen):
    """All negatives of a row are near: the fused part is empty for it, the result must still be exact."""
    q = ball_points(4, 8, C, gen)
    k = q[:1] + 1e-9  # a single negative: a near duplicate of row 0, far from the other rows
    for dtype in (torch.float64, torch.float32):
        qq, kk = q.to(dtype).clone().requires_grad_(), k.to(dtype)
        lse = poincare_negative_logsumexp(qq, kk, torch.tensor(C, dtype=dtype), TAU)
        expected = -dist(qq.detach().double(), kk.double(), C) / TAU
        torch.testing.assert_close(lse.double(), expected, rtol=1e-5, atol=1e-5)
        lse.sum().backward()
        assert torch.isfinite(qq.grad).all()


# ---------------------------------------------------------------- 2. huge and non-finite inputs


@pytest.mark.parametrize("dtype, magnitude", [(torch.float32, 2e19), (torch.float32, 1e30), (torch.float32, 3e38),
                                              (torch.float64, 1e160), (torch.float64, 1e300)])
def test_huge_finite_inputs_land_at_the_projection_radius_in_their_direction(dtype, magnitude, gen):
    direction = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    direction = direction / direction.abs().amax(dim=1, keepdim=True)  # largest entry +-1: no overflow below
    v = (direction * magnitude).to(dtype)
    assert torch.isfinite(v).all() and not torch.isfinite(v.norm(dim=1)).all()  # the plain norm overflows
    max_norm = (1 - ball_margin(dtype)) * RADIUS
    for name, out in (("expmap0", expmap0(v, C)), ("project", project(v, C))):
        assert torch.isfinite(out).all(), name
        assert torch.allclose(out.double().norm(dim=1), torch.full((6,), max_norm, dtype=torch.float64), rtol=1e-6), name
        cosine = F.cosine_similarity(out.double(), direction, dim=1)
        assert (cosine >= 1 - 1e-6).all(), name
        check_in_ball(out, C, name)
    clipped = clip_features(v, 2.3)
    assert torch.allclose(clipped.double().norm(dim=1), torch.full((6,), 2.3, dtype=torch.float64), rtol=1e-6)
    assert (F.cosine_similarity(clipped.double(), direction, dim=1) >= 1 - 1e-6).all()


def test_expmap0_of_tiny_and_zero_rows_and_its_gradient(gen):
    v = torch.randn(4, 3, generator=gen, dtype=torch.float64) * 1e-300
    torch.testing.assert_close(expmap0(v, C), v, rtol=1e-12, atol=0)
    # gradient at 0 is the identity; at a one-hot row (its norm is its one entry) it matches the formula
    zero = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    (jac,) = torch.autograd.functional.jacobian(lambda x: expmap0(x, C), (zero,))
    torch.testing.assert_close(jac.reshape(3, 3), torch.eye(3, dtype=torch.float64))
    one_hot = torch.tensor([[2.0, 0.0, 0.0], [0.0, -3.0, 0.0]], dtype=torch.float64, requires_grad=True)
    mixed = torch.randn(3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    for x in (one_hot, mixed):
        assert torch.autograd.gradcheck(lambda t: expmap0(t, C), (x,))
        assert torch.autograd.gradcheck(lambda t: project(t * 20, C), (x,))


def test_logmap0_and_dist0_are_finite_for_every_point_that_passes_the_ball_check(gen):
    c = 2.5
    u = torch.randn(4000, 8, generator=gen, dtype=torch.float64)
    rel = 1 - 3e-7 * torch.rand(4000, 1, generator=gen, dtype=torch.float64)
    x = (u / u.norm(dim=1, keepdim=True) * rel * c**-0.5).float()
    x = x[torch.tensor(c) * (x * x).sum(-1) < 1]  # check_in_ball's criterion, in float32
    check_in_ball(x, c, "x")
    assert torch.isinf(torch.atanh(torch.tensor(c).sqrt() * x.norm(dim=-1))).any()  # the plain formula overflows
    assert torch.isfinite(logmap0(x, c)).all() and torch.isfinite(dist0(x, c)).all()
    curv = Curvature(c, learnable=True)
    x = x.clone().requires_grad_()
    (dist0(x, curv()).sum() + logmap0(x, curv()).sum()).backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(curv.log_c.grad)


def test_logmap0_gradient_at_the_origin_is_finite_for_a_learnable_curvature():
    curv = Curvature(0.05, learnable=True)
    x = torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, 0.3]], requires_grad=True)
    logmap0(x, curv()).sum().backward()
    assert torch.isfinite(curv.log_c.grad)
    torch.testing.assert_close(x.grad[0], torch.ones(3), rtol=1e-5, atol=0)  # d log0/dx = I at 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_inputs_to_maps_raise_naming_the_argument(value):
    v = torch.ones(3, 4)
    v[1, 2] = value
    with pytest.raises(ValueError, match=r"v contains 1 non-finite value\(s\).*\(1, 2\)"):
        expmap0(v, C)
    with pytest.raises(ValueError, match=r"x contains 1 non-finite value\(s\).*\(1, 2\)"):
        project(v, C)
    with pytest.raises(ValueError, match=r"v contains 1 non-finite value\(s\).*\(1, 2\)"):
        clip_features(v, 2.3)
    features = torch.ones(3, 4)
    features[1, 2] = float("nan")  # an infinity can vanish in the MLP's ReLU; a NaN cannot
    with pytest.raises(ValueError, match=r"v contains \d+ non-finite"):
        PoincareProjectionHead(4, 4, 2, c=C)(features)


def test_non_floating_inputs_raise_type_error():
    with pytest.raises(TypeError, match="v must be a floating-point tensor"):
        expmap0(torch.ones(2, 3, dtype=torch.int64), C)
    with pytest.raises(TypeError, match="query must be a floating-point tensor"):
        HyperbolicInfoNCELoss()(torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.int64))


# ---------------------------------------------------------------- 3. float64 keys into a float32 bank


def test_float64_keys_just_inside_the_ball_stay_inside_a_float32_bank(gen):
    bank = HyperbolicMemoryBank(8, 4, c=C, gather_distributed=False)
    direction = torch.randn(3, 4, generator=gen, dtype=torch.float64)
    edge = direction / direction.norm(dim=1, keepdim=True) * RADIUS * (1 - 1e-12)  # inside in float64
    check_in_ball(edge, C, "edge")
    with pytest.raises(ValueError, match="on or outside"):  # what a plain float32 cast would have stored
        check_in_ball(edge.float(), C, "edge")
    inner = ball_points(2, 4, C, gen)
    bank.enqueue(torch.cat([edge, inner]))
    stored = bank.negatives()
    assert stored.dtype == torch.float32
    check_in_ball(stored, C, "bank")
    max_norm = (1 - ball_margin(torch.float32)) * RADIUS
    assert torch.allclose(stored[:3].double().norm(dim=1), torch.full((3,), max_norm, dtype=torch.float64), rtol=1e-6)
    assert (F.cosine_similarity(stored[:3].double(), edge, dim=1) >= 1 - 1e-6).all()
    assert torch.equal(stored[3:5], inner.float())  # keys well inside are only cast
    loss_fn = HyperbolicInfoNCELoss(TAU, C)
    for _ in range(3):  # every later step still accepts the queue
        q = expmap0(torch.randn(4, 4, generator=gen), C)
        assert torch.isfinite(loss_fn(q, q.flip(0), bank.negatives()))
        bank.enqueue(edge)


def test_keys_outside_the_ball_still_raise():
    bank = HyperbolicMemoryBank(8, 2, c=1.0, gather_distributed=False)
    with pytest.raises(ValueError, match="keys has 1 point"):
        bank.enqueue(torch.tensor([[0.5, 0.0], [1.0 + 1e-12, 0.0]], dtype=torch.float64))


# ---------------------------------------------------------------- 4. bad hyperparameters


BAD_NUMBERS = [float("inf"), float("nan"), -float("inf")]


@pytest.mark.parametrize("bad", BAD_NUMBERS)
@pytest.mark.parametrize(
    "make",
    [
        lambda t: InfoNCELoss(temperature=t),
        lambda t: HyperbolicInfoNCELoss(temperature=t),
        lambda t: HCLLoss(temperature_euc=t),
        lambda t: HCLLoss(temperature_hyp=t),
        lambda t: LightlyHCLLoss(temperature_euc=t),
        lambda t: LightlyHCLLoss(temperature_hyp=t),
        lambda t: HyperbolicNTXentLoss(temperature=t),
    ],
)
def test_non_finite_temperature_raises(make, bad):
    with pytest.raises(ValueError, match=r"temperature must be finite and >= 1e-8, got (-?inf|nan)"):
        make(bad)


@pytest.mark.parametrize("bad", BAD_NUMBERS + [-0.1])
@pytest.mark.parametrize("cls", [HCLLoss, LightlyHCLLoss])
def test_bad_lambda_raises(cls, bad):
    with pytest.raises(ValueError, match=r"lambda_hyp must be finite and >= 0"):
        cls(lambda_hyp=bad)


@pytest.mark.parametrize("bad", BAD_NUMBERS + [0.0])
@pytest.mark.parametrize(
    "make",
    [
        lambda c: HyperbolicInfoNCELoss(c=c),
        lambda c: HCLLoss(c=c),
        lambda c: LightlyHCLLoss(c=c),
        lambda c: HyperbolicNTXentLoss(c=c),
        lambda c: HyperbolicMemoryBank(4, 2, c=c),
    ],
)
def test_bad_curvature_raises(make, bad):
    with pytest.raises(ValueError, match=r"c must be finite and > 0"):
        make(bad)


# ---------------------------------------------------------------- 5. empty batches


def _ball(*shape):
    return expmap0(torch.randn(*shape), C)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda e: InfoNCELoss()(e, e, torch.randn(4, 128)), r"InfoNCELoss got an empty batch: query has shape \(0, 128\)"),
        (lambda e: InfoNCELoss()(e, e), r"InfoNCELoss got an empty batch: query has shape \(0, 128\)"),
        (lambda e: HyperbolicInfoNCELoss()(e, e, _ball(4, 128)),
         r"HyperbolicInfoNCELoss got an empty batch: query has shape \(0, 128\)"),
        (lambda e: HyperbolicInfoNCELoss()(e, e), r"HyperbolicInfoNCELoss got an empty batch: query has shape \(0, 128\)"),
        (lambda e: HCLLoss()(e, e, e, e), r"HCLLoss got an empty batch: object_query has shape \(0, 128\)"),
        (lambda e: HCLLoss()(torch.randn(2, 128), torch.randn(2, 128), e, e, torch.randn(4, 128), _ball(4, 128)),
         r"HCLLoss got an empty batch: scene_query has shape \(0, 128\)"),
        (lambda e: LightlyHCLLoss()(e, e, e, e), r"HCLLoss got an empty batch: euc_query has shape \(0, 128\)"),
        (lambda e: LightlyHCLLoss(memory_bank_size=(16, 128), symmetric=True)((e, e), (e, e), e, e),
         r"HCLLoss got an empty batch: euc_query\[0\] has shape \(0, 128\)"),
        (lambda e: LightlyHCLLoss()(torch.randn(2, 128), torch.randn(2, 128), e, e),
         r"HCLLoss got an empty batch: hyp_query has shape \(0, 128\)"),
        (lambda e: HyperbolicNTXentLoss()(e, e), r"HyperbolicNTXentLoss got an empty batch: out0 has shape \(0, 128\)"),
        (lambda e: HyperbolicNTXentLoss(memory_bank_size=(16, 128))(e, e),
         r"HyperbolicNTXentLoss got an empty batch: out0 has shape \(0, 128\)"),
        (lambda e: HierarchicalLogRatioLoss()(e, torch.zeros(0, 0, dtype=torch.long)),
         r"HierarchicalLogRatioLoss got an empty batch: z has shape \(0, 128\)"),
        (lambda e: PoincareProjectionHead(128, 16, 8)(e), r"PoincareProjectionHead got an empty batch: x has shape \(0, 128\)"),
        (lambda e: PoincareProjectionHead(128, 16, 8, batch_norm=True)(e),
         r"PoincareProjectionHead got an empty batch: x has shape \(0, 128\)"),
        (lambda e: MemoryBank(16, 128).enqueue(e), r"MemoryBank.enqueue got an empty batch: keys has shape \(0, 128\)"),
        (lambda e: HyperbolicMemoryBank(16, 128).enqueue(e),
         r"HyperbolicMemoryBank.enqueue got an empty batch: keys has shape \(0, 128\)"),
        (lambda e: poincare_negative_logsumexp(e, _ball(4, 128), torch.tensor(C), TAU),
         r"poincare_negative_logsumexp got an empty batch: query has shape \(0, 128\)"),
    ],
)
def test_empty_batch_raises_one_clear_error(call, match):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning on the way either
        with pytest.raises(ValueError, match=match):
            call(torch.zeros(0, 128))


def test_zero_feature_dimension_raises():
    z = torch.zeros(4, 0)
    for loss in (InfoNCELoss(), HyperbolicInfoNCELoss()):
        with pytest.raises(ValueError, match=r"got features of dimension 0: query has shape \(4, 0\)"):
            loss(z, z)
