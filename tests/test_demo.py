"""``make demo``'s job end to end at a tiny budget: train, analyse, report; a second run reuses the checkpoint."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))


@pytest.mark.slow
def test_demo_writes_checkpoint_metrics_plots_and_report_and_reuses_them(tmp_path, capsys):
    from tests.data_helpers import animals_or_skip

    animals_or_skip()
    import demo

    args = ["--out", str(tmp_path / "demo"), "--data", str(tmp_path / "embedded"), "--embedded-images", "40",
            "--minutes", "0.1", "--batch-size", "8"]
    demo.main(args)
    out = tmp_path / "demo"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] >= 1 and set(metrics) >= {"hcl", "random_init"}
    assert all(math.isfinite(v) for v in metrics["hcl"].values() if v is not None)
    assert (out / "final.ckpt").stat().st_size > 0
    assert (out / "training_loss.png").stat().st_size > 1000
    assert (out / "compare" / "hcl" / "norm_vs_objects.png").exists()
    assert (out / "compare" / "random_init" / "report.md").exists()
    comparison = json.loads((out / "compare" / "comparison.json").read_text())
    assert {m["bn_procedure"] for m in comparison["models"].values()} == {"recompute"}  # matched controls
    assert {m["hyperbolic_source"] for m in comparison["models"].values()} == {"expmap0(projection_head)"}
    hparams = torch.load(out / "final.ckpt", map_location="cpu", weights_only=False)["hyper_parameters"]
    assert hparams["hyperbolic_head"] == "shared" and hparams["memory_bank_size"] == 256  # released options, protocol
    assert "| norm_spearman |" in (out / "report.md").read_text()
    stamp = (out / "final.ckpt").stat().st_mtime_ns
    capsys.readouterr()
    demo.main(args)
    assert "reusing" in capsys.readouterr().out
    assert (out / "final.ckpt").stat().st_mtime_ns == stamp
