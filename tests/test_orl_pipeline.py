"""The ORL pipeline driver (tools/orl_pipeline.py) and the ORL rows of tools/benchmark_transfer.py, by their
commands (--dry-run): every stage in order, each reading what the one before wrote."""

from __future__ import annotations

import contextlib
import io
import shlex
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import benchmark_transfer  # noqa: E402
import orl_pipeline  # noqa: E402


def _commands(main, argv):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(argv)
    return [shlex.split(line[2:]) for line in out.getvalue().splitlines() if line.startswith("+ ")]


def _script(command):
    return next(Path(part).name for part in command if part.endswith((".py", ".sh")))


def test_the_pipeline_runs_the_three_stages_in_order_on_each_others_outputs(tmp_path):
    commands = _commands(orl_pipeline.main, ["--out", str(tmp_path), "--dry-run", "--stage1-iters", "7",
                                             "--stage3-iters", "9"])
    assert [_script(c) for c in commands] == ["train.py", "extract_backbone.py", "make_proposals.py",
                                              "orl_correspondence.py", "train.py", "train.py"]
    stage1, extract, proposals, stage2, orl, hcl = commands
    assert "train_cfg.max_iters=7" in stage1 and orl_pipeline.DEFAULT_STAGE1 in stage1
    backbone = str(tmp_path / "stage1_backbone.pth")
    assert extract[-2] == backbone and stage2[2] == backbone
    assert proposals[proposals.index("--out") + 1] == stage2[stage2.index("--proposals") + 1]
    assert "--coco" in proposals and "--min-size" in stage2
    store = stage2[stage2.index("--out") + 1]
    for command, config in ((orl, "orl-stage3"), (hcl, "orl-hcl-stage3")):
        assert any(config in part for part in command)
        assert f"train_dataloader.dataset.correspondence={store}" in command and "train_cfg.max_iters=9" in command


def test_benchmark_transfer_adds_orl_rows_that_read_the_store(tmp_path):
    commands = _commands(benchmark_transfer.main, ["--out", str(tmp_path), "--orl", "--dry-run", "--no-random-init"])
    scripts = [_script(c) for c in commands]
    assert scripts.count("orl_correspondence.py") == 1 and scripts.count("make_proposals.py") == 1
    pretrain = [c for c in commands if _script(c) == "train.py" and any("orl-" in p and "stage3" in p for p in c)]
    assert len(pretrain) == 2
    store = str(tmp_path / "orl" / "correspondence")
    assert all(f"train_dataloader.dataset.correspondence={store}" in c for c in pretrain)
    # every pretraining row is fine-tuned: DenseCL, DenseCL + HCL, ORL, ORL + HCL
    det = [c for c in commands if any("mask-rcnn" in p for p in c)]
    assert len(det) == 4


def test_the_table_pairs_each_hcl_row_with_its_baseline():
    results = {name: {"metrics": {"coco/bbox_mAP": value}} for name, value in
               (("DenseCL", 0.1), ("DenseCL + HCL", 0.15), ("ORL", 0.2), ("ORL + HCL", 0.18), ("random init", 0.0))}
    table = benchmark_transfer.table(results)
    assert "| Δ (DenseCL + HCL − DenseCL) | +5.0 |" in table and "| Δ (ORL + HCL − ORL) | -2.0 |" in table
    assert benchmark_transfer.hcl_pairs(["A", "B"]) == [("B", "A")]


def test_an_interrupted_stage_resumes_and_a_finished_one_is_reused(tmp_path):
    stage1 = tmp_path / "stage1"
    stage1.mkdir()
    (stage1 / "last_checkpoint").write_text(str(stage1 / "iter_100.pth"))
    assert orl_pipeline.training_state(stage1, 300) == "partial"
    commands = _commands(orl_pipeline.main, ["--out", str(tmp_path), "--dry-run", "--stages", "1"])
    assert _script(commands[0]) == "train.py" and commands[0][-1] == "--resume"
    (stage1 / "last_checkpoint").write_text(str(stage1 / "iter_300.pth"))
    assert orl_pipeline.training_state(stage1, 300) == "done"
    commands = _commands(orl_pipeline.main, ["--out", str(tmp_path), "--dry-run", "--stages", "1"])
    assert "train.py" not in [_script(c) for c in commands]
