"""UHML on MMEngine / MMSelfSup (hcl_plugin.mmselfsup: uhml_model, datasets, samplers, hooks): configs, a real Runner run, resume, 2 ranks, errors.

The end-to-end runs use a tiny image tree written with PIL into a temporary folder (4 classes x 8
images; the training half is 2 classes = 16 images), so no downloaded data is needed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch

pytest.importorskip("mmselfsup")
pytest.importorskip("mmcv")

from mmengine.config import Config  # noqa: E402
from mmengine.hooks import Hook  # noqa: E402
from mmengine.registry import HOOKS as MMENGINE_HOOKS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "mmconfigs" / "tiny" / "uhml_resnet18_1xb32-adam-3e_embedded-retrieval.py"
CUB = ROOT / "mmconfigs" / "uhml_resnet50_1xb128-adam-50e_cub.py"


@MMENGINE_HOOKS.register_module(force=True)
class RecordUHMLLabelsHook(Hook):
    """After the re-clustering hook (priority LOW): record the model's and the sampler's labels per epoch.

    With ``out_dir`` set, every rank also writes ``labels_rank<r>_epoch<e>.npy`` (for the 2-rank test).
    """

    priority = "LOW"

    def __init__(self, out_dir: str = "") -> None:
        self.out_dir = out_dir
        self.records: List[Dict[str, object]] = []

    def before_train_epoch(self, runner) -> None:
        from mmengine.dist import get_rank
        from mmselfsup.utils import get_model

        model = get_model(runner.model)
        sampler = runner.train_dataloader.batch_sampler
        labels = model.pseudo_labels.cpu().numpy().copy()
        self.records.append(dict(epoch=runner.epoch, labels=labels, sampler=sampler.labels.numpy().copy(),
                                 sampler_epoch=sampler.epoch))
        if self.out_dir:
            np.save(os.path.join(self.out_dir, f"labels_rank{get_rank()}_epoch{runner.epoch}.npy"), labels)


def write_image_tree(root: Path, num_classes: int = 4, per_class: int = 8, size: int = 24) -> Path:
    """``root/class<k>/<i>.png``: RGB images, a class colour plus noise (PIL)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for k in range(num_classes):
        folder = root / f"class{k}"
        folder.mkdir(parents=True, exist_ok=True)
        colour = rng.integers(0, 256, size=3)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    return root


def tiny_uhml_config(data_root: Path, work_dir: Path, max_epochs: int = 2, levels=(4, 2), interval: int = 1,
                     record_dir: str = "") -> Config:
    """The tiny config shrunk to a few CPU iterations on ``data_root``: batches of 2 x 4, 32-d ball."""
    cfg = Config.fromfile(str(TINY))
    cfg.work_dir = str(work_dir)
    cfg.model.neck.out_channels = 32
    cfg.train_dataloader.batch_size = 8
    cfg.train_dataloader.dataset.data_root = str(data_root)
    cfg.custom_hooks[0].n_clusters = list(levels)
    cfg.custom_hooks[0].interval = interval
    cfg.custom_hooks[0].batch_size = 8
    cfg.custom_hooks.append(dict(type="RecordUHMLLabelsHook", out_dir=record_dir))
    cfg.train_cfg.max_epochs = max_epochs
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.checkpoint.max_keep_ckpts = 10
    return cfg


def read_scalars(work_dir: Path) -> list:
    rows = []
    for path in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        rows += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return rows


def hook_of(runner, name: str):
    return next(h for h in runner.hooks if type(h).__name__ == name)


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory) -> Path:
    return write_image_tree(tmp_path_factory.mktemp("uhml_images"))


@pytest.fixture(scope="module")
def tiny_run(image_tree, tmp_path_factory):
    """One real 2-epoch Runner run (re-clustering every epoch); returns (runner, work_dir)."""
    import hcl_plugin.mmselfsup  # noqa: F401
    from mmengine.runner import Runner

    work_dir = tmp_path_factory.mktemp("uhml_work")
    runner = Runner.from_cfg(tiny_uhml_config(image_tree, work_dir))
    runner.train()
    return runner, work_dir


# ---------------------------------------------------------------------------------------------- configs


def test_configs_load_and_build(image_tree):
    import hcl_plugin.mmselfsup  # noqa: F401
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmselfsup.registry import HOOKS, MODELS

    from hcl_plugin.mmselfsup.hooks import UHMLReclusterHook
    from hcl_plugin.mmselfsup.samplers import UHMLBalancedBatchSampler
    from hcl_plugin.mmselfsup.uhml_model import UHML

    init_default_scope("mmselfsup")
    cub = Config.fromfile(str(CUB))
    assert cub.train_dataloader.dataset.data_root == "data/CUB_200_2011/images"
    assert cub.optim_wrapper.optimizer == dict(type="Adam", lr=1e-5, weight_decay=5e-4)
    assert cub.train_dataloader.batch_size == 128 and cub.train_dataloader.batch_sampler.instances_per_class == 8
    assert cub.custom_hooks[0].n_clusters == [100, 50]
    assert cub.model.omega == 0.1 and cub.model.neck.c == 1.0
    assert cub.train_dataloader.dataset.pipeline[2].size == 227
    assert cub.custom_hooks[0].embed_pipeline[2].crop_size == 224
    model = MODELS.build(cub.model)
    assert isinstance(model, UHML) and model.backbone.depth == 50 and model.curvature_value == 1.0

    tiny = tiny_uhml_config(image_tree, image_tree.parent / "unused")
    assert isinstance(MODELS.build(tiny.model), UHML)
    assert isinstance(HOOKS.build(tiny.custom_hooks[0]), UHMLReclusterHook)
    loader = Runner.build_dataloader(tiny.train_dataloader, seed=0)
    assert isinstance(loader.batch_sampler, UHMLBalancedBatchSampler)
    assert (loader.batch_sampler.classes_per_batch, loader.batch_sampler.instances_per_class) == (2, 4)
    assert len(loader.dataset) == 16 and len(loader) == 2  # 2 training classes x 8 images, batches of 8
    batch = next(iter(loader))
    assert batch["inputs"][0].shape == (8, 3, 32, 32)
    indices = [sample.metainfo["dataset_index"] for sample in batch["data_samples"]]
    assert all(0 <= i < 16 for i in indices)


# ---------------------------------------------------------------------------------------------- training


def test_hook_sets_labels_every_epoch_and_loss_is_logged(tiny_run):
    runner, work_dir = tiny_run
    recluster = hook_of(runner, "UHMLReclusterHook")
    assert [r["epoch"] for r in recluster.history] == [0.0, 1.0]
    assert all(r["clusters_level0"] == 4 and r["clusters_level1"] == 2 for r in recluster.history)
    assert recluster.history[0]["changed_fraction"] == 1.0
    records = hook_of(runner, "RecordUHMLLabelsHook").records
    assert [r["epoch"] for r in records] == [0, 1]
    for record in records:
        labels = record["labels"]
        assert labels.shape == (2, 16)
        assert len(np.unique(labels[0])) == 4 and len(np.unique(labels[1])) == 2
        np.testing.assert_array_equal(record["sampler"], labels[0])  # the sampler draws from the same labels
        assert record["sampler_epoch"] == record["epoch"]
        for fine in np.unique(labels[0]):  # nested: every fine cluster lies in one coarse cluster
            assert len(np.unique(labels[1][labels[0] == fine])) == 1

    rows = [r for r in read_scalars(work_dir) if "loss_uhml" in r]
    assert len(rows) == 4  # 2 epochs x 2 iterations, logged every iteration
    assert all(math.isfinite(r["loss_uhml"]) for r in rows)
    assert all(r["recluster/clusters_level0"] == 4 for r in rows)
    assert all("recluster/changed_fraction" in r and "recluster/seconds" in r for r in rows)


def test_labels_survive_resume(tiny_run, image_tree, tmp_path):
    """The labels are a model buffer: a resumed run between two re-clusterings trains on the saved ones."""
    from mmengine.runner import Runner

    first, work_dir = tiny_run
    saved = hook_of(first, "RecordUHMLLabelsHook").records[0]["labels"]  # the labels epoch 0 trained on
    from hcl_plugin.mmengine_support.checkpoint_loading import load_local_checkpoint

    checkpoint = load_local_checkpoint(str(work_dir / "epoch_1.pth"), map_location="cpu")
    np.testing.assert_array_equal(checkpoint["state_dict"]["pseudo_labels"].numpy(), saved)

    cfg = tiny_uhml_config(image_tree, tmp_path, max_epochs=2, interval=2)  # epoch 1: no re-clustering
    cfg.resume, cfg.load_from = True, str(work_dir / "epoch_1.pth")
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert hook_of(runner, "UHMLReclusterHook").history == []
    records = hook_of(runner, "RecordUHMLLabelsHook").records
    assert [r["epoch"] for r in records] == [1]
    np.testing.assert_array_equal(records[0]["labels"], saved)
    np.testing.assert_array_equal(records[0]["sampler"], saved[0])


@pytest.mark.slow
def test_two_ranks_get_identical_labels(image_tree, tmp_path):
    """``tools/dist_train.sh CONFIG 2`` (CPU, gloo): rank 0 clusters, both ranks train on the same labels."""
    cfg = tiny_uhml_config(image_tree, tmp_path / "work", max_epochs=2, record_dir=str(tmp_path))
    cfg.custom_imports.imports = list(cfg.custom_imports.imports) + ["tests.test_mmselfsup_uhml"]
    config = tmp_path / "uhml_2ranks.py"
    cfg.dump(str(config))
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(29500 + os.getpid() % 1000), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    result = subprocess.run(["bash", str(ROOT / "tools" / "dist_train.sh"), str(config), "2"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for epoch in (0, 1):
        rank0 = np.load(tmp_path / f"labels_rank0_epoch{epoch}.npy")
        rank1 = np.load(tmp_path / f"labels_rank1_epoch{epoch}.npy")
        assert rank0.shape == (2, 16)
        np.testing.assert_array_equal(rank0, rank1)


# ---------------------------------------------------------------------------------------------- errors


def test_fewer_samples_than_clusters_is_a_clear_error(image_tree, tmp_path):
    from mmengine.runner import Runner

    runner = Runner.from_cfg(tiny_uhml_config(image_tree, tmp_path, levels=(20, 10)))
    with pytest.raises(ValueError, match=r"fewer training samples \(16\) than clusters requested \(20"):
        runner.train()


def test_loss_without_dataset_index_or_labels_is_a_clear_error():
    import hcl_plugin.mmselfsup  # noqa: F401
    from mmengine.registry import init_default_scope
    from mmselfsup.registry import MODELS
    from mmselfsup.structures import SelfSupDataSample

    init_default_scope("mmselfsup")
    cfg = Config.fromfile(str(TINY))
    model = MODELS.build(cfg.model)
    images = [torch.rand(2, 3, 32, 32)]
    samples = [SelfSupDataSample(), SelfSupDataSample()]
    with pytest.raises(RuntimeError, match="UHMLReclusterHook"):
        model.loss(images, samples)
    model.set_pseudo_labels(torch.tensor([[0, 0, 1], [0, 0, 0]]))
    with pytest.raises(KeyError, match="dataset_index"):
        model.loss(images, samples)
    for i, sample in enumerate(samples):
        sample.set_metainfo(dict(dataset_index=i))
    out = model.loss(images, samples)
    assert torch.isfinite(out["loss_uhml"])
    z = model.extract_feat(images)
    assert z.shape == (2, 64) and bool((z.norm(dim=1) < 1).all())


def test_bad_hook_and_sampler_arguments():
    from mmengine.dataset import DefaultSampler

    from hcl_plugin.mmselfsup.hooks import UHMLReclusterHook
    from hcl_plugin.mmselfsup.samplers import UHMLBalancedBatchSampler

    with pytest.raises(ValueError, match="exactly one of n_clusters"):
        UHMLReclusterHook(embed_pipeline=[])
    with pytest.raises(ValueError, match="embed_pipeline"):
        UHMLReclusterHook(n_clusters=[4, 2])
    sampler = DefaultSampler(list(range(10)), shuffle=False, seed=0)
    with pytest.raises(ValueError, match="multiple of instances_per_class"):
        UHMLBalancedBatchSampler(sampler, batch_size=10, instances_per_class=4)
    with pytest.raises(ValueError, match="batch_size 8"):
        UHMLBalancedBatchSampler(sampler, batch_size=8, instances_per_class=4, classes_per_batch=3)
    batches = list(UHMLBalancedBatchSampler(sampler, batch_size=4, instances_per_class=2))
    assert len(batches) == 2 and all(len(b) == 4 for b in batches)


def _batchnorm_statistics(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


@pytest.mark.parametrize("config", [TINY, CUB])
def test_frozen_batchnorm_by_default_one_state_for_clustering_and_loss(config):
    """``norm_eval=True`` (the released freeze_BN): a training step changes no BatchNorm statistic, and the
    features the re-clustering embeds (eval mode) equal the ones the loss sees in training mode."""
    import hcl_plugin.mmselfsup  # noqa: F401
    from mmengine.registry import init_default_scope
    from mmselfsup.registry import MODELS
    from mmselfsup.structures import SelfSupDataSample

    init_default_scope("mmselfsup")
    cfg = Config.fromfile(str(config))
    assert cfg.model.backbone.norm_eval is True
    if config == CUB:  # a small ResNet is enough for the check
        cfg.model.backbone.depth, cfg.model.neck.in_channels = 18, 512
    model = MODELS.build(cfg.model)
    gen = torch.Generator().manual_seed(0)
    before = _batchnorm_statistics(model)
    images = [torch.rand(4, 3, 32, 32, generator=gen)]
    samples = [SelfSupDataSample() for _ in range(4)]
    for i, sample in enumerate(samples):
        sample.set_metainfo(dict(dataset_index=i))
    model.set_pseudo_labels(torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]]))
    model.train()
    with torch.no_grad():
        train_features = model.extract_feat(images)
    loss = model.loss(images, samples)["loss_uhml"]
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    after = _batchnorm_statistics(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    model.eval()
    model.zero_grad()
    with torch.no_grad():
        eval_features = model.extract_feat(images)
        model.train()
        train_again = model.extract_feat(images)
    assert torch.equal(eval_features, train_again)  # same weights: train mode = eval mode exactly
    assert not torch.equal(train_features, train_again)  # the step changed the weights, not the statistics

    cfg.model.backbone.norm_eval = False  # the flag trains them (so the check above can fail)
    model = MODELS.build(cfg.model).train()
    before = _batchnorm_statistics(model)
    model.extract_feat(images)
    assert not all(torch.equal(before[k], v) for k, v in _batchnorm_statistics(model).items())
