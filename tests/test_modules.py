"""Poincaré projection head and memory banks."""

from __future__ import annotations

import math

import pytest
import torch

from hcl_plugin.geometry import Curvature, dist0, expmap0
from hcl_plugin.modules import HyperbolicMemoryBank, MemoryBank, PoincareProjectionHead


def test_head_outputs_points_in_the_ball_with_finite_gradients(gen):
    head = PoincareProjectionHead(32, 64, 16, c=0.05)
    x = torch.randn(8, 32, generator=gen) * 100  # raw norms far beyond the radius
    z = head(x)
    assert z.shape == (8, 16)
    assert (0.05 * (z.double() ** 2).sum(1) < 1).all()
    z.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in head.parameters())


def test_head_clipping_bounds_the_hyperbolic_norm_and_reports_it(gen):
    c, r = 0.1, 2.3
    head = PoincareProjectionHead(32, 32, 8, c=c, clip_r=r)
    z = head(torch.randn(64, 32, generator=gen) * 50)
    bound = 2 / math.sqrt(c) * math.atanh(math.tanh(math.sqrt(c) * r))
    assert (dist0(z, c) <= bound + 1e-4).all()
    assert head.stats["clipped_fraction"].item() == pytest.approx(1.0)
    assert set(head.stats) == {"clipped_fraction", "hyp_norm_mean", "hyp_norm_min", "hyp_norm_max", "two_over_sqrt_c",
                               "c_sq_norm_mean", "c_sq_norm_max", "near_boundary_fraction"}


def test_head_learnable_scale_and_curvature_get_gradients(gen):
    curv = Curvature(0.05, learnable=True)
    head = PoincareProjectionHead(16, 16, 8, c=curv, feature_scale=0.1, learn_scale=True, batch_norm=True)
    z = head(torch.randn(8, 16, generator=gen))
    dist0(z, curv()).mean().backward()
    assert head.log_scale.grad is not None and head.log_scale.grad.abs() > 0
    assert curv.log_c.grad is not None
    assert isinstance(head.mlp[1], torch.nn.BatchNorm1d)


def test_head_norm_tracks_the_scale(gen):
    """The learnable scale moves the hyperbolic norm: the head can place points in the informative range."""
    x = torch.randn(32, 16, generator=gen)
    small = PoincareProjectionHead(16, 16, 8, feature_scale=0.01)
    large = PoincareProjectionHead(16, 16, 8, feature_scale=1.0)
    large.load_state_dict(small.state_dict() | {"log_scale": torch.tensor(0.0)})
    assert small(x).norm(dim=1).mean() < large(x).norm(dim=1).mean()


@pytest.mark.parametrize("kwargs, match", [({"clip_r": 0.0}, "clip_r"), ({"learn_scale": True}, "learn_scale"),
                                           ({"feature_scale": -1.0}, "feature_scale"), ({"c": -1.0}, "c must be")])
def test_head_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PoincareProjectionHead(8, 8, 4, **kwargs)


def test_hyperbolic_bank_starts_inside_the_ball_identically_on_every_rank():
    a, b = HyperbolicMemoryBank(512, 32, c=4.0, seed=3), HyperbolicMemoryBank(512, 32, c=4.0, seed=3)
    assert torch.equal(a.bank, b.bank)
    assert (4.0 * (a.bank.double() ** 2).sum(1) < 1).all()
    assert dist0(a.bank, 4.0).std() > 0  # not all on one sphere


@pytest.mark.parametrize("batch", [1, 3, 7, 10, 23])
def test_bank_wraps_around_for_any_batch_size(batch, gen):
    size, dim = 10, 4
    bank = MemoryBank(size, dim)
    expected = bank.bank.clone()
    ptr = 0
    for step in range(5):
        keys = torch.randn(batch, dim, generator=gen)
        bank.enqueue(keys)
        for i, key in enumerate(keys):  # sequential FIFO model
            expected[(ptr + i) % size] = key
        ptr = (ptr + batch) % size
        assert torch.equal(bank.bank, expected), f"step {step}"
        assert int(bank.ptr) == ptr


def test_bank_pointer_lives_on_the_host_and_is_reread_after_loading(gen):
    """enqueue reads the host-side copy of ptr (no device read); load_state_dict refreshes it."""
    from hcl_plugin.utils.sync_count import HostSyncCounter

    bank = MemoryBank(10, 4, gather_distributed=False)
    with HostSyncCounter() as syncs:
        bank.enqueue(torch.randn(3, 4, generator=gen))
    assert [r.kind for r in syncs.records] == ["Tensor.__bool__"]  # the NaN/Inf check of the keys, nothing else
    assert bank.host_ptr == int(bank.ptr) == 3
    saved = {k: v.clone() for k, v in bank.state_dict().items()}
    bank.enqueue(torch.randn(5, 4, generator=gen))
    assert bank.host_ptr == int(bank.ptr) == 8
    restored = MemoryBank(10, 4, gather_distributed=False)
    restored.load_state_dict(saved)
    assert restored.host_ptr == 3
    keys = torch.randn(9, 4, generator=gen)  # wraps around from the restored position
    restored.enqueue(keys)
    assert torch.equal(restored.bank[3:10], keys[:7]) and torch.equal(restored.bank[:2], keys[7:])
    assert restored.host_ptr == int(restored.ptr) == 2
    restored.set_pointer(13)
    assert restored.host_ptr == int(restored.ptr) == 3


def test_negatives_are_a_detached_copy():
    bank = HyperbolicMemoryBank(16, 4)
    neg = bank.negatives()
    bank.enqueue(expmap0(torch.randn(16, 4), 0.05))
    assert not torch.equal(neg, bank.bank) and not neg.requires_grad


def test_bank_rejects_bad_keys():
    bank = HyperbolicMemoryBank(16, 4, c=1.0)
    with pytest.raises(ValueError, match=r"keys must have shape \(B, 4\), got \(2, 5\)"):
        bank.enqueue(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="keys has 1 point"):
        bank.enqueue(torch.tensor([[0.0, 0.0, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]]))
    bad = torch.zeros(2, 4)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="keys contains 1 non-finite"):
        bank.enqueue(bad)


def test_hyperbolic_bank_with_learnable_curvature_follows_c():
    """A bank sharing a learnable Curvature stores tangent vectors and maps them with the current c."""
    from hcl_plugin.geometry import Curvature, logmap0

    torch.manual_seed(0)
    curv = Curvature(0.05, learnable=True)
    bank = HyperbolicMemoryBank(32, 8, c=curv, seed=1)
    assert bank.stores_tangent and "curvature.log_c" in bank.state_dict()
    keys = expmap0(torch.randn(5, 8, dtype=torch.float64) * 3, 0.05).float()
    bank.enqueue(keys)
    torch.testing.assert_close(bank.negatives()[:5], keys, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        curv.log_c += 3.0  # c grows 20x: the ball shrinks below the stored points' norms
    negatives = bank.negatives()
    c_now = float(curv().detach())
    assert bool((negatives.norm(dim=1) < c_now ** -0.5).all())
    torch.testing.assert_close(negatives[:5], expmap0(logmap0(keys, 0.05), c_now), atol=1e-5, rtol=1e-5)
    # the gradient of a loss on the negatives reaches c (the keys themselves are detached)
    negatives = bank.negatives()
    assert not bank.bank.requires_grad
    negatives.norm(dim=1).sum().backward()
    assert curv.log_c.grad is not None and torch.isfinite(curv.log_c.grad)


def test_hyperbolic_bank_fixed_curvature_object_matches_float():
    from hcl_plugin.geometry import Curvature

    a, b = HyperbolicMemoryBank(64, 8, c=0.05, seed=2), HyperbolicMemoryBank(64, 8, c=Curvature(0.05), seed=2)
    assert not b.stores_tangent
    torch.testing.assert_close(a.negatives(), b.negatives(), rtol=0, atol=0)
    assert set(a.state_dict()) == set(b.state_dict()) == {"bank", "ptr"}
