"""End-to-end MMSelfSup training on CPU: tools/train.py, resume, tools/dist_train.sh (gloo), λ warm-up,
a learnable curvature."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import CheckpointLoader, Runner

import hcl_plugin.mmselfsup  # noqa: F401
from hcl_plugin.mmselfsup.hooks import CosineKeyMomentumHook, cosine_key_momentum
from tests.mmselfsup_helpers import QUEUE_KEYS, ROOT, build_embedded, read_scalars, tiny_config, write_tiny_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    return build_embedded(tmp_path_factory.mktemp("embedded_mm_train"))


def _env() -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _run(cmd: list, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{cmd} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


@pytest.mark.parametrize("base", ["densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", "mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py"])
def test_tools_train_runs_the_tiny_config_and_logs_loss_hyp(base, embedded, tmp_path):
    work = tmp_path / "work"
    config = write_tiny_config(tmp_path / "cfg.py", base, embedded, work, max_iters=4, checkpoint_interval=2)
    _run([sys.executable, "tools/train.py", str(config), "--work-dir", str(work)])
    rows = [r for r in read_scalars(work) if "loss" in r]
    assert [r["iter"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        assert math.isfinite(row["loss"]) and math.isfinite(row["loss_hyp"])
        assert row["loss"] == pytest.approx(sum(v for k, v in row.items() if k.startswith("loss_") and k != "loss_hyp"), rel=1e-3)
    assert {"iter_2.pth", "iter_4.pth", "last_checkpoint"} <= {p.name for p in work.iterdir()}
    # the schedule's CosineKeyMomentumHook: m_t from the config's momentum (0.98) to 1 over max_iters = 4
    momenta = [r["key_momentum"] for r in rows]
    assert momenta == pytest.approx([cosine_key_momentum(t, 4, 0.98) for t in range(4)], abs=1e-9)
    assert momenta[0] == pytest.approx(0.98) and momenta[-1] == pytest.approx(1.0)


class _Snapshot(Hook):
    """Records the iteration, the queues and log c (when learnable) when training (re)starts."""

    def before_train(self, runner) -> None:
        self.iter = runner.iter
        state = runner.model.state_dict()
        self.queues = {k: v.clone() for k, v in state.items() if k in QUEUE_KEYS}
        self.log_c = float(state["curvature.log_c"]) if "curvature.log_c" in state else None


def test_resume_continues_at_the_right_iteration_with_identical_queues(embedded, tmp_path):
    first = tiny_config("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path / "a", max_iters=4, checkpoint_interval=2)
    Runner.from_cfg(first).train()
    saved = CheckpointLoader.load_checkpoint(str(tmp_path / "a" / "iter_2.pth"))["state_dict"]
    assert set(QUEUE_KEYS) <= set(saved)

    second = tiny_config("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path / "b", max_iters=4, checkpoint_interval=2)
    second.resume, second.load_from = True, str(tmp_path / "a" / "iter_2.pth")
    runner = Runner.from_cfg(second)
    snapshot = _Snapshot()
    runner.register_hook(snapshot)
    runner.train()
    assert snapshot.iter == 2
    for key in QUEUE_KEYS:
        assert torch.equal(snapshot.queues[key], saved[key]), key
    assert [r["iter"] for r in read_scalars(tmp_path / "b") if "loss" in r] == [3, 4]
    # the key-momentum schedule continues exactly: the resumed iterations log what the first run logged
    first_momenta = {r["iter"]: r["key_momentum"] for r in read_scalars(tmp_path / "a") if "key_momentum" in r}
    for row in (r for r in read_scalars(tmp_path / "b") if "key_momentum" in r):
        assert row["key_momentum"] == first_momenta[row["iter"]]
    assert "iter_4.pth" in os.listdir(tmp_path / "b")


def test_auto_resume_from_the_work_dir_through_tools_train(embedded, tmp_path):
    work = tmp_path / "work"
    config = write_tiny_config(tmp_path / "cfg.py", "mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, work, max_iters=2,
                               checkpoint_interval=2)
    _run([sys.executable, "tools/train.py", str(config)])
    config = write_tiny_config(tmp_path / "cfg.py", "mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, work, max_iters=3,
                               checkpoint_interval=1)
    done = _run([sys.executable, "tools/train.py", str(config), "--resume"])
    assert "resumed epoch: 0, iter: 2" in done.stdout + done.stderr
    assert (work / "iter_3.pth").exists()


def test_dist_train_two_cpu_processes_keep_the_queues_in_sync(embedded, tmp_path):
    work = tmp_path / "work"
    config = tiny_config("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, work, max_iters=3, checkpoint_interval=3)
    config.custom_imports = dict(imports=["hcl_plugin.mmselfsup", "tests.mmselfsup_helpers"], allow_failed_imports=False)
    config.custom_hooks = [dict(type="DumpQueuesHook")]
    config.dump(str(tmp_path / "cfg.py"))
    env_port = str(29500 + os.getpid() % 1000)
    cmd = ["bash", "tools/dist_train.sh", str(tmp_path / "cfg.py"), "2", "--work-dir", str(work)]
    done = subprocess.run(cmd, cwd=ROOT, env=dict(_env(), PORT=env_port, PYTHON=sys.executable),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-6000:]
    queues = [torch.load(work / f"queues_rank{r}.pt") for r in (0, 1)]
    assert set(queues[0]) == set(QUEUE_KEYS)
    for key in QUEUE_KEYS:
        assert torch.equal(queues[0][key], queues[1][key]), key
    # 3 iterations x 2 ranks x 4 images entered the hyperbolic queue (keys gathered from both ranks)
    initial = tiny_config("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, work).model
    from mmengine.registry import init_default_scope
    from mmselfsup.registry import MODELS

    init_default_scope("mmselfsup")
    fresh = MODELS.build(initial).hyp_queue.bank
    changed = (queues[0]["hyp_queue.bank"] != fresh).any(dim=1)
    assert int(changed.sum()) == 3 * 2 * 4
    assert "Distributed training: True" in done.stdout + done.stderr


def test_lambda_warmup_hook_ramps_lambda_in_a_run(embedded, tmp_path):
    cfg = tiny_config("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path, max_iters=4, checkpoint_interval=4)
    cfg.custom_hooks = [dict(type="HCLLambdaWarmupHook", warmup_iters=2, start_iters=1)]
    Runner.from_cfg(cfg).train()
    rows = [r for r in read_scalars(tmp_path) if "loss" in r]
    assert [r["hyp_lambda"] for r in rows] == pytest.approx([0.0, 0.05, 0.1, 0.1])
    assert rows[0]["loss_hyp_weighted"] == 0.0 and rows[-1]["loss_hyp_weighted"] > 0 and rows[0]["loss_hyp"] > 0


def test_a_learnable_curvature_trains_and_resumes_in_a_run(embedded, tmp_path):
    """model.curvature=dict(learnable=True) from a config: one log c, trained, logged, saved, resumed."""

    def learnable(work: Path, max_iters: int):
        cfg = tiny_config("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, work, max_iters=max_iters, checkpoint_interval=2)
        cfg.model.curvature = dict(c=0.05, learnable=True)
        cfg.optim_wrapper.paramwise_cfg = dict(custom_keys={"curvature": dict(decay_mult=0.0)})
        return cfg

    Runner.from_cfg(learnable(tmp_path / "a", 2)).train()
    rows = [r for r in read_scalars(tmp_path / "a") if "loss" in r]
    assert len(rows) == 2 and all(math.isfinite(r["hyp_c"]) for r in rows)
    saved = CheckpointLoader.load_checkpoint(str(tmp_path / "a" / "iter_2.pth"))["state_dict"]
    assert [k for k in saved if "curvature" in k] == ["curvature.log_c"]
    assert float(saved["curvature.log_c"]) != pytest.approx(math.log(0.05), abs=1e-9)

    resumed = learnable(tmp_path / "b", 3)
    resumed.resume, resumed.load_from = True, str(tmp_path / "a" / "iter_2.pth")
    runner = Runner.from_cfg(resumed)
    snapshot = _Snapshot()
    runner.register_hook(snapshot)
    runner.train()
    assert snapshot.iter == 2 and snapshot.log_c == float(saved["curvature.log_c"])


def test_tools_train_switches_to_the_shared_head_from_the_command_line(embedded, tmp_path):
    """``--cfg-options model.hyperbolic_head=shared``: DenseCL's global branch is the shared head; the
    health of the map is logged and the checkpoint has no hyperbolic MLP."""
    work = tmp_path / "work"
    config = write_tiny_config(tmp_path / "cfg.py", "densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, work, max_iters=2,
                               checkpoint_interval=2)
    _run([sys.executable, "tools/train.py", str(config), "--work-dir", str(work), "--cfg-options",
          "model.hyperbolic_head=shared", "model.hyp_neck.riemannian_grad=True"])
    rows = [r for r in read_scalars(work) if "loss" in r]
    assert [r["iter"] for r in rows] == [1, 2]
    for row in rows:
        assert math.isfinite(row["loss_hyp"]) and 0 <= row["hyp_c_sq_norm_mean"] < 1
        assert {"hyp_near_boundary_fraction", "hyp_two_over_sqrt_c", "hyp_feature_scale"} <= set(row)
    state = CheckpointLoader.load_checkpoint(str(work / "iter_2.pth"))["state_dict"]
    assert sorted(k for k in state if k.startswith("hyp_neck.")) == ["hyp_neck.head.log_scale"]


class _Momenta(Hook):
    """Records, before each iteration (after the momentum hook), the momentum of every EMA of the model."""

    priority = "LOW"

    def __init__(self) -> None:
        self.seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.seen.append({name: 1.0 - ema.momentum
                          for name, ema in CosineKeyMomentumHook._momentum_encoders(runner.model).items()})


@pytest.mark.parametrize("base", ["mocov2_resnet18_1xb16-coslr-300it_embedded.py", "mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py"])
def test_key_momentum_hook_anneals_every_momentum_encoder(base, embedded, tmp_path):
    """The baseline's key encoder and HCL's key encoder and momentum hyperbolic neck all follow m_t."""
    cfg = tiny_config(base, embedded, tmp_path, max_iters=3, checkpoint_interval=3)
    runner = Runner.from_cfg(cfg)
    momenta = _Momenta()
    runner.register_hook(momenta)
    runner.train()
    expected_names = {"encoder_k"} | ({"hyp_neck_k"} if "hcl" in base else set())
    assert set(momenta.seen[0]) == expected_names
    for t, seen in enumerate(momenta.seen):
        for name, value in seen.items():
            assert value == pytest.approx(cosine_key_momentum(t, 3, 0.98), abs=1e-12), (name, t)

