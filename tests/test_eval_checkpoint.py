"""Checkpoint loading for the analysis: the contract of docs/eval.md, baselines without a hyperbolic
head, wrong architectures (errors list the keys), unsafe pickles, adapters for other formats."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F

from tests.eval_helpers import contract_checkpoint, contract_hparams
from hcl_plugin.eval import checkpoint as ckpt_module
from hcl_plugin.eval.checkpoint import (
    CheckpointAdapter,
    CheckpointFormatError,
    CheckpointMismatchError,
    EuclideanProjectionHead,
    EvalModel,
    load_checkpoint,
    register_checkpoint_adapter,
)
from hcl_plugin.geometry import expmap0
from hcl_plugin.modules import PoincareProjectionHead


@pytest.fixture(scope="module")
def checkpoint():
    return contract_checkpoint(seed=1)


@pytest.fixture(scope="module")
def ckpt_file(checkpoint, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "last.ckpt"
    torch.save(checkpoint, path)
    return path


def _manual_heads(state, features, c):
    """Reference computation straight from the saved tensors."""
    hidden = F.relu(F.linear(features, state["projection_head.layers.0.weight"], state["projection_head.layers.0.bias"]))
    euclidean = F.linear(hidden, state["projection_head.layers.2.weight"], state["projection_head.layers.2.bias"])
    hidden = F.relu(F.linear(features, state["hyperbolic_head.mlp.0.weight"], state["hyperbolic_head.mlp.0.bias"]))
    tangent = F.linear(hidden, state["hyperbolic_head.mlp.2.weight"], state["hyperbolic_head.mlp.2.bias"])
    return euclidean, expmap0(tangent * state["hyperbolic_head.log_scale"].exp(), c)


def test_contract_checkpoint_loads_and_matches_the_saved_tensors(checkpoint, ckpt_file, gen):
    model = load_checkpoint(ckpt_file)
    assert isinstance(model, EvalModel) and not model.training
    assert model.c == pytest.approx(0.1) and model.image_size == 32 and model.hyperbolic_source == "hyperbolic_head"
    state = checkpoint["state_dict"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    images = torch.randn(3, 3, 32, 32, generator=gen)
    out = model.embed(images)
    assert out["backbone"].shape == (3, 512)
    euclidean, hyperbolic = _manual_heads(state, out["backbone"], 0.1)
    assert torch.allclose(out["euclidean"], euclidean, atol=1e-5)
    assert torch.allclose(out["hyperbolic"], hyperbolic, atol=1e-5)
    assert bool((out["hyperbolic"].norm(dim=1) < 0.1 ** -0.5).all())


def test_plain_dict_with_the_two_keys_and_in_memory_dict(checkpoint, tmp_path):
    plain = {"state_dict": {k: v for k, v in checkpoint["state_dict"].items() if "momentum" not in k},
             "hyper_parameters": checkpoint["hyper_parameters"]}
    torch.save(plain, tmp_path / "model.pt")
    from_file = load_checkpoint(tmp_path / "model.pt")
    from_dict = load_checkpoint(plain)
    for (k, a), (_, b) in zip(from_file.state_dict().items(), from_dict.state_dict().items()):
        assert torch.equal(a, b), k
    assert from_file.hyper_parameters["checkpoint_format"] == "hcl_plugin"


@pytest.mark.parametrize("overrides", [dict(feature_scale=None, learn_scale=False, clip_r=2.3),
                                       dict(feature_scale=0.5, learn_scale=False)])
def test_head_variants(overrides):
    hp = contract_hparams(**overrides)
    model = load_checkpoint(contract_checkpoint(seed=2, hparams=hp, momentum=False))
    assert model.hyperbolic_head.clip_r == overrides.get("clip_r")
    has_scale = overrides["feature_scale"] is not None
    assert (model.hyperbolic_head.log_scale is not None) == has_scale


def test_baseline_without_hyperbolic_head_uses_expmap0_of_the_euclidean_head(gen):
    hp = {k: v for k, v in contract_hparams().items() if not k.startswith("hyp_")}
    model = load_checkpoint(contract_checkpoint(seed=3, hparams={**contract_hparams(), **hp}, hyperbolic=False))
    assert model.hyperbolic_head is None and model.hyperbolic_source == "expmap0(projection_head)"
    out = model.embed(torch.randn(2, 3, 32, 32, generator=gen))
    assert torch.allclose(out["hyperbolic"], expmap0(out["euclidean"], model.c))


def test_shared_head_checkpoint_maps_the_projection_heads_output(gen):
    """hyperbolic_head='shared' (the released HCL code's): no hyperbolic MLP; with no scale and no clipping
    no hyperbolic_head.* weights at all, and the embedding is expmap0 (+ projection) of the raw output."""
    hp = contract_hparams(hyperbolic_head="shared", feature_scale=None, learn_scale=False)
    ckpt = contract_checkpoint(seed=5, hparams=hp)
    assert not any(k.startswith("hyperbolic_head.") for k in ckpt["state_dict"])
    model = load_checkpoint(ckpt)
    assert model.hyperbolic_source == "hyperbolic_head(projection_head)" and model.c == pytest.approx(0.1)
    out = model.embed(torch.randn(3, 3, 32, 32, generator=gen))
    torch.testing.assert_close(out["hyperbolic"], expmap0(out["euclidean"], 0.1), rtol=0, atol=0)
    # with a learnt feature scale the map applies it (its one weight, hyperbolic_head.log_scale)
    hp = contract_hparams(hyperbolic_head="shared", feature_scale=0.3, learn_scale=True, hyp_hidden_dim=None,
                          hyp_output_dim=None)
    ckpt = contract_checkpoint(seed=6, hparams=hp)
    ckpt["state_dict"]["hyperbolic_head.log_scale"] = torch.tensor(0.7).log()
    model = load_checkpoint(ckpt)
    out = model.embed(torch.randn(3, 3, 32, 32, generator=gen))
    torch.testing.assert_close(out["hyperbolic"], expmap0(out["euclidean"] * 0.7, 0.1), rtol=1e-6, atol=1e-7)
    del ckpt["state_dict"]["hyperbolic_head.log_scale"]
    with pytest.raises(CheckpointMismatchError, match="hyperbolic_head.log_scale"):
        load_checkpoint(ckpt)


def test_shared_head_needs_the_projection_head_and_a_known_kind(checkpoint):
    with pytest.raises(CheckpointFormatError, match="hyper-parameter 'hyperbolic_head' must be one of 'separate', 'shared', got 'both'"):
        load_checkpoint({**checkpoint, "hyper_parameters": {**checkpoint["hyper_parameters"], "hyperbolic_head": "both"}})
    with pytest.raises(CheckpointFormatError, match="no projection head"):
        ckpt_module.build_model(contract_hparams(hyperbolic_head="shared"), with_projection_head=False)
    old = {k: v for k, v in contract_hparams().items() if k != "hyperbolic_head"}  # written before the option
    assert ckpt_module.build_model(old).hyperbolic_source == "hyperbolic_head"


def test_wrong_backbone_lists_mismatched_keys(checkpoint):
    # resnet50 weights under hyper-parameters that say resnet18
    wrong = contract_checkpoint(seed=4, backbone="resnet50", momentum=False,
                                hparams=contract_hparams(backbone="resnet18"))
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(wrong)
    message = str(info.value)
    assert "unexpected in the checkpoint" in message and "backbone.layer1.0.conv3.weight" in message
    assert "shape mismatch" in message and "backbone.layer1.0.conv1.weight: (64, 64, 1, 1) vs (64, 64, 3, 3)" in message
    assert "projection_head.layers.0.weight: (64, 2048) vs (64, 512)" in message
    assert "backbone.layer1.0.conv3.weight" in info.value.unexpected


def test_wrong_head_size_and_missing_key_are_listed(checkpoint):
    wrong = copy.deepcopy(checkpoint)
    wrong["hyper_parameters"]["proj_output_dim"] = 48
    del wrong["state_dict"]["hyperbolic_head.mlp.2.bias"]
    with pytest.raises(CheckpointMismatchError) as info:
        load_checkpoint(wrong)
    message = str(info.value)
    assert "projection_head.layers.2.weight: (32, 64) vs (48, 64)" in message
    assert "missing in the checkpoint (1)" in message and "hyperbolic_head.mlp.2.bias" in message
    assert info.value.missing == ["hyperbolic_head.mlp.2.bias"]


def test_missing_hyper_parameters_and_unknown_format(checkpoint, tmp_path):
    hp = dict(checkpoint["hyper_parameters"])
    del hp["image_size"], hp["c"]
    with pytest.raises(CheckpointFormatError, match="lack 'c', 'image_size'"):
        load_checkpoint({"state_dict": checkpoint["state_dict"], "hyper_parameters": hp})
    with pytest.raises(CheckpointFormatError, match="unsupported backbone 'vit_b_16'"):
        load_checkpoint({"state_dict": checkpoint["state_dict"],
                         "hyper_parameters": {**checkpoint["hyper_parameters"], "backbone": "vit_b_16"}})
    with pytest.raises(CheckpointFormatError, match="no checkpoint adapter matches .*top-level keys: meta, model"):
        load_checkpoint({"meta": {}, "model": {}})
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointFormatError, match="expected a dict, got list"):
        load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(CheckpointFormatError, match="neither 'projection_head"):
        load_checkpoint({"state_dict": {"backbone.conv1.weight": torch.zeros(1)}, "hyper_parameters": hp})
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointFormatError, match="garbage.ckpt: not a readable torch checkpoint"):
        load_checkpoint(tmp_path / "garbage.ckpt")


class _Opaque:
    """An arbitrary pickled object: weights_only loading must refuse it."""


def test_pickled_objects_need_trusted(checkpoint, tmp_path):
    path = tmp_path / "opaque.ckpt"
    torch.save({**checkpoint, "extra": _Opaque()}, path)
    with pytest.raises(CheckpointFormatError, match=r"opaque.ckpt: torch.load\(weights_only=True\) refused it.*trusted=True"):
        load_checkpoint(path)
    assert load_checkpoint(path, trusted=True).image_size == 32


def test_registered_adapter_reads_another_format(checkpoint, monkeypatch):
    monkeypatch.setattr(ckpt_module, "_ADAPTERS", list(ckpt_module._ADAPTERS))
    # MMSelfSup-like: {"meta": {...}, "state_dict": {"backbone.*", "neck.*", "head_hyp.*"}}
    renames = {"projection_head.": "neck.", "hyperbolic_head.": "head_hyp."}
    state = {}
    for key, value in checkpoint["state_dict"].items():
        for new, old in renames.items():
            if key.startswith(new):
                key = old + key[len(new):]
        state[key] = value
    foreign = {"meta": {"hcl": checkpoint["hyper_parameters"]}, "state_dict": state}

    def convert(ckpt):
        out = {}
        for key, value in ckpt["state_dict"].items():
            for new, old in renames.items():
                if key.startswith(old):
                    key = new + key[len(old):]
            out[key] = value
        return out, dict(ckpt["meta"]["hcl"])

    register_checkpoint_adapter(CheckpointAdapter("mmselfsup-like", lambda c: "meta" in c, convert))
    model = load_checkpoint(foreign)
    assert model.hyper_parameters["checkpoint_format"] == "mmselfsup-like"
    assert torch.equal(model.projection_head.layers[0].weight,
                       checkpoint["state_dict"]["projection_head.layers.0.weight"])


def test_eval_model_validates_its_arguments():
    backbone = torch.nn.Flatten()
    with pytest.raises(ValueError, match="needs a projection_head"):
        EvalModel(backbone)
    with pytest.raises(ValueError, match="c must be"):
        EvalModel(backbone, EuclideanProjectionHead(4, 4, 2), c=0.0)
    with pytest.raises(ValueError, match="differs from the hyperbolic head"):
        EvalModel(backbone, hyperbolic_head=PoincareProjectionHead(4, 4, 2, c=0.1), c=0.05)


def test_projection_head_keys_match_lightly_moco_head():
    lightly_modules = pytest.importorskip(
        "lightly.models.modules", reason="lightly is not installed (pip install 'hcl_plugin[lightly]'): "
        "cannot compare key names with MoCoProjectionHead")
    ours = EuclideanProjectionHead(512, 64, 32).state_dict()
    theirs = lightly_modules.MoCoProjectionHead(512, 64, 32).state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*")  # pytorch_lightning 2.6 vs torch 2.14, not ours
def test_real_lightning_checkpoint_loads_with_weights_only(tmp_path):
    """A .ckpt written by PyTorch Lightning's Trainer (optimizer states, loops, callbacks included)
    loads without full unpickling."""
    pl = pytest.importorskip("pytorch_lightning", reason="pytorch_lightning is not installed "
                             "(pip install 'hcl_plugin[lightly]'): cannot write a real Lightning checkpoint")
    import torchvision

    hp = contract_hparams()

    class Tiny(pl.LightningModule):
        def __init__(self, **hyper_parameters):
            super().__init__()
            self.save_hyperparameters()
            self.backbone = torchvision.models.resnet18(weights=None)
            self.backbone.fc = torch.nn.Identity()
            self.projection_head = EuclideanProjectionHead(512, hp["proj_hidden_dim"], hp["proj_output_dim"])
            self.hyperbolic_head = PoincareProjectionHead(512, hp["hyp_hidden_dim"], hp["hyp_output_dim"], c=hp["c"],
                                                          feature_scale=hp["feature_scale"], learn_scale=True)

        def training_step(self, batch, _):
            f = self.backbone(batch[0])
            return self.projection_head(f).pow(2).mean() + self.hyperbolic_head(f).pow(2).mean()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)

    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 3, 32, 32)), batch_size=2)
    module = Tiny(**hp)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path, accelerator="cpu", devices=1)
    trainer.fit(module, data)
    trainer.save_checkpoint(tmp_path / "real.ckpt")
    model = load_checkpoint(tmp_path / "real.ckpt")
    for key, value in module.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert model.image_size == hp["image_size"]


def test_model_and_checkpoint_io_are_separate_modules_with_the_old_names_kept():
    """The model and its builder live in hcl_plugin.eval.model (no checkpoint I/O); every public name
    stays importable from hcl_plugin.eval.checkpoint and hcl_plugin.eval."""
    import ast
    import inspect

    import hcl_plugin.eval as eval_pkg
    from hcl_plugin.eval import errors, model

    for name in ("EuclideanProjectionHead", "EvalModel", "build_model"):
        assert getattr(ckpt_module, name) is getattr(model, name)
    for name in ("CheckpointFormatError", "CheckpointMismatchError"):
        assert getattr(ckpt_module, name) is getattr(errors, name) is getattr(eval_pkg, name)
    for name in ckpt_module.__all__:
        assert hasattr(ckpt_module, name), name
    assert eval_pkg.EvalModel is model.EvalModel and eval_pkg.load_checkpoint is ckpt_module.load_checkpoint
    imported = set()
    for node in ast.walk(ast.parse(inspect.getsource(model))):
        if isinstance(node, ast.ImportFrom):
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    assert not {name for name in imported if "eval.checkpoint" in name or "safe_load" in name}, imported


def test_build_model_uses_the_project_resnet_builder(monkeypatch):
    from hcl_plugin.eval import model as model_module

    calls = []
    real = model_module.build_resnet
    monkeypatch.setattr(model_module, "build_resnet",
                        lambda name, stem="imagenet": calls.append((name, stem)) or real(name, stem=stem))
    built = ckpt_module.build_model(contract_hparams(), with_hyperbolic_head=False)
    assert calls == [("resnet18", "imagenet")] and isinstance(built.backbone.fc, torch.nn.Identity)
    ckpt_module.build_model(contract_hparams(stem="small"), with_hyperbolic_head=False)
    assert calls[-1] == ("resnet18", "small")  # the contract's stem reaches the builder
