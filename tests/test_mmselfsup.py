"""MMSelfSup components: configs, registries, views, data set errors, the HCL algorithms, checkpoints."""

from __future__ import annotations

import copy
import math
import pickle
import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import CheckpointLoader, Runner

import hcl_plugin.mmselfsup  # noqa: F401  (registers the components)
from hcl_plugin.geometry import dist
from hcl_plugin.mmselfsup import HCLDenseCL, HCLMoCoV2
from hcl_plugin.mmselfsup.backbone_checkpoint import BackboneNotFoundError, extract_backbone
from hcl_plugin.mmengine_support.checkpoint_loading import UnsafeCheckpointError, history_buffer_getattr
from hcl_plugin.mmselfsup.hooks import hyp_lambda_at
from hcl_plugin.mmselfsup.transforms import crop_box
from tests.mmselfsup_helpers import ROOT, is_deprecated_alias, assert_one_curvature, build_embedded, random_views_batch, tiny_config

PRETRAIN_CONFIGS = sorted(p for p in (ROOT / "mmconfigs").rglob("*.py")
                          if "_base_" not in p.parts and "mmdet" not in p.parts and "uhml" not in p.name
                          and not p.name.startswith("orl") and not is_deprecated_alias(p))  # ORL: test_orl_mmselfsup


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    return build_embedded(tmp_path_factory.mktemp("embedded_mm"))


def _registries():
    init_default_scope("mmselfsup")
    from mmselfsup.registry import DATASETS, MODELS

    return DATASETS, MODELS


def _batch(dataset, n: int):
    from mmengine.dataset import default_collate

    return default_collate([dataset[i] for i in range(n)])


# ------------------------------------------------------------------------------------ configs


def test_the_issue_configs_exist():
    names = {p.relative_to(ROOT / "mmconfigs").as_posix() for p in PRETRAIN_CONFIGS}
    for required in ("densecl-hcl_resnet50_8xb32-coslr-200e_coco.py", "mocov2-hcl_resnet50_8xb32-coslr-200e_coco.py", "densecl_resnet50_8xb32-coslr-200e_coco.py", "mocov2_resnet50_8xb32-coslr-200e_coco.py",
                     "densecl-hcl_resnet50_8xb32-coslr-200e_openimages.py", "mocov2-hcl_resnet50_8xb32-coslr-200e_openimages.py",
                     "tiny/densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", "tiny/mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py",
                     "tiny/densecl_resnet18_1xb16-coslr-300it_embedded.py", "tiny/mocov2_resnet18_1xb16-coslr-300it_embedded.py"):
        assert required in names


@pytest.mark.parametrize("path", PRETRAIN_CONFIGS, ids=lambda p: p.relative_to(ROOT / "mmconfigs").as_posix())
def test_every_pretraining_config_loads_and_its_model_and_pipeline_build(path):
    from mmcv.transforms import Compose

    cfg = Config.fromfile(str(path))
    assert cfg.custom_imports["imports"] == ["hcl_plugin.mmselfsup"]
    _, MODELS = _registries()
    model = MODELS.build(cfg.model)
    hcl = "-hcl" in path.name
    assert isinstance(model, (HCLMoCoV2, HCLDenseCL)) == hcl
    pipeline = Compose(cfg.train_dataloader.dataset.pipeline)
    multiview = pipeline.transforms[2]
    assert multiview.hyperbolic_views == hcl  # the baselines see the same object crops, no scene views
    if hcl:
        assert cfg.model.curvature == dict(c=0.05, learnable=False)
        assert "c" not in cfg.model.hyp_neck and "c" not in cfg.model.hyp_head  # one entry: model.curvature
        assert_one_curvature(model)
        expected = (0.1, 0.05, 0.2, 65536) if "tiny" not in path.parts else (0.1, 0.05, 0.2, 256)
        assert (model.lambda_hyp, model.hyp_neck.c, model.hyp_head.temperature, model.hyp_queue.size) == expected
        assert model.hyp_neck.c == model.hyp_head.c == model.hyp_queue.c
    else:
        assert not hasattr(model, "hyp_neck")


@pytest.mark.parametrize("config, loop_key, length", [("tiny/densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", "max_iters", 40),
                                                      ("densecl-hcl_resnet50_8xb32-coslr-200e_coco.py", "max_epochs", 5)])
def test_the_cosine_schedule_ends_with_the_train_loop(config, loop_key, length, tmp_path):
    """``--cfg-options train_cfg.max_iters=3`` (or ``max_epochs``) alone shortens the whole schedule."""
    from mmengine.runner import Runner

    cfg = Config.fromfile(str(ROOT / "mmconfigs" / config))
    cosine = cfg.param_scheduler[-1]  # after the tiny schedule's linear warm-up
    assert cosine.type == "CosineAnnealingLR" and "T_max" not in cosine and "end" not in cosine
    cfg.train_cfg[loop_key] = length
    cfg.work_dir = str(tmp_path)
    cfg.visualizer.name = f"visualizer_{tmp_path.name}"
    runner = Runner.from_cfg(cfg)
    runner._train_dataloader = torch.utils.data.DataLoader(list(range(4)))  # the loop without the data set
    runner._train_loop = runner.build_train_loop(runner._train_loop)  # the config's own loop
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    *warmup, scheduler = runner.build_param_scheduler(runner.param_schedulers)
    assert scheduler.end == length and scheduler.T_max == length - scheduler.begin
    assert [w.end for w in warmup] == [scheduler.begin] * len(warmup)  # the cosine starts where the warm-up ends


def test_synthetic_pipelines_are_the_coco_ones_at_64_px():
    coco = Config.fromfile(str(ROOT / "mmconfigs/_base_/datasets/coco_hcl-scenes.py"))
    synthetic = Config.fromfile(str(ROOT / "mmconfigs/_base_/datasets/embedded_hcl-scenes.py"))
    sizes = {"RandomResizedCrop": "size", "Resize": "scale"}

    def without_sizes(views):
        return [{k: v for k, v in step.items() if k != sizes.get(step["type"])} for step in views]

    for name in ("train_pipeline", "baseline_pipeline"):
        coco_views, synthetic_views = coco[name][2], synthetic[name][2]
        assert coco_views.hyperbolic_views == (name == "train_pipeline") == synthetic_views.hyperbolic_views
        for key in ("object_transforms", "scene_transforms"):
            assert without_sizes(coco_views[key]) == without_sizes(synthetic_views[key])
        assert synthetic_views.object_transforms[0].size == 64 and coco_views.object_transforms[0].size == 224
        assert tuple(synthetic_views.scene_transforms[0].scale) == (64, 64)
        assert synthetic[name][1] == dict(coco[name][1], min_box_size=24, expand_to=96)
    assert synthetic.train_dataloader.dataset.pipeline == synthetic.train_pipeline


def test_mismatched_curvatures_are_rejected():
    cfg = Config.fromfile(str(ROOT / "mmconfigs/tiny/mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py"))
    cfg.model.hyp_head.c = 0.1
    _, MODELS = _registries()
    with pytest.raises(ValueError, match=r"model\.hyp_head\.c = 0\.1 differs from model\.curvature \(c = 0\.05\)"):
        MODELS.build(cfg.model)


def test_unknown_algorithm_gives_mmengine_registry_error(embedded, tmp_path):
    cfg = tiny_config("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path)
    cfg.model.type = "HCLDenseCLv7"
    with pytest.raises(KeyError, match="HCLDenseCLv7 is not in the mmselfsup::model registry"):
        Runner.from_cfg(cfg)


# -------------------------------------------------------------------------------- data, views


def test_crop_box_rounds_outwards_and_keeps_one_pixel():
    img = torch.arange(100).reshape(10, 10, 1).numpy()
    assert crop_box(img, [2.5, 3.2, 4.1, 5.9]).shape[:2] == (3, 3)
    assert crop_box(img, [9.9, 9.9, 9.95, 9.99]).shape[:2] == (1, 1)
    assert crop_box(img, [-5, -5, 50, 50]).shape[:2] == (10, 10)


def test_pipeline_makes_four_views_in_the_algorithms_order(embedded, tmp_path):
    cfg = tiny_config("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path)
    DATASETS, _ = _registries()
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    item = dataset[0]
    assert len(item["inputs"]) == 4
    assert all(view.shape == (3, 64, 64) and view.dtype == torch.uint8 for view in item["inputs"])
    assert Path(item["data_samples"].img_path).parent == embedded / "images"
    baseline = DATASETS.build(tiny_config("densecl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path).train_dataloader.dataset)
    assert len(baseline[0]["inputs"]) == 2


def test_sampled_scene_box_contains_the_object_box(embedded, tmp_path):
    from mmcv.transforms import Compose

    cfg = tiny_config("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path)
    DATASETS, _ = _registries()
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    load_and_sample = Compose(cfg.train_dataloader.dataset.pipeline[:2])
    for index in range(8):
        results = load_and_sample(copy.deepcopy(dataset.get_data_info(index)))
        if results is None:  # too few boxes: BaseDataset draws another image
            continue
        obj, scene = results["object_bbox"], results["scene_bbox"]
        assert (scene[:2] <= obj[:2] + 1e-4).all() and (scene[2:] >= obj[2:] - 1e-4).all()


def test_missing_annotation_file_fails_at_start_with_the_path(embedded, tmp_path):
    cfg = tiny_config("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path)
    cfg.train_dataloader.dataset.ann_file = "no_such_annotations.json"
    runner = Runner.from_cfg(cfg)
    with pytest.raises(FileNotFoundError, match=r"annotation file .*no_such_annotations\.json.* does not exist"):
        runner.train()
    assert not list(tmp_path.glob("*.pth"))


def test_missing_image_folder_fails_at_start_with_the_path(embedded, tmp_path):
    cfg = tiny_config("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path)
    cfg.train_dataloader.dataset.data_prefix = dict(img_path="no_such_images/")
    runner = Runner.from_cfg(cfg)
    with pytest.raises(FileNotFoundError, match=r"image folder .*no_such_images.* does not exist"):
        runner.train()


def test_missing_image_file_is_named(embedded, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(embedded, data)
    victim = sorted((data / "images").iterdir())[0]
    victim.unlink()
    cfg = tiny_config("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", data, tmp_path)
    DATASETS, _ = _registries()
    with pytest.raises(FileNotFoundError, match=victim.name):
        DATASETS.build(cfg.train_dataloader.dataset)


# ------------------------------------------------------------------------------ the algorithms


@pytest.mark.parametrize("base", ["densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", "mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py"])
def test_train_step_logs_loss_hyp_and_the_loss_falls_on_a_fixed_batch(base, embedded, tmp_path):
    import random

    import numpy as np

    random.seed(0), np.random.seed(0), torch.manual_seed(0)  # the views too: one fixed, repeatable batch
    cfg = tiny_config(base, embedded, tmp_path, batch_size=8)
    DATASETS, MODELS = _registries()
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = _batch(dataset, 8)
    model = MODELS.build(cfg.model)
    model.init_weights()
    # fixed negatives: with a fixed batch the queues would fill with copies of its own keys
    for name in ("_dequeue_and_enqueue", "_dequeue_and_enqueue2"):
        setattr(model, name, lambda keys: None)
    model.hyp_queue.enqueue = lambda keys: None
    optim = build_optim_wrapper(model, dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9)))
    history, hyp = [], []
    for _ in range(15):
        log = model.train_step(copy.deepcopy(batch), optim)
        assert {"loss_hyp", "hyp_clipped_fraction", "hyp_norm_mean"} <= set(log)
        assert all(math.isfinite(float(v)) for v in log.values())
        history.append(float(log["loss"]))
        hyp.append(float(log["loss_hyp"]))
        parts = sum(float(v) for k, v in log.items() if "loss" in k and k not in ("loss", "loss_hyp"))
        assert float(log["loss"]) == pytest.approx(parts, rel=1e-5)  # the unweighted loss_hyp is not summed
    assert sum(history[-3:]) / 3 < 0.9 * sum(history[:3]) / 3, history
    assert sum(hyp[-3:]) < sum(hyp[:3]), hyp


def test_hyperbolic_branch_is_the_core_loss_on_scene_queries_and_object_keys(embedded, tmp_path, gen):
    """loss_hyp (= loss_hyp_weighted / lambda) equals HyperbolicInfoNCE(-d(q, k)/tau) with the queue before the step."""
    cfg = tiny_config("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path)
    DATASETS, MODELS = _registries()
    model = MODELS.build(cfg.model).eval()  # eval: BN uses running stats, so both passes agree
    images = [torch.rand(4, 3, 64, 64, generator=gen) for _ in range(4)]
    queue = model.hyp_queue.negatives()
    with torch.no_grad():
        losses = model._hyperbolic_loss(images)
        q = model.hyp_neck(model.backbone(images[2]))[0]
        k = model.hyp_neck_k.module(model.encoder_k.module[0](images[3]))[0]
    c, tau = model.hyp_neck.c, model.hyp_head.temperature
    logits = torch.cat([-dist(q, k, c)[:, None], -dist(q[:, None], queue[None], c)], dim=1).double() / tau
    expected = torch.nn.functional.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    assert float(losses["loss_hyp_weighted"]) == pytest.approx(model.lambda_hyp * float(expected), rel=1e-4)
    assert float(losses["loss_hyp"]) == pytest.approx(float(expected), rel=1e-4)  # logged unweighted
    assert torch.equal(model.hyp_queue.bank[:4], k)  # the step's keys were enqueued


# ------------------------------------------------------------ curvature ownership, λ, deprecated names


def _tiny_model(base: str = "mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", **overrides):
    """The model config of ``mmconfigs/tiny/<base>`` with a 64-key queue and ``overrides``."""
    cfg = Config.fromfile(str(ROOT / "mmconfigs/tiny" / base)).model
    cfg.queue_len = 64
    cfg.update(overrides)
    return cfg


def _groups_holding(optim, param) -> list:
    return [group for group in optim.optimizer.param_groups for p in group["params"] if p is param]


@pytest.mark.parametrize("base", ["mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", "densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py"])
def test_a_learnable_curvature_is_one_parameter_that_mmengine_trains(base, gen):
    _, MODELS = _registries()
    model = MODELS.build(_tiny_model(base, curvature=dict(c=0.05, learnable=True)))
    assert_one_curvature(model)
    assert model.hyp_queue.stores_tangent  # the queue keeps tangent vectors: its points follow c
    log_c = model.curvature.log_c
    assert all(p is not log_c for p in model.hyp_neck_k.avg_parameters.values())  # read, not averaged
    optim = build_optim_wrapper(model, dict(optimizer=dict(type="SGD", lr=0.5, momentum=0.9)))
    assert len(_groups_holding(optim, log_c)) == 1
    start = float(log_c)
    batch = random_views_batch(4, 32, gen)
    for _ in range(3):
        log = model.train_step(copy.deepcopy(batch), optim)
        assert math.isfinite(float(log["loss_hyp"])) and float(log["hyp_c"]) > 0
    assert float(log_c) != start
    c = math.exp(float(log_c))
    for user in (model.hyp_neck, model.hyp_neck_k.module, model.hyp_head, model.hyp_queue):
        assert float(user.c) == pytest.approx(c, rel=1e-6)
    assert_one_curvature(model)


def test_a_paramwise_config_sees_log_c_once_and_can_spare_it_weight_decay():
    _, MODELS = _registries()
    model = MODELS.build(_tiny_model(curvature=dict(c=0.05, learnable=True)))
    optim = build_optim_wrapper(model, dict(
        optimizer=dict(type="SGD", lr=0.1, weight_decay=1e-4),
        paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={"curvature": dict(decay_mult=0.0)})))
    groups = _groups_holding(optim, model.curvature.log_c)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0


def test_a_learnable_curvature_is_saved_and_reloaded(tmp_path, gen):
    from mmengine.runner import load_checkpoint

    _, MODELS = _registries()
    cfg = _tiny_model(curvature=dict(c=0.05, learnable=True))
    model = MODELS.build(cfg)
    with torch.no_grad():
        model.curvature.log_c.fill_(math.log(0.08))
    model.hyp_queue.enqueue(model.hyp_queue.negatives()[:4].detach() * 0.5)
    path = tmp_path / "iter_1.pth"
    torch.save({"meta": {}, "state_dict": model.state_dict()}, path)
    fresh = MODELS.build(cfg)
    load_checkpoint(fresh, str(path), strict=True)
    assert float(fresh.curvature()) == pytest.approx(0.08)
    c = float(fresh.curvature())
    assert float(fresh.hyp_head.c) == float(fresh.hyp_neck_k.module.c) == float(fresh.hyp_queue.c) == c
    assert torch.allclose(fresh.hyp_queue.negatives(), model.hyp_queue.negatives())
    assert_one_curvature(fresh)


def test_curvature_config_forms_and_errors():
    from hcl_plugin.mmselfsup import HyperbolicContrastiveHead, PoincareNeck

    _, MODELS = _registries()
    fixed = MODELS.build(_tiny_model(curvature=0.2))  # a plain number: a fixed c
    assert fixed.hyp_neck.c == fixed.hyp_head.c == fixed.hyp_queue.c == 0.2 and not fixed.curvature.learnable
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['learn'\]"):
        MODELS.build(_tiny_model(curvature=dict(c=0.05, learn=True)))
    with pytest.raises(ValueError, match="HCLMoCoV2: curvature=-1.0: c must be finite and > 0"):
        MODELS.build(_tiny_model(curvature=-1.0))
    with pytest.raises(TypeError, match="curvature must be a number"):
        MODELS.build(_tiny_model(curvature="0.05"))
    equal = _tiny_model()
    equal.hyp_neck.c = 0.05  # the same value as model.curvature: accepted, no warning
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*curvature.*", category=DeprecationWarning)
        assert_one_curvature(MODELS.build(equal))
    # standalone, the neck and the head keep their own c
    assert PoincareNeck(8, 8, 4, c=0.2).c == HyperbolicContrastiveHead(c=0.2).c == 0.2
    with pytest.raises(ValueError, match="c must be finite and > 0"):
        PoincareNeck(8, 8, 4, c=0.0)


@pytest.mark.parametrize("keys", [("hyp_neck",), ("hyp_neck", "hyp_head")])
def test_configs_with_c_in_the_neck_still_build_with_one_curvature(keys):
    _, MODELS = _registries()
    cfg = _tiny_model()
    cfg.pop("curvature")
    for key in keys:
        cfg[key].c = 0.1
    with pytest.warns(DeprecationWarning, match=r"set model\.curvature=dict\(c=0\.1, learnable=False\)"):
        model = MODELS.build(cfg)
    assert_one_curvature(model)
    assert model.hyp_neck.c == model.hyp_neck_k.module.c == model.hyp_head.c == model.hyp_queue.c == 0.1
    cfg.hyp_head.c = 0.2
    with pytest.raises(ValueError, match=r"model\.hyp_neck\.c = 0\.1 and model\.hyp_head\.c = 0\.2 differ"):
        MODELS.build(cfg)
    cfg.hyp_neck.pop("c"), cfg.hyp_head.pop("c")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*curvature.*", category=DeprecationWarning)
        assert MODELS.build(cfg).curvature() == 0.05  # no c anywhere: the official 0.05


def test_hyp_lambda_is_a_deprecated_alias_of_lambda_hyp():
    _, MODELS = _registries()
    cfg = _tiny_model()
    cfg.pop("lambda_hyp")
    cfg.hyp_lambda = 0.3
    with pytest.warns(DeprecationWarning, match=r"model\.hyp_lambda is deprecated .* use model\.lambda_hyp=0\.3"):
        model = MODELS.build(cfg)
    assert model.lambda_hyp == 0.3
    with pytest.warns(DeprecationWarning, match="use lambda_hyp"):
        assert model.hyp_lambda == 0.3
    with pytest.warns(DeprecationWarning, match="use lambda_hyp"):
        model.hyp_lambda = 0.05  # what hooks written for hyp_lambda do
    assert model.lambda_hyp == 0.05
    cfg.lambda_hyp = 0.1
    with pytest.raises(ValueError, match="both lambda_hyp=0.1 and its deprecated alias hyp_lambda=0.3"):
        MODELS.build(cfg)
    with pytest.raises(ValueError, match="lambda_hyp must be finite and >= 0, got -0.1"):
        MODELS.build(_tiny_model(lambda_hyp=-0.1))


def test_lambda_warmup_schedule():
    assert [hyp_lambda_at(t, 0.1, 2, 4) for t in range(8)] == pytest.approx([0, 0, 0.025, 0.05, 0.075, 0.1, 0.1, 0.1])
    assert hyp_lambda_at(0, 0.1, 0, 0) == 0.1


# ------------------------------------------------------------------------------- checkpoints


def test_mmengine_message_hub_checkpoints_load_with_the_allowlist(tmp_path):
    buffer = HistoryBuffer()
    buffer.update(1.5)
    state = {"state_dict": {"w": torch.ones(2)},
             "message_hub": {"log_scalars": {"train/loss": buffer}, "runtime_info": {"iter": torch.tensor(3).numpy()}}}
    path = tmp_path / "iter_3.pth"
    torch.save(state, path)
    with pytest.raises(pickle.UnpicklingError):  # what MMEngine's own loader meets under torch >= 2.6
        torch.load(path)
    loaded = CheckpointLoader.load_checkpoint(str(path))
    assert loaded["message_hub"]["log_scalars"]["train/loss"].mean() == 1.5


def test_code_in_a_checkpoint_is_refused_with_the_file_and_the_global(tmp_path):
    import os

    path = tmp_path / "evil.pth"
    torch.save({"x": os.system}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"evil\.pth.*GLOBAL posix\.system"):
        CheckpointLoader.load_checkpoint(str(path))

    class Sneaky:
        def __reduce__(self):
            return (getattr, (HistoryBuffer, "__init__"))

    path = tmp_path / "sneaky.pth"
    torch.save({"x": Sneaky()}, path)
    with pytest.raises(UnsafeCheckpointError, match=r"sneaky\.pth.*getattr\(HistoryBuffer, '__init__'\)"):
        CheckpointLoader.load_checkpoint(str(path))
    with pytest.raises(UnsafeCheckpointError):
        history_buffer_getattr(os, "system")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing_here.pth"):
        CheckpointLoader.load_checkpoint(str(tmp_path / "nothing_here.pth"))


def test_extracted_backbone_loads_strictly_into_torchvision(tmp_path):
    cfg = Config.fromfile(str(ROOT / "mmconfigs/tiny/densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py"))
    _, MODELS = _registries()
    model = MODELS.build(cfg.model)
    path = tmp_path / "pretrain.pth"
    torch.save({"meta": {"iter": 7}, "state_dict": model.state_dict()}, path)
    out = extract_backbone(str(path))
    resnet = torchvision.models.resnet18()
    resnet.fc = torch.nn.Identity()
    assert not resnet.load_state_dict(out["state_dict"], strict=True).missing_keys
    assert out["meta"]["iter"] == 7
    momentum = extract_backbone(str(path), prefix="encoder_k.module.0.")
    resnet.load_state_dict(momentum["state_dict"], strict=True)
    with pytest.raises(BackboneNotFoundError, match=r"no key starts with 'encoder\.'.*backbone\. \("):
        extract_backbone(str(path), prefix="encoder.")


def test_extracted_resnet50_backbone_loads_strictly_into_mmdetection_and_torchvision(tmp_path):
    from mmdet.models.backbones import ResNet as MMDetResNet

    cfg = Config.fromfile(str(ROOT / "mmconfigs/densecl-hcl_resnet50_8xb32-coslr-200e_coco.py"))
    _, MODELS = _registries()
    path = tmp_path / "epoch_200.pth"
    torch.save({"meta": {"epoch": 200}, "state_dict": MODELS.build(cfg.model).state_dict()}, path)
    out = tmp_path / "backbone.pth"
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "tools/extract_backbone.py"), str(path), str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    state = torch.load(out, weights_only=True)["state_dict"]
    torchvision_resnet = torchvision.models.resnet50()
    torchvision_resnet.fc = torch.nn.Identity()
    torchvision_resnet.load_state_dict(state, strict=True)
    detector_backbone = MMDetResNet(depth=50, frozen_stages=-1, norm_eval=False)
    result = detector_backbone.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys


@pytest.mark.parametrize("base, learnable", [("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", False), ("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", True),
                                             ("mocov2_resnet18_1xb16-coslr-300it_embedded.py", False)])
def test_mmselfsup_checkpoints_load_for_the_analysis(base, learnable, tmp_path, gen):
    """hcl_plugin.eval reads an MMEngine checkpoint (message hub included) into the same network."""
    from hcl_plugin.eval import load_checkpoint

    cfg = Config.fromfile(str(ROOT / "mmconfigs/tiny" / base))
    if learnable:
        cfg.model.curvature = dict(c=0.05, learnable=True)
    _, MODELS = _registries()
    model = MODELS.build(cfg.model).eval()
    if learnable:
        with torch.no_grad():
            model.curvature.log_c.fill_(math.log(0.08))  # the analysis uses the learned c
    buffer = HistoryBuffer()
    buffer.update(2.0)
    path = tmp_path / "iter_300.pth"
    torch.save({"meta": {"cfg": cfg.pretty_text, "iter": 300}, "state_dict": model.state_dict(),
                "message_hub": {"log_scalars": {"train/loss": buffer}}}, path)
    loaded = load_checkpoint(str(path))
    assert loaded.hyper_parameters["checkpoint_format"] == "mmselfsup"
    if "-hcl" in base:
        assert loaded.c == pytest.approx(float(model.curvature())) and loaded.hyper_parameters["lambda_hyp"] == 0.1
    assert loaded.image_size == 64 and loaded.hyper_parameters["backbone"] == "resnet18"
    images = torch.rand(3, 3, 64, 64, generator=gen)
    out = loaded.embed(images)
    with torch.no_grad():
        features = model.backbone(images)
        assert torch.allclose(out["euclidean"], model.neck(features)[0], atol=1e-5)
        if "-hcl" in base:
            assert torch.allclose(out["hyperbolic"], model.hyp_neck(features)[0], atol=1e-5)
        else:
            assert loaded.hyperbolic_head is None


def test_the_key_momentum_schedule_is_the_lightly_examples_cosine_schedule():
    """``CosineKeyMomentumHook``'s m_t equals Lightly's ``cosine_schedule`` (the Lightly examples'
    ``--momentum-schedule cosine``) at every step, from m0 to exactly 1 at the last iteration."""
    from hcl_plugin.mmselfsup.hooks import cosine_key_momentum

    scheduler = pytest.importorskip("lightly.utils.scheduler", reason="lightly is not installed (pip install 'hcl_plugin[lightly]')")
    for total, m0 in ((2, 0.5), (20, 0.7), (300, 0.98), (1001, 0.999)):
        values = [cosine_key_momentum(t, total, m0) for t in range(total)]
        assert values == pytest.approx([scheduler.cosine_schedule(t, total, m0, 1.0) for t in range(total)], abs=1e-12)
        assert values[0] == pytest.approx(m0) and values[-1] == 1.0
        assert all(b >= a for a, b in zip(values, values[1:]))
    assert cosine_key_momentum(500, 300, 0.98) == 1.0  # past the end it stays at 1
    assert cosine_key_momentum(0, 1, 0.98) == 0.98  # a one-iteration run keeps m0
