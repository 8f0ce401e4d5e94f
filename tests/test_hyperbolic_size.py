"""``hyperbolic_size``: the side of the two hyperbolic views, apart from the Euclidean ones (issue 16).

The official HCL code makes all four views 224 x 224; ``hyperbolic_size=None`` keeps that (the hyperbolic
views at the Euclidean size). Set, it changes the hyperbolic scene / object views' size only: the
Euclidean views are the same tensors (same size, same pixels for the same seeds), in both frameworks,
and the models train on such batches.
"""

from __future__ import annotations

import copy
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hcl_plugin.data.views import BOX_KEYS, VIEW_KEYS, HCLViews

BOXES = [[10, 10, 80, 90], [100, 40, 190, 140], [30, 100, 120, 150]]
BAD_SIZES = [0, -8, 12.5, True, "32", float("nan")]
EUCLIDEAN, HYPERBOLIC = VIEW_KEYS[:2], VIEW_KEYS[2:]


def _image(width: int = 200, height: int = 160) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _seeded(fn, seed: int = 0):
    """``fn()`` with torch's, numpy's and Python's global generators seeded (the photometric draws)."""
    random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
    return fn()


# ------------------------------------------------------------------------------ framework-free views


def test_views_default_keeps_the_hyperbolic_views_at_the_euclidean_size():
    views = HCLViews(euclidean_size=40)
    assert views.hyperbolic_size == 40
    out = views(_image(), BOXES, generator=torch.Generator().manual_seed(0))
    assert all(out[key].shape == (3, 40, 40) for key in VIEW_KEYS)


def test_views_option_changes_only_the_hyperbolic_views():
    same, small = HCLViews(euclidean_size=40), HCLViews(euclidean_size=40, hyperbolic_size=24)
    a = _seeded(lambda: same(_image(), BOXES, generator=torch.Generator().manual_seed(5)))
    b = _seeded(lambda: small(_image(), BOXES, generator=torch.Generator().manual_seed(5)))
    for key in EUCLIDEAN:
        assert b[key].shape == (3, 40, 40) and torch.equal(a[key], b[key])
    for key in HYPERBOLIC:
        assert a[key].shape == (3, 40, 40) and b[key].shape == (3, 24, 24)
    for key in BOX_KEYS:
        assert torch.equal(a[key], b[key])
    # a larger side works too (the option is a size, not a down-scaling factor)
    assert HCLViews(euclidean_size=24, hyperbolic_size=40)(_image(), BOXES)["hyperbolic_object"].shape == (3, 40, 40)


@pytest.mark.parametrize("bad", BAD_SIZES)
def test_views_reject_bad_sizes_naming_them(bad):
    with pytest.raises(ValueError, match="hyperbolic_size"):
        HCLViews(euclidean_size=32, hyperbolic_size=bad)
    with pytest.raises(ValueError, match="euclidean_size"):
        HCLViews(euclidean_size=bad)


# ------------------------------------------------------------------------------------------ Lightly


def _lightly():
    pytest.importorskip("lightly", reason="lightly is not installed (pip install 'hcl_plugin[lightly]')")


def test_lightly_transform_option_changes_only_the_hyperbolic_views():
    _lightly()
    from hcl_plugin.lightly import HCLTransform

    kwargs = dict(input_size=48, min_box_size=16, expand_to=96)
    default = _seeded(lambda: HCLTransform(**kwargs)(_image(), BOXES, generator=torch.Generator().manual_seed(2)))
    explicit = _seeded(lambda: HCLTransform(**kwargs, hyperbolic_size=None)(
        _image(), BOXES, generator=torch.Generator().manual_seed(2)))
    small = _seeded(lambda: HCLTransform(**kwargs, hyperbolic_size=24)(
        _image(), BOXES, generator=torch.Generator().manual_seed(2)))
    assert [tuple(v.shape) for v in default] == [(3, 48, 48)] * 4  # default unchanged: one size
    assert all(torch.equal(x, y) for x, y in zip(default, explicit))
    assert [tuple(v.shape) for v in small] == [(3, 48, 48)] * 2 + [(3, 24, 24)] * 2
    assert torch.equal(small[0], default[0]) and torch.equal(small[1], default[1])


@pytest.mark.parametrize("bad", BAD_SIZES)
def test_lightly_transform_rejects_bad_sizes_naming_them(bad):
    _lightly()
    from hcl_plugin.lightly import HCLTransform

    with pytest.raises(ValueError, match="hyperbolic_size"):
        HCLTransform(input_size=32, hyperbolic_size=bad)
    with pytest.raises(ValueError, match="input_size"):
        HCLTransform(input_size=bad)


def test_lightly_transform_keeps_the_old_keyword_as_a_deprecated_alias():
    _lightly()
    from hcl_plugin.lightly import HCLTransform

    with pytest.warns(DeprecationWarning, match="hyperbolic_size"):
        transform = HCLTransform(input_size=32, hyperbolic_input_size=16, min_box_size=16, expand_to=96)
    assert transform.views.hyperbolic_size == 16
    with pytest.raises(ValueError, match="hyperbolic_size"):
        HCLTransform(input_size=32, hyperbolic_size=16, hyperbolic_input_size=16)


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Path:
    from tests.data_helpers import build_embedded

    return build_embedded(tmp_path_factory.mktemp("embedded_hyp_size"), num_images=16, image_size=128, seed=4)


def _scene_dataset(embedded: Path, **kwargs):
    from hcl_plugin.lightly import scene_dataset

    return scene_dataset(embedded / "images", embedded / "annotations_train.json", input_size=32, min_box_size=12,
                         expand_to=48, seed=0, **kwargs)


def test_lightly_scene_dataset_option_changes_only_the_hyperbolic_views(embedded):
    _lightly()
    default, small = _scene_dataset(embedded), _scene_dataset(embedded, hyperbolic_size=16)
    for index in range(3):
        a, b = _seeded(lambda: default[index], index), _seeded(lambda: small[index], index)
        assert all(a[key].shape == (3, 32, 32) for key in VIEW_KEYS)
        for key in EUCLIDEAN:
            assert torch.equal(a[key], b[key])
        assert all(b[key].shape == (3, 16, 16) for key in HYPERBOLIC)
    with pytest.raises(ValueError, match="hyperbolic_size"):
        _scene_dataset(embedded, hyperbolic_size=0)


def test_lightly_command_line_flag_reaches_the_data_and_the_saved_hyper_parameters(embedded, tmp_path):
    _lightly()
    from hcl_plugin.lightly.models import MoCoHCL
    from hcl_plugin.lightly.training import build_dataloader, build_parser, head_hparams

    common = ["--data", str(embedded), "--image-size", "32", "--min-box-size", "12", "--expand-to", "48", "--batch-size", "2",
              "--num-workers", "0", "--out", str(tmp_path)]
    default = build_parser(MoCoHCL).parse_args(common)
    assert default.hyperbolic_size is None and head_hparams(default)["hyperbolic_size"] == 32
    args = build_parser(MoCoHCL).parse_args(common + ["--hyperbolic-size", "16"])
    assert args.hyperbolic_size == 16 and head_hparams(args)["hyperbolic_size"] == 16
    assert MoCoHCL.from_args(args).hparams.hyperbolic_size == 16  # saved with the checkpoint's hyper-parameters
    batch = next(iter(build_dataloader(args)))
    assert [tuple(batch[key].shape) for key in VIEW_KEYS] == [(2, 3, 32, 32)] * 2 + [(2, 3, 16, 16)] * 2


@pytest.mark.parametrize("name", ["MoCoHCL", "DenseCLHCL", "SimCLRHCL"])
def test_lightly_models_train_on_smaller_hyperbolic_views(name, embedded):
    _lightly()
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, default_collate

    from hcl_plugin.lightly import models

    dataset = _scene_dataset(embedded, hyperbolic_size=16)
    batch = default_collate([dataset[i] for i in range(4)])
    assert batch["hyperbolic_scene"].shape == (4, 3, 16, 16) and batch["object_view_1"].shape == (4, 3, 32, 32)
    pl.seed_everything(0)
    extra = {} if name == "SimCLRHCL" else {"memory_bank_size": 0}
    module = getattr(models, name)(image_size=32, proj_hidden_dim=64, proj_output_dim=16, hyp_hidden_dim=64,
                                   hyp_output_dim=16, feature_scale=0.25, **extra)
    losses = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, callbacks=[Record()])
    trainer.fit(module, DataLoader([batch, batch], batch_size=None))
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


# --------------------------------------------------------------------------------------- MMSelfSup


def _mmselfsup():
    pytest.importorskip("mmselfsup", reason="MMSelfSup is not installed (pip install 'hcl_plugin[mmselfsup]')")
    import hcl_plugin.mmselfsup  # noqa: F401  (registers the components)
    from mmengine.registry import init_default_scope

    init_default_scope("mmselfsup")


def _multiview(**kwargs):
    from mmselfsup.registry import TRANSFORMS

    view = [dict(type="RandomApply", transforms=[dict(type="ColorJitter", brightness=0.4, contrast=0.4,
                                                       saturation=0.4, hue=0.1)], prob=0.8),
            dict(type="RandomGrayscale", prob=0.2, keep_channels=True, channel_weights=(0.114, 0.587, 0.2989)),
            dict(type="RandomGaussianBlur", sigma_min=0.1, sigma_max=2.0, prob=0.5),
            dict(type="RandomFlip", prob=0.5)]
    scene = kwargs.pop("scene_transforms", [dict(type="Resize", scale=(48, 48), keep_ratio=False, backend="pillow"),
                                            *view])
    return TRANSFORMS.build(dict(
        type="SceneObjectMultiView",
        object_transforms=[dict(type="RandomResizedCrop", size=48, scale=(0.2, 1.0), backend="pillow"), *view],
        scene_transforms=scene, **kwargs))


def _results() -> dict:
    img = np.asarray(_image())[..., ::-1].copy()
    return dict(img=img, img_path="scene.png", object_bbox=np.array([10, 10, 80, 90], np.float32),
                expanded_object_bbox=np.array([0, 0, 100, 110], np.float32),
                scene_bbox=np.array([10, 10, 190, 140], np.float32))


def test_mmselfsup_transform_option_changes_only_the_hyperbolic_views():
    _mmselfsup()
    default = _seeded(lambda: _multiview()(_results()))["img"]
    explicit = _seeded(lambda: _multiview(hyperbolic_size=None)(_results()))["img"]
    small = _seeded(lambda: _multiview(hyperbolic_size=24)(_results()))["img"]
    assert [v.shape[:2] for v in default] == [(48, 48)] * 4  # default unchanged: the pipeline's size
    assert all(np.array_equal(x, y) for x, y in zip(default, explicit))
    assert [v.shape[:2] for v in small] == [(48, 48)] * 2 + [(24, 24)] * 2
    assert np.array_equal(small[0], default[0]) and np.array_equal(small[1], default[1])
    # a pipeline that sizes its views with RandomResizedCrop, and the baselines' object-only pipelines
    rrc = [dict(type="RandomResizedCrop", size=48, backend="pillow")]
    assert [v.shape[:2] for v in _multiview(scene_transforms=rrc, hyperbolic_size=20)(_results())["img"][2:]] \
        == [(20, 20)] * 2
    baseline = _multiview(hyperbolic_views=False, hyperbolic_size=24)(_results())["img"]
    assert [v.shape[:2] for v in baseline] == [(48, 48)] * 2


@pytest.mark.parametrize("bad", BAD_SIZES)
def test_mmselfsup_transform_rejects_bad_sizes_naming_them(bad):
    _mmselfsup()
    with pytest.raises(ValueError, match="hyperbolic_size"):
        _multiview(hyperbolic_size=bad)


def test_mmselfsup_transform_needs_a_sizing_first_step_to_resize():
    _mmselfsup()
    with pytest.raises(ValueError, match=r"hyperbolic_size=24 needs scene_transforms to start with .*'RandomFlip'"):
        _multiview(scene_transforms=[dict(type="RandomFlip", prob=0.5)], hyperbolic_size=24)
    with pytest.raises(ValueError, match="hyperbolic_size=24 needs .*empty list"):
        _multiview(scene_transforms=[], hyperbolic_size=24)


def _tiny(base: str, embedded: Path, work: Path, hyperbolic_size=None, **kwargs):
    from tests.mmselfsup_helpers import tiny_config

    cfg = tiny_config(base, embedded, work, **kwargs)
    if hyperbolic_size is not None:  # what --cfg-options train_dataloader.dataset.pipeline.2.hyperbolic_size=N does
        cfg.merge_from_dict({"train_dataloader.dataset.pipeline.2.hyperbolic_size": hyperbolic_size})
    return cfg


def test_mmselfsup_configs_default_to_the_official_sizes_and_take_the_option_once():
    _mmselfsup()
    from mmengine.config import Config

    from tests.mmselfsup_helpers import ROOT

    for name, size in (("mocov2-hcl_resnet50_8xb32-coslr-200e_coco.py", 224), ("tiny/densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", 64)):
        cfg = Config.fromfile(str(ROOT / "mmconfigs" / name))
        assert cfg.hyperbolic_size is None
        step = cfg.train_dataloader.dataset.pipeline[2]
        assert step.type == "SceneObjectMultiView" and step.hyperbolic_size is None
        assert tuple(step.scene_transforms[0].scale) == (size, size)


def test_mmselfsup_dataset_option_changes_only_the_hyperbolic_views(embedded, tmp_path):
    _mmselfsup()
    from mmselfsup.registry import DATASETS

    default = DATASETS.build(_tiny("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path).train_dataloader.dataset)
    small = DATASETS.build(_tiny("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path, 32).train_dataloader.dataset)
    for index in range(3):
        a, b = _seeded(lambda: default[index], index)["inputs"], _seeded(lambda: small[index], index)["inputs"]
        assert [tuple(v.shape) for v in a] == [(3, 64, 64)] * 4
        assert [tuple(v.shape) for v in b] == [(3, 64, 64)] * 2 + [(3, 32, 32)] * 2
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_mmselfsup_moco_hcl_trains_on_smaller_hyperbolic_views(embedded, tmp_path):
    """A real run (data loader, ``default_collate``, data preprocessor, ``HCLMoCoV2``) with 32 px hyperbolic views."""
    _mmselfsup()
    from mmengine.runner import Runner

    cfg = _tiny("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path, 32, max_iters=2, checkpoint_interval=2)
    from mmengine.hooks import Hook

    runner = Runner.from_cfg(cfg)
    seen = []

    class Shapes(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            seen.append([tuple(v.shape) for v in data_batch["inputs"]])

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            assert all(math.isfinite(float(torch.as_tensor(outputs[key]).detach())) for key in ("loss", "loss_hyp"))

    runner.register_hook(Shapes())
    runner.train()
    assert seen and all(shapes == [(4, 3, 64, 64)] * 2 + [(4, 3, 32, 32)] * 2 for shapes in seen)


def test_mmselfsup_densecl_hcl_train_step_on_smaller_hyperbolic_views(embedded, tmp_path):
    _mmselfsup()
    from mmengine.dataset import default_collate
    from mmengine.optim import build_optim_wrapper
    from mmselfsup.registry import DATASETS, MODELS

    cfg = _tiny("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", embedded, tmp_path, 32)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    batch = default_collate([dataset[i] for i in range(4)])
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim = build_optim_wrapper(model, dict(optimizer=dict(type="SGD", lr=0.05, momentum=0.9)))
    log = model.train_step(copy.deepcopy(batch), optim)
    assert {"loss_hyp"} <= set(log) and all(math.isfinite(float(v)) for v in log.values())
