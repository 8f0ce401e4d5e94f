"""Fuzzing the framework-free core and the Lightly loss adapters with bad input (hypothesis).

The contract, for every public entry point below: a call either raises ``ValueError`` or
``TypeError``, or returns finite values; a loss (or map) that returns on floating-point inputs also
has finite gradients (float32/float64 inputs; for float16/bfloat16 inputs, whose gradients are
rounded to that dtype, no NaN). Never NaN, never another exception type.

Each example draws valid inputs (points inside the ball, within 1e-4..1e-7 of its boundary, zero or
tiny rows; float32, float64, float16 or bfloat16; at most 8 × 8) and at most one fault in one of
them: a shape with 0 rows, 0 features, 1-D, 3-D or one extent off by one; a dtype (int64, bool, or
another float type than the rest); values on or outside the ball, huge (1e30) or unscaled; one NaN,
±Inf, ±1e30, 1e-30 or 0 entry. Hyperparameters are drawn valid or bad independently: curvatures 0,
negative, NaN, ±Inf (and learnable ones); temperatures 0, negative, NaN, Inf, below 1e-8 and
extreme valid ones (1e-8, 1e4); λ negative, NaN, Inf. The values of one example come from one drawn
seed, so an example costs few hypothesis draws and 1,000 per entry point take seconds.
``HCL_TEST_SEED`` fixes hypothesis' seed (replay); otherwise each run draws fresh examples.
"""

from __future__ import annotations

import os
import random
from typing import Dict, List, Optional, Tuple

import pytest
import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from hcl_plugin.geometry import Curvature, dist, dist0, expmap0, logmap0, pairwise_dist, project
from hcl_plugin.losses import HCLLoss, HyperbolicInfoNCELoss, InfoNCELoss

lightly_adapters = pytest.importorskip("hcl_plugin.lightly")  # the adapters need torchvision, not lightly

NAN, INF = float("nan"), float("inf")
HALF = (torch.float16, torch.bfloat16)
# weights by repetition: most draws are valid, so that the computation is reached as well as the checks
FLOAT_DTYPES = [torch.float32] * 3 + [torch.float64, torch.float16, torch.bfloat16]
VALID_KINDS = ["inside"] * 5 + ["near_boundary", "zero", "tiny"]
SPECIALS = [NAN, INF, -INF, 1e30, -1e30, 1e-30, 0.0]
FAULTS = (
    [None] * 12
    + [("kind", k) for k in ("on", "outside", "huge", "raw")]
    + [("special", v) for v in SPECIALS]
    + [("dtype", d) for d in (torch.int64, torch.bool, torch.float64, torch.float16)]
    + [("shape", "rows"), ("shape", "dim")]
)
SIZES = list(range(1, 9)) * 4 + [0]
CURVATURES = [0.05, 1.0, 2.5] * 4 + [0.0, -1.0, NAN, INF, -INF]
TEMPERATURES = [0.2, 0.07, 1.0, 1e-8, 1e4] * 4 + [0.0, -0.2, NAN, INF, 1e-9]
LAMBDAS = [0.1, 0.0, 1.0] * 5 + [-0.1, NAN, INF]

SEED = st.integers(0, 2**32 - 1)
SHAPE = st.tuples(st.sampled_from(SIZES), st.sampled_from(SIZES), st.sampled_from(["2d"] * 12 + ["1d", "3d"]))
FLOAT_DTYPE = st.sampled_from(FLOAT_DTYPES)
FAULT = st.tuples(st.sampled_from(FAULTS), st.integers(0, 7))  # the fault and the input it hits
NEGATIVE_ROWS = st.sampled_from([None] * len(SIZES) + SIZES)  # None: in-batch negatives
CURVATURE = st.tuples(st.sampled_from(CURVATURES), st.integers(0, 3))
CURVATURE_FLOAT = st.sampled_from(CURVATURES)
TEMPERATURE = st.sampled_from(TEMPERATURES)
LAMBDA = st.sampled_from(LAMBDAS)

FUZZ = settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def fuzz(test):
    """1,000 examples; hypothesis' seed from HCL_TEST_SEED when set (else fresh, printed on failure)."""
    test = FUZZ(test)
    if "HCL_TEST_SEED" in os.environ:
        test = seed(int(os.environ["HCL_TEST_SEED"]))(test)
    return test


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (on a busy machine, a scheduler slice each)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- strategies


def _radius(c) -> float:
    try:
        value = float(c().detach() if isinstance(c, Curvature) else c)
    except (TypeError, ValueError):
        return 1.0
    return value**-0.5 if 0 < value < INF else 1.0


def make_shape(rows: int, dim: int, layout: str) -> Tuple[int, ...]:
    return {"2d": (rows, dim), "1d": (dim,), "3d": (2, rows, dim)}[layout]


def make_tensor(rng: random.Random, shape: Tuple[int, ...], c, dtype: torch.dtype, fault=None) -> torch.Tensor:
    """A tensor of ``shape``: valid values of a random kind, or the given ``fault``."""
    kind = rng.choice(VALID_KINDS)
    if fault is not None and fault[0] == "kind":
        kind = fault[1]
    if fault is not None and fault[0] == "shape" and shape:
        axis = 0 if fault[1] == "rows" else len(shape) - 1
        shape = shape[:axis] + (shape[axis] + 1,) + shape[axis + 1:]
    gen = torch.Generator().manual_seed(rng.getrandbits(32))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    radius = _radius(c)
    if kind in ("inside", "near_boundary", "on", "outside") and x.dim() >= 1 and x.shape[-1] > 0:
        unit = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-300)
        rel = {
            "inside": torch.rand(shape[:-1] + (1,), generator=gen, dtype=torch.float64) * 0.99,
            "near_boundary": 1 - 10 ** -(4 + 3 * torch.rand(shape[:-1] + (1,), generator=gen, dtype=torch.float64)),
            "on": torch.ones(shape[:-1] + (1,), dtype=torch.float64),
            "outside": torch.full(shape[:-1] + (1,), 1.5, dtype=torch.float64),
        }[kind]
        x = unit * rel * radius
    elif kind == "zero":
        x = torch.zeros(shape, dtype=torch.float64)
    elif kind == "tiny":
        x = x * 1e-30
    elif kind == "huge":
        x = x * 1e30
    # "raw": unscaled Gaussian entries, outside the ball for the larger curvatures
    if fault is not None and fault[0] == "special" and x.numel() > 0:
        x.view(-1)[rng.randrange(x.numel())] = fault[1]
    if fault is not None and fault[0] == "dtype":
        dtype = fault[1]
    return x.to(dtype)


@st.composite
def curvatures(draw):
    """A float (valid mostly, else 0, negative, NaN, ±Inf); a quarter of the valid ones learnable."""
    c, learnable = draw(CURVATURE)
    return Curvature(c, learnable=True) if learnable == 0 and 0 < c < INF else c


@st.composite
def loss_inputs(draw, names: List[str], c=1.0, with_negatives: bool = True) -> Dict[str, Optional[torch.Tensor]]:
    """Tensors for ``names`` (and ``negatives``, or None for in-batch ones) sharing a shape and dtype, one maybe faulty."""
    base = make_shape(*draw(SHAPE))
    dtype = draw(FLOAT_DTYPE)
    rng = random.Random(draw(SEED))
    fault, target = draw(FAULT)
    neg_rows = draw(NEGATIVE_ROWS) if with_negatives else None
    all_names = names + (["negatives"] if neg_rows is not None else [])
    out: Dict[str, Optional[torch.Tensor]] = {}
    for index, name in enumerate(all_names):
        shape = (neg_rows, base[-1]) if name == "negatives" else base
        out[name] = make_tensor(rng, shape, c, dtype, fault if index == target % len(all_names) else None)
    if with_negatives and neg_rows is None:
        out["negatives"] = None
    return out


# ---------------------------------------------------------------- the contract


def leaves(values: Dict[str, Optional[torch.Tensor]]) -> Dict[str, Optional[torch.Tensor]]:
    """Floating tensors become leaves that require grad; others are passed as they are."""
    return {k: (v.detach().clone().requires_grad_() if v is not None and v.is_floating_point() else v)
            for k, v in values.items()}


def assert_contract(call, inputs: Dict[str, Optional[torch.Tensor]], extra_grads=()) -> bool:
    """``call()`` raises ValueError/TypeError (returns False), or returns finite values with finite
    (for half-precision inputs: non-NaN) gradients (returns True)."""
    try:
        out = call()
    except (ValueError, TypeError):
        return False
    outputs = out if isinstance(out, (tuple, list)) else (out,)
    for o in outputs:
        assert torch.isfinite(o).all(), f"non-finite output {o}"
    needs = [t for t in list(inputs.values()) + list(extra_grads) if t is not None and t.requires_grad]
    differentiable = [o.double().sum() for o in outputs if o.requires_grad]
    if needs and differentiable:
        grads = torch.autograd.grad(sum(differentiable), needs, allow_unused=True)
        for t, g in zip(needs, grads):
            if g is None:
                continue
            if t.dtype in HALF:
                assert not torch.isnan(g).any(), f"NaN gradient for a {t.dtype} input"
            else:
                assert torch.isfinite(g).all(), f"non-finite gradient for a {t.dtype} input: {g}"
    return True


def run_fuzz(strategy, check) -> None:
    """Run ``check(example) -> computed?`` on 1,000 examples; both outcomes must occur often enough
    that the fuzz reaches the computation as well as the checks."""
    outcomes = {True: 0, False: 0}

    @fuzz
    @given(strategy)
    def run(example):
        outcomes[check(example)] += 1

    run()
    total = outcomes[True] + outcomes[False]
    assert outcomes[True] >= 0.02 * total, f"only {outcomes[True]} of {total} examples computed a value"
    assert outcomes[False] >= 0.02 * total, f"only {outcomes[False]} of {total} examples raised"


def curvature_leaves(c) -> Tuple[torch.Tensor, ...]:
    return tuple(c.parameters()) if isinstance(c, Curvature) else ()


# ---------------------------------------------------------------- losses


def test_fuzz_info_nce():
    @st.composite
    def case(draw):
        return draw(TEMPERATURE), leaves(draw(loss_inputs(["query", "positive"])))

    def check(example):
        temperature, t = example
        return assert_contract(lambda: InfoNCELoss(temperature)(t["query"], t["positive"], t["negatives"]), t)

    run_fuzz(case(), check)


def test_fuzz_hyperbolic_info_nce():
    @st.composite
    def case(draw):
        c = draw(curvatures())
        return draw(TEMPERATURE), c, leaves(draw(loss_inputs(["query", "positive"], c)))

    def check(example):
        temperature, c, t = example
        return assert_contract(
            lambda: HyperbolicInfoNCELoss(temperature, c)(t["query"], t["positive"], t["negatives"]),
            t, curvature_leaves(c),
        )

    run_fuzz(case(), check)


def test_fuzz_hcl_loss():
    @st.composite
    def case(draw):
        c = draw(curvatures())
        params = (draw(LAMBDA), draw(TEMPERATURE), draw(TEMPERATURE), c)
        euc = draw(loss_inputs(["object_query", "object_key"]))
        hyp = draw(loss_inputs(["scene_query", "object_key_hyp"], c))
        euc["euc_negatives"], hyp["hyp_negatives"] = euc.pop("negatives"), hyp.pop("negatives")
        return params, leaves({**euc, **hyp})

    def check(example):
        params, t = example
        names = ["object_query", "object_key", "scene_query", "object_key_hyp", "euc_negatives", "hyp_negatives"]
        return assert_contract(lambda: HCLLoss(*params)(*(t[n] for n in names)).loss, t, curvature_leaves(params[3]))

    run_fuzz(case(), check)


def feature_dim(x: torch.Tensor) -> int:
    return x.shape[-1] if x.dim() else 1


def test_fuzz_lightly_hyperbolic_ntxent():
    @st.composite
    def case(draw):
        temperature, c = draw(TEMPERATURE), draw(CURVATURE_FLOAT)
        t = leaves(draw(loss_inputs(["out0", "out1"], c, with_negatives=False)))
        dim = feature_dim(t["out0"])
        return temperature, c, draw(st.sampled_from([0, (8, dim), (8, dim + 1)])), t

    def check(example):
        temperature, c, size, t = example
        return assert_contract(
            lambda: lightly_adapters.HyperbolicNTXentLoss(temperature, c, memory_bank_size=size)(t["out0"], t["out1"]), t
        )

    run_fuzz(case(), check)


def test_fuzz_lightly_hcl_loss():
    @st.composite
    def case(draw):
        c = draw(CURVATURE_FLOAT)
        euc = leaves(draw(loss_inputs(["q1", "q2", "k1", "k2"], with_negatives=False)))
        hyp = leaves(draw(loss_inputs(["hyp_query", "hyp_key"], c, with_negatives=False)))
        kwargs = dict(
            lambda_hyp=draw(LAMBDA), temperature_euc=draw(TEMPERATURE),
            temperature_hyp=draw(TEMPERATURE), c=c, symmetric=draw(st.booleans()),
            memory_bank_size=draw(st.sampled_from([0, (8, feature_dim(euc["q1"]))])),
            hyp_memory_bank_size=draw(st.sampled_from([0, (8, feature_dim(hyp["hyp_query"]))])),
        )
        return kwargs, euc, hyp

    def check(example):
        kwargs, euc, hyp = example

        def call():
            loss = lightly_adapters.HCLLoss(**kwargs)
            if kwargs["symmetric"]:
                return loss((euc["q1"], euc["q2"]), (euc["k1"], euc["k2"]), hyp["hyp_query"], hyp["hyp_key"])
            return loss(euc["q1"], euc["k1"], hyp["hyp_query"], hyp["hyp_key"])

        return assert_contract(call, {**euc, **hyp})

    run_fuzz(case(), check)


# ---------------------------------------------------------------- geometry


@st.composite
def geometry_inputs(draw, two: bool):
    """``c`` and points ``x`` (and ``y``: same shape, one row, a broadcastable or a random shape), one maybe faulty."""
    c = draw(curvatures())
    x_shape = make_shape(*draw(SHAPE))
    dtype = draw(FLOAT_DTYPE)
    rng = random.Random(draw(SEED))
    fault, target = draw(FAULT)
    x = make_tensor(rng, x_shape, c, dtype, fault if not two or target % 2 == 0 else None)
    if not two:
        return c, leaves({"x": x})
    y_shape = draw(st.sampled_from([x_shape] * 4 + [x_shape[-1:], make_shape(*draw(SHAPE))]))
    y = make_tensor(rng, y_shape, c, dtype, fault if target % 2 == 1 else None)
    return c, leaves({"x": x, "y": y})


def _value(c):
    return c() if isinstance(c, Curvature) else c


@pytest.mark.parametrize("fn", [expmap0, logmap0, project, dist0], ids=lambda f: f.__name__)
def test_fuzz_single_argument_maps(fn):
    def check(example):
        c, t = example
        return assert_contract(lambda: fn(t["x"], _value(c)), t, curvature_leaves(c))

    run_fuzz(geometry_inputs(two=False), check)


@pytest.mark.parametrize("fn", [dist, pairwise_dist], ids=lambda f: f.__name__)
def test_fuzz_distances(fn):
    def check(example):
        c, t = example
        return assert_contract(lambda: fn(t["x"], t["y"], _value(c)), t, curvature_leaves(c))

    run_fuzz(geometry_inputs(two=True), check)
