"""The small-scale recipe: the small ResNet stem (built, recorded, reloaded), the momentum schedule, the LR
warm-up and ``--recipe small`` with explicit flags overriding it (docs/recipe.md)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from hcl_plugin.checkpoints import ModelHyperParameters, build_resnet
from hcl_plugin.eval.errors import CheckpointFormatError
from hcl_plugin.eval.model import build_model
from tests.eval_helpers import contract_hparams

pytest.importorskip("lightly", reason="lightly is not installed (pip install 'hcl_plugin[lightly]')")

from hcl_plugin.lightly.models import MoCoHCL, SimCLRHCL, feature_map, momentum_at  # noqa: E402
from hcl_plugin.lightly.recipes import RECIPES, apply_recipe  # noqa: E402
from hcl_plugin.lightly.training import build_parser, warmup_cosine_factor  # noqa: E402

TINY = ["--proj-hidden-dim", "32", "--proj-output-dim", "8"]


# ---------------------------------------------------------------- the small stem


def test_the_small_stem_keeps_an_8x8_map_at_64_px_and_torchvision_keys():
    small, width = build_resnet("resnet18", stem="small")
    imagenet, _ = build_resnet("resnet18")
    x = torch.zeros(2, 3, 64, 64)
    assert feature_map(small.eval(), x).shape == (2, 512, 8, 8)
    assert feature_map(imagenet.eval(), x).shape == (2, 512, 2, 2)
    assert small(x).shape == (2, width)
    small_state, imagenet_state = small.state_dict(), imagenet.state_dict()
    assert list(small_state) == list(imagenet_state)  # the key names stay torchvision's
    changed = [k for k in small_state if small_state[k].shape != imagenet_state[k].shape]
    assert changed == ["conv1.weight"] and small_state["conv1.weight"].shape == (64, 3, 3, 3)
    assert small.conv1.stride == (1, 1) and isinstance(small.maxpool, torch.nn.Identity)
    with pytest.raises(ValueError, match=r"stem must be one of 'imagenet', 'small', got 'cifar'"):
        build_resnet("resnet18", stem="cifar")


def test_the_contract_records_the_stem_and_old_checkpoints_are_imagenet():
    old = {k: v for k, v in contract_hparams().items()}
    assert "stem" not in old and ModelHyperParameters.from_mapping(old).stem == "imagenet"
    assert ModelHyperParameters.from_mapping({**old, "stem": "small"}).stem == "small"
    assert build_model(old).backbone.conv1.weight.shape == (64, 3, 7, 7)
    model = build_model({**old, "stem": "small"})
    assert model.backbone.conv1.weight.shape == (64, 3, 3, 3) and isinstance(model.backbone.maxpool, torch.nn.Identity)
    with pytest.raises(CheckpointFormatError, match=r"'stem' must be one of 'imagenet', 'small', got 'tiny'"):
        build_model({**old, "stem": "tiny"})


def test_a_trained_small_stem_checkpoint_loads_through_the_contract_with_the_same_outputs(tmp_path):
    from hcl_plugin.eval.checkpoint import load_checkpoint
    from hcl_plugin.lightly.training import fit

    data = _embedded(tmp_path)
    args = _parse(["--recipe", "small", "--embedded-dir", str(data), "--batch-size", "4", "--num-workers", "0",
                   "--min-box-size", "12", "--expand-to", "48", "--memory-bank-size", "16", "--warmup-steps", "4",
                   "--max-steps", "1", "--out", str(tmp_path / "run"), "--no-progress-bar", *TINY])
    module = MoCoHCL.from_args(args)
    trainer = fit(module, args)
    assert trainer.global_step == 1
    # one step of a 4-step warm-up: the scheduler has moved to step 1, lr = 0.06 * 2/4
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.06 * 2 / 4)
    checkpoint = torch.load(tmp_path / "run" / "final.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["hyper_parameters"]["stem"] == "small"
    assert checkpoint["state_dict"]["backbone.conv1.weight"].shape == (64, 3, 3, 3)
    loaded = load_checkpoint(tmp_path / "run" / "final.ckpt")
    assert loaded.image_size == 32 and loaded.backbone.conv1.kernel_size == (3, 3)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    module.eval()
    with torch.no_grad():
        features = module.backbone(x)
        out = loaded.embed(x)
        torch.testing.assert_close(out["backbone"], features)
        torch.testing.assert_close(out["euclidean"], module.projection_head(features))
        torch.testing.assert_close(out["hyperbolic"], module.hyperbolic_head(features))


# ---------------------------------------------------------------- schedules


def test_the_cosine_momentum_goes_from_m0_to_one_monotonically():
    values = [momentum_at(t, 300, 0.98, "cosine") for t in range(300)]
    assert values[0] == pytest.approx(0.98) and values[-1] == 1.0
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[150] == pytest.approx(1 - 0.02 * (math.cos(math.pi * 150 / 299) + 1) / 2)
    # the encoder's remaining weight at its initialisation: prod m_t ~ exp(-(1 - m0) T / 2) = exp(-3)
    assert math.prod(values) == pytest.approx(math.exp(-3), rel=0.05)
    assert momentum_at(7, 300, 0.98, "constant") == 0.98
    assert momentum_at(500, 300, 0.98, "cosine") == 1.0  # past the estimated end: stays at 1
    with pytest.raises(ValueError, match="momentum schedule must be one of"):
        momentum_at(0, 10, 0.99, "linear")


def test_a_module_without_a_trainer_uses_the_start_momentum():
    module = MoCoHCL(**dict(image_size=32, proj_hidden_dim=32, proj_output_dim=8, hyp_hidden_dim=32, hyp_output_dim=8,
                            momentum=0.98, momentum_schedule="cosine", memory_bank_size=0))
    assert module.current_momentum() == 0.98
    with pytest.raises(ValueError, match="momentum_schedule must be one of"):
        MoCoHCL(momentum_schedule="step")


def test_the_warmup_is_linear_then_cosine_to_zero():
    total, warmup = 100, 10
    factors = [warmup_cosine_factor(t, total, warmup) for t in range(total + 1)]
    assert factors[:warmup] == pytest.approx([(t + 1) / warmup for t in range(warmup)])
    assert factors[warmup] == 1.0 and factors[total] == pytest.approx(0.0, abs=1e-12)
    assert factors[warmup + 45] == pytest.approx(0.5)  # half-way through the cosine
    assert all(b <= a for a, b in zip(factors[warmup:], factors[warmup + 1:]))
    # no warm-up: CosineAnnealingLR's values
    assert [warmup_cosine_factor(t, 8) for t in (0, 4, 8)] == pytest.approx([1.0, 0.5, 0.0])


# ---------------------------------------------------------------- --recipe


def _parse(argv):
    parser = build_parser(MoCoHCL)
    return apply_recipe(parser, parser.parse_args(argv), argv)


def test_recipe_small_sets_its_values_and_explicit_flags_override():
    args = _parse(["--recipe", "small"])
    for dest, value in RECIPES["small"].items():
        assert getattr(args, dest) == value, dest
    hp = MoCoHCL.HyperParameters.from_args(args)
    assert (hp.stem, hp.image_size, hp.memory_bank_size, hp.momentum, hp.momentum_schedule, hp.warmup_steps,
            hp.recipe) == ("small", 32, 256, 0.98, "cosine", 20, "small")
    explicit = _parse(["--recipe", "small", "--momentum", "0.99", "--image-size", "64", "--stem=imagenet",
                       "--warmup-steps", "0", "--memory-bank-size", "256"])
    assert (explicit.momentum, explicit.image_size, explicit.stem, explicit.warmup_steps) == (0.99, 64, "imagenet", 0)
    assert explicit.momentum_schedule == "cosine" and explicit.memory_bank_size == 256
    # an explicit value equal to the flag's default still wins over the recipe
    assert _parse(["--recipe", "small", "--momentum", "0.999"]).momentum == 0.999


def test_the_paper_recipe_is_the_default_and_changes_nothing():
    parser = build_parser(MoCoHCL)
    plain = parser.parse_args([])
    assert vars(_parse([])) == vars(plain) == vars(_parse(["--recipe", "paper"]))
    assert (plain.stem, plain.momentum, plain.momentum_schedule, plain.warmup_steps) == ("imagenet", 0.999, "constant", 0)


def test_recipe_small_sets_only_what_a_model_has():
    parser = build_parser(SimCLRHCL)
    args = apply_recipe(parser, parser.parse_args(["--recipe", "small"]), ["--recipe", "small"])
    assert args.stem == "small" and not hasattr(args, "momentum")
    hp = SimCLRHCL.HyperParameters.from_args(args)
    assert hp.stem == "small" and hp.warmup_steps == 20


def _embedded(tmp_path: Path) -> Path:
    from hcl_plugin.data.embedded.scenes import SyntheticConfig, build_synthetic_dataset
    from tests.data_helpers import animals_or_skip

    root = tmp_path / "embedded"
    build_synthetic_dataset(root, SyntheticConfig(num_images=12, image_size=96, seed=1), animals=animals_or_skip(),
                            progress=False)
    return root


def test_the_step_matched_schedule_follows_the_documented_rules():
    from hcl_plugin.lightly.recipes import step_matched_schedule

    assert step_matched_schedule(300) == {"momentum": pytest.approx(RECIPES["small"]["momentum"]),
                                          "warmup_steps": RECIPES["small"]["warmup_steps"]}
    schedule = step_matched_schedule(150)
    assert schedule["momentum"] == pytest.approx(0.96) and schedule["warmup_steps"] == 10
    # summed key-encoder updates on the cosine schedule: (1 - m0) T / 2 = 3
    assert sum(1 - momentum_at(t, 150, schedule["momentum"], "cosine") for t in range(150)) == pytest.approx(3, rel=0.02)
    for bad in (6, 0, 7.5):
        with pytest.raises(ValueError, match="steps must be an integer >= 7"):
            step_matched_schedule(bad)
