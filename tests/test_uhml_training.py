"""UHML training: balanced batch sampler, embedding network and weights, re-clustering callback, example script."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hcl_plugin.uhml import BalancedBatchSampler, UHMLEmbedding, WeightsMismatchError, similarity_levels
from hcl_plugin.geometry import dist0
from hcl_plugin.lightly.uhml_recluster import ReclusterCallback, label_change_fraction

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lightly_examples"))

import uhml  # noqa: E402


def random_labels(gen: torch.Generator, n: int = 120, num_classes: int = 9) -> torch.Tensor:
    return torch.randint(num_classes, (n,), generator=gen)


def batches(sampler) -> list:
    return [list(b) for b in sampler]


# ---------------------------------------------------------------- sampler


def test_sampler_yields_p_classes_times_m_instances(gen):
    labels = torch.cat([torch.arange(10).repeat_interleave(12), random_labels(gen, 30, 10)])
    sampler = BalancedBatchSampler(labels, classes_per_batch=4, instances_per_class=5, num_batches=7, seed=3)
    out = batches(sampler)
    assert len(out) == len(sampler) == 7
    for batch in out:
        assert len(batch) == sampler.batch_size == 20
        blocks = [batch[i:i + 5] for i in range(0, 20, 5)]
        block_classes = []
        for block in blocks:
            classes = {int(labels[i]) for i in block}
            assert len(classes) == 1  # every block of M is one class
            assert len(set(block)) == 5  # every class has >= 12 members: no repeats
            block_classes.append(classes.pop())
        assert len(set(block_classes)) == 4  # P distinct classes


def test_sampler_fills_small_classes_with_replacement():
    labels = [0] * 2 + [1] * 9 + [2] * 1
    sampler = BalancedBatchSampler(labels, classes_per_batch=3, instances_per_class=4, num_batches=5, seed=0)
    for batch in sampler:
        assert len(batch) == 12
        by_class = Counter(labels[i] for i in batch)
        assert by_class == {0: 4, 1: 4, 2: 4}
        assert {0, 1} <= set(batch) and 11 in set(batch)  # every member of a small class appears


def test_sampler_with_fewer_classes_than_p_keeps_the_batch_size():
    labels = [0] * 5 + [1] * 5
    sampler = BalancedBatchSampler(labels, classes_per_batch=4, instances_per_class=2, num_batches=3, seed=0)
    for batch in sampler:
        assert len(batch) == 8
        assert {labels[i] for i in batch} == {0, 1}


def test_sampler_is_deterministic_by_seed_and_epoch(gen):
    labels = random_labels(gen)
    make = lambda seed: BalancedBatchSampler(labels, 3, 4, seed=seed)  # noqa: E731
    a, b, other = make(5), make(5), make(6)
    assert batches(a) == batches(b) == batches(a)  # same seed, and re-iteration repeats the epoch
    assert batches(a) != batches(other)
    a.set_epoch(1)
    assert batches(a) != batches(b)
    b.set_epoch(1)
    assert batches(a) == batches(b)
    assert len(a) == 120 // 12


def test_sampler_set_labels_and_multi_level_input(gen):
    sampler = BalancedBatchSampler([0] * 40, 2, 3, num_batches=4, seed=1)
    assert sampler.num_classes == 1
    levels = np.stack([np.arange(40) % 8, np.arange(40) % 4])  # (K, N): the finest row is used
    sampler.set_labels(levels)
    assert sampler.num_classes == 8
    for batch in sampler:
        assert len({i % 8 for i in batch}) == 2
    with pytest.raises(ValueError, match="40"):
        sampler.set_labels([0] * 39)


def test_sampler_shards_batches_across_replicas(gen):
    labels = random_labels(gen)
    single = batches(BalancedBatchSampler(labels, 3, 2, num_batches=6, seed=2))
    rank0 = batches(BalancedBatchSampler(labels, 3, 2, num_batches=3, seed=2, num_replicas=2, rank=0))
    rank1 = batches(BalancedBatchSampler(labels, 3, 2, num_batches=3, seed=2, num_replicas=2, rank=1))
    assert rank0 == single[0::2] and rank1 == single[1::2]


@pytest.mark.parametrize("kwargs", [dict(classes_per_batch=0), dict(instances_per_class=0), dict(num_batches=0),
                                    dict(num_replicas=2, rank=2)])
def test_sampler_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        BalancedBatchSampler([0, 1, 1], **kwargs)
    with pytest.raises(ValueError, match="integers"):
        BalancedBatchSampler([0.5, 1.0])


# ---------------------------------------------------------------- embedding


def test_embedding_lands_in_the_ball_without_a_common_norm(gen):
    images = torch.rand(6, 3, 32, 32, generator=gen)
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
    for c, clip_r, scale in [(1.0, 2.3, None), (0.5, None, 50.0), (2.0, 0.5, 1.0)]:
        net = UHMLEmbedding("resnet18", dim=8, c=c, clip_r=clip_r, feature_scale=scale)
        z = net(images)
        assert z.shape == (6, 8)
        assert bool((z.norm(dim=1) < c**-0.5).all())
        if clip_r is not None:  # clipping bounds the hyperbolic norm by 2 r (in units where c enters)
            assert float(dist0(z.detach(), c).max()) <= 2 * clip_r * (1 + 1e-4)
        assert set(net.stats) >= {"clipped_fraction", "hyp_norm_mean", "hyp_norm_min", "hyp_norm_max"}
    net = UHMLEmbedding("resnet18", dim=8, c=1.0, clip_r=2.3)
    z = net(images)
    norms = z.detach().norm(dim=1)
    assert float(norms.max() - norms.min()) > 1e-4  # no L2 normalisation: the norm is free (unlike tanh(1) for all)
    assert float(net.stats["clipped_fraction"]) < 1  # default scale 1/sqrt(D): not every point clipped at init
    dist0(z, 1.0).sum().backward()  # the learnable scale gets a gradient
    assert net.log_scale.grad is not None and float(net.log_scale.grad.abs()) > 0


def resnet18_state() -> dict:
    model = torchvision.models.resnet18(weights=None)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_embedding_loads_project_checkpoints_and_torchvision_state_dicts(tmp_path):
    state = resnet18_state()
    checkpoint = {
        "state_dict": {**{f"backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")},
                       **{f"backbone_momentum.{k}": torch.zeros_like(v) for k, v in state.items() if not k.startswith("fc.")},
                       "projection_head.layers.0.weight": torch.zeros(4, 512),
                       "hyperbolic_head.log_scale": torch.tensor(0.0)},
        "hyper_parameters": {"backbone": "resnet18", "c": 0.05},
    }
    torch.save(checkpoint, tmp_path / "moco.ckpt")
    torch.save(state, tmp_path / "torchvision.pth")  # with fc.*: dropped
    for name, kind in [("moco.ckpt", "backbone.*"), ("torchvision.pth", "torchvision")]:
        net = UHMLEmbedding("resnet18", dim=8, weights=tmp_path / name)
        assert kind in net.weights_format
        for key, value in net.backbone.state_dict().items():
            assert torch.equal(value, state[key]), key
    # a UHML checkpoint (embedding.backbone.*) is accepted too
    uhml_ckpt = {"state_dict": {f"embedding.{k}": v for k, v in net.state_dict().items()}}
    torch.save(uhml_ckpt, tmp_path / "uhml.ckpt")
    again = UHMLEmbedding("resnet18", dim=8, weights=tmp_path / "uhml.ckpt")
    assert torch.equal(again.backbone.conv1.weight, state["conv1.weight"])


def test_embedding_rejects_a_mismatching_checkpoint_listing_keys(tmp_path):
    state = resnet18_state()
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in state.items()}}, tmp_path / "r18.ckpt")
    with pytest.raises(WeightsMismatchError) as error:  # resnet18 weights into a resnet34
        UHMLEmbedding("resnet34", dim=8, weights=tmp_path / "r18.ckpt")
    message = str(error.value)
    assert "missing" in message and "layer1.2.conv1.weight" in message and "r18.ckpt" in message
    assert "unexpected" in message and "fc.weight" in message  # fc.* is only dropped from plain state_dicts

    bad = {k: v for k, v in state.items() if not k.startswith("fc.")}
    bad["conv1.weight"] = torch.zeros(64, 1, 7, 7)
    del bad["bn1.bias"]
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsMismatchError) as error:
        UHMLEmbedding("resnet18", dim=8, weights=tmp_path / "bad.pth")
    message = str(error.value)  # one listing format for every key check: shapes as checkpoint vs model
    assert "missing in the checkpoint (1):\n    bn1.bias" in message
    assert "conv1.weight: (64, 1, 7, 7) vs (64, 3, 7, 7)" in message

    torch.save({"state_dict": {"encoder.weight": torch.zeros(2)}}, tmp_path / "other.ckpt")
    with pytest.raises(WeightsMismatchError, match="no backbone weights.*encoder.weight"):
        UHMLEmbedding("resnet18", dim=8, weights=tmp_path / "other.ckpt")
    with pytest.raises(FileNotFoundError):
        UHMLEmbedding("resnet18", dim=8, weights=tmp_path / "missing.pth")


# ---------------------------------------------------------------- callback (tiny module, fast)


class TinyBallModule(pl.LightningModule):
    """Vectors -> linear -> expmap0; records the pseudo-labels each training batch was drawn under."""

    def __init__(self, dim: int = 4):
        super().__init__()
        self.embedding = nn.Linear(6, dim)
        self.criterion = uhml.HierarchicalLogRatioLoss(omega=0.1, c=1.0)
        self.pseudo_labels = None
        self.seen = []

    def set_pseudo_labels(self, labels):
        self.pseudo_labels = labels

    def forward(self, x):
        from hcl_plugin.geometry import expmap0

        return expmap0(self.embedding(x), 1.0)

    def training_step(self, batch, batch_idx):
        x, index = batch
        self.seen.append((self.current_epoch, index.tolist(), self.pseudo_labels.clone()))
        loss = self.criterion(self(x), similarity_levels(self.pseudo_labels[:, index]))
        self.log("loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def test_recluster_callback_updates_sampler_and_module_every_epoch(gen, tmp_path):
    x = torch.randn(60, 6, generator=gen)
    data = TensorDataset(x, torch.arange(60))
    sampler = BalancedBatchSampler([0] * 60, classes_per_batch=3, instances_per_class=4, num_batches=4, seed=0)
    callback = ReclusterCallback(data, sampler, n_clusters=[6, 3], c=1.0, batch_size=16, progress=False)
    module = TinyBallModule()
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", devices=1, logger=pl.loggers.CSVLogger(tmp_path),
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[callback], use_distributed_sampler=False, log_every_n_steps=1)
    trainer.fit(module, DataLoader(data, batch_sampler=sampler))
    assert [h["epoch"] for h in callback.history] == [0, 1, 2]
    assert all(h["clusters_level0"] == 6 and h["clusters_level1"] == 3 for h in callback.history)
    assert callback.history[0]["changed_fraction"] == 1.0
    assert np.array_equal(module.pseudo_labels.numpy(), callback.labels)
    assert torch.equal(sampler.labels, torch.as_tensor(callback.labels[0]))
    assert sampler.epoch == 2
    assert len(module.seen) == 12 and {e for e, _, _ in module.seen} == {0, 1, 2}
    for _, index, labels in module.seen:  # each batch was drawn from the labels current when it trained
        finest = labels[0, index].reshape(3, 4)
        assert bool((finest == finest[:, :1]).all())
    logged = [r for r in csv.DictReader(next(tmp_path.glob("**/metrics.csv")).open()) if r.get("recluster/seconds")]
    assert len(logged) == 3 and all(float(r["recluster/clusters_level0"]) == 6 for r in logged)


def test_label_change_fraction_ignores_renaming():
    assert label_change_fraction(np.array([0, 0, 1, 1]), np.array([5, 5, 2, 2])) == 0.0
    assert label_change_fraction(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])) == 0.25


def test_recluster_callback_needs_one_kind_of_level():
    with pytest.raises(ValueError):
        ReclusterCallback([], None)
    with pytest.raises(ValueError):
        ReclusterCallback([], None, n_clusters=[4, 2], thresholds=[1.0, 2.0])


# ---------------------------------------------------------------- example script (end to end)


def tiny_image_folder(root: Path, gen: torch.Generator, classes: int = 6, per_class: int = 8) -> Path:
    for k in range(classes):
        colour = torch.rand(3, generator=gen) * 255
        folder = root / f"class_{k:02d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            noise = torch.rand(20, 20, 3, generator=gen) * 60
            pixels = (colour * 0.8 + noise).clamp(0, 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_example_trains_two_epochs_and_writes_recall(gen, tmp_path):
    data = tiny_image_folder(tmp_path / "images", gen)
    out = tmp_path / "out"
    report = uhml.main(["--data", str(data), "--image-size", "32", "--dim", "8", "--levels", "6", "3",
                        "--batch-classes", "3", "--batch-instances", "4", "--batches-per-epoch", "2", "--epochs", "2",
                        "--num-workers", "0", "--embed-batch-size", "16", "--out", str(out), "--no-progress-bar",
                        "--log-every", "1", "--seed", str(int(torch.randint(1000, (1,), generator=gen)))])
    written = json.loads((out / "recall.json").read_text())
    assert written["train_classes"] == 3 and written["test_classes"] == 3 and written["test_images"] == 24
    assert written["ks"] == [1, 2, 4, 8, 16]  # K <= N - 1 = 23
    for table in (written["recall"], written["recall_init"]):
        assert set(table) == {"cosine", "poincare"}
        for recall in table.values():
            values = [recall[str(k)] for k in written["ks"]]
            assert all(math.isfinite(v) and 0 <= v <= 1 for v in values)
            assert values == sorted(values)  # R@K is non-decreasing in K
    assert [h["epoch"] for h in written["reclustering"]] == [0, 1]  # labels recomputed each epoch
    assert written["global_steps"] == 4
    assert (out / "recall.png").stat().st_size > 0 and (out / "final.ckpt").is_file()
    losses = [float(r["loss"]) for r in csv.DictReader(next(out.glob("logs/version_*/metrics.csv")).open()) if r.get("loss")]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert report["recall"] == written["recall"]
    # the final checkpoint seeds another run's backbone
    net = UHMLEmbedding("resnet18", dim=8, weights=out / "final.ckpt")
    assert "embedding.backbone" in net.weights_format


def test_module_records_the_weights_file_as_metadata_only(tmp_path):
    torch.save(resnet18_state(), tmp_path / "r18.pth")
    module = uhml.UHML(dim=8, weights=str(tmp_path / "r18.pth"))
    assert "weights" not in module.hparams and module.hparams.initial_weights == str(tmp_path / "r18.pth")
    (tmp_path / "r18.pth").unlink()
    rebuilt = uhml.UHML(**module.hparams)  # what load_from_checkpoint does: the file is not needed again
    assert rebuilt.hparams.initial_weights == module.hparams.initial_weights


def test_recluster_callback_with_thresholds(gen, tmp_path):
    x = torch.cat([torch.randn(20, 6, generator=gen) * 0.05 + 3 * torch.eye(6)[k % 3] for k in range(3)])
    data = TensorDataset(x, torch.arange(60))
    sampler = BalancedBatchSampler([0] * 60, classes_per_batch=2, instances_per_class=3, num_batches=2, seed=0)
    callback = ReclusterCallback(data, sampler, thresholds=[0.5, 100.0], c=1.0, progress=False)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[callback],
                         use_distributed_sampler=False)
    trainer.fit(TinyBallModule(), DataLoader(data, batch_sampler=sampler))
    (record,) = callback.history
    assert record["clusters_level1"] == 1 and record["clusters_level0"] >= record["clusters_level1"]
    assert callback.labels.shape == (2, 60)


def _bn_statistics(module: nn.Module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


def test_batchnorm_is_frozen_by_default_so_clustering_and_loss_see_one_state(gen):
    """As the released code (freeze_BN): a training step changes no running statistic, and the features
    the re-clustering embeds in eval mode equal the ones the loss sees in training mode; --train-bn trains them."""
    from hcl_plugin.lightly.uhml_model import UHML

    module = UHML(backbone="resnet18", dim=16, c=1.0).train()
    assert module.training and not module.hparams.train_bn
    assert all(not m.training for m in module.embedding.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    module.set_pseudo_labels(torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]]))
    images = torch.rand(4, 3, 32, 32, generator=gen)
    before = _bn_statistics(module)
    loss = module.training_step((images, torch.zeros(4), torch.arange(4)), 0)
    loss.backward()
    torch.optim.SGD(module.parameters(), lr=0.01).step()
    assert all(torch.equal(before[k], v) for k, v in _bn_statistics(module).items())
    with torch.no_grad():
        train_mode = module(images)
        eval_mode = module.eval()(images)
    assert torch.equal(train_mode, eval_mode)

    trained_bn = UHML(backbone="resnet18", dim=16, c=1.0, train_bn=True).train()
    before = _bn_statistics(trained_bn)
    trained_bn(images)
    assert not all(torch.equal(before[k], v) for k, v in _bn_statistics(trained_bn).items())


def test_crop_scale_is_an_option_and_bad_values_are_refused():
    from hcl_plugin.lightly.uhml_training import DEFAULT_CROP_SCALE, transforms

    train, _ = transforms(32, (0.16, 1.0))
    assert train.transforms[0].scale == (0.16, 1.0)
    assert transforms(32)[0].transforms[0].scale == DEFAULT_CROP_SCALE
    for bad in ((0.0, 1.0), (0.8, 0.5), (0.5, 1.5)):
        with pytest.raises(ValueError, match="crop_scale"):
            transforms(32, bad)
