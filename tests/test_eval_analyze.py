"""End to end: ``run_analysis`` and ``tools/analyze.py`` on a tiny embedded scene set with random tiny
checkpoints: metrics.json keys finite, report and plots written, bad input stops with clear errors."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.data_helpers import animals_or_skip
from tests.eval_helpers import contract_checkpoint, contract_hparams
from hcl_plugin.eval.analyze import PLOT_FILES, run_analysis
from hcl_plugin.eval.checkpoint import EuclideanProjectionHead, EvalModel
from hcl_plugin.eval.report import REQUIRED_METRICS
from hcl_plugin.eval.scenes import AnnotationsNotFoundError
from hcl_plugin.modules import PoincareProjectionHead
from tests.test_eval_plots import check_png

ROOT = Path(__file__).resolve().parents[1]
FRAMEWORKS = ("lightly", "pytorch_lightning", "lightning", "mmcv", "mmengine", "mmselfsup", "mmdet")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from hcl_plugin.data.embedded.scenes import SyntheticConfig, build_synthetic_dataset

    out = tmp_path_factory.mktemp("eval_scenes")
    config = SyntheticConfig(num_images=48, image_size=64, seed=11, ooc_fraction=0.35, val_fraction=0.5)
    build_synthetic_dataset(out, config, animals=animals_or_skip(), progress=False)
    val = json.loads((out / "annotations_val.json").read_text())
    flags = [a["out_of_context"] for a in val["annotations"]]
    assert any(flags) and not all(flags), "fixture must hold in- and out-of-context objects in val"
    return out


@pytest.fixture(scope="module")
def ckpt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval_ckpt") / "hcl.ckpt"
    torch.save(contract_checkpoint(seed=5, momentum=False), path)
    return path


def _check_outputs(out: Path, metrics: dict) -> None:
    written = json.loads((out / "metrics.json").read_text())
    assert written == metrics
    for key in REQUIRED_METRICS:
        assert isinstance(written[key], float) and math.isfinite(written[key]), (key, written[key])
    assert -1 <= written["norm_spearman"] <= 1 and -1 <= written["norm_pearson"] <= 1
    for key in ("ooc_auroc", "ooc_ap", "linear_top1", "multilabel_map", "knn_top1"):
        assert 0 <= written[key] <= 1, key
    report = (out / "report.md").read_text()
    for key in REQUIRED_METRICS:
        assert f"`{key}`" in report
    for key, name in PLOT_FILES.items():
        assert written["details"]["plots"][key] == name
        assert f"]({name})" in report
        check_png(out / name)


def test_run_analysis_on_a_checkpoint_file(scenes, ckpt_file, tmp_path):
    metrics = run_analysis(ckpt_file, scenes, tmp_path / "out", batch_size=32, progress=False)
    _check_outputs(tmp_path / "out", metrics)
    details = metrics["details"]
    assert details["data"]["annotation_file"].endswith("annotations_val.json")
    assert details["model"]["hyperbolic_source"] == "hyperbolic_head" and details["model"]["image_size"] == 32
    assert details["probes"]["protocol"].startswith("trained on annotations_train.json")
    assert details["probes"]["train_images"] == 24 and details["probes"]["test_images"] == 24
    table = details["norms"]["by_num_objects"]
    assert sum(row["n"] for row in table) == metrics["num_images"] == 24
    val = json.loads((scenes / "annotations_val.json").read_text())
    assert details["out_of_context"]["image"]["num_out_of_context"] == sum(a["out_of_context"] for a in val["annotations"])
    assert metrics["num_objects"] == len(val["annotations"])


def _in_memory_model() -> EvalModel:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.BatchNorm2d(16), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return EvalModel(backbone, EuclideanProjectionHead(16, 16, 8),
                     PoincareProjectionHead(16, 16, 8, c=0.05, feature_scale=0.3), c=0.05, image_size=24)


def test_in_memory_model_without_a_train_val_pair(scenes, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(scenes / "annotations.json", data / "annotations.json")
    os.symlink(scenes / "images", data / "images")
    metrics = run_analysis(_in_memory_model(), data, tmp_path / "out", progress=False)
    _check_outputs(tmp_path / "out", metrics)
    assert metrics["num_images"] == 48
    assert "80/20 split" in metrics["details"]["probes"]["protocol"]
    assert metrics["details"]["probes"]["train_images"] + metrics["details"]["probes"]["test_images"] == 48
    assert metrics["details"]["model"]["source"] is None


def test_baseline_checkpoint_without_hyperbolic_head(scenes, tmp_path):
    ckpt = contract_checkpoint(seed=6, hyperbolic=False, momentum=False)
    metrics = run_analysis(ckpt, scenes, tmp_path / "out", split="val", max_images=16, max_train_images=16,
                           progress=False)
    assert metrics["details"]["model"]["hyperbolic_source"] == "expmap0(projection_head)"
    assert metrics["num_images"] == 16
    for key in REQUIRED_METRICS:
        assert metrics[key] is not None and math.isfinite(metrics[key]), key


def test_constant_norms_give_null_correlations_and_a_note(scenes, tmp_path):
    """A clip radius below every raw norm puts all points at the same norm (docs/background.md)."""
    model = _in_memory_model()
    model.hyperbolic_head.clip_r = 1e-3
    metrics = run_analysis(model, scenes, tmp_path / "out", max_images=12, max_train_images=12, progress=False)
    assert metrics["norm_spearman"] is None and metrics["norm_pearson"] is None
    assert metrics["hyp_clipped_fraction"] == pytest.approx(1.0)
    assert any("constant" in note for note in metrics["details"]["notes"])
    assert "n/a" in (tmp_path / "out" / "report.md").read_text()
    json.loads((tmp_path / "out" / "metrics.json").read_text())  # strict JSON: null, not NaN


def test_data_folder_without_annotations(tmp_path):
    (tmp_path / "data" / "images").mkdir(parents=True)
    with pytest.raises(AnnotationsNotFoundError, match=str(tmp_path / "data" / "annotations_val.json")):
        run_analysis(tmp_path / "missing.ckpt", tmp_path / "data", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "analyze.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_cli_writes_metrics(scenes, ckpt_file, tmp_path):
    result = _cli(ckpt_file, "--data", scenes, "--out", tmp_path / "out", "--split", "val", "--batch-size", "32",
                  "--max-train-images", "12", "--quiet")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert set(printed) == set(REQUIRED_METRICS)
    written = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert all(written[k] == printed[k] for k in REQUIRED_METRICS)
    assert (tmp_path / "out" / "report.md").is_file()


def test_cli_bad_input_exits_with_a_clear_error(scenes, tmp_path):
    (tmp_path / "empty").mkdir()
    result = _cli(tmp_path / "x.ckpt", "--data", tmp_path / "empty", "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 2
    assert "error: no annotations" in result.stderr and str(tmp_path / "empty" / "annotations.json") in result.stderr

    wrong = contract_checkpoint(seed=7, momentum=False, hparams=contract_hparams(hyp_output_dim=24))
    wrong["state_dict"]["hyperbolic_head.mlp.2.weight"] = torch.zeros(16, 64)
    wrong["state_dict"]["hyperbolic_head.mlp.2.bias"] = torch.zeros(16)
    torch.save(wrong, tmp_path / "wrong.ckpt")
    result = _cli(tmp_path / "wrong.ckpt", "--data", scenes, "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 2
    assert "hyperbolic_head.mlp.2.weight: (16, 64) vs (24, 64)" in result.stderr
    assert "hyperbolic_head.mlp.2.bias: (16,) vs (24,)" in result.stderr


def test_eval_modules_import_no_training_framework():
    code = (
        "import sys\n"
        "import hcl_plugin.eval.analyze, hcl_plugin.eval.checkpoint, hcl_plugin.eval.features\n"
        "import hcl_plugin.eval.norms, hcl_plugin.eval.out_of_context, hcl_plugin.eval.probes\n"
        "import hcl_plugin.eval.plots, hcl_plugin.eval.report, hcl_plugin.eval.metrics, hcl_plugin.eval.scenes\n"
        f"bad = [m for m in {FRAMEWORKS!r} if m in sys.modules]\n"
        "assert not bad, bad\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_select_hyperbolic_source(gen):
    from hcl_plugin.eval.analyze import select_hyperbolic_source
    from hcl_plugin.geometry import expmap0

    model = _in_memory_model().eval()
    images = torch.randn(2, 3, 24, 24, generator=gen)
    same, note = select_hyperbolic_source(model, "auto")
    assert same is model and note is None  # no lambda_hyp: the hyperbolic head is used
    model.hyper_parameters["lambda_hyp"] = 0.0
    switched, note = select_hyperbolic_source(model, "auto")
    assert "never trained" in note and switched.hyperbolic_source == "expmap0(projection_head)"
    assert model.hyperbolic_head is not None  # the model passed in is unchanged
    out = switched.embed(images)
    assert torch.allclose(out["hyperbolic"], expmap0(model.embed(images)["euclidean"], model.c))
    kept, note = select_hyperbolic_source(model, "hyperbolic_head")
    assert kept is model and note is None
    forced, note = select_hyperbolic_source(_in_memory_model(), "projection_head")
    assert forced.hyperbolic_head is None and "never trained" not in note
    with pytest.raises(ValueError, match="hyperbolic_source must be one of"):
        select_hyperbolic_source(model, "both")
    with pytest.raises(ValueError, match="no hyperbolic head"):
        select_hyperbolic_source(switched, "hyperbolic_head")
