"""The one UHML re-clustering step (hcl_plugin.uhml.recluster) and its two adapters (Lightning callback, MMEngine hook).

Covers: ``recluster()`` on both clustering paths (Ward levels, flat k-means) and its result fields;
that both adapters go through it; that an error on rank 0 is raised on every rank under
torch.distributed (gloo, 2 CPU processes) for both adapters; that ``hcl_plugin.uhml`` imports no
training framework; and that the old module paths still resolve, with a DeprecationWarning.
"""

from __future__ import annotations

import datetime
import importlib
import json
import logging
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from hcl_plugin.geometry import expmap0
from hcl_plugin.uhml import BalancedBatchSampler
from hcl_plugin.uhml.recluster import ReclusterResult, check_clustering, embed_batches, recluster

C = 1.0
WORLD = 2


def planted_batches(seed: int = 0, per_cluster: int = 6, batch_size: int = 8):
    """4 tight clusters in 2 well-separated pairs (2 levels: [4, 2]), in the ball, as a list of batches."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[2.0, 0.0], [2.0, 0.4], [-2.0, 0.0], [-2.0, 0.4]], dtype=torch.float64)
    points = torch.cat([c + 0.01 * torch.randn(per_cluster, 2, generator=gen, dtype=torch.float64) for c in centres])
    z = expmap0(points * 0.5, C)
    truth = torch.arange(4).repeat_interleave(per_cluster)
    return [z[i:i + batch_size] for i in range(0, len(z), batch_size)], truth


# ---------------------------------------------------------------------------------------------- recluster()


def test_recluster_ward_levels_and_result_fields():
    batches, truth = planted_batches()
    done = []
    result = recluster(lambda batch: batch, batches, C, n_clusters=[4, 2], epoch=3, seed=1, on_batch=done.append)
    assert isinstance(result, ReclusterResult)
    assert result.labels.shape == (2, 24) and result.labels.dtype == np.int64
    assert result.clusters_per_level == [4, 2] and result.num_samples == 24
    assert result.changed_fraction == 1.0 and result.seconds >= 0 and result.epoch == 3
    assert done == [1, 2, 3]
    for k in range(4):  # the planted clusters are recovered, and nested in the coarse level
        assert len(np.unique(result.labels[0][truth.numpy() == k])) == 1
    assert len(np.unique(result.labels[1][:12])) == 1 and len(np.unique(result.labels[1][12:])) == 1
    record = result.record()
    assert set(record) == {"epoch", "seconds", "changed_fraction", "clusters_level0", "clusters_level1"}
    assert (record["epoch"], record["clusters_level0"], record["clusters_level1"]) == (3.0, 4.0, 2.0)
    assert "re-clustered 24 samples into [4, 2] clusters" in result.summary()

    again = recluster(lambda batch: batch, batches, C, n_clusters=[4, 2], previous=torch.as_tensor(result.labels))
    assert again.changed_fraction == 0.0  # same partition (up to renaming)
    by_threshold = recluster(lambda batch: batch, batches, C, thresholds=[0.5, 100.0])
    assert by_threshold.clusters_per_level[1] == 1


def test_recluster_kmeans_is_one_flat_level():
    batches, truth = planted_batches()
    result = recluster(lambda batch: batch, batches, C, method="kmeans", n_clusters=[4], previous=truth)
    assert result.labels.shape == (1, 24) and result.clusters_per_level == [4]
    assert result.changed_fraction == 0.0  # compared with the (N,) previous labels
    assert set(result.record()) == {"epoch", "seconds", "changed_fraction", "clusters_level0"}


def test_recluster_switches_the_model_to_eval_and_back():
    model = nn.Linear(2, 2).train()
    modes = []

    def embed(batch):
        modes.append(model.training)
        return batch

    batches, _ = planted_batches()
    recluster(embed, batches, C, n_clusters=[4], model=model)
    assert modes == [False] * 3 and model.training
    with pytest.raises(ValueError, match="fewer samples"):
        recluster(embed, batches, C, n_clusters=[50], model=model)
    assert model.training


def test_bad_requests_are_clear_errors():
    with pytest.raises(ValueError, match="exactly one of n_clusters"):
        check_clustering("ward", None, None)
    with pytest.raises(ValueError, match="exactly one of n_clusters"):
        check_clustering("ward", [4], [1.0])
    with pytest.raises(ValueError, match="method must be 'ward' or 'kmeans'"):
        check_clustering("spectral", [4], None)
    with pytest.raises(ValueError, match="one flat level"):
        check_clustering("kmeans", [4, 2], None)
    with pytest.raises(ValueError, match="one flat level"):
        check_clustering("kmeans", None, [1.0])
    assert check_clustering("kmeans", (4,), None) == ("kmeans", [4], None)
    with pytest.raises(ValueError, match="empty"):
        embed_batches(lambda b: b, [])


# ---------------------------------------------------------------------------------------------- adapters


class TinyBallModule(nn.Module):
    """Vectors -> linear -> expmap0, with the module/model interface both adapters use."""

    def __init__(self, dim_in: int = 2, dim: int = 2):
        super().__init__()
        self.linear = nn.Linear(dim_in, dim)
        self.register_buffer("pseudo_labels", torch.zeros(0, 0, dtype=torch.int64))
        self.curvature_value = C

    @property
    def device(self):
        return self.linear.weight.device

    @property
    def has_pseudo_labels(self) -> bool:
        return self.pseudo_labels.numel() > 0

    def set_pseudo_labels(self, labels):
        self.pseudo_labels = torch.as_tensor(labels, dtype=torch.int64)

    def forward(self, x):
        return expmap0(self.linear(x.float()), C)

    # MMEngine side: data_preprocessor + extract_feat
    def data_preprocessor(self, batch, training=False):
        return {"inputs": batch["inputs"]}

    def extract_feat(self, inputs):
        return self(inputs)


def vectors(n: int = 24, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=gen)


def lightning_setup(n_clusters, method="ward", world_size=1, rank=0, strategy=None):
    pytest.importorskip("pytorch_lightning")
    from torch.utils.data import TensorDataset

    from hcl_plugin.lightly.uhml_recluster import ReclusterCallback

    x = vectors()
    sampler = BalancedBatchSampler([0] * len(x), classes_per_batch=2, instances_per_class=2, seed=0)
    callback = ReclusterCallback(TensorDataset(x, torch.arange(len(x))), sampler, n_clusters=n_clusters, c=C,
                                 batch_size=8, progress=False, method=method)
    trainer = SimpleNamespace(current_epoch=0, global_step=0, is_global_zero=rank == 0, world_size=world_size,
                              global_rank=rank, strategy=strategy, loggers=[])
    return callback, trainer, sampler


class FakeMessageHub:
    def __init__(self):
        self.scalars = {}

    def update_scalar(self, key, value):
        self.scalars[key] = value


def mmengine_setup(n_clusters, method="ward"):
    pytest.importorskip("mmselfsup")
    pytest.importorskip("mmcv")
    from hcl_plugin.mmselfsup.hooks import UHMLReclusterHook

    x = vectors()
    model = TinyBallModule()
    sampler = BalancedBatchSampler([0] * len(x), classes_per_batch=2, instances_per_class=2, seed=0)
    hook = UHMLReclusterHook(n_clusters=n_clusters, embed_pipeline=[], batch_size=8, method=method)
    hook._loader = [{"inputs": x[i:i + 8]} for i in range(0, len(x), 8)]  # the built embedding loader
    runner = SimpleNamespace(epoch=0, model=model, train_dataloader=SimpleNamespace(batch_sampler=sampler),
                             logger=logging.getLogger("test_uhml_recluster"), message_hub=FakeMessageHub())
    return hook, runner, model, sampler


@pytest.mark.parametrize("method,levels", [("ward", [4, 2]), ("kmeans", [3])])
def test_lightning_callback_supports_both_methods(method, levels):
    callback, trainer, sampler = lightning_setup(levels, method)
    module = TinyBallModule()
    labels = callback.recluster(trainer, module)
    assert labels.shape == (len(levels), 24)
    assert np.array_equal(module.pseudo_labels.numpy(), labels) and np.array_equal(sampler.labels.numpy(), labels[0])
    assert callback.history[0]["clusters_level0"] == levels[0] and callback.history[0]["changed_fraction"] == 1.0


@pytest.mark.parametrize("method,levels", [("ward", [4, 2]), ("kmeans", [3])])
def test_mmengine_hook_supports_both_methods(method, levels):
    hook, runner, model, sampler = mmengine_setup(levels, method)
    labels = hook.recluster(runner)
    assert labels.shape == (len(levels), 24)
    assert np.array_equal(model.pseudo_labels.numpy(), labels) and np.array_equal(sampler.labels.numpy(), labels[0])
    assert hook.history[0]["clusters_level0"] == levels[0]
    assert runner.message_hub.scalars["train/recluster/clusters_level0"] == levels[0]
    with pytest.raises(ValueError, match="UHMLReclusterHook: method='kmeans' is one flat level"):
        type(hook)(n_clusters=[4, 2], embed_pipeline=[], method="kmeans")


def test_both_adapters_call_the_one_recluster(monkeypatch):
    calls = []

    def spy(embed, batches, c, **kwargs):
        calls.append(kwargs)
        labels = np.tile(np.arange(24) % 3, (2, 1)).astype(np.int64)
        return ReclusterResult(labels=labels, changed_fraction=0.5, seconds=0.0, epoch=kwargs["epoch"])

    monkeypatch.setattr("hcl_plugin.uhml.recluster.recluster", spy)

    callback, trainer, sampler = lightning_setup([3], "kmeans")
    module = TinyBallModule()
    callback.recluster(trainer, module)
    assert calls[-1]["method"] == "kmeans" and calls[-1]["n_clusters"] == [3] and calls[-1]["model"] is module
    assert callback.history[0]["changed_fraction"] == 0.5 and module.pseudo_labels.shape == (2, 24)

    hook, runner, model, sampler = mmengine_setup([4, 2])
    hook.recluster(runner)
    assert calls[-1]["method"] == "ward" and calls[-1]["n_clusters"] == [4, 2] and calls[-1]["model"] is model
    assert hook.history[0]["changed_fraction"] == 0.5 and model.pseudo_labels.shape == (2, 24)
    assert len(calls) == 2


# ---------------------------------------------------------------------------------------------- 2 ranks (gloo)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def distributed_worker(rank: int, port: int, adapter: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))  # a rank left waiting fails, not hangs
    outcome = {}
    try:
        if adapter == "lightning":
            from pytorch_lightning.strategies import DDPStrategy

            def run(levels):
                callback, trainer, _ = lightning_setup(levels, world_size=WORLD, rank=rank, strategy=DDPStrategy())
                # only rank 0 may compute: the other rank's data set is not even readable
                if rank != 0:
                    callback.dataset = None
                return callback.recluster(trainer, TinyBallModule())
        else:
            def run(levels):
                hook, runner, _, _ = mmengine_setup(levels)
                if rank != 0:
                    hook._loader = None
                    runner.cfg = None  # building an embedding loader here would fail
                return hook.recluster(runner)

        torch.manual_seed(0)  # the same module weights on both ranks (rank 0's are the ones used)
        outcome["labels"] = run([4, 2]).tolist()
        try:
            run([50])  # 24 samples: hierarchical_labels raises on rank 0 only
        except Exception as error:  # noqa: BLE001
            outcome["error"] = [type(error).__name__, str(error)]
    finally:
        with open(os.path.join(out_dir, f"{adapter}_rank{rank}.json"), "w") as f:
            json.dump(outcome, f)
        dist.barrier()  # neither rank tears the process group down while the other still uses it
        # Leave without the interpreter's teardown: with a Lightning Trainer and a gloo group in one
        # process, C++ destructors at exit occasionally abort ("terminate called without an active
        # exception") after every result above was written and checked by both ranks.
        sys.stdout.flush(), sys.stderr.flush()
        os._exit(0)


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["lightning", "mmengine"])
def test_rank0_result_and_error_reach_every_rank(adapter, tmp_path):
    pytest.importorskip("pytorch_lightning" if adapter == "lightning" else "mmselfsup")
    import torch.multiprocessing as mp

    mp.spawn(distributed_worker, args=(free_port(), adapter, str(tmp_path)), nprocs=WORLD, join=True)
    rank0, rank1 = (json.loads((tmp_path / f"{adapter}_rank{r}.json").read_text()) for r in range(WORLD))
    assert np.array(rank0["labels"]).shape == (2, 24) and rank0["labels"] == rank1["labels"]
    assert rank0["error"][0] == "ValueError" and "fewer samples (24) than clusters requested (50" in rank0["error"][1]
    assert rank1["error"][0] == "RuntimeError"
    assert rank1["error"][1].startswith("UHML re-clustering failed on rank 0: ValueError: fewer samples (24)")


# ---------------------------------------------------------------------------------------------- imports


def test_uhml_package_imports_no_framework():
    frameworks = ("lightly", "pytorch_lightning", "mmengine", "mmselfsup", "mmdet", "mmcv")
    code = f"import hcl_plugin.uhml, sys; print([m for m in {frameworks!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.strip()
    assert out == "[]"


# old module path -> (new module path, a name it must forward)
MOVED = {
    "hcl_plugin.cluster.hierarchical": ("hcl_plugin.uhml.clustering", "hierarchical_labels"),
    "hcl_plugin.cluster.label_change": ("hcl_plugin.uhml.clustering", "label_change_fraction"),
    "hcl_plugin.cluster.similarity": ("hcl_plugin.uhml.similarity", "similarity_levels"),
    "hcl_plugin.cluster.batch_sampler": ("hcl_plugin.uhml.batch_sampler", "BalancedBatchSampler"),
    "hcl_plugin.cluster.sampler": ("hcl_plugin.uhml.batch_sampler", "BalancedBatchSampler"),
    "hcl_plugin.cluster.embedding": ("hcl_plugin.uhml.embedding", "UHMLEmbedding"),
    "hcl_plugin.eval.image_folder": ("hcl_plugin.uhml.image_folder", "RetrievalImageFolder"),
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_module_paths_resolve_with_a_deprecation_warning(old):
    new, name = MOVED[old]
    old_module, new_module = importlib.import_module(old), importlib.import_module(new)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated.*use {new}"):
        assert getattr(old_module, name) is getattr(new_module, name)
    with pytest.warns(DeprecationWarning):
        exec(f"from {old} import {name}", {})


def test_old_cluster_package_reexports_its_names():
    import hcl_plugin.cluster as cluster
    import hcl_plugin.uhml as uhml

    for name in cluster.__all__:
        with pytest.warns(DeprecationWarning, match="hcl_plugin.cluster is deprecated.*use hcl_plugin.uhml"):
            assert getattr(cluster, name) is getattr(uhml, name)
    from hcl_plugin.cluster import embedding  # a submodule, not hcl_plugin.uhml's

    assert embedding.__name__ == "hcl_plugin.cluster.embedding"
    with pytest.raises(AttributeError):
        cluster.does_not_exist


def test_old_mmselfsup_uhml_names_resolve_with_a_deprecation_warning():
    pytest.importorskip("mmselfsup")
    pytest.importorskip("mmcv")
    import hcl_plugin.mmselfsup.uhml as old

    homes = {"UHML": "uhml_model", "UHMLNeck": "uhml_model", "UHMLImageFolder": "datasets",
             "detect_layout": "datasets", "UHMLBalancedBatchSampler": "samplers", "UHMLReclusterHook": "hooks",
             "embed_with_model": "hooks"}
    for name, module in homes.items():
        new = importlib.import_module(f"hcl_plugin.mmselfsup.{module}")
        with pytest.warns(DeprecationWarning, match=f"use hcl_plugin.mmselfsup.{module}"):
            assert getattr(old, name) is getattr(new, name)
    with pytest.warns(DeprecationWarning, match="use hcl_plugin.uhml.clustering"):
        from hcl_plugin.mmselfsup.uhml import label_change_fraction  # noqa: F401
    with pytest.raises(AttributeError):
        old.does_not_exist
    from mmselfsup.registry import DATA_SAMPLERS, DATASETS, HOOKS, MODELS

    for registry, name in ((MODELS, "UHML"), (MODELS, "UHMLNeck"), (DATASETS, "UHMLImageFolder"),
                           (DATA_SAMPLERS, "UHMLBalancedBatchSampler"), (HOOKS, "UHMLReclusterHook")):
        assert registry.get(name) is not None  # the registry names did not change
