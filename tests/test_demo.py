"""``make demo``'s job end to end at a tiny budget: train, analyse, report; a second run reuses the checkpoint."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

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
    assert (out / "analysis" / "norm_vs_objects.png").exists() and (out / "random_init" / "report.md").exists()
    assert "| norm_spearman |" in (out / "report.md").read_text()
    stamp = (out / "final.ckpt").stat().st_mtime_ns
    capsys.readouterr()
    demo.main(args)
    assert "reusing" in capsys.readouterr().out
    assert (out / "final.ckpt").stat().st_mtime_ns == stamp
