"""Matched controls (issue 14, item 4): one BatchNorm procedure for every model, the random-init control
included; one norm quantity per comparison; 95 % intervals; a validation split large enough for them.

Real models (tiny ResNet-18 at 32 px, as tests/eval_helpers.py builds them) and fresh random inputs."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data_helpers import animals_or_skip, annotation, write_coco, write_image
from tests.eval_helpers import contract_checkpoint, contract_hparams
from hcl_plugin.eval.analyze import run_analysis, spearman_images_needed
from hcl_plugin.eval.batchnorm import (
    MATCHED_KEYS,
    BatchNormProcedure,
    _CropSample,
    apply_batchnorm_procedure,
    batchnorm_layers,
    batchnorm_sample,
    initial_statistics_layers,
    recompute_batchnorm,
)
from hcl_plugin.eval.checkpoint import load_checkpoint
from hcl_plugin.eval.compare import IncomparableAnalysesError, check_comparable, compare_models, random_init_like
from hcl_plugin.eval.metrics import (
    auroc,
    auroc_interval,
    correlation,
    delong_auroc,
    spearman,
    spearman_interval,
    spearman_standard_error,
)
from hcl_plugin.eval.scenes import read_scene_set

ROOT = Path(__file__).resolve().parents[1]
SMALL_BN = BatchNormProcedure(num_batches=3, batch_size=16)


# data ---------------------------------------------------------------------------------------------------

@pytest.fixture
def random_scenes(tmp_path, gen):
    """Twelve random 48 x 40 images with 1-3 random boxes each (fresh per test)."""
    seeds = torch.randint(0, 2**31 - 1, (12,), generator=gen).tolist()
    images, anns = [], []
    for i, seed in enumerate(seeds, start=1):
        write_image(tmp_path / "images" / f"{i}.jpg", size=(48, 40), seed=seed)
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 48, "height": 40})
        rng = np.random.default_rng(seed)
        for _ in range(int(rng.integers(1, 4))):
            x, y = float(rng.uniform(0, 30)), float(rng.uniform(0, 24))
            w, h = float(rng.uniform(6, 48 - x)), float(rng.uniform(6, 40 - y))
            anns.append(annotation(len(anns) + 1, i, [x, y, w, h]))
    write_coco(tmp_path / "annotations.json", images, anns)
    return read_scene_set(tmp_path / "annotations.json", tmp_path / "images")


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from hcl_plugin.data.embedded.scenes import SyntheticConfig, build_synthetic_dataset

    out = tmp_path_factory.mktemp("control_scenes")
    config = SyntheticConfig(num_images=32, image_size=64, seed=21, ooc_fraction=0.4, val_fraction=0.5)
    build_synthetic_dataset(out, config, animals=animals_or_skip(), progress=False)
    return out


def _tiny(seed: int, **hparams):
    """A tiny ResNet-18 contract model at random init (32 px crops)."""
    return load_checkpoint(contract_checkpoint(seed=seed, momentum=False, hparams=contract_hparams(**hparams)))


# the BatchNorm procedure --------------------------------------------------------------------------------

def test_recompute_equals_torch_update_bn_on_the_same_crops(random_scenes, gen):
    model = _tiny(int(torch.randint(0, 1000, (), generator=gen)))
    for layer in batchnorm_layers(model):  # stored statistics that are not the initial ones
        layer.running_mean.normal_(generator=gen)
        layer.running_var.uniform_(0.5, 2.0, generator=gen)
    reference = copy.deepcopy(model)
    record = recompute_batchnorm(model, random_scenes, SMALL_BN)
    sample = batchnorm_sample(random_scenes, SMALL_BN)
    loader = torch.utils.data.DataLoader(_CropSample(random_scenes, sample, 32), batch_size=16)
    torch.optim.swa_utils.update_bn(loader, reference)
    for ours, theirs in zip(batchnorm_layers(model), batchnorm_layers(reference)):
        assert torch.allclose(ours.running_mean, theirs.running_mean, atol=1e-5)
        assert torch.allclose(ours.running_var, theirs.running_var, rtol=1e-4, atol=1e-6)
        assert ours.momentum == 0.1  # restored
    assert not model.training and not any(m.training for m in model.modules())
    assert record["procedure"] == "recompute" and record["num_layers"] == len(batchnorm_layers(model)) == 20
    assert record["num_crops"] == len(sample) and record["num_batches"] == -(-len(sample) // 16)


def test_sample_is_fixed_by_the_seed_and_covers_every_kind(random_scenes):
    total = 2 * len(random_scenes) + random_scenes.num_objects_total
    everything = batchnorm_sample(random_scenes, BatchNormProcedure(num_batches=100, batch_size=16))
    assert len(everything) == total and len(set(everything)) == total
    assert {kind for _, kind, _ in everything} == {"image", "scene", "object"}
    first = batchnorm_sample(random_scenes, SMALL_BN)
    assert first == batchnorm_sample(random_scenes, SMALL_BN) and len(first) == min(total, 48)
    assert first != batchnorm_sample(random_scenes, BatchNormProcedure(num_batches=3, batch_size=16, seed=1))
    only_images = batchnorm_sample(random_scenes, BatchNormProcedure(num_batches=1, batch_size=8, kinds=("image",)))
    assert len(only_images) == 8 and all(kind == "image" for _, kind, _ in only_images)


def test_procedure_validation():
    with pytest.raises(ValueError, match="bn must be one of"):
        BatchNormProcedure("running")
    with pytest.raises(ValueError, match="at least 2|>= 2"):
        BatchNormProcedure(batch_size=1)
    with pytest.raises(ValueError, match="kinds"):
        BatchNormProcedure(kinds=("crop",))


def test_recompute_works_on_a_copy_and_as_trained_flags_initial_statistics(random_scenes):
    model = random_init_like(contract_checkpoint(seed=3, momentum=False))
    layers = len(batchnorm_layers(model))
    assert initial_statistics_layers(model) == layers  # a random-init network: mean 0, variance 1 everywhere
    same, record, notes = apply_batchnorm_procedure(model, random_scenes, "as_trained")
    assert same is model and record == {"procedure": "as_trained", "num_layers": layers,
                                        "initial_statistics_layers": layers}
    assert "initial running statistics" in notes[0]
    copied, record, notes = apply_batchnorm_procedure(model, random_scenes, SMALL_BN)
    assert copied is not model and notes == [] and record["procedure"] == "recompute"
    assert initial_statistics_layers(model) == layers  # the model passed in is unchanged
    assert initial_statistics_layers(copied) == 0


def test_random_init_like_keeps_the_architecture_and_the_rng():
    ckpt = contract_checkpoint(seed=4, momentum=False)
    state = torch.random.get_rng_state()
    a, b = random_init_like(ckpt, seed=1), random_init_like(ckpt, seed=1)
    assert torch.equal(torch.random.get_rng_state(), state)
    trained = load_checkpoint(ckpt)
    assert a.state_dict().keys() == trained.state_dict().keys()
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.backbone.conv1.weight, random_init_like(ckpt, seed=2).backbone.conv1.weight)
    assert a.hyper_parameters["random_init_seed"] == 1 and a.hyper_parameters["lambda_hyp"] == 0.1
    baseline = random_init_like(contract_checkpoint(seed=4, momentum=False, hyperbolic=False))
    assert baseline.hyperbolic_head is None
    with pytest.raises(ValueError, match="hyper-parameters"):
        random_init_like(type(trained)(trained.backbone, trained.projection_head, c=0.1, image_size=32))


# the analysis applies the procedure to every model --------------------------------------------------------

def test_random_init_control_is_evaluated_like_every_other_model(scenes, tmp_path, gen):
    """Two networks that differ only in their BatchNorm buffers (a random-init control with the initial
    statistics, and the same weights with other statistics) are one function after the procedure: the
    analysis must give identical numbers. Under ``as_trained`` they differ."""
    control = random_init_like(contract_checkpoint(seed=5, momentum=False),
                               seed=int(torch.randint(0, 99, (), generator=gen)))
    shifted = copy.deepcopy(control)
    for layer in batchnorm_layers(shifted):
        layer.running_mean.normal_(generator=gen)
        layer.running_var.uniform_(0.2, 3.0, generator=gen)
    args = dict(max_images=10, max_train_images=8, batch_size=32, progress=False)
    comparison = compare_models({"random_init": control, "shifted": shifted}, scenes, tmp_path / "cmp", bn=SMALL_BN,
                                **args)
    results = {name: json.loads((tmp_path / "cmp" / name / "metrics.json").read_text())
               for name in ("random_init", "shifted")}
    records = [r["details"]["batchnorm"] for r in results.values()]
    assert all(r["procedure"] == "recompute" for r in records)
    assert all(records[0][k] == records[1][k] for k in MATCHED_KEYS)
    for key in ("norm_spearman", "norm_pearson", "ooc_auroc", "linear_top1", "knn_top1", "hyp_norm_mean"):
        a, b = results["random_init"][key], results["shifted"][key]
        assert a == pytest.approx(b, rel=1e-4, abs=1e-6), key
    assert comparison["models"]["random_init"]["bn_procedure"] == "recompute"
    assert initial_statistics_layers(control) == len(batchnorm_layers(control))  # caller's model untouched

    as_trained = {name: run_analysis(model, scenes, tmp_path / f"as_trained_{name}", bn="as_trained", **args)
                  for name, model in (("random_init", control), ("shifted", shifted))}
    assert as_trained["random_init"]["hyp_norm_mean"] != pytest.approx(as_trained["shifted"]["hyp_norm_mean"], rel=1e-3)
    assert any("initial running statistics" in n for n in as_trained["random_init"]["details"]["notes"])

    # a control evaluated differently from the trained model is refused
    mixed = {"trained": results["shifted"], "random_init": as_trained["random_init"]}
    with pytest.raises(IncomparableAnalysesError, match="same BatchNorm procedure"):
        check_comparable(mixed)
    other_sample = copy.deepcopy(results["shifted"])
    other_sample["details"]["batchnorm"]["sample_sha1"] = "0" * 40
    with pytest.raises(IncomparableAnalysesError, match="sample_sha1"):
        check_comparable({"trained": other_sample, "random_init": results["random_init"]})
    unrecorded = copy.deepcopy(results["shifted"])
    del unrecorded["details"]["batchnorm"]
    with pytest.raises(IncomparableAnalysesError, match="no BatchNorm procedure recorded"):
        check_comparable({"trained": unrecorded, "random_init": results["random_init"]})
    assert check_comparable(results) == []


def test_mixed_norm_quantities_are_refused_or_measured_on_a_common_one(scenes, tmp_path):
    hcl = contract_checkpoint(seed=6, momentum=False)
    baseline = contract_checkpoint(seed=7, momentum=False, hparams=contract_hparams(lambda_hyp=0.0))
    models = {"hcl": hcl, "baseline": baseline, "random_init": random_init_like(hcl)}
    args = dict(max_images=8, max_train_images=6, batch_size=32, progress=False, bn=SMALL_BN)
    with pytest.raises(IncomparableAnalysesError, match=r"hcl: hyperbolic_head; baseline: expmap0\(projection_head\)"):
        compare_models(models, scenes, tmp_path / "refused", **args)
    assert not (tmp_path / "refused").exists()  # refused before anything was written or extracted

    comparison = compare_models(models, scenes, tmp_path / "common", hyperbolic_source="projection_head", **args)
    assert {m["hyperbolic_source"] for m in comparison["models"].values()} == {"expmap0(projection_head)"}
    for name in models:
        metrics = json.loads((tmp_path / "common" / name / "metrics.json").read_text())
        assert metrics["hyperbolic_source"] == "expmap0(projection_head)" and metrics["bn_procedure"] == "recompute"
        # the common quantity: d(0, expmap0(e)) = 2 |e|, so it ranks images as the Euclidean norm does
        assert metrics["norm_spearman"] == pytest.approx(metrics["norm_spearman_euclidean"], abs=1e-6)
        for key in ("norm_spearman", "ooc_auroc"):
            low, high = metrics[f"{key}_ci"]
            assert low <= metrics[key] <= high
    text = (tmp_path / "common" / "comparison.md").read_text()
    assert "expmap0_c(e)" in text and "re-estimated" in text and "| `norm_spearman` |" in text
    assert json.loads((tmp_path / "common" / "comparison.json").read_text())["table"] == comparison["table"]

    with pytest.warns(UserWarning, match="COMPARING DIFFERENT NORM QUANTITIES"):
        allowed = compare_models({"hcl": hcl, "baseline": baseline}, scenes, tmp_path / "allowed",
                                 allow_mixed_sources=True, **args)
    assert any(note.startswith("WARNING") for note in allowed["notes"])
    assert "WARNING" in (tmp_path / "allowed" / "comparison.md").read_text()


def test_common_quantity_is_the_official_shared_heads_embedding(scenes, tmp_path, gen):
    """With the released code's shared head (BallMap of the projection head, no scale, no clipping),
    ``expmap0`` of the projection head is HCL's own hyperbolic embedding; mixing it with a baseline's
    quantity under ``auto`` is still refused (the sources are named differently)."""
    from hcl_plugin.eval.analyze import select_hyperbolic_source

    shared_hp = contract_hparams(hyperbolic_head="shared", feature_scale=None, learn_scale=False)
    hcl = contract_checkpoint(seed=12, momentum=False, hparams=shared_hp)
    model = load_checkpoint(hcl)
    assert model.hyperbolic_source == "hyperbolic_head(projection_head)"
    common, _ = select_hyperbolic_source(model, "projection_head")
    assert common.hyperbolic_source == "expmap0(projection_head)"
    images = torch.randn(3, 3, 32, 32, generator=gen)
    assert torch.allclose(common.embed(images)["hyperbolic"], model.embed(images)["hyperbolic"], atol=1e-6)
    assert random_init_like(hcl).hyperbolic_source == "hyperbolic_head(projection_head)"
    baseline = contract_checkpoint(seed=13, momentum=False, hparams=contract_hparams(lambda_hyp=0.0))
    with pytest.raises(IncomparableAnalysesError, match="different quantities"):
        compare_models({"hcl": hcl, "baseline": baseline}, scenes, tmp_path / "refused", progress=False)


def test_report_states_the_procedure_the_quantity_and_the_intervals(scenes, tmp_path):
    metrics = run_analysis(contract_checkpoint(seed=8, momentum=False), scenes, tmp_path / "out", max_images=12,
                           max_train_images=8, batch_size=32, progress=False, bn=SMALL_BN)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "95 % interval" in report and "BatchNorm: running statistics of all 20 layers re-estimated" in report
    assert "Norm quantity (`hyperbolic_source` = `hyperbolic_head`)" in report
    train = read_scene_set(scenes / "annotations_train.json", scenes / "images", max_images=8)
    assert metrics["details"]["batchnorm"]["num_crops"] == min(2 * 8 + train.num_objects_total, 48)
    assert metrics["details"]["batchnorm"]["images"].endswith("annotations_train.json")
    assert metrics["details"]["timing"]["batchnorm"] > 0
    low, high = metrics["norm_spearman_ci"]
    assert -1 <= low <= metrics["norm_spearman"] <= high <= 1
    assert any("standard error of Spearman's rho is up to" in n for n in metrics["details"]["notes"])  # 12 images


# intervals --------------------------------------------------------------------------------------------------

def test_delong_hand_computed():
    # positives 0.35, 0.8; negatives 0.1, 0.4. Per positive, negatives below: 1/2, 2/2; per negative,
    # positives above: 2/2, 1/2. Variance = var([.5, 1]) / 2 + var([1, .5]) / 2 = 0.125 / 2 + 0.125 / 2
    value, se = delong_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert value == pytest.approx(0.75) and se == pytest.approx(math.sqrt(0.125))
    low, high = auroc_interval([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    assert low == pytest.approx(0.75 - 1.959964 * math.sqrt(0.125), abs=1e-5) and high == 1.0  # clipped
    assert delong_auroc([1, 0, 0], [0.3, 0.2, 0.1]) is None and auroc_interval([0, 0], [1, 2]) is None


def test_intervals_agree_with_the_bootstrap(gen):
    from scipy.stats import bootstrap

    n = 400
    x = torch.randn(n, generator=gen, dtype=torch.float64).numpy()
    y = 0.4 * x + torch.randn(n, generator=gen, dtype=torch.float64).numpy()
    seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))
    rho = spearman(x, y)
    low, high = spearman_interval(rho, n)
    boot = bootstrap((x, y), lambda a, b: spearman(a, b), paired=True, vectorized=False, n_resamples=600,
                     method="percentile", random_state=seed).confidence_interval
    assert low == pytest.approx(boot.low, abs=0.03) and high == pytest.approx(boot.high, abs=0.03)
    result = correlation(x, y)
    assert result["spearman_ci"] == pytest.approx((low, high))
    assert result["pearson_ci"][0] < result["pearson"] < result["pearson_ci"][1]

    labels = (torch.rand(n, generator=gen) < 0.2).numpy()
    scores = labels * 0.8 + torch.randn(n, generator=gen, dtype=torch.float64).numpy()
    value, se = delong_auroc(labels, scores)
    assert value == pytest.approx(auroc(labels, scores))
    rng = np.random.default_rng(seed)
    resampled = []
    for _ in range(600):
        idx = rng.integers(0, n, n)
        if 0 < labels[idx].sum() < n:
            resampled.append(auroc(labels[idx], scores[idx]))
    assert se == pytest.approx(np.std(resampled, ddof=1), rel=0.2)


def test_validation_split_size_for_a_standard_error_of_003():
    needed = spearman_images_needed()
    assert needed == 1115
    assert max(spearman_standard_error(r, needed) for r in np.linspace(-0.9, 0.9, 37)) <= 0.03
    assert spearman_standard_error(0.0, 200) == pytest.approx(0.071, abs=0.001)  # the 0.07 at 200 scenes
    low, high = spearman_interval(0.2, 1200)
    assert high - low < 2 * 1.96 * 0.03


def test_extra_validation_scenes_leave_the_training_split_unchanged(tmp_path):
    from hcl_plugin.data.embedded.scenes import SyntheticConfig, build_synthetic_dataset

    animals = animals_or_skip()
    base = SyntheticConfig(num_images=12, image_size=64, seed=5, ooc_fraction=0.5, val_fraction=0.25)
    grown = SyntheticConfig(**{**base.__dict__, "extra_val_images": 10})
    build_synthetic_dataset(tmp_path / "base", base, animals=animals, progress=False)
    summary = build_synthetic_dataset(tmp_path / "grown", grown, animals=animals, progress=False)
    assert summary["num_images"] == 22 and summary["num_val_images"] == 13 and summary["num_train_images"] == 9
    assert summary["num_out_of_context_images"] == 6 + 5
    train = [json.loads((tmp_path / d / "annotations_train.json").read_text()) for d in ("base", "grown")]
    assert train[0]["images"] == train[1]["images"] and train[0]["annotations"] == train[1]["annotations"]
    for image in train[0]["images"]:
        assert (tmp_path / "base" / "images" / image["file_name"]).read_bytes() == \
            (tmp_path / "grown" / "images" / image["file_name"]).read_bytes()
    val = json.loads((tmp_path / "grown" / "annotations_val.json").read_text())
    assert {i["id"] for i in val["images"]} >= set(range(13, 23))
    with pytest.raises(ValueError, match="extra_val_images"):
        SyntheticConfig(extra_val_images=-1).validate()


# command line -----------------------------------------------------------------------------------------------

def _cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "tools" / "analyze.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_cli_refuses_mixed_quantities_before_any_work(scenes, tmp_path):
    torch.save(contract_checkpoint(seed=9, momentum=False), tmp_path / "hcl.ckpt")
    torch.save(contract_checkpoint(seed=10, momentum=False, hparams=contract_hparams(lambda_hyp=0.0)),
               tmp_path / "moco.ckpt")
    result = _cli(f"hcl={tmp_path / 'hcl.ckpt'}", f"baseline={tmp_path / 'moco.ckpt'}", "--data", scenes,
                  "--out", tmp_path / "out", "--quiet")
    assert result.returncode == 2 and "different quantities" in result.stderr and "projection_head" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_compares_with_a_random_init_control(scenes, tmp_path):
    torch.save(contract_checkpoint(seed=11, momentum=False), tmp_path / "hcl.ckpt")
    result = _cli(f"hcl={tmp_path / 'hcl.ckpt'}", "--random-init-control", "--data", scenes, "--out", tmp_path / "out",
                  "--max-images", "8", "--max-train-images", "6", "--bn-batches", "2", "--bn-batch-size", "16",
                  "--quiet")
    assert result.returncode == 0, result.stderr
    assert "| metric | hcl | random_init |" in result.stdout
    comparison = json.loads((tmp_path / "out" / "comparison.json").read_text())
    assert set(comparison["models"]) == {"hcl", "random_init"} and comparison["batchnorm"]["num_batches"] == 2
    single = _cli(tmp_path / "hcl.ckpt", "--data", scenes, "--out", tmp_path / "single", "--max-images", "8",
                  "--max-train-images", "6", "--bn", "as_trained", "--quiet")
    assert single.returncode == 0, single.stderr
    assert "norm_spearman = " in single.stderr and "95 % interval [" in single.stderr
    assert json.loads((tmp_path / "single" / "metrics.json").read_text())["bn_procedure"] == "as_trained"
