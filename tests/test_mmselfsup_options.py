"""The released HCL model's options in the MMSelfSup algorithms (docs/hcl_options.md): ``hyperbolic_head``
(separate / shared), ``riemannian_grad`` and ``decoupled`` on the map onto the ball, the health
statistics in MMEngine's log, and shared-head checkpoints in the analysis."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from torch.nn import functional as F

import hcl_plugin.mmselfsup  # noqa: F401  (registers the components)
from hcl_plugin.geometry import expmap0, norm_only, riemannian_expmap0
from hcl_plugin.mmselfsup import algorithms
from hcl_plugin.mmselfsup.necks import BallMapNeck, PoincareNeck
from hcl_plugin.modules import BallMap
from tests.mmselfsup_helpers import ROOT, assert_one_curvature, build_embedded, read_scalars, tiny_config

TINY = ROOT / "mmconfigs" / "tiny"
#: the health statistics of the map onto the ball, as logged (``ball_health_stats`` with the ``hyp_`` prefix)
HEALTH_KEYS = ("hyp_c_sq_norm_mean", "hyp_c_sq_norm_max", "hyp_two_over_sqrt_c", "hyp_near_boundary_fraction",
               "hyp_clipped_fraction", "hyp_norm_mean", "hyp_norm_min", "hyp_norm_max")


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    return build_embedded(tmp_path_factory.mktemp("embedded_mm_options"))


def _models():
    init_default_scope("mmselfsup")
    from mmselfsup.registry import MODELS

    return MODELS


def _model_cfg(base: str, **overrides):
    cfg = Config.fromfile(str(TINY / base)).model
    cfg.queue_len = 64
    cfg.update(overrides)
    return cfg


def _samples(n: int):
    from mmselfsup.structures import SelfSupDataSample

    return [SelfSupDataSample() for _ in range(n)]


# ----------------------------------------------------------------------------------- configs


def test_the_released_config_is_the_shared_head_with_the_official_map():
    cfg = Config.fromfile(str(ROOT / "mmconfigs" / "mocov2-hcl-released_resnet50_8xb32-coslr-200e_coco.py"))
    assert cfg.model.hyperbolic_head == "shared"
    assert cfg.model.hyp_neck == dict(type="BallMapNeck", clip_r=None, feature_scale=None, learn_scale=False,
                                      riemannian_grad=True, decoupled=False)
    default = Config.fromfile(str(ROOT / "mmconfigs" / "mocov2-hcl_resnet50_8xb32-coslr-200e_coco.py")).model
    assert default.hyperbolic_head == "separate"  # the project's defaults are unchanged
    assert (default.hyp_neck.riemannian_grad, default.hyp_neck.decoupled) == (False, False)
    model = _models().build(_model_cfg("mocov2-hcl-released_resnet18_1xb16-coslr-300it_embedded.py"))
    official = BallMap.official(model.curvature)
    for ball_map in (model.hyp_neck.head, model.hyp_neck_k.module.head):
        assert (ball_map.clip_r, ball_map.log_scale, ball_map.riemannian_grad, ball_map.decoupled) == (
            official.clip_r, official.log_scale, official.riemannian_grad, official.decoupled)
    assert_one_curvature(model)
    assert not any(k.startswith("hyp_neck.") for k in model.state_dict())  # the released map has no weights


@pytest.mark.parametrize("base", ["mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", "densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py"])
def test_shared_mode_from_the_default_config_keeps_the_map_keys_of_the_poincare_neck(base):
    """``--cfg-options model.hyperbolic_head=shared`` alone: the PoincareNeck's map keys, no MLP."""
    model = _models().build(_model_cfg(base, hyperbolic_head="shared",
                                       hyp_neck=dict(riemannian_grad=True, decoupled=True)))
    assert isinstance(model.hyp_neck, BallMapNeck) and model.shared_head
    head = model.hyp_neck.head
    assert (head.riemannian_grad, head.decoupled, head.clip_r) == (True, True, None)
    assert float(head.log_scale.detach().exp()) == pytest.approx(128 ** -0.5) and head.log_scale.requires_grad
    assert_one_curvature(model)
    assert sorted(k for k in model.state_dict() if k.startswith("hyp_neck.")) == ["hyp_neck.head.log_scale"]


def test_the_options_reach_the_separate_neck_and_its_momentum_copy():
    model = _models().build(_model_cfg("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", hyp_neck=dict(riemannian_grad=True, decoupled=True)))
    assert isinstance(model.hyp_neck, PoincareNeck) and not model.shared_head
    for neck in (model.hyp_neck, model.hyp_neck_k.module):
        assert (neck.head.riemannian_grad, neck.head.decoupled) == (True, True)
    assert_one_curvature(model)


def test_bad_head_kinds_and_mismatched_necks_are_refused():
    MODELS = _models()
    with pytest.raises(ValueError, match="hyperbolic_head must be one of 'separate', 'shared'"):
        MODELS.build(_model_cfg("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", hyperbolic_head="both"))
    with pytest.raises(ValueError, match="set model.hyperbolic_head='shared'"):
        MODELS.build(_model_cfg("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", hyp_neck=dict(_delete_=True, type="BallMapNeck")))
    cfg = _model_cfg("mocov2-hcl-released_resnet18_1xb16-coslr-300it_embedded.py")
    cfg.hyp_neck.out_channels = 64
    with pytest.raises(ValueError, match="out_channels = 64.*dimension 128"):
        MODELS.build(cfg)


# ------------------------------------------------------------------------------ the shared head


@pytest.mark.parametrize("base", ["mocov2-hcl-released_resnet18_1xb16-coslr-300it_embedded.py", "densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py"])
def test_shared_query_and_key_are_the_ball_map_of_the_raw_necks_that_feed_the_baseline(base, gen, monkeypatch):
    """Scene view = view 0: the online neck's output for it, L2-normalised, is MoCo's query (its logits with
    the queue), and the same tensor, raw, mapped by BallMap, is the hyperbolic query. The hyperbolic key is
    the momentum neck's raw output for the object view, mapped, through shuffle-BN, and enqueued."""
    overrides = {} if "released" in base else dict(hyperbolic_head="shared")
    model = _models().build(_model_cfg(base, **overrides)).eval()  # eval: BN uses running stats
    views = [torch.rand(4, 3, 32, 32, generator=gen) for _ in range(4)]
    views[2] = views[0].clone()
    online, momentum, mapped_in, mapped_out, heads, shuffled = [], [], [], [], [], []
    model.neck.register_forward_hook(lambda m, i, o: online.append(o))
    model.encoder_k.module[1].register_forward_hook(lambda m, i, o: momentum.append(o))
    model.hyp_neck.register_forward_hook(lambda m, i, o: mapped_in.append(i[0]) or mapped_out.append(o))
    model.head.register_forward_hook(lambda m, i, o: heads.append(i))
    real_shuffle = algorithms.batch_shuffle_ddp
    monkeypatch.setattr(algorithms, "batch_shuffle_ddp", lambda x: (shuffled.append(x), real_shuffle(x))[1])
    queue = model.queue.clone()
    with torch.no_grad():
        losses = model.loss(views, _samples(4))
    assert "loss_hyp" in losses and all(name in losses for name in HEALTH_KEYS)
    assert len(online) == 2 and len(momentum) == 2  # views 0 (baseline) and 2 (scene); views 1 and 3
    raw_scene = online[1][0]
    assert mapped_in[0][0] is raw_scene  # the hyperbolic query maps the neck's output itself ...
    assert not torch.allclose(raw_scene.norm(dim=1), torch.ones(4))  # ... raw, not normalised
    ball_map = BallMap.official(model.curvature) if "released" in base else model.hyp_neck.head
    torch.testing.assert_close(mapped_out[0][0], ball_map(raw_scene), rtol=0, atol=0)
    # the baseline's query on view 0 is the normalised version of the same neck output
    torch.testing.assert_close(online[0][0], raw_scene)
    l_neg = heads[0][1]
    torch.testing.assert_close(l_neg, F.normalize(raw_scene, dim=1) @ queue, rtol=1e-5, atol=1e-6)
    # the key: the momentum neck's raw output for view 3, through shuffle-BN, mapped, enqueued
    assert len(shuffled) == 1 and shuffled[0] is views[3]  # (MoCo shuffles view 1 with its own import)
    with torch.no_grad():
        raw_key = model.encoder_k.module[1](model.encoder_k.module[0](views[3]))[0]
    order = torch.cdist(momentum[1][0], raw_key).argmin(dim=0)  # the momentum neck saw the shuffled batch
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    torch.testing.assert_close(momentum[1][0][order], raw_key, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.hyp_queue.bank[:4], ball_map(raw_key), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("riemannian_grad, decoupled", [(True, False), (False, True), (True, True)])
def test_the_gradient_options_reach_the_shared_map_float64(riemannian_grad, decoupled, gen):
    """The neck's gradient from the hyperbolic query equals the one through the core functions
    (``riemannian_expmap0`` / ``norm_only``), in float64."""
    model = _models().build(_model_cfg("mocov2-hcl-released_resnet18_1xb16-coslr-300it_embedded.py", hyp_neck=dict(
        riemannian_grad=riemannian_grad, decoupled=decoupled))).double().eval()
    images = torch.rand(3, 3, 32, 32, generator=gen, dtype=torch.float64)
    upstream = torch.randn(3, 128, generator=gen, dtype=torch.float64)
    c = model.curvature.fixed_c

    def neck_grads(points_of):
        model.zero_grad()
        (points_of(images) * upstream).sum().backward()
        return [p.grad.clone() for p in model.neck.parameters()]

    def reference(x):
        v = model.neck(model.backbone(x))[0]
        v = norm_only(v) if decoupled else v
        return riemannian_expmap0(v, c) if riemannian_grad else expmap0(v, c)

    got = neck_grads(model.hyperbolic_query)
    expected = neck_grads(reference)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-14)
    plain = neck_grads(lambda x: expmap0(model.neck(model.backbone(x))[0], c))
    assert any(not torch.allclose(g, p) for g, p in zip(got, plain))  # the option changed the gradient


def test_the_gradient_options_reach_the_separate_neck_float64(gen):
    """PoincareNeck(riemannian_grad, decoupled) against the core functions on its own MLP output, float64."""
    model = _models().build(_model_cfg("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", hyp_neck=dict(
        riemannian_grad=True, decoupled=True))).double().eval()
    images = torch.rand(3, 3, 32, 32, generator=gen, dtype=torch.float64)
    upstream = torch.randn(3, 128, generator=gen, dtype=torch.float64)
    head, c = model.hyp_neck.head, model.curvature.fixed_c

    def grads(points_of):
        model.zero_grad()
        (points_of(images) * upstream).sum().backward()
        return [p.grad.clone() for p in model.hyp_neck.parameters()]

    def reference(x):
        v = head.mlp(torch.flatten(model.hyp_neck.avgpool(model.backbone(x)[0]), 1)) * head.log_scale.exp()
        return riemannian_expmap0(norm_only(v), c)

    for g, e in zip(grads(model.hyperbolic_query), grads(reference)):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-14)


# --------------------------------------------------------------- a run: the log and the checkpoint


def test_a_shared_head_run_logs_the_health_and_its_checkpoint_is_analysed(embedded, tmp_path, gen):
    from hcl_plugin.eval import load_checkpoint

    cfg = tiny_config("mocov2-hcl-released_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path, max_iters=3, checkpoint_interval=3)
    runner = Runner.from_cfg(cfg)
    runner.train()
    rows = [r for r in read_scalars(tmp_path) if "loss" in r]
    assert [r["iter"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert set(HEALTH_KEYS) <= set(row), sorted(row)
        assert all(math.isfinite(row[k]) for k in HEALTH_KEYS)
        assert 0 <= row["hyp_c_sq_norm_mean"] <= row["hyp_c_sq_norm_max"] < 1
        assert 0 <= row["hyp_near_boundary_fraction"] <= 1 and row["hyp_clipped_fraction"] == 0
        assert row["hyp_two_over_sqrt_c"] == pytest.approx(2 / math.sqrt(0.05), rel=1e-5)
        assert row["hyp_norm_min"] <= row["hyp_norm_mean"] <= row["hyp_norm_max"]
        # logged, not summed: the total is MoCo's loss plus the hyperbolic one
        assert row["loss"] == pytest.approx(row["loss_moco"] + row["loss_hyp_weighted"], rel=1e-4)

    loaded = load_checkpoint(str(tmp_path / "iter_3.pth"))
    hp = loaded.hyper_parameters
    assert (hp["checkpoint_format"], hp["hyperbolic_head"], hp["riemannian_grad"]) == ("mmselfsup", "shared", True)
    assert loaded.hyperbolic_source == "hyperbolic_head(projection_head)"
    model = runner.model.eval()
    images = torch.rand(3, 3, 64, 64, generator=gen)
    out = loaded.embed(images)
    with torch.no_grad():
        raw = model.neck(model.backbone(images))[0]
        torch.testing.assert_close(out["euclidean"], raw, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out["hyperbolic"], model.hyperbolic_query(images), rtol=1e-4, atol=1e-5)


def test_a_shared_head_with_a_learnt_scale_and_curvature_is_analysed(tmp_path, gen):
    """DenseCL, shared head, learnt scale and c: the scale maps to hyperbolic_head.log_scale, c is the learnt one."""
    from mmengine.logging import HistoryBuffer

    from hcl_plugin.eval import load_checkpoint

    cfg = Config.fromfile(str(TINY / "densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py"))
    cfg.model.update(hyperbolic_head="shared", curvature=dict(c=0.05, learnable=True))
    model = _models().build(cfg.model).eval()
    with torch.no_grad():
        model.curvature.log_c.fill_(math.log(0.08))
        model.hyp_neck.head.log_scale.fill_(math.log(0.3))
    buffer = HistoryBuffer()
    buffer.update(1.0)
    path = tmp_path / "iter_5.pth"
    torch.save({"meta": {"cfg": cfg.pretty_text, "iter": 5}, "state_dict": model.state_dict(),
                "message_hub": {"log_scalars": {"train/loss": buffer}}}, path)
    loaded = load_checkpoint(str(path))
    assert loaded.hyper_parameters["hyperbolic_head"] == "shared" and loaded.c == pytest.approx(0.08)
    images = torch.rand(2, 3, 64, 64, generator=gen)
    out = loaded.embed(images)
    with torch.no_grad():
        torch.testing.assert_close(out["hyperbolic"], model.hyperbolic_query(images), rtol=1e-4, atol=1e-5)


def test_a_shared_step_with_every_option_syncs_no_more_than_the_separate_step(gen):
    """Under the recommended value-check interval, the shared head with the Riemannian rescale, the
    decoupled gradient and a learnt c (health statistics included) adds no host synchronisation."""
    from hcl_plugin.utils.checks import value_checks
    from hcl_plugin.utils.sync_count import HostSyncCounter

    views = [torch.rand(4, 3, 32, 32, generator=gen) for _ in range(4)]
    counts = {}
    for name, overrides in {"separate": {}, "shared": dict(
            hyperbolic_head="shared", curvature=dict(c=0.05, learnable=True),
            hyp_neck=dict(riemannian_grad=True, decoupled=True))}.items():
        torch.manual_seed(0)
        model = _models().build(_model_cfg("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", **overrides)).train()

        def step():
            losses = model.loss([v.clone() for v in views], _samples(4))
            sum(value for key, value in losses.items() if "loss" in key).backward()  # MMEngine's parse_losses
            return losses

        with value_checks(every=100):
            step()  # warm-up: the first call of every site checks
            with HostSyncCounter() as syncs:
                losses = step()
        counts[name] = syncs
        assert all(name in losses for name in HEALTH_KEYS) and not any(v.requires_grad for k, v in losses.items()
                                                                       if k.startswith("hyp_"))
    shared, separate = counts["shared"], counts["separate"]
    assert shared.count <= separate.count, f"shared:\n{shared.report()}\nseparate:\n{separate.report()}"
    assert set(shared.sites()) <= set(separate.sites()), shared.report()
