"""Host synchronisations of the training step (issue 13 item 7 / issue 16 item 3).

The counter (:class:`hcl_plugin.utils.sync_count.HostSyncCounter`) instruments, on the CPU, the calls
that synchronise an accelerator. With the recommended value-check interval the MoCo-v2 + HCL step
makes no more of them than the MoCo-v2 baseline step (the same module with ``lambda_hyp=0``), and the
hyperbolic branch's parts (head, loss, banks) make none. The ``cuda`` test runs both steps on a CUDA
device under ``torch.cuda.set_sync_debug_mode("error")``.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch

from hcl_plugin.geometry import Curvature, dist, expmap0
from hcl_plugin.losses import HyperbolicInfoNCELoss, InfoNCELoss
from hcl_plugin.modules import HyperbolicMemoryBank, MemoryBank, PoincareProjectionHead
from hcl_plugin.utils.checks import (
    ValueCheckGate,
    check_finite,
    set_value_check_interval,
    value_check_interval,
    value_checks,
)
from hcl_plugin.utils.sync_count import HostSyncCounter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import count_host_syncs as bench  # noqa: E402

C, TAU = 0.05, 0.2
EVERY = bench.RECOMMENDED_INTERVAL


# ---------------------------------------------------------------- the counter


def test_counter_counts_planted_syncs_and_restores_torch():
    originals = {name: getattr(torch.Tensor, name) for name in ("item", "__bool__", "__getitem__", "nonzero")}
    x = torch.arange(6.0) - 2
    with HostSyncCounter() as syncs:
        x.max().item()
        if (x > 0).any():  # bool(tensor)
            pass
        int(x.argmax())
        x[x > 0]  # bool-mask indexing
        torch.nonzero(x)
        torch.where(x > 0)  # the single-argument form
        x[1:3], x[torch.tensor([0, 1])], torch.where(x > 0, x, -x), torch.nonzero_static(x, size=2)  # none of these
    kinds = [r.kind for r in syncs.records]
    assert kinds == ["Tensor.item", "Tensor.__bool__", "Tensor.__int__", "Tensor.__getitem__[bool]", "torch.nonzero",
                     "torch.where(cond)"]
    assert all(r.origin.startswith("tests/test_host_syncs.py:") for r in syncs.records)
    for name, original in originals.items():
        assert getattr(torch.Tensor, name) is original, name
    with HostSyncCounter() as none:
        (x * 2).sum()
    assert none.count == 0


def test_counter_names_the_project_line_and_its_caller():
    with HostSyncCounter() as syncs:
        check_finite(torch.ones(3), "x")
    (record,) = syncs.records
    assert record.kind == "Tensor.__bool__" and record.site.startswith("hcl_plugin/utils/checks.py:")
    assert "(check_finite)" in record.site and record.origin.startswith("hcl_plugin/utils/checks.py:")
    assert "1 host sync(s)" in syncs.report() and "check_finite" in syncs.report()


# ---------------------------------------------------------------- the value-check interval


def test_gate_checks_the_first_call_then_every_nth():
    assert value_check_interval() == 1
    gate = ValueCheckGate()
    assert all(gate.due() for _ in range(5))
    with value_checks(every=4):
        assert [gate.due() for _ in range(9)] == [False, False, False, True, False, False, False, True, False]
        assert ValueCheckGate().due()  # a new site checks its first call
    assert value_check_interval() == 1 and gate.due()
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError, match="interval must be an integer >= 1"):
            set_value_check_interval(bad)


def test_errors_still_name_the_input_on_the_checked_calls():
    head = PoincareProjectionHead(8, 8, 4, c=C)
    nan = torch.full((2, 8), float("nan"))
    with value_checks(every=3):
        with pytest.raises(ValueError, match="v contains 8 non-finite"):
            head(nan)
        head(nan), head(nan)  # skipped: the NaN passes through
        with pytest.raises(ValueError, match="v contains 8 non-finite"):
            head(nan)
    loss = HyperbolicInfoNCELoss(TAU, C)
    q, p = expmap0(torch.randn(4, 4), C), expmap0(torch.randn(4, 4), C)
    outside = torch.full((3, 4), 10.0)
    with value_checks(every=2):
        with pytest.raises(ValueError, match="negatives has 3 point"):
            loss(q, p, outside)
        assert not torch.isfinite(loss(q, p, outside))
        with pytest.raises(ValueError, match="negatives has 3 point"):
            loss(q, p, outside)
    with pytest.raises(ValueError, match="positive contains"):  # the default: every call, the first bad input named
        InfoNCELoss()(q, torch.full_like(p, float("inf")), torch.full((3, 4), float("nan")))


# ---------------------------------------------------------------- the hyperbolic parts, one by one


def _no_syncs(fn, *args, warm_up: bool = True):
    """Run ``fn(*args)`` once as a warm-up, then count the syncs of a second call (recommended interval)."""
    with value_checks(every=EVERY), bench.accelerator_paths():
        if warm_up:
            fn(*args)
        with HostSyncCounter() as syncs:
            fn(*args)
    assert syncs.count == 0, syncs.report()


@pytest.mark.parametrize("learn_c", [False, True])
@pytest.mark.parametrize("clip_r", [None, 2.3])
def test_head_forward_and_backward(learn_c, clip_r, gen):
    head = PoincareProjectionHead(16, 16, 8, c=Curvature(C, learnable=learn_c), clip_r=clip_r, feature_scale=0.3,
                                  learn_scale=True)
    momentum = copy.deepcopy(head).requires_grad_(False)
    x = torch.randn(4, 16, generator=gen)

    def step():
        head(x).sum().backward()
        with torch.no_grad():
            momentum(x)
        return dict(head.stats)

    _no_syncs(step)


@pytest.mark.parametrize("learn_c", [False, True])
@pytest.mark.parametrize("mode", ["queue", "in_batch"])
def test_hyperbolic_loss_with_near_pairs_and_banks(learn_c, mode, gen):
    curvature = Curvature(C, learnable=learn_c)
    loss_fn = HyperbolicInfoNCELoss(TAU, curvature)
    bank = HyperbolicMemoryBank(16, 8, c=curvature, gather_distributed=False)
    q = expmap0(torch.randn(4, 8, generator=gen), C).requires_grad_()
    p = expmap0(torch.randn(4, 8, generator=gen), C)

    def step():
        negatives = torch.cat([bank.negatives(), q.detach() + 1e-7]) if mode == "queue" else None  # near pairs
        loss_fn(q, p, negatives).backward()
        bank.enqueue(p)

    _no_syncs(step)


def test_euclidean_loss_and_bank(gen):
    loss_fn, bank = InfoNCELoss(TAU), MemoryBank(10, 8, gather_distributed=False)
    q = torch.randn(4, 8, generator=gen, requires_grad=True)

    def step():
        loss_fn(q, torch.randn(4, 8), bank.negatives()).backward()
        bank.enqueue(torch.randn(7, 8))  # wraps around

    _no_syncs(step)


def test_public_geometry_functions_follow_the_interval(gen):
    x = expmap0(torch.randn(5, 4, generator=gen), C)
    _no_syncs(lambda: (expmap0(x, C), dist(x, x.flip(0), C)))


# ---------------------------------------------------------------- the training step


@pytest.fixture(scope="module")
def steps():
    """MoCoHCL with λ = 0.1 and its baseline (λ = 0) (resnet18, 32 px, batch 4, queues of 64), and the
    syncs of one step of each under the recommended interval, after a warm-up step."""
    models = {"hcl": bench.StepCounter(0.1), "baseline": bench.StepCounter(0.0)}
    return models, {name: model.count(EVERY) for name, model in models.items()}


def assert_no_more_syncs_than_the_baseline(hcl: HostSyncCounter, base: HostSyncCounter) -> None:
    """The sync-count check: the HCL step makes no more syncs than the baseline step and none of its own."""
    report = f"HCL:\n{hcl.report()}\nbaseline:\n{base.report()}"
    assert hcl.count <= base.count, report
    assert set(hcl.sites()) <= set(base.sites()), report  # no sync site of its own
    # what is left is the module's own non-finite-loss check, shared by both
    assert all("log_step" in r.where for r in hcl.records), report


def test_hcl_step_syncs_no_more_than_the_baseline_step(steps):
    _, counts = steps
    assert_no_more_syncs_than_the_baseline(counts["hcl"], counts["baseline"])


def test_default_interval_still_checks_every_step(steps):
    models, counts = steps
    every_call = models["hcl"].count(1, warm_up=False)  # interval 1: every call checks, no warm-up needed
    sites = " ".join(every_call.sites())
    assert "check_all_in_ball" in sites and "expmap0" in sites  # the hyperbolic branch is checked
    assert every_call.count > counts["baseline"].count


def test_a_planted_sync_in_the_hyperbolic_branch_fails_the_comparison(steps, monkeypatch):
    models, counts = steps
    forward = PoincareProjectionHead.forward

    def leaky(self, x):
        z = forward(self, x)
        self.stats["hyp_norm_max"].item()  # the kind of sync the test exists to catch
        return z

    monkeypatch.setattr(PoincareProjectionHead, "forward", leaky)
    hcl = models["hcl"].count(EVERY, warm_up=False)
    assert hcl.count > counts["baseline"].count
    assert any(r.kind == "Tensor.item" and "test_host_syncs.py" in r.origin for r in hcl.records)


def test_a_planted_item_in_the_loss_path_fails_the_sync_count_test(steps, monkeypatch):
    """An ``.item()`` planted in the hyperbolic loss that the real Lightly HCL step calls (through
    ``HCLLoss`` -> ``MemoryBankLoss`` -> ``HyperbolicInfoNCELoss``) is counted and fails the check."""
    models, counts = steps
    forward = HyperbolicInfoNCELoss.forward

    def leaky(self, query, positive, negatives=None):
        loss = forward(self, query, positive, negatives)
        loss.item()  # e.g. a debug print of the loss value left in
        return loss

    monkeypatch.setattr(HyperbolicInfoNCELoss, "forward", leaky)
    hcl = models["hcl"].count(EVERY, warm_up=False)
    with pytest.raises(AssertionError, match=r"Tensor\.item"):
        assert_no_more_syncs_than_the_baseline(hcl, counts["baseline"])
    planted = [r for r in hcl.records if r.kind == "Tensor.item" and "test_host_syncs.py" in r.origin]
    assert len(planted) == 1, hcl.report()
    assert "hcl_plugin/lightly/hcl_loss.py" in planted[0].where, planted[0].where  # the loss path, named
    monkeypatch.undo()
    assert_no_more_syncs_than_the_baseline(models["hcl"].count(EVERY, warm_up=False), counts["baseline"])


# ---------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.parametrize("lambda_hyp", [0.1, 0.0])
def test_cuda_step_runs_under_sync_debug_mode_error(lambda_hyp):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device is present")
    error = bench.cuda_error_mode(lambda_hyp, EVERY)
    assert error is None, error
