"""The released HCL model's options (issue 14): shared head, decoupled, Riemannian gradient, shuffle-BN, health.

Core: the gradient options against autograd in float64. Lightly: the shared head's two losses see the
same projection, shuffle-BN keys equal the unshuffled ones (one process, and 2-process gloo DDP, slow),
the health metrics in a real Lightning run's CSV log, no new host synchronisation.
"""

from __future__ import annotations

import csv
import os
import socket
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn import functional as F
from torch.utils.data import DataLoader

from hcl_plugin.geometry import dist0, expmap0, norm_only, riemannian_expmap0, riemannian_gradient
from hcl_plugin.lightly.models import DenseCLHCL, MoCoHCL, SimCLRHCL
from hcl_plugin.lightly.training import build_parser
from hcl_plugin.losses import InfoNCELoss
from hcl_plugin.modules import BallMap, PoincareProjectionHead, ball_health_stats
from tests.data_helpers import FixedBatch

ROOT = Path(__file__).resolve().parents[1]
C = 0.05
TINY = dict(image_size=32, proj_hidden_dim=64, proj_output_dim=16, hyp_hidden_dim=64, hyp_output_dim=16,
            feature_scale=0.25, gather_distributed=False)
VIEWS = ("object_view_1", "object_view_2", "hyperbolic_scene", "hyperbolic_object")
HEALTH = ("clipped_fraction", "hyp_norm_mean", "hyp_norm_min", "hyp_norm_max", "two_over_sqrt_c", "c_sq_norm_mean",
          "c_sq_norm_max", "near_boundary_fraction")


def factor(z: torch.Tensor, c) -> torch.Tensor:
    """The Riemannian factor (1 - c|z|^2)^2 / 4, shape (B, 1)."""
    return (1 - c * (z * z).sum(-1, keepdim=True)) ** 2 / 4


def views(gen, batch_size: int = 4) -> dict:
    return {key: torch.randn(batch_size, 3, 32, 32, generator=gen) for key in VIEWS}


# ---------------------------------------------------------------- the gradient options (core, float64)


def test_riemannian_gradient_is_the_identity_with_the_rescaled_gradient(gen):
    x = expmap0(torch.randn(6, 5, generator=gen, dtype=torch.float64) * 3, C).requires_grad_()
    upstream = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    y = riemannian_gradient(x, C)
    assert torch.equal(y, x)
    (grad,) = torch.autograd.grad(y, x, upstream)
    torch.testing.assert_close(grad, upstream * factor(x.detach(), C), rtol=1e-14, atol=0)


@pytest.mark.parametrize("scale", [0.1, 3.0, 30.0])  # flat, curved, at the boundary
def test_riemannian_expmap0_rescales_the_gradient_by_the_factor(scale, gen):
    v = (torch.randn(8, 6, generator=gen, dtype=torch.float64) * scale).requires_grad_()
    upstream = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    z = riemannian_expmap0(v, C)
    plain = expmap0(v, C)
    assert torch.equal(z, plain)  # forward: exactly expmap0
    (grad,) = torch.autograd.grad(z, v, upstream)
    (expected,) = torch.autograd.grad(plain, v, upstream * factor(plain.detach(), C))
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-300)


def test_riemannian_expmap0_keeps_the_exact_gradient_of_a_learnable_curvature(gen):
    v = (torch.randn(8, 6, generator=gen, dtype=torch.float64) * 3).requires_grad_()
    c = torch.tensor(C, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    z = riemannian_expmap0(v, c)
    plain = expmap0(v, c)
    assert torch.equal(z, plain)
    grad_v, grad_c = torch.autograd.grad(z, [v, c], upstream)
    exact_v, exact_c = torch.autograd.grad(plain, [v, c], upstream)
    (rescaled_v,) = torch.autograd.grad(expmap0(v, c.detach()), v, upstream * factor(plain.detach(), c.detach()))
    torch.testing.assert_close(grad_c, exact_c, rtol=1e-12, atol=0)  # the curvature's gradient is not rescaled
    torch.testing.assert_close(grad_v, rescaled_v, rtol=1e-12, atol=0)
    assert not torch.allclose(grad_v, exact_v)


def test_head_with_riemannian_grad_matches_autograd_with_the_factor(gen):
    """A whole head in float64: every parameter gradient equals the plain head's for the rescaled upstream gradient."""
    torch.manual_seed(0)
    plain = PoincareProjectionHead(10, 12, 6, c=C, feature_scale=2.0, learn_scale=True).double()
    rescaled = PoincareProjectionHead(10, 12, 6, c=C, feature_scale=2.0, learn_scale=True, riemannian_grad=True).double()
    rescaled.load_state_dict(plain.state_dict())
    x = torch.randn(7, 10, generator=gen, dtype=torch.float64)
    upstream = torch.randn(7, 6, generator=gen, dtype=torch.float64)
    z = rescaled(x)
    z_plain = plain(x)
    torch.testing.assert_close(z, z_plain, rtol=0, atol=0)
    (z * upstream).sum().backward()
    (z_plain * upstream * factor(z_plain.detach(), C)).sum().backward()
    for (name, p), q in zip(rescaled.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-10, atol=1e-300, msg=name)


def test_decoupled_gives_no_gradient_to_the_direction(gen):
    """A tiny model (Linear -> BallMap(decoupled)) against autograd of |v| * stop_grad(v / |v|)."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(5, 4).double()
    ball_map = BallMap(C, decoupled=True)
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    upstream = torch.randn(6, 4, generator=gen, dtype=torch.float64)

    v = linear(x)
    v.retain_grad()
    z = ball_map(v)
    torch.testing.assert_close(z, expmap0(v.detach(), C), rtol=1e-14, atol=0)  # the value is unchanged
    (z * upstream).sum().backward()
    direction = v.detach() / v.detach().norm(dim=1, keepdim=True)
    radial = (v.grad * direction).sum(1, keepdim=True) * direction
    torch.testing.assert_close(v.grad, radial, rtol=0, atol=1e-14)  # no component across the direction
    assert radial.abs().max() > 0  # the norm does get a gradient
    got = [p.grad.clone() for p in linear.parameters()]

    linear.zero_grad()
    v = linear(x)
    reference = expmap0(v.norm(dim=1, keepdim=True) * (v / v.norm(dim=1, keepdim=True)).detach(), C)
    (reference * upstream).sum().backward()
    for g, p in zip(got, linear.parameters()):
        torch.testing.assert_close(g, p.grad, rtol=1e-12, atol=1e-14)

    linear.zero_grad()
    v = linear(x)
    v.retain_grad()
    (BallMap(C)(v) * upstream).sum().backward()  # not decoupled: the direction moves too
    assert (v.grad - (v.grad * direction).sum(1, keepdim=True) * direction).abs().max() > 1e-6


def test_norm_only_keeps_zero_rows_and_huge_rows():
    v = torch.tensor([[0.0, 0.0], [3e38, -3e38], [1e-40, 0.0]], requires_grad=True)
    out = norm_only(v)
    assert torch.equal(out[0], torch.zeros(2)) and torch.isfinite(out).all()
    torch.testing.assert_close(out, v.detach(), rtol=1e-6, atol=0)
    out.sum().backward()
    assert torch.isfinite(v.grad).all() and torch.equal(v.grad[0], torch.zeros(2))


def test_ball_map_official_is_expmap0_and_project_of_the_raw_output(gen):
    """The released code's map: expmap0 then project, no scale, no clip (float64 reference formula)."""
    x = torch.randn(16, 8, generator=gen, dtype=torch.float64) * torch.logspace(-2, 1.5, 16, dtype=torch.float64)[:, None]
    ball_map = BallMap.official(C)
    assert ball_map.riemannian_grad and ball_map.log_scale is None and ball_map.clip_r is None
    assert dict(ball_map.state_dict()) == {}  # no weights: nothing under hyperbolic_head.* in a checkpoint
    z = ball_map(x)
    norm = x.norm(dim=1, keepdim=True)
    formula = torch.tanh(C ** 0.5 * norm) * x / (C ** 0.5 * norm)
    max_norm = (1 - torch.finfo(torch.float64).eps ** 0.5) / C ** 0.5
    formula = torch.where(formula.norm(dim=1, keepdim=True) > max_norm, formula / formula.norm(dim=1, keepdim=True) * max_norm,
                          formula)
    torch.testing.assert_close(z, formula, rtol=1e-12, atol=1e-15)


def test_health_stats_report_the_curved_regime():
    c = 0.25  # radius 2
    radius = c ** -0.5
    rel = torch.tensor([0.1, 0.5, 0.9995, 0.9999])  # the last two within 1e-3 of the boundary
    points = torch.zeros(4, 3, dtype=torch.float64)
    points[:, 0] = rel * radius
    stats = ball_health_stats(points, points, c, None)
    assert all(not t.requires_grad and t.dim() == 0 for t in stats.values())
    assert float(stats["two_over_sqrt_c"]) == pytest.approx(2 / c ** 0.5)
    assert float(stats["c_sq_norm_mean"]) == pytest.approx(float((rel.double() ** 2).mean()))
    assert float(stats["c_sq_norm_max"]) == pytest.approx(0.9999 ** 2)
    assert float(stats["near_boundary_fraction"]) == pytest.approx(0.5)
    assert float(stats["hyp_norm_mean"]) == pytest.approx(float(dist0(points, c).mean()))
    assert float(stats["clipped_fraction"]) == 0


# ---------------------------------------------------------------- Lightly: the shared head


def test_options_reach_the_heads_and_come_from_the_command_line():
    args = build_parser(MoCoHCL).parse_args(["--hyperbolic-head", "shared", "--riemannian-grad", "--decoupled",
                                             "--no-shuffle-bn", "--proj-output-dim", "16", "--proj-hidden-dim", "32"])
    hp = MoCoHCL.HyperParameters.from_args(args)
    assert (hp.hyperbolic_head, hp.riemannian_grad, hp.decoupled, hp.shuffle_bn) == ("shared", True, True, False)
    assert (hp.hyp_hidden_dim, hp.hyp_output_dim) == (32, 16)
    defaults = MoCoHCL.HyperParameters.from_args(build_parser(MoCoHCL).parse_args([]))
    assert (defaults.hyperbolic_head, defaults.riemannian_grad, defaults.decoupled, defaults.shuffle_bn) == (
        "separate", False, False, True)
    assert not hasattr(SimCLRHCL.HyperParameters.from_args(build_parser(SimCLRHCL).parse_args([])), "shuffle_bn")
    model = MoCoHCL(**TINY, hyperbolic_head="shared", riemannian_grad=True, decoupled=True)
    for head in (model.hyperbolic_head, model.hyperbolic_head_momentum):
        assert isinstance(head, BallMap) and head.riemannian_grad and head.decoupled and head.curvature is model.curvature
    assert isinstance(MoCoHCL(**TINY).hyperbolic_head, PoincareProjectionHead)
    with pytest.raises(ValueError, match="hyperbolic_head must be one of 'separate', 'shared', got 'both'"):
        MoCoHCL(**TINY, hyperbolic_head="both")


class Capture:
    """Forward hooks: the projection head's outputs and the criterion's arguments."""

    def __init__(self, model) -> None:
        self.projections, self.criterion_args = [], None
        model.projection_head.register_forward_hook(lambda m, i, o: self.projections.append(o))
        model.criterion.register_forward_pre_hook(lambda m, args: setattr(self, "criterion_args", args))


def test_shared_head_euclidean_loss_sees_the_normalised_and_hyperbolic_loss_the_mapped_raw_output(gen):
    torch.manual_seed(0)
    model = MoCoHCL(**TINY, hyperbolic_head="shared", memory_bank_size=0, shuffle_bn=False)
    batch = views(gen)
    batch["hyperbolic_scene"] = batch["object_view_1"]  # the scene query is then the first Euclidean query
    capture = Capture(model)
    loss = model.training_step(batch, 0)
    q1, q2, scene_raw = capture.projections
    (euc_q, euc_k, hyp_query, hyp_key) = capture.criterion_args
    assert euc_q[0] is q1 and euc_q[1] is q2
    torch.testing.assert_close(scene_raw, q1, rtol=0, atol=0)  # one head, one tensor for both losses
    scale = model.hyperbolic_head.log_scale.exp()
    torch.testing.assert_close(hyp_query, expmap0(scale * scene_raw, model.curvature()), rtol=1e-6, atol=1e-7)
    # the Euclidean term depends on the queries' directions only: it is the InfoNCE of the normalised outputs
    info_nce = InfoNCELoss(0.2)  # the models' default temperature
    expected = 0.5 * (info_nce(F.normalize(q1), F.normalize(euc_k[1])) + info_nce(F.normalize(q2), F.normalize(euc_k[0])))
    _, parts = model.criterion(euc_q, euc_k, hyp_query, hyp_key, return_parts=True)
    torch.testing.assert_close(parts["loss_euc"], expected.detach())
    assert torch.isfinite(loss)


@pytest.mark.parametrize("kind", ["separate", "shared"])
def test_the_hyperbolic_loss_trains_the_projection_head_only_when_shared(kind, gen):
    torch.manual_seed(0)
    model = MoCoHCL(**TINY, hyperbolic_head=kind, memory_bank_size=0)
    scene, obj = model.hyperbolic_views(views(gen))
    model.criterion.hyperbolic(scene, obj).backward()
    reached = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in model.projection_head.parameters()]
    assert all(reached) if kind == "shared" else not any(reached)


# ---------------------------------------------------------------- shuffle-BN


class CountShuffles:
    def __init__(self, monkeypatch) -> None:
        from lightly.models import utils as lightly_utils

        self.calls = []
        original = lightly_utils.batch_shuffle

        def spy(batch, distributed=False):
            self.calls.append(distributed)
            return original(batch, distributed=distributed)

        monkeypatch.setattr(lightly_utils, "batch_shuffle", spy)


@pytest.mark.parametrize("model_class", [MoCoHCL, DenseCLHCL])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_shuffled_keys_equal_the_unshuffled_keys_in_one_process(model_class, mode, gen, monkeypatch):
    """Eval mode: BatchNorm uses running statistics. Train mode, one process: the batch statistics of a
    permuted batch are the same up to the order of the sums."""
    torch.manual_seed(0)
    model = getattr(model_class(**TINY, memory_bank_size=0), mode)()
    x = torch.randn(6, 3, 32, 32, generator=gen)
    if model_class is MoCoHCL:
        encoders = [model.key, model.embed_object]
    else:
        def dense(v, shuffle_bn):
            return model.momentum_forward(lambda u: model.dense_outputs(
                model.backbone_momentum, model.projection_head_momentum, model.projection_head_local_momentum, u),
                v, shuffle_bn)
        encoders = [dense, model.embed_object]
    shuffles = CountShuffles(monkeypatch)
    for encode in encoders:
        torch.manual_seed(1)
        shuffled, plain = encode(x, shuffle_bn=True), encode(x, shuffle_bn=False)
        for a, b in zip(shuffled if isinstance(shuffled, tuple) else [shuffled], plain if isinstance(plain, tuple) else [plain]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert shuffles.calls == [False, False]  # one shuffle per shuffled call, not across ranks in one process


def test_training_step_shuffles_every_key_encoder_forward_when_on(gen, monkeypatch):
    batch = views(gen)
    for shuffle_bn, expected in ((True, 3), (False, 0)):  # two Euclidean keys and the hyperbolic key
        shuffles = CountShuffles(monkeypatch)
        MoCoHCL(**TINY, memory_bank_size=0, shuffle_bn=shuffle_bn).training_step(batch, 0)
        assert len(shuffles.calls) == expected


WORLD, PER_RANK = 2, 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_images() -> torch.Tensor:
    return torch.randn(WORLD * PER_RANK, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def shuffle_worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        model = MoCoHCL(**TINY, memory_bank_size=0)
        x = ddp_images()[rank * PER_RANK:(rank + 1) * PER_RANK]
        model.eval()
        out = {"eval_shuffled": model.key(x, shuffle_bn=True), "eval_plain": model.key(x, shuffle_bn=False),
               "eval_object_shuffled": model.embed_object(x, shuffle_bn=True),
               "eval_object_plain": model.embed_object(x, shuffle_bn=False)}
        model.train()
        out["train_plain"] = model.key(x, shuffle_bn=False)
        torch.manual_seed(123)  # rank 0 draws the permutation (then broadcast)
        out["train_shuffled"] = model.key(x, shuffle_bn=True)
        torch.save(out, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_shuffle_bn_under_two_process_gloo_ddp(tmp_path):
    mp.spawn(shuffle_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for out in ranks:  # eval mode: the round trip across ranks returns each rank's own keys, in order
        torch.testing.assert_close(out["eval_shuffled"], out["eval_plain"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out["eval_object_shuffled"], out["eval_object_plain"], rtol=1e-5, atol=1e-6)
    # train mode: each rank's BatchNorm saw the chunk of the global permutation it was dealt
    torch.manual_seed(123)
    order = torch.randperm(WORLD * PER_RANK)
    torch.manual_seed(0)
    reference = MoCoHCL(**TINY, memory_bank_size=0).train()
    images = ddp_images()
    chunks = [reference.key(images[order[k * PER_RANK:(k + 1) * PER_RANK]], shuffle_bn=False) for k in range(WORLD)]
    expected = torch.cat(chunks)[torch.argsort(order)]
    for r, out in enumerate(ranks):
        torch.testing.assert_close(out["train_shuffled"], expected[r * PER_RANK:(r + 1) * PER_RANK], rtol=1e-5, atol=1e-5)
    if set(order[:PER_RANK].tolist()) != set(range(PER_RANK)):  # the ranks' batches were mixed
        assert not all(torch.allclose(out["train_shuffled"], out["train_plain"], atol=1e-4) for out in ranks)


# ---------------------------------------------------------------- health metrics in a real Lightning run


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # pytorch_lightning 2.6 vs torch 2.14, not ours
def test_health_metrics_are_logged_by_a_lightning_run_and_the_shared_checkpoint_is_analysed(tmp_path, gen):
    """The shared head (the separate head logs the same ``stats`` through the same ``log_step``); the
    analysis rebuilds the shared head from the checkpoint (the learnt feature scale included)."""
    pl.seed_everything(0)
    model = MoCoHCL(**TINY, memory_bank_size=16, hyperbolic_head="shared", riemannian_grad=True)
    trainer = pl.Trainer(max_steps=2, logger=pl.loggers.CSVLogger(tmp_path, name="logs"), log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", devices=1, default_root_dir=tmp_path)
    trainer.fit(model, DataLoader(FixedBatch(views(gen), 2), batch_size=None))
    (path,) = tmp_path.glob("logs/version_*/metrics.csv")
    rows = [r for r in csv.DictReader(path.open()) if r.get("loss")]
    assert len(rows) == 2
    for row in rows:
        for name in HEALTH + ("feature_scale",):
            value = float(row[f"health/{name}"])
            assert value == value, name  # logged and not NaN
        assert float(row["health/two_over_sqrt_c"]) == pytest.approx(2 / C ** 0.5)
        assert 0 <= float(row["health/c_sq_norm_mean"]) <= float(row["health/c_sq_norm_max"]) < 1
        assert 0 <= float(row["health/near_boundary_fraction"]) <= 1

    from hcl_plugin.eval import load_checkpoint

    trainer.save_checkpoint(tmp_path / "shared.ckpt")
    analysed = load_checkpoint(tmp_path / "shared.ckpt")
    assert analysed.hyperbolic_source == "hyperbolic_head(projection_head)" and isinstance(analysed.hyperbolic_head, BallMap)
    assert torch.equal(analysed.hyperbolic_head.log_scale, model.hyperbolic_head.log_scale.detach())
    assert float(model.hyperbolic_head.log_scale.exp()) != pytest.approx(0.25)  # learnt, not the initial value
    images = torch.randn(3, 3, 32, 32, generator=gen)
    model.eval()
    with torch.no_grad():
        expected = model.hyperbolic_head(model.projection_head(model.backbone(images)))
    torch.testing.assert_close(analysed.embed(images)["hyperbolic"], expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- no new host synchronisation


def test_shared_head_step_with_every_option_adds_no_host_sync():
    """Under the recommended value-check interval, a MoCo step with the shared head and every option
    (Riemannian gradient, decoupled, learnt c, shuffle-BN) syncs no more than the baseline's step."""
    import warnings

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import count_host_syncs as bench

    from hcl_plugin.utils.checks import value_checks
    from hcl_plugin.utils.sync_count import HostSyncCounter

    counts = {}
    for name, options in {"baseline": dict(lambda_hyp=0.0),
                          "shared": dict(lambda_hyp=0.1, hyperbolic_head="shared", riemannian_grad=True, decoupled=True,
                                         learn_c=True)}.items():
        torch.manual_seed(0)
        module = MoCoHCL(**{**bench.TINY, **options}).train()
        optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
        batch = bench.make_batch()
        with value_checks(every=bench.RECOMMENDED_INTERVAL), bench.accelerator_paths(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer attached: logging is a no-op
            bench.train_step(module, optimizer, batch, 0)  # warm-up: the first call of every site checks
            with HostSyncCounter() as syncs:
                bench.train_step(module, optimizer, batch, 1)
        counts[name] = syncs
    assert counts["shared"].count <= counts["baseline"].count, counts["shared"].report()
    assert all("log_step" in r.where for r in counts["shared"].records), counts["shared"].report()
