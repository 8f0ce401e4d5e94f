"""The numerics on an accelerator: geometry, losses and memory banks on CUDA against float64 CPU references.

Marked ``cuda``. Without a CUDA device every test skips saying "no CUDA device is present".
``HCL_TEST_DEVICE=cpu`` runs the same tests on the CPU (what ``benchmarks/gpu_check.sh --device cpu``
does, so the script's code path is exercised on a machine without a GPU).

What an accelerator changes: matrix products use TF32 / reduced-precision reductions unless told
otherwise, the near-pair recomputation of the fused log-sum-exp takes its device branch, and
autocast produces float16/bfloat16 features. References are float64 on the CPU (tests/references.py)
and geoopt.
"""

from __future__ import annotations

import os

import pytest
import torch

from hcl_plugin.geometry import dist, dist0, expmap0, logmap0, pairwise_dist
from hcl_plugin.losses import HyperbolicInfoNCELoss, InfoNCELoss
from hcl_plugin.modules import HyperbolicMemoryBank, PoincareProjectionHead
from tests.conftest import ball_points
from tests.references import acosh_dist64, reference_in_batch_hyp, reference_info_nce_euc, reference_info_nce_hyp

pytestmark = pytest.mark.cuda

C, TAU = 0.05, 0.2


@pytest.fixture
def device() -> torch.device:
    """CUDA, or the CPU with ``HCL_TEST_DEVICE=cpu``; otherwise skip."""
    if os.environ.get("HCL_TEST_DEVICE") == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device is present (set HCL_TEST_DEVICE=cpu to run these tests on the CPU)")
    return torch.device("cuda")


@pytest.fixture(autouse=True)
def exact_matmul():
    """Full float32 matrix products (no TF32), as the loss documents; restored afterwards."""
    old = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32 = old


@pytest.mark.parametrize("rel_norm, rtol", [(None, 2e-4), (0.999, 2e-4), (0.99999, 2e-3)])
def test_distances_match_float64_reference(device, gen, rel_norm, rtol):
    """Within float32's resolution of the conformal gap: at 0.99999 r (inside float32's projection margin
    of 3.5e-4 r no longer) the gap 2e-5 carries a relative error of about 1e-3."""
    x64 = ball_points(64, 32, C, gen, rel_norm=rel_norm)
    y64 = ball_points(64, 32, C, gen)
    x, y = x64.float().to(device), y64.float().to(device)
    ref = acosh_dist64(x.double().cpu(), y.double().cpu(), C)  # reference on the float32-rounded inputs
    torch.testing.assert_close(dist(x, y, C).double().cpu(), ref, rtol=rtol, atol=2e-4)
    torch.testing.assert_close(dist0(x, C).double().cpu(), acosh_dist64(x.double().cpu(), torch.zeros_like(x.double().cpu()), C),
                               rtol=rtol, atol=2e-4)
    torch.testing.assert_close(pairwise_dist(x[:8], y, C).double().cpu(),
                               acosh_dist64(x[:8, None].double().cpu(), y[None].double().cpu(), C), rtol=rtol, atol=2e-4)


def test_near_duplicate_points_are_finite_with_finite_gradients(device, gen):
    x = ball_points(32, 16, C, gen, rel_norm=0.9).float().to(device)
    y = (x + 1e-7 * torch.randn(x.shape, generator=gen).to(device)).requires_grad_()
    d = dist(x, y, C)
    assert torch.isfinite(d).all() and bool((d < 1e-3).all())
    d.sum().backward()
    assert torch.isfinite(y.grad).all()


def test_expmap0_logmap0_round_trip_and_gradient(device, gen):
    v64 = torch.randn(128, 32, generator=gen, dtype=torch.float64)  # d(0, z) up to about 5: inside the float32 margin
    v = v64.float().to(device).requires_grad_()
    z = expmap0(v, C)
    torch.testing.assert_close(logmap0(z, C).double().cpu(), v64, rtol=1e-3, atol=1e-3)
    z.square().sum().backward()
    ref_v = v64.clone().requires_grad_()
    expmap0(ref_v, C).square().sum().backward()
    torch.testing.assert_close(v.grad.double().cpu(), ref_v.grad, rtol=1e-4, atol=1e-5)


def test_geoopt_agrees_on_device(device, gen, geoopt):
    ball = geoopt.PoincareBall(c=C)
    x = ball_points(64, 16, C, gen).float().to(device)
    y = ball_points(64, 16, C, gen).float().to(device)
    torch.testing.assert_close(dist(x, y, C), ball.dist(x, y), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("queue", [True, False])
def test_hyperbolic_info_nce_value_and_gradient(device, gen, queue):
    q64, p64 = ball_points(64, 32, C, gen), ball_points(64, 32, C, gen)
    negatives64 = ball_points(4096, 32, C, gen) if queue else None
    q, p = q64.float().to(device).requires_grad_(), p64.float().to(device).requires_grad_()
    negatives = negatives64.float().to(device) if queue else None
    loss = HyperbolicInfoNCELoss(TAU, C)(q, p, negatives)
    loss.backward()
    rq, rp = q.detach().double().cpu().requires_grad_(), p.detach().double().cpu().requires_grad_()
    rn = negatives.double().cpu() if queue else None
    ref = reference_info_nce_hyp(rq, rp, rn, C, TAU) if queue else reference_in_batch_hyp(rq, rp, C, TAU)
    ref.backward()
    torch.testing.assert_close(loss.double().cpu(), ref.detach(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(q.grad.double().cpu(), rq.grad, rtol=1e-3, atol=1e-6)
    torch.testing.assert_close(p.grad.double().cpu(), rp.grad, rtol=1e-3, atol=1e-6)


def test_hyperbolic_info_nce_near_pairs(device, gen):
    """Negatives that duplicate the queries (to 1e-6) take the near-pair recomputation path on the device."""
    q64 = ball_points(32, 16, C, gen, rel_norm=0.95)
    negatives64 = torch.cat([q64 + 1e-6 * torch.randn(q64.shape, generator=gen, dtype=torch.float64),
                             ball_points(256, 16, C, gen)])
    p64 = ball_points(32, 16, C, gen)
    q = q64.float().to(device).requires_grad_()
    loss = HyperbolicInfoNCELoss(TAU, C)(q, p64.float().to(device), negatives64.float().to(device))
    loss.backward()
    rq = q.detach().double().cpu().requires_grad_()
    ref = reference_info_nce_hyp(rq, p64.float().double(), negatives64.float().double(), C, TAU)
    ref.backward()
    torch.testing.assert_close(loss.double().cpu(), ref.detach(), rtol=1e-4, atol=1e-5)
    assert torch.isfinite(q.grad).all()
    torch.testing.assert_close(q.grad.double().cpu(), rq.grad, rtol=2e-3, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_losses_under_autocast_compute_in_float32(device, gen, dtype):
    """A half-precision head under autocast: both losses return float32 values close to the float32 run."""
    if device.type == "cpu" and dtype == torch.float16:
        pytest.skip("float16 autocast is a CUDA setting; the CPU run checks bfloat16")
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    head = PoincareProjectionHead(64, 64, 32, c=C, feature_scale=32 ** -0.5).to(device)
    x = torch.randn(32, 64, generator=gen).to(device)
    negatives = ball_points(1024, 32, C, gen).float().to(device)
    hyperbolic, euclidean = HyperbolicInfoNCELoss(TAU, C), InfoNCELoss(TAU)
    with torch.autocast(device_type=device.type, dtype=dtype):
        z = head(x)
        half_hyp = hyperbolic(z, z.flip(0), negatives)
        half_euc = euclidean(z, z.flip(0), negatives)
    assert half_hyp.dtype == torch.float32 and half_euc.dtype == torch.float32
    z32 = head(x)
    full_hyp, full_euc = hyperbolic(z32, z32.flip(0), negatives), euclidean(z32, z32.flip(0), negatives)
    tol = 5e-2 if dtype == torch.bfloat16 else 1e-2
    torch.testing.assert_close(half_hyp, full_hyp, rtol=tol, atol=tol)
    torch.testing.assert_close(half_euc, full_euc, rtol=tol, atol=tol)
    half_hyp.backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters() if p.grad is not None)


def test_euclidean_info_nce_matches_reference(device, gen):
    q64, p64, k64 = (torch.randn(n, 32, generator=gen, dtype=torch.float64) for n in (64, 64, 2048))
    loss = InfoNCELoss(TAU)(q64.float().to(device), p64.float().to(device), k64.float().to(device))
    ref = reference_info_nce_euc(q64.float().double(), p64.float().double(), k64.float().double(), TAU)
    torch.testing.assert_close(loss.double().cpu(), ref, rtol=1e-4, atol=1e-5)


def test_hyperbolic_bank_on_device_keeps_keys_in_ball(device, gen):
    bank = HyperbolicMemoryBank(256, 16, c=C, gather_distributed=False).to(device)
    keys = ball_points(300, 16, C, gen, rel_norm=0.999999).to(device)  # float64 keys near the boundary
    bank.enqueue(keys)
    stored = bank.negatives()
    assert stored.device.type == device.type
    assert bool((stored.double().norm(dim=1) < C ** -0.5).all())
    HyperbolicInfoNCELoss(TAU, C)(stored[:8], stored[8:16], stored)  # passes the loss's ball check
