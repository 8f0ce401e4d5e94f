"""``benchmarks/bench_train_step.py`` (issue 16 item 2): HCL vs baseline step times and the arithmetic floor.

Tiny settings on the CPU: the times are not checked against targets here (the benchmark reports
them), only that they are finite and that the floor is the count of backbone work the models do.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("lightly")
pytest.importorskip("pytorch_lightning")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_train_step as bench  # noqa: E402

TINY = dict(backbone="resnet18", image_size=32, batch_size=2, steps=2, precision="fp32", memory_bank_size=16,
            device="cpu", warmup=0)


def test_compute_only_gives_finite_times_and_the_floor_of_the_extra_backbone_passes():
    messages = []
    result = bench.compare_step_times(log=messages.append, **TINY)
    for key in ("backbone", "image_size", "batch_size", "precision", "baseline_ms", "hcl_ms", "ratio", "floor"):
        assert key in result, key
    assert all(math.isfinite(result[k]) and result[k] > 0 for k in ("baseline_ms", "hcl_ms", "ratio"))
    assert len(result["times_ms"]["hcl"]) == len(result["times_ms"]["baseline"]) == TINY["steps"]
    # symmetric MoCo-v2: the online backbone on both object views (forward + backward), the momentum
    # backbone on both (forward); HCL adds the scene query (forward + backward) and the object key
    # (forward): (4 fwd + 2 bwd) -> (6 fwd + 3 bwd), work 8 -> 12 forward-equivalents per sample
    hcl, base = result["hcl_passes"], result["baseline_passes"]
    assert (hcl["forward_passes"], hcl["backward_passes"]) == (6, 3)
    assert (base["forward_passes"], base["backward_passes"]) == (4, 2)
    assert result["floor"] == pytest.approx(1.5)
    assert result["ratio_over_floor"] == pytest.approx(result["ratio"] / 1.5)
    assert any("arithmetic floor 1.500x" in m for m in messages)


def test_a_smaller_hyperbolic_view_counts_by_its_pixels():
    result = bench.compare_step_times(log=lambda message: None, hyperbolic_size=16, **dict(TINY, steps=1))
    # baseline 8 x 32^2 per sample; HCL adds (3 + 1) x 16^2
    assert result["floor"] == pytest.approx(1 + 4 * 16**2 / (8 * 32**2))
    assert "2x16x16 +backward" in result["hcl_passes"]["inputs"]


def test_inputs_are_checked_with_their_names():
    with pytest.raises(ValueError, match="steps and batch_size must be >= 1"):
        bench.compare_step_times(log=lambda message: None, **dict(TINY, steps=0))
    with pytest.raises(ValueError, match="precision must be one of"):
        bench.compare_step_times(log=lambda message: None, **dict(TINY, precision="fp8"))
    with pytest.raises(ValueError, match="'fp16' needs a CUDA device"):
        bench.compare_step_times(log=lambda message: None, **dict(TINY, precision="fp16"))
    with pytest.raises(ValueError, match="holds no ResNet"):
        bench.PassCounter(nn.Linear(2, 2))
    with pytest.raises(ValueError, match="baseline step made no backbone pass"):
        bench.arithmetic_floor(bench.PassCounter(), bench.PassCounter())


def test_pass_counter_tells_backward_passes_from_momentum_passes():
    import torchvision

    online, momentum = torchvision.models.resnet18().eval(), torchvision.models.resnet18().requires_grad_(False).eval()
    counter = bench.PassCounter(online, momentum)
    with counter:
        online(torch.randn(2, 3, 32, 32))
        momentum(torch.randn(3, 3, 16, 16))
        with torch.no_grad():
            online(torch.randn(1, 3, 8, 8))
    assert counter.calls == [(2, 32, 32, True), (3, 16, 16, False), (1, 8, 8, False)]
    assert counter.work == 3 * 2 * 32 * 32 + 3 * 16 * 16 + 8 * 8
    with torch.no_grad():
        online(torch.randn(1, 3, 8, 8))  # hooks removed on exit
    assert len(counter.calls) == 3


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    from hcl_plugin.lightly.data import ensure_embedded_dataset

    return ensure_embedded_dataset(tmp_path_factory.mktemp("embedded"), num_images=24)


@pytest.mark.slow
def test_end_to_end_lightly_writes_the_report_the_table_and_the_plot(embedded, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(bench, "mmselfsup_missing", lambda: "MMSelfSup part skipped: cannot import mmselfsup")
    out = tmp_path / "out"
    report = bench.main(["--framework", "both", "--parts", "end-to-end", "--image-size", "32", "--hyperbolic-size", "16", "--batch-size", "2",
                         "--memory-bank-size", "16", "--steps", "2", "--block-steps", "1", "--block-warmup", "0",
                         "--warmup", "0", "--num-workers", "0", "--device", "cpu", "--embedded-dir", str(embedded),
                         "--out", str(out)])
    saved = json.loads((out / "bench_train_step.json").read_text())
    lightly = saved["frameworks"]["lightly"]
    e2e = lightly["end_to_end"]
    assert set(e2e["times_ms"]) == {"hcl", "baseline_4views", "baseline_2views"}
    assert all(len(ts) == 2 and all(math.isfinite(t) and t > 0 for t in ts) for ts in e2e["times_ms"].values())
    assert e2e["fair_baseline"] == "baseline_2views" and e2e["ratio"] == e2e["ratio_vs_baseline_2views"]
    assert lightly["compute"]["floor"] == pytest.approx(1 + 4 * 16**2 / (8 * 32**2))
    assert saved["frameworks"]["mmselfsup"] == {"skipped": "MMSelfSup part skipped: cannot import mmselfsup"}
    assert [row["what"] for row in report["table"]] == [
        "lightly moco, end to end vs baseline_4views",
        "lightly moco, end to end vs baseline_2views"]
    assert (out / "step_times.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "| lightly moco, end to end vs baseline_2views |" in printed and "MMSelfSup part skipped" in printed
    assert f"Wrote {out / 'bench_train_step.json'}" in printed and "Next:" in printed


def test_mmselfsup_compute_only_counts_the_floor_of_the_tiny_configs(embedded, tmp_path):
    pytest.importorskip("mmselfsup")
    if bench.mmselfsup_missing():
        pytest.skip(bench.mmselfsup_missing())
    report = bench.main(["--framework", "mmselfsup", "--mmselfsup-pairs", "mocov2", "--parts", "compute",
                         "--image-size", "32", "--batch-size", "2", "--memory-bank-size", "16", "--steps", "1",
                         "--warmup", "0", "--device", "cpu", "--embedded-dir", str(embedded), "--out", str(tmp_path)])
    compute = report["frameworks"]["mmselfsup"]["mocov2"]["compute"]
    # MMSelfSup's MoCo: the query (forward + backward) and the key (forward) of views 0 / 1; HCL adds
    # the scene query and the object key: twice the work
    assert compute["floor"] == pytest.approx(2.0)
    assert (compute["hcl_passes"]["forward_passes"], compute["hcl_passes"]["backward_passes"]) == (4, 2)
    assert math.isfinite(compute["ratio"]) and compute["ratio"] > 0


def test_the_old_commands_are_thin_wrappers_that_still_write_their_report(tmp_path, monkeypatch):
    import bench_moco_step

    calls = []
    monkeypatch.setattr(bench, "main", lambda argv: calls.append(argv) or {"frameworks": {}, "argv": argv})
    out = tmp_path / "moco.json"
    bench_moco_step.main(["--backbone", "resnet18", "--steps", "3", "--out", str(out)])
    assert calls[-1] == ["--framework", "lightly", "--parts", "compute", "--backbone", "resnet18", "--steps", "3",
                         "--out", str(tmp_path / "moco")]
    assert json.loads(out.read_text())["argv"] == calls[-1]

    import bench_mmselfsup_step

    out = tmp_path / "mm.json"
    bench_mmselfsup_step.main(["--pairs", "mocov2", "--depth", "50", "--hyp-image-size", "32", "--steps", "2",
                               "--out", str(out)])
    assert calls[-1] == ["--framework", "mmselfsup", "--parts", "compute", "--mmselfsup-pairs", "mocov2",
                         "--backbone", "resnet50", "--batch-size", "16", "--hyperbolic-size", "32", "--steps", "2",
                         "--out", str(tmp_path / "mm")]
    assert out.exists()


def test_a_failing_framework_is_recorded_and_a_missing_one_skipped_with_what_is_missing(tmp_path, monkeypatch, capsys):
    def boom(args, device, log):
        raise RuntimeError("boom")

    monkeypatch.setattr(bench, "lightly_benchmark", boom)
    monkeypatch.setattr(bench, "mmselfsup_missing", lambda: "MMSelfSup part skipped: cannot import mmcv (...)")
    report = bench.main(["--framework", "both", "--device", "cpu", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "bench_train_step.json").read_text())
    assert saved["frameworks"] == report["frameworks"] == {
        "lightly": {"error": "RuntimeError: boom"},
        "mmselfsup": {"skipped": "MMSelfSup part skipped: cannot import mmcv (...)"}}
    printed = capsys.readouterr().out
    assert "lightly FAILED: RuntimeError: boom" in printed and "cannot import mmcv" in printed
