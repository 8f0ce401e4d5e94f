"""UHML retrieval benchmark: the clip-art data builder (fake trees and packages), flat k-means, benchmark smoke run."""

from __future__ import annotations

import io
import json
import math
import os
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hcl_plugin.uhml import flat_kmeans_labels, similarity_levels
from hcl_plugin.data.embedded import clipart
from hcl_plugin.eval import RetrievalImageFolder
from hcl_plugin.geometry import expmap0
from hcl_plugin.lightly.uhml_recluster import ReclusterCallback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "lightly_examples"))

import uhml_retrieval  # noqa: E402


def drawing(size=(30, 20), colour=(200, 30, 30), seed: int = 0) -> Image.Image:
    """An RGBA drawing: a coloured blob on a transparent background."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((size[1], size[0], 4), np.uint8)
    pixels[..., :3] = colour
    h, w = size[1], size[0]
    top, left = rng.integers(0, h // 2), rng.integers(0, w // 2)
    pixels[top:top + h // 2, left:left + w // 2, 3] = 255
    return Image.fromarray(pixels, "RGBA")


def fake_png_tree(root: Path, counts: dict) -> Path:
    """``root/<path>/<i>.png`` for each ``path: count``; different colours per folder."""
    for index, (folder, count) in enumerate(sorted(counts.items())):
        (root / folder).mkdir(parents=True, exist_ok=True)
        colour = tuple(int(v) for v in np.random.default_rng(index).integers(0, 255, 3))
        for i in range(count):
            drawing(colour=colour, seed=i).save(root / folder / f"img_{i:03d}.png")
    return root


COUNTS = {"animals": 5, "animals/birds": 7, "animals/mammals": 12, "food/fruit": 6, "food": 6,
          "signs/flags/europe": 9, "unsorted": 10, "tiny/few": 2}


def test_classes_from_folders_with_naming_minimum_cap_exclusion_and_links(tmp_path):
    root = fake_png_tree(tmp_path / "png", COUNTS)
    os.symlink(root / "food/fruit/img_000.png", root / "animals/birds/linked_duplicate.png")
    classes = clipart.clipart_classes(root, min_per_class=6, max_per_class=8)
    assert list(classes) == [("animals", "birds"), ("animals", "mammals"), ("food", "fruit"), ("food", "misc"),
                             ("signs", "flags-europe")]
    assert len(classes[("animals", "birds")]) == 7  # the symbolic link is not a second copy
    mammals = classes[("animals", "mammals")]
    assert len(mammals) == 8  # capped, evenly spaced in name order, first and last kept
    assert mammals[0].name == "img_000.png" and mammals[-1].name == "img_011.png"
    assert all(len(paths) >= 6 for paths in classes.values())
    with pytest.raises(ValueError, match="min_per_class"):
        clipart.clipart_classes(root, min_per_class=1)
    with pytest.raises(ValueError, match="max_per_class"):
        clipart.clipart_classes(root, min_per_class=6, max_per_class=5)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        clipart.clipart_classes(tmp_path / "nowhere")


def test_build_writes_white_composited_squares_in_a_class_disjoint_layout(tmp_path):
    root = fake_png_tree(tmp_path / "png", COUNTS)
    (root / "food/fruit/broken.png").write_bytes(b"not a png")  # unreadable: skipped, class kept (6 left)
    out = clipart.build_clipart_retrieval_set(root, tmp_path / "set", image_size=16, min_per_class=6,
                                              max_per_class=None)
    assert (out / ".complete").is_file()
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/*")) == [
        "animals/birds", "animals/mammals", "food/fruit", "food/misc", "signs/flags-europe"]
    image = Image.open(next((out / "animals/birds").glob("*.png")))
    assert image.size == (16, 16) and image.mode == "RGB"
    pixels = np.asarray(image)
    assert (pixels[0, 0] == 255).all()  # transparent corner -> white
    assert (pixels.reshape(-1, 3) != 255).any(axis=1).any()  # the drawing is there
    train = RetrievalImageFolder(out, layout="superclass/class", split="train")
    test = RetrievalImageFolder(out, layout="superclass/class", split="test")
    assert set(train.targets).isdisjoint(test.targets) and len(train) + len(test) == 7 + 12 + 6 + 6 + 9
    # a complete build is not redone
    stamp = (out / ".complete").stat().st_mtime_ns
    assert clipart.build_clipart_retrieval_set(root, out, image_size=16) == out
    assert (out / ".complete").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="need >= 4"):
        clipart.build_clipart_retrieval_set(root, tmp_path / "other", min_per_class=10)


def fake_deb(path: Path, png_root: Path) -> Path:
    """A minimal Debian package: ar archive with debian-binary, control.tar.xz and data.tar.xz."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as archive:
        for file in sorted(png_root.rglob("*.png")):
            archive.add(file, arcname="./" + clipart.PNG_PREFIX + "/" + file.relative_to(png_root).as_posix())
        info = tarfile.TarInfo("./usr/share/doc/openclipart-png/copyright")
        text = b"public domain\n"
        info.size = len(text)
        archive.addfile(info, io.BytesIO(text))
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", b""), ("data.tar.xz", data.getvalue())]
    with open(path, "wb") as handle:
        handle.write(b"!<arch>\n")
        for name, blob in members:
            header = f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(blob):<10}`\n".encode("ascii")
            assert len(header) == 60
            handle.write(header + blob + (b"\n" if len(blob) % 2 else b""))
    return path


def test_extract_reads_the_deb_without_dpkg(tmp_path):
    png = fake_png_tree(tmp_path / "src", {"animals/birds": 3, "food": 2})
    deb = fake_deb(tmp_path / "openclipart-png_1%3a0.18+dfsg-19_all.deb", png)
    out = clipart.extract_openclipart_pngs(deb, cache=tmp_path / "cache")
    assert out == tmp_path / "cache" / "openclipart-png-0.18" / clipart.PNG_PREFIX
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "animals/birds/img_000.png", "animals/birds/img_001.png", "animals/birds/img_002.png",
        "food/img_000.png", "food/img_001.png"]
    assert not (tmp_path / "cache" / "openclipart-png-0.18" / "usr/share/doc").exists()  # PNGs only
    not_a_deb = tmp_path / "bad.deb"
    not_a_deb.write_bytes(b"hello")
    with pytest.raises(clipart.ClipartUnavailable, match="not a Debian package"):
        clipart.extract_openclipart_pngs(not_a_deb, cache=tmp_path / "cache2")


def test_fetch_errors_name_what_is_missing(tmp_path):
    with pytest.raises(clipart.ClipartUnavailable) as error:
        clipart.fetch_openclipart_deb(tmp_path, download=False)
    message = str(error.value)
    assert str(tmp_path / "debs") in message and "apt-get download openclipart-png" in message
    assert clipart.DEB_URL in message and clipart.DEB_SHA256 in message
    (tmp_path / "debs").mkdir()
    (tmp_path / "debs" / clipart.DEB_NAME).write_bytes(b"tampered")
    with pytest.raises(clipart.ClipartUnavailable, match="SHA-256"):
        clipart.fetch_openclipart_deb(tmp_path, download=False)


@pytest.mark.slow
def test_real_package_builds_many_classes(tmp_path):
    cache = clipart.cache_dir()
    try:  # fetched once (apt-get download or deb.debian.org, 131 MB) and cached
        png_root = clipart.find_openclipart_pngs(cache, download=True)
    except clipart.ClipartUnavailable as error:
        pytest.skip(f"Debian package openclipart-png could not be fetched into {cache / 'debs'}: {error}")
    classes = clipart.clipart_classes(png_root, min_per_class=20, max_per_class=80)
    assert len(classes) >= 60 and sum(len(p) for p in classes.values()) >= 3000
    assert all(superclass != "unsorted" for superclass, _ in classes)


# ---------------------------------------------------------------- flat k-means control


def test_flat_kmeans_labels_are_one_consecutive_level(gen):
    centres = torch.randn(4, 8, generator=gen, dtype=torch.float64) * 0.6
    points = expmap0(torch.cat([centres[k] + 0.02 * torch.randn(15, 8, generator=gen, dtype=torch.float64)
                                for k in range(4)]), 1.0)
    labels = flat_kmeans_labels(points, 1.0, 4, seed=0)
    assert labels.shape == (1, 60) and labels.dtype == np.int64
    assert sorted(np.unique(labels)) == [0, 1, 2, 3]
    for k in range(4):  # the planted groups are recovered
        assert len(np.unique(labels[0, 15 * k:15 * (k + 1)])) == 1
    levels = similarity_levels(labels)
    assert set(np.unique(levels)) <= {0, 1}
    with pytest.raises(ValueError, match="fewer samples"):
        flat_kmeans_labels(points, 1.0, 61)
    with pytest.raises(ValueError, match="positive integer"):
        flat_kmeans_labels(points, 1.0, 0)


def test_recluster_callback_kmeans_needs_one_count():
    with pytest.raises(ValueError, match="kmeans"):
        ReclusterCallback([], None, n_clusters=[4, 2], method="kmeans")
    with pytest.raises(ValueError, match="method"):
        ReclusterCallback([], None, n_clusters=[4], method="spectral")
    assert ReclusterCallback([], None, n_clusters=[4], method="kmeans").method == "kmeans"


# ---------------------------------------------------------------- benchmark script


def test_targets_use_non_overlapping_mean_std_intervals():
    def cell(mean, std):
        return {"1": {"mean": mean, "std": std, "n": 3}}

    summary = {"uhml": {"poincare": cell(50.0, 1.0)}, "untrained": {"poincare": cell(47.0, 1.0)},
               "flat_kmeans": {"poincare": cell(49.0, 0.5)}, "euclidean": {"poincare": cell(48.0, 0.9)}}
    checks = {c["comparison"]: c for c in uhml_retrieval.target_checks(summary)}
    assert checks["untrained"]["passed"] and checks["euclidean"]["passed"]
    assert not checks["flat_kmeans"]["passed"]
    assert checks["untrained"]["margin"] == pytest.approx(3.0) and checks["untrained"]["spread"] == pytest.approx(2.0)


def test_summary_mean_and_sample_std():
    runs = {"uhml": [{"cosine": {"1": 0.1}}, {"cosine": {"1": 0.2}}, {"cosine": {"1": 0.3}}]}
    cell = uhml_retrieval.summarise(runs, [1])["uhml"]["cosine"]["1"]
    assert cell["mean"] == pytest.approx(20.0) and cell["std"] == pytest.approx(10.0) and cell["n"] == 3


def tiny_clipart_set(root: Path, classes: int = 6, per_class: int = 8) -> Path:
    for k in range(classes):
        colour = tuple(int(v) for v in np.random.default_rng(k).integers(0, 255, 3))
        folder = root / f"super{k // 3}" / f"class{k}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            drawing(size=(20, 20), colour=colour, seed=i).convert("RGB").save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_benchmark_smoke_run(tmp_path, capsys):
    """Both starts end to end on a tiny set: the self-supervised start pretrains MoCo-v2 and every method
    and the untrained control of a (seed, start) start from one network (one state digest, frozen BN)."""
    data = tiny_clipart_set(tmp_path / "data")
    out, plot = tmp_path / "result.json", tmp_path / "plot.png"
    argv = ["--data", str(data), "--seeds", "0", "--epochs", "1", "--batches-per-epoch", "1", "--image-size", "16",
            "--levels", "4", "2", "--batch-classes", "2", "--batch-instances", "4", "--dim", "8", "--num-workers", "0",
            "--pretrain-steps", "7", "--pretrain-batch-size", "4",
            "--work-dir", str(tmp_path / "runs"), "--plot", str(plot)]
    result = uhml_retrieval.main([*argv, "--out", str(out)])
    written = json.loads(out.read_text())
    assert written["dataset"]["train_classes"] == 3 and written["dataset"]["test_images"] == 24
    summaries = written["summary_percent"]
    assert set(summaries) == {"self_supervised", "random_init"}
    for summary in summaries.values():
        assert set(summary) == {"uhml", "untrained", "flat_kmeans", "euclidean"}
        assert set(summary["uhml"]) == {"cosine", "poincare"}
        for by_metric in summary.values():
            for cells in by_metric.values():
                assert all(math.isfinite(cells[str(k)]["mean"]) and 0 <= cells[str(k)]["mean"] <= 100
                           for k in written["ks"])
    assert set(written["raw_pixels_percent"]) == {"cosine"}
    assert {(c["start"], c["metric"], c["comparison"]) for c in written["targets"]} == {
        (s, m, o) for s in ("self_supervised", "random_init") for m in ("cosine", "poincare")
        for o in ("untrained", "flat_kmeans", "euclidean")} | {
        ("self_supervised", m, "uhml_from_random_init") for m in ("cosine", "poincare")}
    runs = written["runs"]
    assert [(r["start"], r["method"]) for r in runs] == [
        (s, m) for s in ("self_supervised", "random_init") for m in ("uhml", "flat_kmeans", "euclidean")]
    assert all(r["global_steps"] == 1 and r["batchnorm"] == "frozen" for r in runs)
    for start in ("self_supervised", "random_init"):  # one network per start, different between the starts
        assert len({r["initial_state_sha256"] for r in runs if r["start"] == start}) == 1
    assert runs[0]["initial_state_sha256"] != runs[-1]["initial_state_sha256"]
    flat = next(r for r in runs if r["method"] == "flat_kmeans")
    assert all("clusters_level1" not in h for h in flat["reclustering"])  # one level only
    ablation = written["ablation"]
    assert list(ablation["recall"]) == ["uhml", "untrained", *uhml_retrieval.ABLATIONS]
    # the ablation's own reference run starts from the main runs' network (the same checkpoint here)
    assert ablation["initial_state_sha256"] == runs[0]["initial_state_sha256"]
    assert plot.stat().st_size > 0
    assert not list((tmp_path / "runs").rglob("*.ckpt"))  # checkpoints removed, the pretrained one included
    printed = capsys.readouterr().out
    assert "| start | method | distance | R@1" in printed and "target [MoCo-v2 start, poincare]" in printed
    assert "| paper_lr_1e-5 |" in printed and "| batchnorm_trained |" in printed
    assert result["summary_percent"] == summaries
    # --reuse takes the finished runs' recall.json instead of training again (no pretraining either)
    again = uhml_retrieval.main([*argv, "--reuse", "--out", str(tmp_path / "again.json")])
    assert again["summary_percent"] == summaries
    reused = capsys.readouterr().out
    assert "reusing" in reused and "self-supervised start, MoCo-v2" not in reused


def test_the_self_supervised_start_is_this_projects_moco_on_the_training_half(tmp_path):
    from hcl_plugin.lightly.training import build_parser
    from hcl_plugin.lightly.models import MoCoHCL

    args = uhml_retrieval.build_parser().parse_args(["--pretrain-steps", "300", "--pretrain-batch-size", "64"])
    argv = uhml_retrieval.pretrain_argv(args, tmp_path, 3, tmp_path / "out")
    parsed = build_parser(MoCoHCL).parse_args(argv)
    assert parsed.lambda_hyp == 0 and parsed.seed == 3 and parsed.max_steps == 300
    assert parsed.momentum == pytest.approx(0.98) and parsed.warmup_steps == 20 and parsed.lr == pytest.approx(0.03)
    assert parsed.image_size == args.image_size and parsed.stem == "imagenet"


def test_image_pretraining_refuses_a_hyperbolic_term_and_a_missing_folder(tmp_path):
    from hcl_plugin.lightly.image_pretraining import pretrain_on_images

    with pytest.raises(SystemExit, match="needs --data"):
        pretrain_on_images(["--lambda-hyp", "0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--lambda-hyp must be 0"):
        pretrain_on_images(["--data", str(tmp_path), "--lambda-hyp", "0.1", "--out", str(tmp_path)])


def test_image_pretraining_command_line_help():
    from tests.cli_helpers import all_help_targets, help_results

    done = help_results(all_help_targets())["hcl_plugin.lightly.image_pretraining"]
    assert done["returncode"] == 0, done["stderr"][-2000:]
    assert "MoCo-v2 (this project's, λ = 0) on whole images" in done["stdout"] and "--data" in done["stdout"]
