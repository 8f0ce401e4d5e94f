"""One key comparison, one error type and one ResNet builder for every strict weight load."""

from __future__ import annotations

import pytest
import torch

from hcl_plugin.checkpoints import BACKBONE_FEATURE_DIMS, KeyMismatchError, build_resnet, compare_keys


def test_every_strict_loader_raises_the_one_error_type():
    from hcl_plugin.uhml.embedding import WeightsMismatchError
    from hcl_plugin.eval.checkpoint import CheckpointMismatchError

    assert issubclass(CheckpointMismatchError, KeyMismatchError) and issubclass(WeightsMismatchError, KeyMismatchError)
    pytest.importorskip("mmdet", reason="mmdet is not installed (pip install 'hcl_plugin[mmdet]'): cannot import "
                        "hcl_plugin.mmdet to check PretrainedKeysError")
    from hcl_plugin.mmdet import PretrainedKeysError

    assert issubclass(PretrainedKeysError, KeyMismatchError)


def test_the_report_lists_every_problem_with_shapes_as_checkpoint_vs_model():
    model = {"a": torch.zeros(2), "b": torch.zeros(3, 1), "gone": torch.zeros(1)}
    found = {"a": torch.zeros(2), "b": torch.zeros(4, 1), "extra": torch.zeros(1)}
    error = KeyMismatchError("weights.pth: does not fit", compare_keys(model, found))
    message = str(error)
    assert message.startswith("weights.pth: does not fit\n")
    assert "missing in the checkpoint (1):\n    gone" in message
    assert "unexpected in the checkpoint (1):\n    extra" in message
    assert "shape mismatch (checkpoint vs model) (1):\n    b: (4, 1) vs (3, 1)" in message
    assert error.missing == ["gone"] and error.unexpected == ["extra"] and error.shape_mismatch == [("b", (4, 1), (3, 1))]
    many = KeyMismatchError("x", compare_keys({f"k{i:02d}": torch.zeros(1) for i in range(30)}, {}), limit=5)
    assert "missing in the checkpoint (30)" in str(many) and "... and 25 more" in str(many)


def test_one_resnet_builder_and_the_deprecated_alias():
    from hcl_plugin.cluster import embedding

    model, width = build_resnet("resnet18")
    assert width == BACKBONE_FEATURE_DIMS["resnet18"] == 512 and isinstance(model.fc, torch.nn.Identity)
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 512)
    with pytest.raises(ValueError, match=r"unsupported backbone 'vgg16'; supported: resnet18, resnet34"):
        build_resnet("vgg16")
    with pytest.warns(DeprecationWarning, match="moved to hcl_plugin.checkpoints.build_resnet"):
        assert embedding.build_resnet("resnet18")[1] == 512


def test_the_hyper_parameter_contract_is_defined_once():
    from hcl_plugin.checkpoints import REQUIRED_HYPER_PARAMETERS, ModelHyperParameters
    from tests.eval_helpers import contract_hparams

    hp = ModelHyperParameters.from_mapping({**contract_hparams(), "extra": "ignored"})
    assert hp.to_dict() == {**contract_hparams(), "stem": "imagenet"}  # no stem recorded: torchvision's
    assert set(REQUIRED_HYPER_PARAMETERS) | {"learn_c", "lambda_hyp", "hyperbolic_head", "stem"} == set(hp.to_dict())
    baseline = ModelHyperParameters.from_mapping({"backbone": "resnet18", "c": 0.05, "image_size": 64,
                                                  "proj_hidden_dim": 8, "proj_output_dim": 4}, hyperbolic_head=False)
    assert baseline.hyp_output_dim is None and baseline.lambda_hyp is None
    with pytest.raises(ValueError, match=r"lack 'c', 'hyp_hidden_dim'"):
        ModelHyperParameters.from_mapping({k: v for k, v in contract_hparams().items() if k not in ("c", "hyp_hidden_dim")})
    for key, value in (("c", 0.0), ("c", "abc"), ("image_size", 32.5), ("proj_output_dim", True)):
        with pytest.raises(ValueError, match=f"'{key}' must be"):
            ModelHyperParameters.from_mapping({**contract_hparams(), key: value})


def test_the_lightly_examples_write_the_contract():
    pytest.importorskip("lightly", reason="lightly is not installed (pip install 'hcl_plugin[lightly]')")
    import argparse

    from hcl_plugin.checkpoints import ModelHyperParameters
    from hcl_plugin.lightly.training import add_common_arguments, head_hparams

    args = add_common_arguments(argparse.ArgumentParser()).parse_args([])
    written = head_hparams(args)
    contract = ModelHyperParameters.from_mapping(written)
    assert {k: written[k] for k in contract.to_dict()} == contract.to_dict()
