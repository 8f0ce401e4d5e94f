"""ORL stage 2 (correspondence discovery) and the correspondence store: a planted case through the tool,
resuming, the release's rules against literal references, torchrun, and hostile or broken stores."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hcl_plugin.orl.discovery import (
    CorrespondenceSettings,
    discover_correspondences,
    filter_boxes,
    nearest_images,
    pair_counts,
    top_pairs,
)
from hcl_plugin.orl.inputs import read_stage2_inputs
from hcl_plugin.orl.sampling import box_iou_xywh
from hcl_plugin.orl.store import CorrespondenceError, open_store
from hcl_plugin.checkpoints import build_resnet
from hcl_plugin.uhml.embedding import load_backbone_strict
from tests.orl_helpers import planted_backbone, planted_scenes

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "orl_correspondence.py"
SMALL = ["--arch", "resnet18", "--min-size", "16", "--patch-size", "64", "--image-size", "96", "--knn", "1",
         "--workers", "0", "--quiet"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    coco, objects = planted_scenes(folder)
    backbone = planted_backbone(folder, folder / "images")
    return {"folder": folder, "coco": coco, "objects": objects, "backbone": backbone}


def _run_tool(args):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import orl_correspondence
    finally:
        sys.path.pop(0)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = orl_correspondence.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def _tool_args(planted, out):
    return [planted["backbone"], "--proposals", planted["coco"], "--image-root", planted["folder"] / "images",
            "--out", out, *SMALL]


@pytest.fixture(scope="module")
def planted_store(planted, tmp_path_factory):
    out = tmp_path_factory.mktemp("planted_store") / "store"
    code, stdout, stderr = _run_tool(_tool_args(planted, out))
    assert code == 0, stderr
    return out, stdout


def test_planted_objects_retrieve_each_other_and_their_top_pair_is_the_object(planted, planted_store):
    folder, stdout = planted_store
    store = open_store(folder)
    objects = planted["objects"]
    assert len(store) == 12 and store.num_neighbours == 1
    for index in range(len(store)):
        neighbour, pairs = store.neighbour_pairs(index, 0)
        assert neighbour == index ^ 1, f"image {index} retrieved {neighbour}, not the image sharing its object"
        first, second = tuple(pairs[0][:4]), tuple(pairs[0][4:])  # the most similar RoI pair
        assert box_iou_xywh(first, objects[index]) >= 0.5 and box_iou_xywh(second, objects[neighbour]) >= 0.5
    summary = json.loads(stdout[:stdout.index("\n}") + 2])
    assert summary["images"] == 12 and summary["images_per_second"] > 0
    assert summary["coco_train2017_hours_at_this_rate"] > 0 and "coco_roi_embeddings_gib" in summary
    assert "next: stage 3" in stdout


def test_the_store_holds_the_release_counts(planted_store):
    store = open_store(planted_store[0])
    counts = np.diff(store.box_offsets)
    expected = pair_counts(counts, np.asarray(store.knn), 0.1).reshape(-1)
    assert np.array_equal(np.diff(np.asarray(store.pair_offsets)), expected)
    assert store.settings["pair_ratio"] == 0.1 and store.settings["knn"] == 1
    assert not (planted_store[0] / "work").exists(), "the embeddings are removed once the store is finished"


def test_a_finished_store_is_replaced_only_with_overwrite(planted, planted_store, tmp_path):
    out = tmp_path / "store"
    assert _run_tool(_tool_args(planted, out))[0] == 0
    before = (out / "pairs.npy").read_bytes()
    code, _, err = _run_tool(_tool_args(planted, out))
    assert code == 2 and "--overwrite" in err and (out / "pairs.npy").read_bytes() == before
    assert _run_tool(_tool_args(planted, out) + ["--overwrite"])[0] == 0


class _Interrupt(Exception):
    pass


def _interrupting(pass_name: str, after: int):
    class Bar:
        def __init__(self, name, total):
            self.name, self.count = name, 0

        def update(self, n=1):
            self.count += n
            if self.name.startswith(pass_name) and self.count >= after:
                raise _Interrupt(self.name)

        def close(self):
            pass

    return Bar


@pytest.mark.parametrize("pass_name", ["embed", "RoI pairs"])
def test_an_interrupted_run_resumes_to_the_same_store(planted, planted_store, tmp_path, pass_name):
    inputs = read_stage2_inputs(planted["coco"], planted["folder"] / "images")
    backbone, _ = build_resnet("resnet18")
    load_backbone_strict(backbone, planted["backbone"])
    settings = CorrespondenceSettings(min_size=16, knn=1, patch_size=64, image_size=96, batch_size=8)
    args = (backbone, inputs.file_names, planted["folder"] / "images", inputs.image_sizes, inputs.proposals,
            tmp_path / "store", settings, torch.device("cpu"))
    with pytest.raises(_Interrupt):
        discover_correspondences(*args, progress=_interrupting(pass_name, 5))
    with pytest.raises(CorrespondenceError, match="format"):
        open_store(tmp_path / "store")  # unfinished: refused
    result = discover_correspondences(*args)
    assert result.resumed
    reference = open_store(planted_store[0])
    resumed = open_store(tmp_path / "store")
    for name in ("boxes", "knn", "pairs", "pair_offsets"):
        assert np.array_equal(np.asarray(getattr(resumed, name)), np.asarray(getattr(reference, name))), name


def test_another_input_does_not_resume_an_unfinished_store(planted, tmp_path):
    inputs = read_stage2_inputs(planted["coco"], planted["folder"] / "images")
    backbone, _ = build_resnet("resnet18")
    load_backbone_strict(backbone, planted["backbone"])
    settings = CorrespondenceSettings(min_size=16, knn=1, patch_size=64, image_size=96)
    args = [backbone, inputs.file_names, planted["folder"] / "images", inputs.image_sizes, inputs.proposals,
            tmp_path / "store"]
    with pytest.raises(_Interrupt):
        discover_correspondences(*args, settings, torch.device("cpu"), progress=_interrupting("embed", 1))
    with pytest.raises(FileExistsError, match="other inputs"):
        discover_correspondences(*args, CorrespondenceSettings(min_size=16, knn=2, patch_size=64, image_size=96),
                                 torch.device("cpu"))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    args[5] = tmp_path / "mine"
    with pytest.raises(FileExistsError, match="not a correspondence store"):
        discover_correspondences(*args, settings, torch.device("cpu"))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine"


@pytest.mark.slow
def test_two_torchrun_ranks_write_the_same_store_as_one_process(planted, planted_store, tmp_path):
    out = tmp_path / "store"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29731", str(TOOL), *map(str, _tool_args(planted, out))],
                          capture_output=True, text=True, cwd=str(ROOT), env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"ranks": 2' in proc.stdout
    reference, distributed = open_store(planted_store[0]), open_store(out)
    for name in ("boxes", "knn", "pairs", "pair_offsets"):
        assert np.array_equal(np.asarray(getattr(distributed, name)), np.asarray(getattr(reference, name))), name


# ------------------------------------------------------------------------- the release's rules, literally


def _release_box_filter(boxes, min_size, max_ratio, top_n, max_iou):
    """ORL's ``box_filter`` written out as the release's loop (float64)."""
    kept = []
    for x, y, w, h in boxes.tolist():
        if w < min_size or h < min_size or w / h > max_ratio or h / w > max_ratio:
            continue
        if kept and max(box_iou_xywh((x, y, w, h), k) for k in kept) > max_iou:
            continue
        kept.append((x, y, w, h))
    if not kept:
        kept.append(tuple(boxes[0].tolist()))
    return np.array(kept[:top_n])


@pytest.mark.parametrize("seed", range(5))
def test_filter_boxes_is_the_release_box_filter(seed):
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, 300, (200, 2))
    wh = rng.integers(20, 250, (200, 2))
    boxes = np.concatenate([xy, wh], 1).astype(np.float32)
    ours = filter_boxes(boxes, 96, 3.0, 0.5, 30, (600, 600))
    assert np.array_equal(ours, _release_box_filter(boxes.astype(np.float64), 96, 3.0, 30, 0.5).astype(np.float32))


def test_filter_boxes_keeps_the_best_box_or_the_frame_when_nothing_passes():
    small = np.array([[0, 0, 10, 10], [5, 5, 20, 20]], np.float32)
    assert np.array_equal(filter_boxes(small, 96, 3, 0.5, 100, (64, 48)), small[:1])
    assert np.array_equal(filter_boxes(np.zeros((0, 4)), 96, 3, 0.5, 100, (64, 48)), [[0, 0, 64, 48]])


def test_streamed_nearest_images_equal_the_full_similarity_matrix():
    torch.manual_seed(0)
    features = torch.nn.functional.normalize(torch.randn(103, 16), dim=1)
    features[7] = features[3]  # a near-duplicate image
    full = features @ features.T
    full.fill_diagonal_(-math.inf)
    expected = torch.sort(full, dim=1, descending=True, stable=True).indices[:, :5]  # ties: lower index first
    chunks = ((s, features[s:s + 10]) for s in range(0, 103, 10))
    ids = torch.arange(20, 60)
    streamed = nearest_images(features[ids], ids, chunks, 5)
    assert torch.equal(streamed, expected[ids])
    duplicate = nearest_images(features[[3]], torch.tensor([3]), ((s, features[s:s + 10]) for s in range(0, 103, 10)), 1)
    assert duplicate.item() == 7


def test_top_pairs_are_the_largest_similarities():
    torch.manual_seed(1)
    first = torch.nn.functional.normalize(torch.randn(7, 8), dim=1)
    second = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    rows, cols = top_pairs(first, second, 4)
    similarity = (first @ second.T).double()
    values = similarity[rows, cols]
    assert torch.all(values[:-1] >= values[1:])
    assert values[-1] >= torch.sort(similarity.flatten(), descending=True).values[3]
    assert pair_counts(np.array([3, 40]), np.array([[1], [0]]), 0.1).tolist() == [[12], [12]]
    assert pair_counts(np.array([2, 3]), np.array([[1], [0]]), 0.1).tolist() == [[1], [1]]


# ----------------------------------------------------------------------------------- bad and hostile input


def _copy_store(source: Path, target: Path) -> Path:
    target.mkdir(parents=True)
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def _rewrite(folder: Path, name: str, array: np.ndarray) -> None:
    np.save(folder / f"{name}.npy", array)


def test_a_missing_image_is_named(planted, planted_store, tmp_path):
    folder = _copy_store(planted_store[0], tmp_path / "store")
    images = _copy_store(planted["folder"] / "images", tmp_path / "images")
    (images / "3_1.png").unlink()
    with pytest.raises(CorrespondenceError, match=r"image 7, .*3_1\.png, does not exist"):
        open_store(folder, image_root=images)


def test_a_box_outside_its_image_is_named(planted_store, tmp_path):
    folder = _copy_store(planted_store[0], tmp_path / "store")
    boxes = np.load(folder / "boxes.npy")
    boxes[4] = [90, 10, 40, 40]  # image 0's fifth box, past the right edge of the 96 px image
    _rewrite(folder, "boxes", boxes)
    with pytest.raises(CorrespondenceError, match=r"box 4 of image 0 \(0_0\.png\).*outside the 96x96 px image"):
        open_store(folder)


def test_a_pair_pointing_into_another_image_is_named(planted_store, tmp_path):
    folder = _copy_store(planted_store[0], tmp_path / "store")
    pairs = np.load(folder / "pairs.npy")
    pairs[0, 0] = pairs[-1, 0]  # a box of the last image, in a pair of image 0
    _rewrite(folder, "pairs", pairs)
    with pytest.raises(CorrespondenceError, match=r"pair 0 \(image 0 \(0_0\.png\), neighbour 0\) points at box row"):
        open_store(folder)


def test_a_neighbour_index_out_of_range_or_the_image_itself_is_named(planted_store, tmp_path):
    folder = _copy_store(planted_store[0], tmp_path / "store")
    knn = np.load(folder / "knn.npy")
    knn[2, 0] = 2
    _rewrite(folder, "knn", knn)
    with pytest.raises(CorrespondenceError, match=r"neighbour 0 of image 2 \(1_0\.png\) is 2"):
        open_store(folder)


def test_a_pickled_array_is_refused_without_unpickling(planted_store, tmp_path):
    folder = _copy_store(planted_store[0], tmp_path / "store")
    marker = tmp_path / "ran"
    payload = np.empty(1, dtype=object)
    payload[0] = _Exploit(str(marker))
    np.save(folder / "knn.npy", payload, allow_pickle=True)
    with pytest.raises(CorrespondenceError, match="knn.npy: not a plain numeric array"):
        open_store(folder)
    assert not marker.exists()


class _Exploit:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_meta_that_is_not_a_finished_store_is_refused(planted_store, tmp_path):
    folder = _copy_store(planted_store[0], tmp_path / "store")
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps(dict(meta, format="something else")))
    with pytest.raises(CorrespondenceError, match="format 'something else'"):
        open_store(folder)
    (folder / "meta.json").write_text("{not json")
    with pytest.raises(CorrespondenceError, match="not JSON"):
        open_store(folder)
    with pytest.raises(CorrespondenceError, match="no meta.json"):
        open_store(tmp_path)


def test_a_proposal_outside_its_image_is_named(planted, tmp_path):
    document = json.loads(planted["coco"].read_text())
    document["annotations"][3]["bbox"] = [80.0, 0.0, 40.0, 40.0]
    bad = tmp_path / "proposals.json"
    bad.write_text(json.dumps(document))
    from hcl_plugin.data.readers import AnnotationError

    with pytest.raises(AnnotationError, match=r"annotation 4 of image 1 \(0_0\.png\).*outside the 96x96 px image"):
        read_stage2_inputs(bad, planted["folder"] / "images")
    code, _, err = _run_tool(_tool_args(planted, tmp_path / "out")[:2] + [bad] + _tool_args(planted, tmp_path / "out")[3:])
    assert code == 2 and "annotation 4" in err and not (tmp_path / "out").exists()


def test_a_backbone_of_another_architecture_is_refused_with_the_file(planted, tmp_path):
    code, _, err = _run_tool([planted["backbone"], "--proposals", planted["coco"], "--image-root",
                              planted["folder"] / "images", "--out", tmp_path / "out", "--arch", "resnet50", "--quiet"])
    assert code == 2 and "backbone.pth" in err and "does not match the backbone" in err
