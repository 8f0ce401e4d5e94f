"""benchmarks/hcl_vs_baseline.py: its summary statistics, its target checks and its one protocol.

The benchmark itself takes about an hour on 2 cores; its smoke form (``--steps 3 --max-images 100``,
in the script's docstring) takes minutes, so here only its pure parts run.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
from pathlib import Path

import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("hcl_vs_baseline", ROOT / "benchmarks" / "hcl_vs_baseline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mean_std_and_t_interval_match_scipy(bench):
    values = [0.31, 0.42, 0.27, 0.38]
    summary = bench.mean_std_ci(values)
    low, high = stats.t.interval(0.95, len(values) - 1, loc=statistics.fmean(values), scale=stats.sem(values))
    assert summary["mean"] == pytest.approx(statistics.fmean(values))
    assert summary["std"] == pytest.approx(statistics.stdev(values))
    assert summary["ci95"] == pytest.approx((high - low) / 2)
    assert bench.mean_std_ci([0.5])["ci95"] is None and bench.mean_std_ci([None, float("nan")])["n"] == 0


def _inputs(bench, hcl_rho, base_rho, hcl_auroc=0.8, base_auroc=0.7, hcl_linear=0.5, base_linear=0.5):
    per_seed = {model: {key: [0.5, 0.5, 0.5] for key in bench.METRICS} for model in bench.MODELS}
    per_seed["hcl"]["norm_spearman"], per_seed["baseline"]["norm_spearman"] = hcl_rho, base_rho
    per_seed["hcl"]["ooc_auroc"], per_seed["baseline"]["ooc_auroc"] = [hcl_auroc] * 3, [base_auroc] * 3
    per_seed["hcl"]["linear_top1"], per_seed["baseline"]["linear_top1"] = [hcl_linear] * 3, [base_linear, 0.5, 0.5]
    summary = {m: {k: bench.mean_std_ci(v) for k, v in keys.items()} for m, keys in per_seed.items()}
    return per_seed, summary


def test_targets_met_when_hcl_clears_every_bar(bench):
    lines = bench.check_targets(*_inputs(bench, [-0.6, -0.62, -0.58], [0.1, -0.05, 0.0]))
    assert [line.split(":")[0] for line in lines[:4]] == ["MET"] * 4


@pytest.mark.parametrize("hcl_rho, why", [
    ([0.6, -0.6, 0.6], "sign flips between seeds"),
    ([0.45, 0.45, 0.45], "below 0.5"),
    ([0.55, 0.56, 0.54], "not above the baseline by the seed spread"),
])
def test_norm_target_missed(bench, hcl_rho, why):
    base = [0.53, 0.56, 0.50] if "baseline" in why else [0.0, 0.01, -0.01]
    assert bench.check_targets(*_inputs(bench, hcl_rho, base))[0].startswith("MISSED"), why


def test_auroc_and_probe_targets_missed(bench):
    lines = bench.check_targets(*_inputs(bench, [0.6] * 3, [0.0] * 3, hcl_auroc=0.74, hcl_linear=0.3))
    assert lines[1].startswith("MISSED") and lines[2].startswith("MISSED")


def test_every_run_gets_the_same_protocol_and_hcl_the_released_options(bench, tmp_path):
    flags = bench.train_args(tmp_path / "data", tmp_path / "out", seed=3, steps=150, minutes=10)
    assert flags[flags.index("--momentum") + 1] == f"{1 - 6 / 150:.4f}"      # docs/recipe.md: m0 = 1 - 6/T
    assert flags[flags.index("--warmup-steps") + 1] == "10"                    # T / 15
    assert flags[flags.index("--max-steps") + 1] == "150" and flags[flags.index("--seed") + 1] == "3"
    assert bench.RELEASED_HCL_FLAGS == ["--hyperbolic-head", "shared", "--riemannian-grad", "--feature-scale", "1",
                              "--fixed-scale"]
    assert math.isclose(bench.LAMBDAS["hcl"], 0.1) and bench.LAMBDAS["baseline"] == 0.0
