"""``benchmarks/gpu_check.sh --device cpu --quick --out DIR`` (issue 16 item 4): the real script, on the CPU.

It must write ``gpu_check.json`` with every field of the three parts (losses, numerics tests, the
training step) and no part error, and ``gpu_check.md``; on a GPU machine the same code runs with the
full sizes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightly")
pytest.importorskip("geoopt")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_cpu_run_writes_every_field(tmp_path):
    out = tmp_path / "gc"
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick",
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert {"device", "quick", "settings", "device_name", "torch", "python", "losses", "tests", "step",
            "seconds"} <= set(report)
    assert report["device"] == "cpu" and report["quick"] is True
    for part in ("losses", "tests", "step"):
        assert set(report[part]) == {"seconds", "error", "result"}, part
        assert report[part]["error"] is None, (part, report[part]["error"])

    settings = report["settings"]
    rows = report["losses"]["result"]
    assert len(rows) == len(settings["dtypes"]) * (len(settings["batches"]) * len(settings["ks"]) + 1)
    for row in rows:
        assert row["error"] is None, row
        assert {"dtype", "setting", "batch", "k", "ratio_vs_euclidean", "ratio_vs_compiled"} <= set(row)
        for loss in ("euclidean", "hyperbolic", "euclidean_compiled"):
            assert set(row[loss]) == {"median_ms", "min_ms", "peak_mib"}, (row["setting"], loss)
            assert math.isfinite(row[loss]["median_ms"]) and row[loss]["median_ms"] > 0
            assert row[loss]["peak_mib"] is None  # measured on CUDA only

    tests = report["tests"]["result"]
    assert {"command", "returncode", "summary", "seconds", "junit_xml", "output_tail"} <= set(tests)
    assert tests["returncode"] in (0, 5), tests["output_tail"]
    assert "passed" in tests["summary"] and "failed" not in tests["summary"], tests["summary"]
    assert (out / tests["junit_xml"]).exists()

    step = report["step"]["result"]
    assert {"backbone", "image_size", "batch_size", "precision", "baseline_ms", "hcl_ms", "ratio", "floor",
            "ratio_over_floor", "value_check_interval", "hcl_passes", "baseline_passes"} <= set(step)
    assert (step["backbone"], step["image_size"], step["batch_size"], step["precision"]) == (
        settings["step_backbone"], settings["step_image_size"], settings["step_batch"], settings["step_precision"])
    assert all(math.isfinite(step[k]) and step[k] > 0 for k in ("baseline_ms", "hcl_ms", "ratio"))
    assert step["floor"] == pytest.approx(1.5)

    md = (out / "gpu_check.md").read_text()
    assert "## Losses" in md and "## Numerics tests" in md and "## Training step" in md
    assert "failed" not in md and "arithmetic floor 1.50x" in md
    assert f"Wrote {out / 'gpu_check.json'}" in proc.stdout
