"""ORL stage 3 and ORL + HCL in MMSelfSup: the losses against MMSelfSup's BYOL, the views of the data
pipeline, bad stores and images, and training through tools/train.py and tools/dist_train.sh (gloo)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.registry import init_default_scope

import hcl_plugin.mmselfsup  # noqa: F401  (registers ORL, HCLORL, the data set and transforms)
from hcl_plugin.orl.store import CorrespondenceError
from tests.mmselfsup_helpers import ROOT, assert_one_curvature, build_embedded, read_scalars
from tests.orl_helpers import embedded_store

TINY = ROOT / "mmconfigs" / "tiny"
STAGE3 = "orl-stage3_resnet18_1xb16-coslr-300it_embedded.py"
HCL_STAGE3 = "orl-hcl-stage3_resnet18_1xb16-coslr-300it_embedded.py"
STAGE1 = "orl-stage1_resnet18_1xb16-coslr-300it_embedded.py"


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    return build_embedded(tmp_path_factory.mktemp("embedded_orl"))


@pytest.fixture(scope="module")
def store(embedded, tmp_path_factory) -> Path:
    return embedded_store(tmp_path_factory.mktemp("orl_store") / "store", embedded)


def orl_config(base: str, embedded: Path, store: Path, work_dir: Path, max_iters: int = 4, batch_size: int = 4,
               checkpoint_interval: int = 2) -> Config:
    """``mmconfigs/tiny/<base>`` shrunk to a few CPU iterations on the test store."""
    cfg = Config.fromfile(str(TINY / base))
    cfg.work_dir = str(work_dir)
    cfg.visualizer.name = f"visualizer_{uuid.uuid4().hex}"
    if "hyp_queue_len" in cfg.model:
        cfg.model.hyp_queue_len = 32
    cfg.train_cfg.max_iters = max_iters
    cfg.param_scheduler = [dict(type="CosineAnnealingLR", T_max=max_iters, by_epoch=False, begin=0, end=max_iters)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = checkpoint_interval
    cfg.default_hooks.checkpoint.max_keep_ckpts = 10
    loader = cfg.train_dataloader
    loader.batch_size, loader.num_workers = batch_size, 0
    if loader.dataset.type == "ORLCorrespondenceDataset":
        loader.dataset.correspondence = str(store)
        loader.dataset.image_root = str(embedded / "images")
    else:
        loader.dataset.data_root = str(embedded) + "/"
    return cfg


def _build(cfg_model):
    from mmselfsup.registry import MODELS

    init_default_scope("mmselfsup")
    return MODELS.build(cfg_model)


def _views(sizes, n=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(n, 3, s, s, generator=gen) for s in sizes]


# ------------------------------------------------------------------------------------------------ models


def test_orl_without_local_branches_is_mmselfsup_byol(embedded, store, tmp_path):
    MessageHub.get_current_instance().update_info("max_iters", 10)  # CosineEMA reads it
    orl_cfg = orl_config(STAGE3, embedded, store, tmp_path).model
    byol_cfg = orl_config(STAGE1, embedded, store, tmp_path).model
    torch.manual_seed(0)
    byol = _build(byol_cfg)
    orl = _build(dict(orl_cfg, local_intra_loss_weight=0.0, local_inter_loss_weight=0.0))
    missing, unexpected = orl.load_state_dict(byol.state_dict(), strict=False)
    assert not unexpected and all(k.startswith(("local_intra_head.", "local_inter_head.")) for k in missing)
    views = _views([64, 64, 32, 32, 32, 32])
    expected = byol.loss(views[:2], [])["loss"]
    got = orl.loss(views, [])
    assert set(got) == {"loss_global"}, "zero-weight branches are not computed"
    assert torch.allclose(got["loss_global"], expected, atol=1e-6)


def test_orl_weights_each_branch_and_each_has_its_own_predictor(embedded, store, tmp_path):
    MessageHub.get_current_instance().update_info("max_iters", 10)
    cfg = orl_config(STAGE3, embedded, store, tmp_path).model
    torch.manual_seed(0)
    unit = _build(cfg)
    torch.manual_seed(0)
    weighted = _build(dict(cfg, global_loss_weight=0.5, local_intra_loss_weight=2.0, local_inter_loss_weight=3.0))
    views = _views([64, 64, 32, 32, 32, 32])
    a, b = unit.loss(views, []), weighted.loss(views, [])
    for name, w in (("loss_global", 0.5), ("loss_local_intra", 2.0), ("loss_local_inter", 3.0)):
        assert torch.allclose(b[name], w * a[name], atol=1e-5), name
        assert -4.0 <= a[name].item() <= 4.0
    heads = [unit.head, unit.local_intra_head, unit.local_inter_head]
    assert len({id(h) for h in heads}) == 3
    with pytest.raises(ValueError, match="6 views per sample"):
        unit.loss(views[:2], [])
    with pytest.raises(ValueError, match="global_loss_weight"):
        _build(dict(cfg, global_loss_weight=-1.0))


@pytest.mark.parametrize("kind", ["separate", "shared"])
def test_hclorl_adds_the_hyperbolic_loss_with_one_curvature_and_a_cosine_momentum_copy(embedded, store, tmp_path, kind):
    from mmselfsup.models.utils import CosineEMA

    MessageHub.get_current_instance().update_info("max_iters", 10)
    cfg = orl_config(HCL_STAGE3, embedded, store, tmp_path).model
    model = _build(dict(cfg, hyperbolic_head=kind))
    if kind == "separate":  # its shared-head branch checks a MoCo queue
        assert_one_curvature(model)
    assert isinstance(model.hyp_neck_k, CosineEMA) and model.hyp_neck_k.momentum == model.target_net.momentum
    assert model.hyp_queue.bank.shape == (32, model.hyp_neck.out_channels)
    if kind == "shared":
        assert model.hyp_neck.out_channels == 128  # the projection neck's output
    views = _views([64, 64, 32, 32, 32, 32, 64, 64])
    losses = model.loss(views, [])
    assert {"loss_global", "loss_local_intra", "loss_local_inter", "loss_hyp", "loss_hyp_weighted"} <= set(losses)
    assert torch.allclose(losses["loss_hyp_weighted"], model.lambda_hyp * losses["loss_hyp"])
    total, logged = model.parse_losses(losses)
    parts = sum(float(v) for k, v in losses.items() if k.startswith("loss_") and k != "loss_hyp")
    assert float(total) == pytest.approx(parts, rel=1e-5) and "loss_hyp" in logged
    total.backward()
    assert model.hyp_neck_k.module.state_dict().keys() == model.hyp_neck.state_dict().keys()
    with pytest.raises(ValueError, match="8 views per sample"):
        model.loss(views[:6], [])


ORL_CONFIGS = sorted((ROOT / "mmconfigs" / "orl").glob("*.py")) + sorted(TINY.glob("orl*.py"))


@pytest.mark.parametrize("path", ORL_CONFIGS, ids=lambda p: p.relative_to(ROOT / "mmconfigs").as_posix())
def test_every_orl_config_loads_and_its_pipeline_builds(path):
    """The stage-3 configs build ORL / HCLORL on ORLCorrespondenceDataset's pipeline (HCL: 8 views), stage 1
    MMSelfSup's BYOL on whole images; the COCO models are built in test_mmdet.py."""
    from mmcv.transforms import Compose

    from hcl_plugin.mmselfsup.orl_data import ORLMultiView

    cfg = Config.fromfile(str(path))
    assert cfg.custom_imports["imports"] == ["hcl_plugin.mmselfsup"]
    init_default_scope("mmselfsup")
    pipeline = Compose(cfg.train_dataloader.dataset.pipeline)
    expected = {"orl-stage1": "BYOL", "orl-stage3": "ORL", "orl-hcl-stage3": "HCLORL"}[path.name.split("_")[0]]
    assert cfg.model.type == expected and cfg.model.base_momentum == 0.99
    if expected == "BYOL":
        assert cfg.train_dataloader.dataset.type == "SceneBoxDataset"
        return
    views = pipeline.transforms[1]
    assert isinstance(views, ORLMultiView) and (views.scene_pipeline is not None) == (expected == "HCLORL")
    assert views.patch_size == (32 if "tiny" in path.parts else 96)
    if expected == "HCLORL":
        assert cfg.model.curvature == dict(c=0.05, learnable=False) and cfg.model.lambda_hyp == 0.1
    if "tiny" in path.parts:
        MessageHub.get_current_instance().update_info("max_iters", 10)
        model = _build(cfg.model)
        assert type(model).__name__ == expected


# -------------------------------------------------------------------------------------------------- data


def _dataset(embedded, store, tmp_path, base=HCL_STAGE3, **changes):
    from mmselfsup.registry import DATASETS

    init_default_scope("mmselfsup")
    dataset = orl_config(base, embedded, store, tmp_path).train_dataloader.dataset
    dataset.update(changes)
    return DATASETS.build(dataset)


def test_the_pipeline_makes_the_eight_views_at_their_sizes(embedded, store, tmp_path):
    np.random.seed(0)
    dataset = _dataset(embedded, store, tmp_path)
    item = dataset[0]
    sizes = [tuple(v.shape) for v in item["inputs"]]
    assert sizes == [(3, 64, 64)] * 2 + [(3, 32, 32)] * 4 + [(3, 64, 64)] * 2
    meta = item["data_samples"].metainfo
    assert meta["img_path"].endswith(".jpg") and meta["knn_img_path"] != meta["img_path"]
    plain = _dataset(embedded, store, tmp_path, base=STAGE3)
    assert len(plain[1]["inputs"]) == 6


def test_patch_views_are_the_boxes_resized_and_the_object_lies_in_the_scene(embedded, store, tmp_path):
    from hcl_plugin.mmselfsup.orl_data import ORLMultiView
    from hcl_plugin.mmselfsup.transforms import crop_box

    np.random.seed(1)
    dataset = _dataset(embedded, store, tmp_path)
    info = dataset.get_data_info(3)
    from hcl_plugin.mmselfsup.orl_data import LoadORLImages

    results = LoadORLImages()(dict(info))
    views = ORLMultiView([[], []], [[], []], patch_size=20, scene_transforms=[])(dict(results))["img"]
    img, knn_img = results["img"], results["knn_img"]

    def expected(source, box):
        x, y, w, h = box
        return mmcv.imresize(crop_box(source, [x, y, x + w, y + h]), (20, 20), interpolation="bilinear")

    assert np.array_equal(views[0], img) and np.array_equal(views[6], img)
    assert np.array_equal(views[2], expected(img, info["intra_bbox"]))
    assert np.array_equal(views[3], expected(img, info["intra_jittered_bbox"]))
    assert np.array_equal(views[4], expected(img, info["inter_first_bbox"]))
    assert np.array_equal(views[5], expected(knn_img, info["inter_second_bbox"]))
    x, y, w, h = info["intra_bbox"]
    assert np.array_equal(views[7], crop_box(img, [x, y, x + w, y + h]))
    store_ = dataset.store
    assert info["neighbour_idx"] in store_.knn[3].tolist()
    assert any(np.allclose(info["intra_bbox"], b) for b in store_.image_boxes(3))


def test_a_changed_or_missing_image_is_named(embedded, store, tmp_path):
    import shutil

    images = tmp_path / "images"
    shutil.copytree(embedded / "images", images)
    dataset = _dataset(embedded, store, tmp_path, image_root=str(images))
    name = Path(dataset.store.file_names[0]).name
    from PIL import Image

    Image.new("RGB", (50, 40)).save(images / name)
    np.random.seed(0)
    with pytest.raises(CorrespondenceError, match=rf"{name} is 50x40 px, but the correspondence store recorded"):
        dataset.pipeline(dataset.get_data_info(0))
    (images / name).unlink()
    with pytest.raises(CorrespondenceError, match=rf"image 0, .*{name}, does not exist"):
        _dataset(embedded, store, tmp_path, image_root=str(images))
    with pytest.raises(ValueError, match=r"topk_knn_image must be in \[1, 2\]"):
        _dataset(embedded, store, tmp_path, topk_knn_image=3)


# ---------------------------------------------------------------------------------------------- training


def _env() -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


@pytest.mark.slow
def test_tools_train_runs_stage3_with_hcl_and_resumes_exactly(embedded, store, tmp_path, monkeypatch):
    from mmengine.runner import Runner

    import runpy

    first = tmp_path / "a"
    orl_config(HCL_STAGE3, embedded, store, first, max_iters=3, batch_size=2).dump(str(tmp_path / "a.py"))
    # tools/train.py as its command line runs it, in this process (MMSelfSup is imported already)
    monkeypatch.setattr(sys, "argv", ["tools/train.py", str(tmp_path / "a.py"), "--work-dir", str(first)])
    runpy.run_path(str(ROOT / "tools" / "train.py"), run_name="__main__")
    rows = {r["iter"]: r for r in read_scalars(first) if "loss" in r}
    assert sorted(rows) == [1, 2, 3]
    for row in rows.values():
        assert all(math.isfinite(row[k]) for k in ("loss", "loss_global", "loss_local_intra", "loss_local_inter",
                                                   "loss_hyp", "loss_hyp_weighted"))
    second = orl_config(HCL_STAGE3, embedded, store, tmp_path / "b", max_iters=3, batch_size=2)
    second.resume, second.load_from = True, str(first / "iter_2.pth")
    Runner.from_cfg(second).train()
    resumed = {r["iter"]: r for r in read_scalars(tmp_path / "b") if "loss" in r}
    assert sorted(resumed) == [3]
    for it in (3,):  # the same data draws, weights, queue and momenta: the same losses
        for key in ("loss", "loss_hyp", "loss_local_inter"):
            assert resumed[it][key] == pytest.approx(rows[it][key], rel=1e-4, abs=1e-5), (it, key)


@pytest.mark.slow
def test_dist_train_runs_stage3_with_hcl_on_two_cpu_processes(embedded, store, tmp_path):
    work = tmp_path / "work"
    orl_config(HCL_STAGE3, embedded, store, work, max_iters=2, batch_size=2, checkpoint_interval=2).dump(
        str(tmp_path / "cfg.py"))
    env = dict(_env(), PORT=str(29600 + os.getpid() % 1000), PYTHON=sys.executable)
    done = subprocess.run(["bash", "tools/dist_train.sh", str(tmp_path / "cfg.py"), "2", "--work-dir", str(work)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-6000:]
    assert "Distributed training: True" in done.stdout + done.stderr
    rows = [r for r in read_scalars(work) if "loss" in r]
    assert [r["iter"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["loss_hyp"]) for r in rows)
    assert (work / "iter_2.pth").exists()
