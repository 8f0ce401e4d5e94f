"""MMDetection transfer: every config in mmconfigs/mmdet/ loads and builds, extracted HCL backbones
load key for key, bad backbone checkpoints stop a run at start with the keys named, and the tiny Mask
R-CNN trains and evaluates (bbox + segm AP) on the CPU.

These tests need MMCV with compiled ops (``mmcv.ops``; MMDetection's models import it): without them
they fail, they are not skipped (``make`` builds MMCV with ops, see requirements/build_mmcv.sh).
"""

from __future__ import annotations

import json
import uuid
import math
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest
import torch

from tests.mmselfsup_helpers import ROOT, build_embedded, is_deprecated_alias

MMDET_CONFIGS = sorted(p for p in (ROOT / "mmconfigs" / "mmdet").rglob("*.py") if not is_deprecated_alias(p))
TINY_DET = ROOT / "mmconfigs" / "mmdet" / "tiny" / "mask-rcnn_r18_fpn_embedded_hcl.py"
METRIC_KEYS = [f"coco/{kind}_mAP{suffix}" for kind in ("bbox", "segm") for suffix in ("", "_50", "_75")]


def test_mmcv_has_compiled_ops():
    """MMDetection's Mask R-CNN needs mmcv.ops (RoIAlign, NMS): mmcv-lite is not enough."""
    import mmcv
    import mmcv.ops  # noqa: F401  (raises ModuleNotFoundError: mmcv._ext with mmcv-lite)

    assert mmcv.__version__ == "2.0.1"
    from mmcv.ops import nms

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


# ----------------------------------------------------------------------------------------------- helpers


def _load(path: Path):
    from mmengine.config import Config

    return Config.fromfile(str(path))  # custom_imports -> hcl_plugin.mmdet


def _build_detector(cfg):
    from mmengine.registry import DefaultScope
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope("mmdet"):
        return MODELS.build(cfg.model)


def _build_pretraining_model(config: Path):
    """The HCL pretraining model of an MMSelfSup config (built, not trained), queues shrunk."""
    from mmengine.registry import DefaultScope
    from mmselfsup.registry import MODELS
    from mmselfsup.utils import register_all_modules

    import hcl_plugin.mmselfsup  # noqa: F401

    cfg = _load(config)
    for key in ("queue_len", "hyp_queue_len"):  # BYOL / ORL have no MoCo queue
        if key in cfg.model:
            cfg.model[key] = 64
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope("mmselfsup"):
        return MODELS.build(cfg.model)


def _save_pretraining_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    torch.save({"meta": {"iter": 0, "experiment_name": "test"}, "state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def hcl_r18(tmp_path_factory) -> Dict[str, Path]:
    """A built HCL DenseCL R-18 (tiny pretraining config): its whole checkpoint and the extracted backbone."""
    tmp = tmp_path_factory.mktemp("hcl_r18")
    model = _build_pretraining_model(ROOT / "mmconfigs" / "tiny" / "densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py")
    full = _save_pretraining_checkpoint(model, tmp / "iter_0.pth")
    backbone = tmp / "backbone.pth"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "extract_backbone.py"), str(full), str(backbone)],
                          capture_output=True, text=True, cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"full": full, "backbone": backbone}


def test_mmselfsup_named_extractor_writes_the_same_backbone(hcl_r18, tmp_path):
    """``tools/model_converters/extract_backbone_weights.py`` (MMSelfSup's name) is the same command."""
    out = tmp_path / "backbone.pth"
    script = ROOT / "tools" / "model_converters" / "extract_backbone_weights.py"
    proc = subprocess.run([sys.executable, str(script), str(hcl_r18["full"]), str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ours, theirs = (torch.load(p, weights_only=True)["state_dict"] for p in (out, hcl_r18["backbone"]))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    again = subprocess.run([sys.executable, str(script), str(hcl_r18["full"]), str(out)], capture_output=True, text=True)
    assert again.returncode != 0 and "--overwrite" in again.stderr  # the same refusal to replace a file


@pytest.fixture(scope="module")
def hcl_r50(tmp_path_factory) -> Dict[str, Path]:
    """A built HCL DenseCL R-50 (COCO pretraining config) and its extracted backbone."""
    from hcl_plugin.mmselfsup.backbone_checkpoint import extract_backbone

    tmp = tmp_path_factory.mktemp("hcl_r50")
    model = _build_pretraining_model(ROOT / "mmconfigs" / "densecl-hcl_resnet50_8xb32-coslr-200e_coco.py")
    full = _save_pretraining_checkpoint(model, tmp / "epoch_0.pth")
    backbone = tmp / "backbone.pth"
    torch.save(extract_backbone(str(full)), backbone)
    return {"full": full, "backbone": backbone}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    """24 Animal-MNIST scenes of 128 px with boxes and RLE masks (COCO format, train/val splits)."""
    return build_embedded(tmp_path_factory.mktemp("embedded_det"), num_images=24, image_size=128)


def _with_checkpoint(cfg, path: Path):
    cfg.model.backbone.init_cfg.checkpoint = str(path)
    shared = cfg.model.get("roi_head", {}).get("shared_head")
    if shared is not None and shared.get("init_cfg"):
        shared.init_cfg.checkpoint = str(path)
    return cfg


def _tiny_runner_cfg(embedded: Path, work_dir: Path, checkpoint: Path, max_iters: int = 4):
    """The tiny Mask R-CNN config on the test scenes: ``max_iters`` iterations of 2 images, then CocoMetric."""
    cfg = _with_checkpoint(_load(TINY_DET), checkpoint)
    cfg.work_dir = str(work_dir)
    cfg.visualizer.name = f"visualizer_{uuid.uuid4().hex}"  # several runners in one process: one each
    root = str(embedded) + "/"
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = root
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.batch_size = 2
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = root + "annotations_val.json"
    cfg.train_cfg.max_iters = max_iters
    cfg.train_cfg.val_interval = max_iters
    cfg.param_scheduler = [dict(type="LinearLR", start_factor=0.1, by_epoch=False, begin=0, end=max_iters)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = max_iters
    return cfg


# ------------------------------------------------------------------------------- configs load and build


def test_there_are_fpn_c4_1x_2x_and_tiny_configs():
    names = {p.relative_to(ROOT / "mmconfigs" / "mmdet").as_posix() for p in MMDET_CONFIGS}
    assert {"mask-rcnn_r50_fpn_1x_coco_hcl.py", "mask-rcnn_r50_fpn_2x_coco_hcl.py", "mask-rcnn_r50-c4_1x_coco_hcl.py",
            "mask-rcnn_r50-c4_2x_coco_hcl.py", "tiny/mask-rcnn_r18_fpn_embedded_hcl.py"} <= names


@pytest.mark.parametrize("path", MMDET_CONFIGS, ids=lambda p: p.relative_to(ROOT / "mmconfigs" / "mmdet").as_posix())
def test_config_loads_and_its_model_builds(path):
    from mmdet.registry import HOOKS

    cfg = _load(path)
    backbone = cfg.model.backbone
    assert backbone.frozen_stages == -1 and backbone.norm_eval is False
    assert backbone.norm_cfg.type == "SyncBN"
    assert backbone.init_cfg.type == "Pretrained" and backbone.init_cfg.checkpoint.endswith(".pth")
    scales = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == "RandomChoiceResize"]
    assert scales and len(scales[0].scales) >= 4, "multi-scale training as in MMSelfSup's benchmark configs"
    hooks = [h for h in cfg.custom_hooks if h.type == "PretrainedKeysCheckHook"]
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmdet"):  # other tests may leave another scope current
        assert hooks and HOOKS.build(dict(hooks[0]))

    model = _build_detector(cfg)
    sync_bn = [m for m in model.backbone.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert sync_bn and not any(type(m) is torch.nn.BatchNorm2d for m in model.backbone.modules())
    assert not any(not p.requires_grad for p in model.backbone.parameters()), "frozen_stages=-1 trains every stage"
    if "c4" in path.name:
        assert type(model.roi_head.shared_head).__name__ == "ResLayerExtraNorm"
        assert model.roi_head.shared_head.init_cfg["type"] == "Pretrained"
        assert model.roi_head.shared_head.norm_eval is False
    else:
        assert type(model.roi_head.bbox_head).__name__ == "Shared4Conv1FCBBoxHead"
    if "2x" in path.name:
        assert cfg.train_cfg.max_epochs == 24
        assert [s for s in cfg.param_scheduler if s.type == "MultiStepLR"][0].milestones == [16, 22]
    elif "1x" in path.name:
        assert cfg.train_cfg.max_epochs == 12
    if path == TINY_DET:
        assert model.backbone.depth == 18
        assert model.roi_head.bbox_head.num_classes == 10 and model.roi_head.mask_head.num_classes == 10
        assert set(cfg.val_evaluator.metric) == {"bbox", "segm"} and cfg.val_evaluator.type == "CocoMetric"
        assert len(cfg.train_dataloader.dataset.metainfo["classes"]) == 10


def test_tiny_config_classes_are_the_embedded_sets_categories(embedded):
    cfg = _load(TINY_DET)
    categories = json.loads((embedded / "annotations_train.json").read_text())["categories"]
    names = tuple(c["name"] for c in sorted(categories, key=lambda c: c["id"]))
    assert tuple(cfg.train_dataloader.dataset.metainfo["classes"]) == names
    assert cfg.val_dataloader.dataset.metainfo == cfg.train_dataloader.dataset.metainfo


# ------------------------------------------------------------------ extracted HCL backbones load strictly


def test_extracted_hcl_r18_backbone_matches_every_key_and_is_loaded(hcl_r18):
    from hcl_plugin.mmdet import check_pretrained_keys

    cfg = _with_checkpoint(_load(TINY_DET), hcl_r18["backbone"])
    model = _build_detector(cfg)
    reports = check_pretrained_keys(model, ["backbone"])
    (report,) = reports.values()
    assert report.ok and len(report.matched) == len(model.backbone.state_dict())
    state = torch.load(hcl_r18["backbone"], weights_only=True)["state_dict"]
    model.backbone.load_state_dict(state, strict=True)  # the same as the check, through torch itself

    model.init_weights()  # MMEngine's Pretrained init really loads the weights
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.parametrize("config", ["mask-rcnn_r50_fpn_1x_coco_hcl.py", "mask-rcnn_r50-c4_1x_coco_hcl.py"])
def test_extracted_hcl_r50_backbone_matches_the_coco_configs(hcl_r50, config):
    from hcl_plugin.mmdet import check_pretrained_keys

    cfg = _with_checkpoint(_load(ROOT / "mmconfigs" / "mmdet" / config), hcl_r50["backbone"])
    hook = [h for h in cfg.custom_hooks if h.type == "PretrainedKeysCheckHook"][0]
    model = _build_detector(cfg)
    reports = check_pretrained_keys(model, hook.modules, hook.get("ignore_missing", ()))
    assert all(r.ok for r in reports.values())
    file_keys = set(torch.load(hcl_r50["backbone"], weights_only=True)["state_dict"])
    assert file_keys == set().union(*(r.matched for r in reports.values())), "every key of the file is used"
    if "c4" in config:
        model.init_weights()
        state = torch.load(hcl_r50["backbone"], weights_only=True)["state_dict"]
        head = model.roi_head.shared_head.state_dict()
        assert torch.equal(head["layer4.0.conv1.weight"], state["layer4.0.conv1.weight"]), "res5 is pretrained too"
        assert torch.equal(model.backbone.state_dict()["layer3.5.conv3.weight"], state["layer3.5.conv3.weight"])


ORL_CONFIGS = ["orl-stage1_resnet50_8xb64-coslr-800e_coco.py", "orl-stage3_resnet50_8xb64-coslr-800e_coco.py",
               "orl-hcl-stage3_resnet50_8xb64-coslr-800e_coco.py"]


def test_extracted_orl_r50_backbones_load_strictly_into_the_coco_configs(tmp_path):
    """ORL's stage-1 (BYOL: stage 2 runs on it) and stage-3 backbones (ORL and ORL + HCL: transferred)."""
    from hcl_plugin.mmdet import check_pretrained_keys
    from hcl_plugin.mmselfsup.backbone_checkpoint import extract_backbone

    backbone = tmp_path / "backbone.pth"  # rewritten for each pretraining config below
    detectors = {}
    for config in ("mask-rcnn_r50_fpn_1x_coco_hcl.py", "mask-rcnn_r50-c4_1x_coco_hcl.py"):
        cfg = _with_checkpoint(_load(ROOT / "mmconfigs" / "mmdet" / config), backbone)
        hook = [h for h in cfg.custom_hooks if h.type == "PretrainedKeysCheckHook"][0]
        detectors[config] = (_build_detector(cfg), hook)
    for pretraining in ORL_CONFIGS:
        model = _build_pretraining_model(ROOT / "mmconfigs" / "orl" / pretraining)
        full = _save_pretraining_checkpoint(model, tmp_path / f"{pretraining}.pth")
        extracted = extract_backbone(str(full))
        torch.save(extracted, backbone)
        state = extracted["state_dict"]
        assert torch.equal(state["conv1.weight"], model.backbone.state_dict()["conv1.weight"])
        for config, (detector, hook) in detectors.items():
            reports = check_pretrained_keys(detector, hook.modules, hook.get("ignore_missing", ()))
            assert all(r.ok for r in reports.values()), (pretraining, config)
            assert set(state) == set().union(*(r.matched for r in reports.values())), "every key of the file is used"


# ------------------------------------------------------------------------------------------- bad input


def test_missing_backbone_checkpoint_fails_at_start_with_the_path(embedded, tmp_path):
    from mmengine.runner import Runner

    missing = tmp_path / "no_such_dir" / "backbone.pth"
    runner = Runner.from_cfg(_tiny_runner_cfg(embedded, tmp_path / "work", missing))
    with pytest.raises(FileNotFoundError) as info:
        runner.train()
    message = str(info.value)
    assert str(missing) in message and "model.backbone.init_cfg.checkpoint" in message
    assert "extract_backbone.py" in message
    assert runner.iter == 0


def test_whole_pretraining_checkpoint_fails_at_start_naming_the_keys_and_the_prefix(embedded, hcl_r18, tmp_path):
    from mmengine.runner import Runner

    from hcl_plugin.mmdet import PretrainedKeysError

    runner = Runner.from_cfg(_tiny_runner_cfg(embedded, tmp_path / "work", hcl_r18["full"]))
    with pytest.raises(PretrainedKeysError) as info:
        runner.train()
    message = str(info.value)
    assert str(hcl_r18["full"]) in message
    assert "missing in the checkpoint" in message and "conv1.weight" in message  # the backbone's own keys
    assert "backbone.conv1.weight" in message  # what the file has instead
    assert "'backbone.'" in message and "tools/extract_backbone.py" in message  # the hint
    assert runner.iter == 0


def test_r50_backbone_into_r18_detector_names_mismatched_and_unexpected_keys(hcl_r50):
    from hcl_plugin.mmdet import PretrainedKeysError, check_pretrained_keys

    model = _build_detector(_with_checkpoint(_load(TINY_DET), hcl_r50["backbone"]))
    with pytest.raises(PretrainedKeysError) as info:
        check_pretrained_keys(model, ["backbone"])
    message = str(info.value)
    # one listing format for every key check (hcl_plugin.checkpoints.keys): shapes as checkpoint vs model
    assert "shape mismatch (checkpoint vs model)" in message
    assert "layer1.0.conv1.weight: (64, 64, 1, 1) vs (64, 64, 3, 3)" in message
    assert "unexpected" in message and "layer1.0.conv3.weight" in message


def test_checkpoint_without_state_dict_of_the_module_and_without_pretrained_init(tmp_path):
    from hcl_plugin.mmdet import PretrainedKeysError, check_pretrained_keys

    model = _build_detector(_with_checkpoint(_load(TINY_DET), tmp_path / "x.pth"))
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, tmp_path / "x.pth")
    with pytest.raises(PretrainedKeysError, match=r"missing in the checkpoint \(\d+\)"):
        check_pretrained_keys(model, ["backbone"])
    with pytest.raises(PretrainedKeysError, match="model.neck.init_cfg has no dict\\(type='Pretrained'"):
        check_pretrained_keys(model, ["neck"])
    with pytest.raises(PretrainedKeysError, match="no sub-module 'roi_head.nope'"):
        check_pretrained_keys(model, ["roi_head.nope"])
    model.backbone.init_cfg = dict(type="Pretrained", checkpoint="torchvision://resnet18")
    assert check_pretrained_keys(model, ["backbone"]) == {}  # remote files are MMEngine's business


def test_compare_keys_and_prefix_hint_are_plain_functions():
    from hcl_plugin.mmdet import compare_keys, prefix_hint

    expected = {"a.w": torch.zeros(2), "b.w": torch.zeros(3)}
    report = compare_keys(expected, {"a.w": torch.zeros(2), "b.w": torch.zeros(4), "c.w": torch.zeros(1)})
    # mismatched: (key, shape in the checkpoint, shape in the model), as every key report of the project
    assert report.matched == ["a.w"] and report.mismatched == [("b.w", (4,), (3,))] and report.unexpected == ["c.w"]
    assert not report.ok and compare_keys(expected, expected).ok
    hint = prefix_hint(["a.w", "b.w"], ["backbone.a.w", "backbone.b.w"])
    assert hint is not None and "'backbone.'" in hint and "extract_backbone.py" in hint
    assert "module's keys carry the prefix 'layer4.'" in prefix_hint(["layer4.a", "layer4.b"], ["a", "b"])
    assert prefix_hint(["a.w"], ["z.q"]) is None


# ----------------------------------------------------------------------------- tiny train + evaluation


@pytest.mark.slow
def test_tiny_mask_rcnn_trains_and_evaluates_bbox_and_segm_ap(embedded, hcl_r18, tmp_path):
    from mmengine.runner import Runner

    cfg = _tiny_runner_cfg(embedded, tmp_path / "work", hcl_r18["backbone"], max_iters=4)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 4
    rows = []
    for path in sorted((tmp_path / "work").glob("*/vis_data/scalars.json")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert any(k.startswith("loss_mask") or k == "loss_mask" for r in rows for k in r)
    metrics = [r for r in rows if "coco/bbox_mAP" in r]
    assert metrics, f"no evaluation in {rows[-1:]}"
    for key in METRIC_KEYS:
        value = metrics[-1][key]
        assert isinstance(value, float) and 0.0 <= value <= 1.0, (key, value)
    assert (tmp_path / "work" / "iter_4.pth").is_file()
