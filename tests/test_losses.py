"""InfoNCE losses against direct float64 references, gradcheck, autocast and bad input."""

from __future__ import annotations

import pytest
import torch

from hcl_plugin.geometry import Curvature, expmap0
from hcl_plugin.losses import HCLLoss, HyperbolicInfoNCELoss, InfoNCELoss, combine_hcl
from hcl_plugin.losses.poincare_logsumexp import PoincareNegativeLogSumExp, augment_key, augment_query
from tests.conftest import ball_points
from tests.references import (
    reference_in_batch_hyp,
    reference_info_nce_euc,
    reference_info_nce_hyp,
)

C, TAU = 0.05, 0.2


def leaf(t: torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    return t.detach().clone().to(dtype).requires_grad_()


def grads_of(loss_fn, *tensors):
    loss = loss_fn(*tensors)
    return loss, torch.autograd.grad(loss, [t for t in tensors if t is not None and t.requires_grad])


@pytest.mark.parametrize("rel_norm", [None, 0.98, 0.999])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_queue_mode_matches_float64_reference(rel_norm, dtype, gen):
    # the reference sees the same (rounded) inputs
    q, p, k = (ball_points(n, 16, C, gen, rel_norm).to(dtype).double() for n in (40, 40, 300))
    ref, ref_grads = grads_of(lambda a, b, n: reference_info_nce_hyp(a, b, n, C, TAU), leaf(q), leaf(p), leaf(k))
    got, got_grads = grads_of(HyperbolicInfoNCELoss(TAU, C), leaf(q, dtype), leaf(p, dtype), leaf(k, dtype))
    assert got.dtype == dtype
    # float32 tolerances (loss relative, gradient relative to its largest entry), measured over 20 seeds
    # at 3x margin: conditioning worsens towards the boundary, where 1 - c|x|^2 ~ 2e-3 at 0.999 r.
    loss_tol, grad_tol = {None: (1e-6, 2e-5), 0.98: (5e-6, 1e-4), 0.999: (1e-4, 2e-3)}[rel_norm]
    if dtype == torch.float64:
        loss_tol, grad_tol = 1e-10, 1e-8
    torch.testing.assert_close(got.double(), ref, rtol=loss_tol, atol=0)
    for g, r in zip(got_grads, ref_grads):
        torch.testing.assert_close(g.double(), r, rtol=0, atol=grad_tol * r.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_in_batch_mode_matches_float64_reference(dtype, gen):
    q, p = (ball_points(24, 8, C, gen).to(dtype).double() for _ in range(2))
    ref, ref_grads = grads_of(lambda a, b: reference_in_batch_hyp(a, b, C, TAU), leaf(q), leaf(p))
    got, got_grads = grads_of(HyperbolicInfoNCELoss(TAU, C), leaf(q, dtype), leaf(p, dtype))
    tol = 1e-10 if dtype == torch.float64 else 3e-5
    torch.testing.assert_close(got.double(), ref, rtol=tol, atol=tol)
    for g, r in zip(got_grads, ref_grads):
        torch.testing.assert_close(g.double(), r, rtol=10 * tol, atol=10 * tol * r.abs().max().item())


def test_blocking_does_not_change_the_result(gen):
    q, p, k = ball_points(100, 8, C, gen), ball_points(100, 8, C, gen), ball_points(64, 8, C, gen)
    one = HyperbolicInfoNCELoss(TAU, C)
    many = HyperbolicInfoNCELoss(TAU, C, block_elements=1)  # MIN_BLOCK_ROWS rows per block: 4 blocks
    a, ga = grads_of(one, leaf(q), leaf(p), leaf(k))
    b, gb = grads_of(many, leaf(q), leaf(p), leaf(k))
    torch.testing.assert_close(a, b, rtol=1e-13, atol=1e-13)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-13)


def test_gradcheck_loss_queue_and_in_batch(gen):
    q, p, k = (leaf(ball_points(n, 4, C, gen)) for n in (5, 5, 7))
    loss = HyperbolicInfoNCELoss(TAU, C)
    assert torch.autograd.gradcheck(lambda a, b, n: loss(a, b, n), (q, p, k))
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b), (q, p))


def test_gradcheck_fused_function_with_mask_and_alpha(gen):
    c = torch.tensor(C, dtype=torch.float64)
    qa = leaf(augment_query(ball_points(6, 5, C, gen), c))
    ka = leaf(augment_key(ball_points(9, 5, C, gen), c))
    alpha = torch.tensor(4.0, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(6, 9, generator=gen) < 0.3
    mask[:, 0] = False  # every row keeps a negative
    assert torch.autograd.gradcheck(lambda a, b, s: PoincareNegativeLogSumExp.apply(a, b, s, mask, 1), (qa, ka, alpha))


def test_learnable_curvature_gradient_matches_reference(gen):
    q, p, k = ball_points(8, 6, C, gen), ball_points(8, 6, C, gen), ball_points(20, 6, C, gen)
    curv = Curvature(C, learnable=True).double()
    HyperbolicInfoNCELoss(TAU, curv)(q, p, k).backward()
    c_value = curv().item()  # the float32-initialised log c, exactly
    c_ref = torch.tensor(c_value, dtype=torch.float64, requires_grad=True)
    from tests.references import acosh_dist64

    def ref_loss(c):
        pos = acosh_dist64(q, p, c)[:, None]
        neg = acosh_dist64(q[:, None], k[None], c)
        return -torch.log_softmax(-torch.cat([pos, neg], 1) / TAU, 1)[:, 0].mean()

    (g_c,) = torch.autograd.grad(ref_loss(c_ref), [c_ref])
    torch.testing.assert_close(curv.log_c.grad, g_c * c_value, rtol=1e-8, atol=1e-10)  # d/dlog c = c d/dc


def test_near_identical_negatives_give_finite_gradients(gen):
    q = ball_points(16, 8, C, gen).float()
    k = torch.cat([q + 1e-7 * torch.randn(16, 8, generator=gen), q, ball_points(16, 8, C, gen).float()])
    q = q.requires_grad_()
    loss = HyperbolicInfoNCELoss(TAU, C)(q, q.detach() + 1e-6, k)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(q.grad).all()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_gives_float32_losses(dtype, gen):
    feats = [torch.randn(32, 64, generator=gen) for _ in range(3)]
    proj = torch.nn.Linear(64, 16)
    torch.nn.init.normal_(proj.weight, std=0.2, generator=gen)
    loss = HyperbolicInfoNCELoss(TAU, C)
    with torch.no_grad():
        ref = loss(*(expmap0(proj(f), C) for f in feats))
        with torch.autocast("cpu", dtype=dtype):
            z = [proj(f) for f in feats]
            assert z[0].dtype == dtype
            out = loss(*(expmap0(t, C) for t in z))
            out_hcl = HCLLoss()(z[0], z[1], expmap0(z[0], C), expmap0(z[1], C), z[2], expmap0(z[2], C))
    assert out.dtype == torch.float32 and torch.isfinite(out) and torch.isfinite(out_hcl.loss)
    # the inputs are rounded to half precision; the loss itself is computed in float32
    assert abs(out.item() - ref.item()) <= 1e-3 * max(1.0, abs(ref.item())) * (8 if dtype == torch.bfloat16 else 1)
    rounded = loss(*(expmap0(t.float(), C) for t in z))
    assert abs(out.item() - rounded.item()) <= 1e-5 * max(1.0, abs(rounded.item()))


@pytest.mark.parametrize("with_queue", [True, False])
def test_euclidean_info_nce_matches_reference(with_queue, gen):
    q, p = torch.randn(16, 8, generator=gen, dtype=torch.float64), torch.randn(16, 8, generator=gen, dtype=torch.float64)
    k = torch.randn(50, 8, generator=gen, dtype=torch.float64) if with_queue else None
    got = InfoNCELoss(TAU)(q, p, k)
    torch.testing.assert_close(got, reference_info_nce_euc(q, p, k, TAU), rtol=1e-12, atol=1e-12)


def test_hcl_loss_combines_parts(gen):
    q, k = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
    scene, obj = expmap0(torch.randn(8, 16, generator=gen), C), expmap0(torch.randn(8, 16, generator=gen), C)
    queue_euc, queue_hyp = torch.randn(32, 16, generator=gen), expmap0(torch.randn(32, 16, generator=gen), C)
    out = HCLLoss(lambda_hyp=0.3)(q, k, scene, obj, queue_euc, queue_hyp)
    euc = InfoNCELoss(TAU)(q, k, queue_euc)
    hyp = HyperbolicInfoNCELoss(TAU, C)(scene, obj, queue_hyp)
    torch.testing.assert_close(out.loss_euc, euc)
    torch.testing.assert_close(out.loss_hyp, hyp)
    torch.testing.assert_close(out.loss, euc + 0.3 * hyp)
    assert not out.loss_euc.requires_grad and not out.loss_hyp.requires_grad


def test_hcl_loss_baseline_and_curvature(gen):
    q, k = torch.randn(8, 16, generator=gen), torch.randn(8, 16, generator=gen)
    scene, obj = expmap0(torch.randn(8, 16, generator=gen), C), expmap0(torch.randn(8, 16, generator=gen), C)
    baseline = HCLLoss(lambda_hyp=0.0)(q, k)  # the hyperbolic term is skipped
    torch.testing.assert_close(baseline.loss, InfoNCELoss(TAU)(q, k))
    assert baseline.loss_hyp == 0
    given = HCLLoss(lambda_hyp=0.0)(q, k, scene, obj)  # ... and computed (for logging) when given
    torch.testing.assert_close(given.loss_hyp, HyperbolicInfoNCELoss(TAU, C)(scene, obj))
    torch.testing.assert_close(given.loss, baseline.loss)
    with pytest.raises(ValueError, match="lambda_hyp > 0 needs scene_query and object_key_hyp"):
        HCLLoss()(q, k, scene)
    curvature = Curvature(C, learnable=True)
    loss = HCLLoss(c=curvature)
    assert loss.curvature is curvature and loss.hyperbolic.curvature is curvature
    torch.testing.assert_close(combine_hcl(torch.tensor(1.0), torch.tensor(2.0), 0.5).loss, torch.tensor(2.0))


def test_hyperbolic_loss_separates_a_scene_from_its_object_over_training(gen):
    """A scene point is pulled toward its object and away from others: the positive distance falls."""
    obj = expmap0(torch.randn(16, 8, generator=gen), C)
    scene_v = torch.randn(16, 8, generator=gen).requires_grad_()
    opt = torch.optim.SGD([scene_v], lr=0.5)
    loss_fn = HyperbolicInfoNCELoss(TAU, C)
    losses = []
    for _ in range(30):
        loss = loss_fn(expmap0(scene_v, C), obj)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("loss_cls", [InfoNCELoss, HyperbolicInfoNCELoss])
def test_temperature_zero_raises(loss_cls):
    with pytest.raises(ValueError, match="temperature"):
        loss_cls(temperature=0.0)


@pytest.mark.parametrize("bad", [0.0, -0.1])
def test_nonpositive_curvature_raises(bad):
    with pytest.raises(ValueError, match="c must be"):
        HyperbolicInfoNCELoss(c=bad)


@pytest.mark.parametrize("which", ["query", "positive", "negatives"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
@pytest.mark.parametrize("loss_cls", [InfoNCELoss, HyperbolicInfoNCELoss])
def test_non_finite_features_name_the_argument(which, value, loss_cls, gen):
    t = {n: expmap0(torch.randn(4, 8, generator=gen), C) for n in ("query", "positive", "negatives")}
    t[which][1, 2] = value
    with pytest.raises(ValueError, match=rf"{which} contains 1 non-finite"):
        loss_cls()(t["query"], t["positive"], t["negatives"])


def test_shape_mismatch_prints_shapes():
    loss = HyperbolicInfoNCELoss()
    z = expmap0(torch.randn(4, 8), C)
    with pytest.raises(ValueError, match=r"query and positive must have the same shape, got \(4, 8\) and \(3, 8\)"):
        loss(z, z[:3])
    with pytest.raises(ValueError, match=r"query: \(4, 8\), negatives: \(5, 7\)"):
        loss(z, z, expmap0(torch.randn(5, 7), C))
    with pytest.raises(ValueError, match=r"query must have shape \(B, D\), got \(8,\)"):
        loss(z[0], z[0])


def test_points_outside_the_ball_raise():
    inside = expmap0(torch.randn(4, 8), C)
    with pytest.raises(ValueError, match="negatives has 4 point"):
        HyperbolicInfoNCELoss(c=C)(inside, inside, torch.randn(4, 8) * 100)
