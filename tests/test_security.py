"""Hostile files: nothing read from a checkpoint runs code, corrupts memory or changes process state,
and nothing a user wrote is overwritten or deleted without an explicit flag (docs/security.md).

Every payload is built here and is harmless: where it would run code, that code only writes a marker
file, and each test checks the marker is absent and the error names the file and what was refused.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hcl_plugin.checkpoints import (
    CheckpointReadError,
    UnsafeCheckpointError,
    UnsafeConfigTextError,
    parse_config_text,
    safe_load,
)
from hcl_plugin.utils.files import atomic_output, prepare_output_dir, record_outputs
from tests.eval_helpers import contract_checkpoint

ROOT = Path(__file__).resolve().parents[1]


class _Reduce:
    """Pickles as ``func(*args)`` and, with ``state``, a BUILD of ``state``: hand-made pickle opcodes."""

    def __init__(self, func: Any, args: tuple, state: Any = None) -> None:
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _marker_code(marker: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('code from the file ran')\n"


# --------------------------------------------------------------------------------------------------
# The framework-free loader: numpy through validating stand-ins
# --------------------------------------------------------------------------------------------------

NUMERIC = ["?", "i1", "<i2", ">i4", "<i8", "u1", ">u2", "<u4", "u8", "<f2", ">f4", "<f8", "<c8", ">c16"]


@pytest.mark.parametrize("dtype", NUMERIC)
def test_numeric_numpy_arrays_and_scalars_round_trip_exactly(dtype, tmp_path, gen):
    raw = torch.randint(0, 255, (96,), generator=gen, dtype=torch.uint8).numpy().tobytes()
    array = np.frombuffer(raw[: 6 * np.dtype(dtype).itemsize], dtype=dtype).reshape(2, 3)
    payload = {"c": array, "f": np.asfortranarray(array), "t": array.T, "empty": np.zeros((0, 4), dtype=dtype),
               "scalar": array.reshape(-1)[0], "dtype": np.dtype(dtype), "tensor": torch.arange(3)}
    torch.save(payload, tmp_path / "numpy.pth")
    loaded = safe_load(tmp_path / "numpy.pth")
    for key in ("c", "f", "t", "empty"):
        assert type(loaded[key]) is np.ndarray and loaded[key].dtype == payload[key].dtype, key
        assert loaded[key].tobytes() == payload[key].tobytes() and loaded[key].shape == payload[key].shape, key
        assert loaded[key].flags.writeable
    assert loaded["f"].flags.f_contiguous
    assert loaded["scalar"].dtype == payload["scalar"].dtype
    assert loaded["scalar"].tobytes() == payload["scalar"].tobytes()
    assert loaded["dtype"] == payload["dtype"] and torch.equal(loaded["tensor"], payload["tensor"])


def _structured_object_array_payload(code: str = "V8", field: str = "O") -> _Reduce:
    """S3: a BUILD of a dtype with an object field and flags 0, then an array made of raw bytes: numpy
    would take those bytes for a PyObject pointer (0x4141414141414141) and crash the process."""
    hostile_dtype = _Reduce(np.dtype, (code, False, True),
                            (3, "|", None, ("a",), {"a": (np.dtype(field), 0)}, 8, 1, 0))
    return _Reduce(np.core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                   (1, (1,), hostile_dtype, False, struct.pack("<Q", 0x4141414141414141)))


@pytest.mark.parametrize("code, field, refused", [
    ("V8", "O", "numpy.dtype('V8') is refused"),
    ("f8", "O", "numpy.dtype('O8') is refused"),
    ("f8", "f8", "(no fields, sub-arrays, metadata or flags)"),
])
def test_structured_dtype_with_object_field_is_refused_without_crashing(code, field, refused, tmp_path):
    """Run in a child process, so that a regression shows as a crash of the child, not of the test run."""
    path = tmp_path / f"segfault_{code}_{field}.pth"
    torch.save({"state_dict": {}, "x": _structured_object_array_payload(code, field)}, path)
    script = textwrap.dedent(f"""
        from hcl_plugin.checkpoints import safe_load, UnsafeCheckpointError
        try:
            safe_load({str(path)!r})
        except UnsafeCheckpointError as error:
            print("REFUSED", error)
        else:
            print("LOADED")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"the child crashed (code {done.returncode}): {done.stderr[-2000:]}"
    assert done.stdout.startswith("REFUSED"), done.stdout
    assert path.name in done.stdout and refused in done.stdout


@pytest.mark.parametrize("name, payload, refused", [
    ("object_dtype", lambda: np.array([None, 1], dtype=object), "numpy.dtype('O8')"),
    ("string_dtype", lambda: np.array(["text"]), "numpy.dtype('U4')"),
    ("bytes_call", lambda: _Reduce(bytes, (10**6,)), "bytes(...) with arguments"),
    ("ndarray_call", lambda: _Reduce(np.ndarray, ((2,),)), "numpy.ndarray may only appear"),
    ("short_data", lambda: _Reduce(np.core.multiarray._reconstruct, (np.ndarray, (0,), b"b"),
                                   (1, (4,), np.dtype("f8"), False, b"\0" * 8)), "needs 32 bytes"),
    ("scalar_length", lambda: _Reduce(np.core.multiarray.scalar, (np.dtype("f8"), b"\0" * 3)), "with 3 bytes"),
    ("os_system", lambda: _Reduce(os.system, ("true",)), "GLOBAL posix.system"),
    ("eval", lambda: _Reduce(eval, ("1",)), "Unsupported global: GLOBAL eval"),
])
def test_hostile_globals_and_data_are_refused_naming_the_file(name, payload, refused, tmp_path):
    path = tmp_path / f"{name}.pth"
    torch.save({"x": payload()}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        safe_load(path)
    message = str(info.value)
    assert str(path) in message and refused in message and "nothing from the file was run" in message


def test_unreadable_and_missing_files_are_named(tmp_path):
    (tmp_path / "garbage.pth").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(CheckpointReadError, match="garbage.pth: not a readable torch checkpoint"):
        safe_load(tmp_path / "garbage.pth")
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        safe_load(tmp_path / "nowhere.pth")
    with pytest.raises(FileNotFoundError, match="is not a file"):
        safe_load(tmp_path)


# --------------------------------------------------------------------------------------------------
# Config text inside checkpoints: literals only
# --------------------------------------------------------------------------------------------------

def test_literal_config_text_is_read_without_running_it():
    text = ("model = dict(type='HCLDenseCL', backbone=dict(type='ResNet', depth=18), hyp_lambda=0.1, c=-0.05)\n"
            "custom_imports = dict(imports=['hcl_plugin.mmselfsup'], allow_failed_imports=False)\n"
            "_base_ = '/etc/passwd'\nscales = [(1, 2), {3}, {'a': None, 'b': True}]\nz = -2j\n")
    parsed = parse_config_text(text)
    assert parsed["model"]["backbone"]["depth"] == 18 and parsed["model"]["c"] == -0.05
    assert parsed["custom_imports"]["imports"] == ["hcl_plugin.mmselfsup"]  # a string; nothing imported
    assert parsed["_base_"] == "/etc/passwd"  # a string; nothing read
    assert parsed["scales"] == [(1, 2), {3}, {"a": None, "b": True}] and parsed["z"] == -2j


@pytest.mark.parametrize("text, what", [
    ("import os", "Import statement"),
    ("from os import system", "ImportFrom statement"),
    ("x = __import__('os').system('true')", "a call to"),
    ("x = open('/etc/passwd').read()", "a call to"),
    ("x = dict(**other)", "'**'"),
    ("x = {**other}", "'**' unpacking"),
    ("x = [i for i in range(3)]", "ListComp"),
    ("x = (lambda: 0)", "Lambda"),
    ("x = f'{y}'", "JoinedStr"),
    ("x = y", "the name 'y'"),
    ("x = os.environ", "Attribute"),
    ("x = 1 + 1", "BinOp"),
    ("x, y = 1, 2", "one plain name"),
    ("dict = exec", "assignment to 'dict'"),
    ("__builtins__ = {}", "assignment to '__builtins__'"),
    ("if True:\n    x = 1", "If statement"),
    ("x = -'a'", "a sign in front of a non-number"),
    ("x = (", "does not parse"),
    ("x = " + "[" * 5000 + "]" * 5000, "too many nested parentheses"),
    ("x = " + "-" * 100000 + "1", "nested too deeply"),
])
def test_executable_config_text_is_refused_naming_the_construct(text, what):
    with pytest.raises(UnsafeConfigTextError) as info:
        parse_config_text(text)
    assert what in str(info.value)


# --------------------------------------------------------------------------------------------------
# Output files and folders
# --------------------------------------------------------------------------------------------------

def test_atomic_output_never_writes_through_a_planted_symlink_and_cleans_up(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "backbone.pth"
    for name in ("backbone.pth.tmp", ".backbone.pth.tmp"):  # the old predictable names
        (tmp_path / name).symlink_to(victim)
    with atomic_output(out) as temporary:
        assert Path(temporary).parent == tmp_path and not Path(temporary).is_symlink()
        Path(temporary).write_bytes(b"new")
    assert out.read_bytes() == b"new" and victim.read_text() == "precious"
    with pytest.raises(FileExistsError, match=r"backbone.pth' exists; pass --overwrite"):
        with atomic_output(out):
            pass
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_output(out, overwrite=True) as temporary:
            Path(temporary).write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert out.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".backbone.pth.tmp", "backbone.pth", "backbone.pth.tmp",
                                                          "victim.txt"]
    with pytest.raises(IsADirectoryError, match="is a folder; give a file name"):
        with atomic_output(tmp_path):
            pass


def test_output_folders_are_refused_when_not_empty_and_overwrite_removes_only_recorded_files(tmp_path):
    out = tmp_path / "analysis"
    prepare_output_dir(out, "producer-a")
    (out / "old_plot.png").write_bytes(b"png")
    (out / "report.md").write_text("old")
    record_outputs(out, "producer-a", ["old_plot.png", "report.md"])
    (out / "my_notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"analysis' is not empty .*pass --overwrite"):
        prepare_output_dir(out, "producer-a")
    prepare_output_dir(out, "producer-b", overwrite=True)  # another producer's list is not trusted for deletion
    assert (out / "old_plot.png").exists()
    prepare_output_dir(out, "producer-a", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [".hcl_plugin_outputs.json", "my_notes.txt"]
    # a manifest cannot point a deletion outside the folder
    (tmp_path / "outside.txt").write_text("keep")
    (out / ".hcl_plugin_outputs.json").write_text(json.dumps({"producer": "producer-a",
                                                              "files": ["../outside.txt", str(tmp_path / "outside.txt")]}))
    prepare_output_dir(out, "producer-a", overwrite=True)
    assert (tmp_path / "outside.txt").read_text() == "keep"
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError, match="a_file"):
        prepare_output_dir(tmp_path / "a_file", "producer-a")


# --------------------------------------------------------------------------------------------------
# The analysis (tools/analyze.py) and the demo
# --------------------------------------------------------------------------------------------------

def test_analysis_loader_refuses_code_and_names_the_file(tmp_path):
    from hcl_plugin.eval.checkpoint import CheckpointFormatError, load_checkpoint

    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.ckpt"
    torch.save({**contract_checkpoint(seed=0, momentum=False), "extra": _Reduce(exec, (_marker_code(marker),))}, path)
    with pytest.raises(CheckpointFormatError, match=r"evil.ckpt: torch.load\(weights_only=True\) refused it "
                                                    r"\(Unsupported global: GLOBAL exec"):
        load_checkpoint(path)
    assert not marker.exists()


def test_analyze_refuses_a_non_empty_output_folder_before_any_work(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import analyze
    finally:
        sys.path.remove(str(ROOT / "tools"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier_plot.png").write_bytes(b"png")
    code = analyze.main([str(tmp_path / "missing.ckpt"), "--data", str(tmp_path), "--out", str(out), "--quiet"])
    assert code == 2
    error = capsys.readouterr().err
    assert f"output folder {str(out)!r} is not empty (earlier_plot.png)" in error and "--overwrite" in error
    assert (out / "earlier_plot.png").read_bytes() == b"png"


def test_demo_reads_its_checkpoint_safely_and_never_deletes_an_unfinished_run(tmp_path):
    pytest.importorskip("lightly", reason="lightly is not installed (pip install 'hcl_plugin[lightly]'): "
                        "tools/demo.py imports the Lightly example")
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import demo
    finally:
        sys.path.remove(str(ROOT / "tools"))
    marker = tmp_path / "MARKER"
    evil = tmp_path / "final.ckpt"
    torch.save({"hyper_parameters": _Reduce(exec, (_marker_code(marker),)), "state_dict": {}}, evil)
    from hcl_plugin.eval.compare import random_init_like  # what the demo builds its control with
    from hcl_plugin.eval.errors import CheckpointFormatError

    with pytest.raises(CheckpointFormatError, match=r"final.ckpt: .*GLOBAL exec.*nothing from the file was run"):
        random_init_like(evil)
    assert not marker.exists()

    out = tmp_path / "demo"
    (out / "train" / "checkpoints").mkdir(parents=True)
    (out / "train" / "checkpoints" / "step_100.ckpt").write_bytes(b"an interrupted run")
    record_outputs(out, demo.PRODUCER, ["train"])
    args = demo.argparse.Namespace(retrain=False, data=tmp_path / "data", batch_size=32, minutes=0.1, seed=0)
    with pytest.raises(SystemExit, match="unfinished training run .*--retrain"):
        demo.train(args, out)
    assert (out / "train" / "checkpoints" / "step_100.ckpt").read_bytes() == b"an interrupted run"

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("mine")
    with pytest.raises(SystemExit, match=r"foreign is not empty \(thesis.tex\).*--overwrite"):
        demo.main(["--out", str(foreign), "--data", str(tmp_path / "data")])
    assert (foreign / "thesis.tex").read_text() == "mine" and not (tmp_path / "data").exists()


# --------------------------------------------------------------------------------------------------
# MMEngine: load_from, resume, downloads, the message hub, the MMSelfSup analysis adapter
# --------------------------------------------------------------------------------------------------

def _mmengine():
    pytest.importorskip("mmselfsup", reason="mmselfsup/mmengine are not installed (pip install "
                        "'hcl_plugin[mmselfsup]'): the MMEngine loading paths cannot be exercised")
    import hcl_plugin.mmselfsup  # noqa: F401  (installs the safe loaders)
    from mmengine.logging import HistoryBuffer
    from mmengine.runner import CheckpointLoader

    return CheckpointLoader, HistoryBuffer


def _mmselfsup_checkpoint(cfg_text: str) -> dict:
    """An MMEngine checkpoint of the tiny HCL DenseCL model, with ``cfg_text`` as its stored config."""
    from mmengine.config import Config
    from mmengine.logging import MessageHub
    from mmselfsup.registry import MODELS

    cfg = Config.fromfile(str(ROOT / "mmconfigs" / "tiny" / "densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py"))
    hub = MessageHub("security-test")
    for value in (3.0, 1.0, 2.0):
        hub.update_scalar("train/loss", value)
    hub.update_info("iter", 3)
    return {"meta": {"cfg": cfg_text, "iter": 3, "epoch": 0}, "state_dict": MODELS.build(cfg.model).state_dict(),
            "message_hub": hub.state_dict()}


def test_genuine_mmselfsup_checkpoint_loads_for_training_and_analysis(tmp_path):
    CheckpointLoader, HistoryBuffer = _mmengine()
    from mmengine.config import Config

    from hcl_plugin.eval.checkpoint import load_checkpoint

    HistoryBuffer()  # registers the default statistics
    registry = dict(HistoryBuffer._statistics_methods)
    text = Config.fromfile(str(ROOT / "mmconfigs" / "tiny" / "densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py")).pretty_text
    path = tmp_path / "iter_3.pth"
    torch.save(_mmselfsup_checkpoint(text), path)
    loaded = CheckpointLoader.load_checkpoint(str(path))
    buffer = loaded["message_hub"]["log_scalars"]["train/loss"]
    assert type(buffer) is HistoryBuffer and buffer.mean() == pytest.approx(2.0) and buffer.current() == 2.0
    assert loaded["meta"]["cfg"] == text
    model = load_checkpoint(path)
    assert model.hyper_parameters["mmselfsup_type"] == "HCLDenseCL" and model.hyperbolic_head is not None
    assert HistoryBuffer._statistics_methods == registry


def test_code_in_meta_cfg_is_refused_by_analyze_and_load_from(tmp_path):
    """S1 (tools/analyze.py) and ``load_from``: config text that would run code."""
    CheckpointLoader, _ = _mmengine()
    from hcl_plugin.eval.checkpoint import CheckpointFormatError, load_checkpoint

    marker = tmp_path / "MARKER"
    path = tmp_path / "evil_cfg.pth"
    torch.save(_mmselfsup_checkpoint(_marker_code(marker) + "model = dict(type='HCLDenseCL')\n"), path)
    with pytest.raises(CheckpointFormatError, match=r"evil_cfg.pth: meta\['cfg'\] is refused .*line 1: a Import"):
        load_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil_cfg.pth: meta\['cfg'\] is refused: line 1"):
        CheckpointLoader.load_checkpoint(str(path))
    assert not marker.exists()

    # even without the loader (a dict already in memory), the adapter parses and never executes
    checkpoint = _mmselfsup_checkpoint(_marker_code(marker))
    with pytest.raises(CheckpointFormatError, match=r"meta\['cfg'\] is refused \(nothing from it was run\)"):
        load_checkpoint(checkpoint)
    assert not marker.exists()


def test_code_in_meta_config_is_refused_on_resume_and_literal_config_is_reduced_to_gpu_ids(tmp_path):
    """S2: ``Runner.resume`` executes ``meta['config']`` with ``Config.fromstring``."""
    CheckpointLoader, _ = _mmengine()
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Toy(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(2, 2)

        def forward(self, inputs=None, data_samples=None, mode="tensor"):
            return self.linear(inputs)

    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil_resume.pth"
    torch.save({"meta": {"config": _marker_code(marker) + "gpu_ids = [0]\n", "iter": 1, "epoch": 0},
                "state_dict": Toy().state_dict()}, evil)
    runner = Runner(model=Toy(), work_dir=str(tmp_path / "work"))
    with pytest.raises(UnsafeCheckpointError, match=r"evil_resume.pth: meta\['config'\] is refused: line 1"):
        runner.resume(str(evil))
    assert not marker.exists()

    literal = tmp_path / "legacy.pth"
    torch.save({"meta": {"config": "gpu_ids = [0, 1]\ncustom_imports = dict(imports=['antigravity'])\n"},
                "state_dict": {}}, literal)
    assert CheckpointLoader.load_checkpoint(str(literal))["meta"]["config"] == "gpu_ids = [0, 1]\n"


def test_history_buffer_state_cannot_rewrite_the_statistics_registry(tmp_path):
    """S4: ``HistoryBuffer.__setstate__`` would update the class-level registry from the file."""
    CheckpointLoader, HistoryBuffer = _mmengine()
    HistoryBuffer()  # registers the default statistics
    registry = dict(HistoryBuffer._statistics_methods)
    for name, methods in (("swap", {"mean": HistoryBuffer.max}), ("new", {"evil": HistoryBuffer.max})):
        buffer = HistoryBuffer([1.0, 5.0], [1, 1], max_length=10)
        path = tmp_path / f"tamper_{name}.pth"
        HistoryBuffer._statistics_methods.update(methods)  # what gets pickled into the buffer's state
        try:
            torch.save({"message_hub": {"log_scalars": {"loss": buffer}}}, path)
        finally:
            HistoryBuffer._statistics_methods.clear()
            HistoryBuffer._statistics_methods.update(registry)
        with pytest.raises(UnsafeCheckpointError, match=rf"tamper_{name}.pth: .*statistics_methods"):
            CheckpointLoader.load_checkpoint(str(path))
        assert HistoryBuffer._statistics_methods == registry
        assert HistoryBuffer([1.0, 5.0], [1, 1]).mean() == 3.0
    buffer = HistoryBuffer([1.0], [1])
    buffer.__dict__["extra"] = 1
    path = tmp_path / "extra_state.pth"
    torch.save({"b": buffer}, path)
    with pytest.raises(UnsafeCheckpointError, match="extra_state.pth: .*HistoryBuffer state"):
        CheckpointLoader.load_checkpoint(str(path))


def test_downloads_go_through_the_safe_loader(tmp_path):
    """``load_from='https://...'`` (and torchvision://, open-mmlab://) unpickled fully through torch.hub."""
    _mmengine()
    from mmengine.runner import checkpoint as mmengine_checkpoint

    marker = tmp_path / "MARKER"
    evil = tmp_path / "served" / "evil_download.pth"
    evil.parent.mkdir()
    torch.save({"state_dict": {}, "x": _Reduce(exec, (_marker_code(marker),))}, evil)
    with pytest.raises(UnsafeCheckpointError, match=r"evil_download.pth: .*GLOBAL exec"):
        mmengine_checkpoint.load_from_http(evil.as_uri(), model_dir=str(tmp_path / "cache"))
    assert not marker.exists()
    good = tmp_path / "served" / "weights.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "meta": {"step": np.int64(3)}}, good)
    loaded = mmengine_checkpoint.load_from_http(good.as_uri(), model_dir=str(tmp_path / "cache"))
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(2)) and loaded["meta"]["step"] == 3


def test_extract_backbone_writes_atomically_and_never_overwrites_without_the_flag(tmp_path, capsys):
    _mmengine()
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import extract_backbone
    finally:
        sys.path.remove(str(ROOT / "tools"))
    source = tmp_path / "pretrain.pth"
    torch.save({"meta": {"iter": 1}, "state_dict": {"backbone.conv1.weight": torch.ones(1), "neck.w": torch.ones(1)}},
               source)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "backbone.pth"
    (tmp_path / "backbone.pth.tmp").symlink_to(victim)  # S5: the old predictable temporary name
    assert extract_backbone.main([str(source), str(out)]) == 0
    assert victim.read_text() == "precious"
    assert list(safe_load(out)["state_dict"]) == ["conv1.weight"]
    out.write_bytes(b"the user's own file")
    assert extract_backbone.main([str(source), str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == b"the user's own file"
    assert extract_backbone.main([str(source), str(out), "--overwrite"]) == 0
    assert list(safe_load(out)["state_dict"]) == ["conv1.weight"]
    assert extract_backbone.main([str(source), str(tmp_path)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["backbone.pth", "backbone.pth.tmp", "pretrain.pth",
                                                          "victim.txt"]
