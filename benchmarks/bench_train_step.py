#!/usr/bin/env python
"""Training-step time of HCL vs its baseline, compute only and end to end, with the arithmetic floor.

For each framework (``--framework lightly|mmselfsup|both``):

* **compute only**: one fixed batch already on the device; the HCL model's step and the baseline's
  step alternate (HCL, baseline, baseline, HCL, ...), after warm-up steps; median ms per step and
  their ratio.
* **end to end**: the real ``DataLoader`` (``--num-workers`` worker processes building the views)
  feeding the same steps: each timed step is fetching the next batch, moving it to the device and
  the training step. The variants run in interleaved blocks of ``--block-steps`` timed steps (order
  reversed every other round); each block starts its loader's workers afresh and discards its first
  ``--block-warmup`` steps, so only one variant's workers are alive at a time and none competes
  with another's for the CPU. Median ms per step (and the mean, block wall time / steps) and ratios.
* **arithmetic floor**: the backbone work of one step of each model, counted from the model itself
  (a hook on the first convolution of every ResNet in it): each call adds batch x height x width,
  three times over when gradients flow through it (forward + backward, the backward counted as two
  forwards). Floor = HCL work / baseline work; a smaller hyperbolic view (``--hyperbolic-size``)
  counts by its pixels.

Lightly: :class:`hcl_plugin.lightly.models.MoCoHCL` (``--lightly-model``: the example's models),
λ = 0.1 vs λ = 0 (the baseline: the hyperbolic branch is not computed). The Lightly examples load
the four HCL views for λ = 0 as well (``hcl_plugin.lightly.training.build_dataloader`` does not look
at λ), so the end-to-end part measures two baselines: ``baseline_4views`` (the example as it runs,
two of the four views unused) and ``baseline_2views``, the standard MoCo-v2 pipeline
(:class:`hcl_plugin.data.views.MoCoV2TwoViews`: two views of the whole image), the fair one; the
end-to-end ratio against the target is HCL / ``baseline_2views``.

MMSelfSup: the tiny configs (``mmconfigs/tiny/*_embedded.py``, backbone depth from ``--backbone``),
``HCLMoCoV2`` vs MMSelfSup's ``MoCo`` and ``HCLDenseCL`` vs ``DenseCL`` (``--mmselfsup-pairs``), each
iteration the model's ``train_step`` (data preprocessor, momentum update, forwards, losses, backward,
SGD step, queue updates). The baselines' configs already load only their two views
(``SceneObjectMultiView(hyperbolic_views=False)``). Skipped, naming what is missing, without MMSelfSup.

Targets (issue 16): compute only within 5 % of the arithmetic floor; end to end <= 1.25x with the
recommended hyperbolic view size.

    python benchmarks/bench_train_step.py --framework both --out outputs/bench_train_step
    python benchmarks/bench_train_step.py --framework lightly --backbone resnet18 --image-size 64 \\
        --batch-size 32 --steps 10 --num-workers 2 --hyperbolic-size 32

Writes ``OUT/bench_train_step.json`` and ``OUT/step_times.png`` (per-step times). The GPU check
(``benchmarks/gpu_check.py``) calls :func:`compare_step_times`, the Lightly compute-only part.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import inspect
import json
import math
import platform
import statistics
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Generator, List, Optional, Sequence, Tuple

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from hcl_plugin.utils.checks import value_checks  # noqa: E402

#: Compute only: the HCL / baseline ratio may exceed the arithmetic floor by this fraction.
FLOOR_TOLERANCE = 0.05
#: End to end: the HCL / baseline ratio target (issue 16).
END_TO_END_TARGET = 1.25
#: The recommended value-check interval (docs/numerics.md, "Host synchronisations").
VALUE_CHECK_INTERVAL = 100
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MMSELFSUP_PAIRS = {"mocov2": ("mocov2-hcl_resnet18_1xb16-coslr-300it_embedded.py", "mocov2_resnet18_1xb16-coslr-300it_embedded.py"),
                   "densecl": ("densecl-hcl_resnet18_1xb16-coslr-300it_embedded.py", "densecl_resnet18_1xb16-coslr-300it_embedded.py")}
HCL_LAMBDA = 0.1

Log = Callable[[str], None]


# ---------------------------------------------------------------- timing and counting


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` for ``bf16`` / ``fp16``; a no-op context for ``fp32``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    if device.type == "cpu" and dtype is torch.float16:
        raise ValueError("precision 'fp16' needs a CUDA device (on the CPU use 'fp32' or 'bf16')")
    return torch.autocast(device.type, dtype=dtype)


def _resnets(model: nn.Module) -> List[nn.Module]:
    """The ResNet modules of ``model`` (torchvision's and MMSelfSup's, momentum copies included)."""
    found, seen = [], set()
    for module in model.modules():
        if "ResNet" in type(module).__name__ and id(module) not in seen:
            found.append(module)
            seen.update(id(m) for m in module.modules())
    return found


class PassCounter:
    """Counts backbone passes: a forward hook on the first convolution of every ResNet in the models.

    Each call records ``(batch, height, width, backward)``; ``backward`` is true when gradients are
    enabled and the convolution's weights require them (the online backbone; a momentum encoder's
    passes are forward only). :attr:`work` weighs a call by batch x pixels, x3 with a backward pass.

    Raises:
        ValueError: a model holds no ResNet (the count would be empty).
    """

    def __init__(self, *models: nn.Module) -> None:
        self.calls: List[Tuple[int, int, int, bool]] = []
        self._convs: List[nn.Module] = []
        for model in models:
            resnets = _resnets(model)
            if not resnets:
                raise ValueError(f"PassCounter: {type(model).__name__} holds no ResNet module to count")
            for resnet in resnets:
                conv = next((m for m in resnet.modules() if isinstance(m, nn.Conv2d)), None)
                if conv is not None:
                    self._convs.append(conv)
        self._handles: List[Any] = []

    def _hook(self, module: nn.Module, inputs: Tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        x = inputs[0]
        backward = torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())
        self.calls.append((int(x.shape[0]), int(x.shape[-2]), int(x.shape[-1]), bool(backward)))

    def __enter__(self) -> "PassCounter":
        self.calls.clear()
        self._handles = [conv.register_forward_hook(self._hook) for conv in self._convs]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def work(self) -> int:
        """Sum over the calls of batch x height x width, x3 for a call with a backward pass."""
        return sum(b * h * w * (3 if backward else 1) for b, h, w, backward in self.calls)

    def summary(self) -> Dict[str, Any]:
        """Forward and backward pass counts, the input sizes, and :attr:`work`."""
        return {"forward_passes": len(self.calls), "backward_passes": sum(c[3] for c in self.calls),
                "inputs": [f"{b}x{h}x{w}{' +backward' if bw else ''}" for b, h, w, bw in self.calls],
                "work": self.work}


def arithmetic_floor(hcl: PassCounter, baseline: PassCounter) -> Dict[str, Any]:
    """``floor`` = HCL backbone work / baseline backbone work (:class:`PassCounter`), and both counts.

    Raises:
        ValueError: the baseline step ran no backbone pass.
    """
    if baseline.work == 0:
        raise ValueError("the baseline step made no backbone pass: nothing to compare the HCL step with")
    return {"floor": hcl.work / baseline.work, "hcl_passes": hcl.summary(), "baseline_passes": baseline.summary()}


def interleaved(steps_by_name: Dict[str, Callable[[], None]], steps: int, warmup: int, device: torch.device,
                log: Log, label: str) -> Dict[str, List[float]]:
    """Seconds of each step function, ``warmup`` untimed calls each, then ``steps`` timed rounds in the
    order A, B, B, A, ... (the order of ``steps_by_name`` reversed every other round)."""
    names = list(steps_by_name)
    for _ in range(warmup):
        for name in names:
            steps_by_name[name]()
    times: Dict[str, List[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for i in range(steps):
        for name in names if i % 2 == 0 else names[::-1]:
            synchronize(device)
            t0 = time.perf_counter()
            steps_by_name[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
        _progress(log, label, i + 1, steps, start)
    return times


def _progress(log: Log, label: str, done: int, total: int, start: float) -> None:
    every = max(1, total // 5)
    if done % every == 0 or done == total:
        elapsed = time.perf_counter() - start
        log(f"  {label}: {done}/{total} rounds, {elapsed:.0f} s, ~{elapsed / done * (total - done):.0f} s left")


def _ms(times: Sequence[float]) -> Dict[str, float]:
    return {"median_ms": 1e3 * statistics.median(times), "mean_ms": 1e3 * statistics.fmean(times),
            "min_ms": 1e3 * min(times)}


# ---------------------------------------------------------------- Lightly


def lightly_model(name: str, lambda_hyp: float, backbone: str, image_size: int, memory_bank_size: int,
                  device: torch.device, seed: int = 0) -> nn.Module:
    """One of the Lightly examples' models (``hcl_plugin.lightly.models.MODELS``: moco, densecl, simclr),
    in train mode on ``device``; ``memory_bank_size`` is passed to the models that have queues."""
    from dataclasses import fields

    from hcl_plugin.lightly.models import MODELS

    if name not in MODELS:
        raise ValueError(f"lightly model must be one of {sorted(MODELS)}, got {name!r}")
    cls = MODELS[name]
    kwargs: Dict[str, Any] = dict(backbone=backbone, image_size=image_size, lambda_hyp=lambda_hyp,
                                  gather_distributed=False)
    if "memory_bank_size" in {f.name for f in fields(cls.HyperParameters)}:
        kwargs["memory_bank_size"] = memory_bank_size
    torch.manual_seed(seed)
    return cls(**kwargs).to(device).train()


class LightlyStep:
    """``training_step`` (under autocast for bf16 / fp16) + backward + SGD step of a Lightly model.

    fp16 scales the loss (``torch.amp.GradScaler``), as Lightning's ``16-mixed`` does.
    """

    def __init__(self, model: nn.Module, device: torch.device, precision: str) -> None:
        self.model, self.device, self.precision = model, device, precision
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        self.steps = 0

    def __call__(self, batch: Dict[str, Any]) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*self.log.*")  # no Trainer attached: logging is a no-op
            with autocast(self.device, self.precision):
                loss = self.model.training_step(batch, self.steps)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            self.optimizer.step()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.steps += 1


def random_views(batch_size: int, image_size: int, hyperbolic_size: int, device: torch.device,
                 seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random normalised views with the keys the Lightly models read (object views at ``image_size``,
    the scene and object views at ``hyperbolic_size``)."""
    gen = torch.Generator().manual_seed(seed)
    sizes = {"object_view_1": image_size, "object_view_2": image_size, "hyperbolic_scene": hyperbolic_size,
             "hyperbolic_object": hyperbolic_size}
    return {key: torch.randn(batch_size, 3, s, s, generator=gen).to(device) for key, s in sizes.items()}


def compare_step_times(backbone: str = "resnet50", image_size: int = 224, batch_size: int = 64, steps: int = 30,
                       precision: str = "bf16", memory_bank_size: int = 65536, device: Any = "cuda",
                       log: Log = print, hyperbolic_size: Optional[int] = None, model: str = "moco",
                       warmup: int = 3, value_check_interval: int = VALUE_CHECK_INTERVAL,
                       seed: int = 0) -> Dict[str, Any]:
    """Compute-only step time of a Lightly model + HCL (λ = 0.1) vs its baseline (λ = 0), interleaved.

    One fixed batch of random views already on ``device``; ``warmup`` untimed steps each, then
    ``steps`` rounds alternating HCL, baseline, baseline, HCL, ... under
    ``value_checks(every=value_check_interval)``. The arithmetic floor comes from one counted step of
    each model (:class:`PassCounter`).

    Returns:
        ``backbone``, ``image_size``, ``hyperbolic_size``, ``batch_size``, ``precision``,
        ``memory_bank_size``, ``model``, ``steps``, ``device``, ``baseline_ms`` and ``hcl_ms``
        (medians), ``ratio``, ``floor``, ``ratio_over_floor``, ``meets_floor_target``, the pass counts
        and the per-step times (``times_ms``).

    Raises:
        ValueError: ``steps`` or ``batch_size`` below 1, an unknown ``precision`` or ``model``.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be >= 1, got steps={steps}, batch_size={batch_size}")
    device = torch.device(device)
    hyperbolic_size = hyperbolic_size or image_size
    autocast(device, precision)  # validates the precision for the device
    with value_checks(every=value_check_interval):
        models = {"hcl": lightly_model(model, HCL_LAMBDA, backbone, image_size, memory_bank_size, device, seed),
                  "baseline": lightly_model(model, 0.0, backbone, image_size, memory_bank_size, device, seed)}
        runners = {name: LightlyStep(m, device, precision) for name, m in models.items()}
        batch = random_views(batch_size, image_size, hyperbolic_size, device, seed)
        counters = {name: PassCounter(m) for name, m in models.items()}
        for name, runner in runners.items():
            with counters[name]:
                runner(batch)
        floor = arithmetic_floor(counters["hcl"], counters["baseline"])
        log(f"  compute only, lightly {model} {backbone} {image_size} px (hyperbolic {hyperbolic_size} px), "
            f"batch {batch_size}, {precision}: arithmetic floor {floor['floor']:.3f}x")
        times = interleaved({name: (lambda r=r: r(batch)) for name, r in runners.items()}, steps, warmup, device,
                            log, "compute only")
    return {"framework": "lightly", "model": model, "backbone": backbone, "image_size": image_size,
            "hyperbolic_size": hyperbolic_size, "batch_size": batch_size, "precision": precision,
            "memory_bank_size": memory_bank_size, "steps": steps, "warmup": warmup, "device": str(device),
            "value_check_interval": value_check_interval, **compute_summary(times, floor, log)}


def compute_summary(times: Dict[str, List[float]], floor: Dict[str, Any], log: Log) -> Dict[str, Any]:
    """Medians (``hcl_ms``, ``baseline_ms``), ``ratio``, the floor and ``ratio_over_floor``, whether the
    ratio is within :data:`FLOOR_TOLERANCE` of the floor, and the per-step times in ms."""
    hcl, base = _ms(times["hcl"]), _ms(times["baseline"])
    ratio = hcl["median_ms"] / base["median_ms"]
    log(f"  compute only: HCL {hcl['median_ms']:.1f} ms, baseline {base['median_ms']:.1f} ms, ratio {ratio:.3f}x "
        f"(floor {floor['floor']:.3f}x)")
    return {"hcl_ms": hcl["median_ms"], "baseline_ms": base["median_ms"], "hcl": hcl, "baseline": base,
            "ratio": ratio, **floor, "ratio_over_floor": ratio / floor["floor"],
            "meets_floor_target": ratio <= floor["floor"] * (1 + FLOOR_TOLERANCE),
            "times_ms": {name: [1e3 * t for t in ts] for name, ts in times.items()}}


def _supports(fn: Callable, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def lightly_datasets(embedded_dir: Path, image_size: int, hyperbolic_size: int,
                     log: Log) -> Dict[str, torch.utils.data.Dataset]:
    """The HCL views data set of the examples (``hcl_plugin.lightly.scene_dataset``, the same one the
    baseline loads) and the MoCo-v2 two-view data set of the same images."""
    from hcl_plugin.data.image_io import load_rgb_image
    from hcl_plugin.data.views import HCLViews, MoCoV2TwoViews
    from hcl_plugin.lightly.data import ensure_embedded_dataset, read_scenes, scene_dataset

    root = ensure_embedded_dataset(embedded_dir)
    images, annotations = root / "images", root / "annotations_train.json"
    extra = {}
    if hyperbolic_size != image_size and _supports(scene_dataset, "hyperbolic_size"):
        extra["hyperbolic_size"] = hyperbolic_size
    hcl = scene_dataset(images, annotations, input_size=image_size, min_box_size=24, expand_to=96, **extra)
    if hyperbolic_size != image_size and not extra:
        log(f"  note: scene_dataset has no hyperbolic_size yet; the HCL views are built with "
            f"HCLViews(euclidean_size={image_size}, hyperbolic_size={hyperbolic_size}) directly")
        hcl.views = HCLViews(hcl.views.sampler, euclidean_size=image_size, hyperbolic_size=hyperbolic_size)

    class TwoViews(torch.utils.data.Dataset):
        """MoCo-v2's two views of each whole image, under the keys the models read."""

        def __init__(self) -> None:
            self.paths = [record.path for record in read_scenes(images, annotations).records]
            self.views = MoCoV2TwoViews(size=image_size)

        def __len__(self) -> int:
            return len(self.paths)

        def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
            v1, v2 = self.views(load_rgb_image(self.paths[index]))
            return {"object_view_1": v1, "object_view_2": v2}

    return {"hcl": hcl, "baseline_2views": TwoViews()}


def _to_device(batch: Dict[str, Any], device: torch.device) -> Dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


Steps = Generator[Callable[[], None], None, None]


def end_to_end_blocks(step_by_name: Dict[str, Callable[[], Steps]], steps: int, block: int, block_warmup: int,
                      device: torch.device, log: Log, label: str) -> Dict[str, List[float]]:
    """Interleaved blocks of end-to-end steps.

    ``step_by_name[name]()`` starts a fresh loader (its workers) and returns an iterator of step
    callables (each fetches a batch and trains on it). Per block: ``block_warmup`` untimed steps,
    then up to ``block`` timed ones; rounds run the variants in order, reversed every other round,
    until each has ``steps`` timed steps.
    """
    names = list(step_by_name)
    times: Dict[str, List[float]] = {name: [] for name in names}
    rounds = math.ceil(steps / block)
    start = time.perf_counter()
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            todo = min(block, steps - len(times[name]))
            iterator = step_by_name[name]()
            for i, step in enumerate(iterator):
                synchronize(device)
                t0 = time.perf_counter()
                step()
                synchronize(device)
                if i >= block_warmup:
                    times[name].append(time.perf_counter() - t0)
                if i + 1 >= block_warmup + todo:
                    break
            else:
                raise RuntimeError(f"the {name!r} loader ran out of batches: lower --block-steps or --batch-size")
            iterator.close()  # stops this block's workers before the next variant starts its own
        _progress(log, label, r + 1, rounds, start)
    return times


def _steps_from(loader: torch.utils.data.DataLoader, run: Callable[[Any], None]) -> Steps:
    """Step callables, each running ``run`` on the next batch of a fresh iterator of ``loader``; closing
    the generator stops the loader's workers."""
    iterator = iter(loader)
    try:
        while True:
            def step() -> None:
                run(next(iterator))
            yield step
    finally:
        shutdown = getattr(iterator, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def lightly_benchmark(args: argparse.Namespace, device: torch.device, log: Log) -> Dict[str, Any]:
    """The Lightly part: compute only (:func:`compare_step_times`) and end to end, with the floor."""
    from torch.utils.data import DataLoader, default_collate

    result: Dict[str, Any] = {"model": args.lightly_model, "backbone": args.backbone}
    if "compute" in args.parts:
        log(f"[lightly] {args.lightly_model}: compute only")
        result["compute"] = compare_step_times(
            backbone=args.backbone, image_size=args.image_size, batch_size=args.batch_size, steps=args.steps,
            precision=args.precision, memory_bank_size=args.memory_bank_size, device=device, log=log,
            hyperbolic_size=args.hyperbolic_size, model=args.lightly_model, warmup=args.warmup,
            value_check_interval=args.value_check_interval, seed=args.seed)
    if "end-to-end" not in args.parts:
        return result
    log(f"[lightly] {args.lightly_model}: end to end, {args.num_workers} worker(s)")
    datasets = lightly_datasets(args.embedded_dir, args.image_size, args.hyperbolic_size, log)
    with value_checks(every=args.value_check_interval):
        models = {"hcl": lightly_model(args.lightly_model, HCL_LAMBDA, args.backbone, args.image_size,
                                       args.memory_bank_size, device, args.seed),
                  "baseline": lightly_model(args.lightly_model, 0.0, args.backbone, args.image_size,
                                            args.memory_bank_size, device, args.seed)}
        runners = {name: LightlyStep(m, device, args.precision) for name, m in models.items()}
        if "compute" not in result:  # the floor of these models and view sizes
            batch = random_views(args.batch_size, args.image_size, args.hyperbolic_size, device, args.seed)
            counters = {name: PassCounter(m) for name, m in models.items()}
            for name, runner in runners.items():
                with counters[name]:
                    runner(batch)
            result["compute"] = arithmetic_floor(counters["hcl"], counters["baseline"])
        generator = torch.Generator().manual_seed(args.seed)

        def loader(dataset: torch.utils.data.Dataset) -> DataLoader:
            return DataLoader(dataset, batch_size=args.batch_size, shuffle=True, drop_last=True,
                              num_workers=args.num_workers, collate_fn=default_collate, generator=generator,
                              pin_memory=device.type == "cuda", persistent_workers=False)

        variants = {  # the 4-view baseline is the example's own loader: the HCL data set
            "hcl": (datasets["hcl"], runners["hcl"]),
            "baseline_4views": (datasets["hcl"], runners["baseline"]),
            "baseline_2views": (datasets["baseline_2views"], runners["baseline"]),
        }
        steps = {name: (lambda d=d, r=r: _steps_from(loader(d), lambda b, r=r: r(_to_device(b, device))))
                 for name, (d, r) in variants.items()}
        times = end_to_end_blocks(steps, args.steps, args.block_steps, args.block_warmup, device, log, "end to end")
    result["end_to_end"] = _end_to_end_summary(times, "baseline_2views", args)
    result["end_to_end"]["note"] = ("hcl_plugin.lightly.training.build_dataloader loads the four HCL views for "
                                    "lambda_hyp = 0 too (baseline_4views); baseline_2views is MoCo-v2's two-view "
                                    "pipeline (MoCoV2TwoViews), the fair baseline of the target")
    return result


def _end_to_end_summary(times: Dict[str, List[float]], fair: str, args: argparse.Namespace) -> Dict[str, Any]:
    summary: Dict[str, Any] = {name: _ms(ts) for name, ts in times.items()}
    hcl = summary["hcl"]
    for name in times:
        if name != "hcl":
            summary[f"ratio_vs_{name}"] = hcl["median_ms"] / summary[name]["median_ms"]
            summary[f"mean_ratio_vs_{name}"] = hcl["mean_ms"] / summary[name]["mean_ms"]
    summary["ratio"] = summary[f"ratio_vs_{fair}"]
    summary["fair_baseline"] = fair
    summary["meets_target"] = summary["ratio"] <= END_TO_END_TARGET
    summary.update(num_workers=args.num_workers, block_steps=args.block_steps, block_warmup=args.block_warmup,
                   times_ms={name: [1e3 * t for t in ts] for name, ts in times.items()})
    return summary


# ---------------------------------------------------------------- MMSelfSup


def mmselfsup_missing() -> Optional[str]:
    """``None`` when MMSelfSup, MMEngine and MMCV import; otherwise what is missing and why."""
    missing = []
    # MMEngine imports pkg_resources (deprecated): the warning would repeat for every config loaded
    warnings.filterwarnings("ignore", message=".*pkg_resources is deprecated.*")
    for module in ("mmengine", "mmcv", "mmselfsup"):
        try:
            __import__(module)
        except Exception as error:  # an MMCV built without its ops fails with ImportError / OSError
            missing.append(f"{module} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})")
    if missing:
        return ("MMSelfSup part skipped: cannot import " + ", ".join(missing)
                + "; install the extras: pip install -e '.[mmselfsup]' (make venv builds MMCV)")
    return None


def mmselfsup_config(name: str, args: argparse.Namespace, embedded: Path) -> Any:
    """A tiny config (``mmconfigs/tiny/NAME``) with the backbone depth, view sizes, batch size and
    workers of ``args``."""
    from mmengine.config import Config

    if not args.backbone.startswith("resnet"):
        raise ValueError(f"--backbone must be a ResNet for MMSelfSup (resnet18/34/50), got {args.backbone!r}")
    depth = int(args.backbone[len("resnet"):])
    cfg = Config.fromfile(str(ROOT / "mmconfigs" / "tiny" / name))
    cfg.model.backbone.depth = depth
    width = 512 if depth < 50 else 2048
    for key in ("neck", "hyp_neck"):
        if key in cfg.model:
            cfg.model[key].update(in_channels=width, hid_channels=width)
    cfg.model.queue_len = args.memory_bank_size
    loader = cfg.train_dataloader
    loader.update(batch_size=args.batch_size, num_workers=args.num_workers, persistent_workers=False)
    loader.dataset.data_root = str(embedded.resolve()) + "/"
    multiview = next(step for step in loader.dataset.pipeline if step["type"] == "SceneObjectMultiView")
    multiview.object_transforms[0]["size"] = args.image_size
    if multiview.get("hyperbolic_views", True):
        if "hyperbolic_size" in multiview:  # SceneObjectMultiView's own option
            multiview["hyperbolic_size"] = args.hyperbolic_size
        else:  # an older config: the first scene step sets the size
            multiview.scene_transforms[0]["scale"] = (args.hyperbolic_size, args.hyperbolic_size)
    return cfg


class MMSelfSupStep:
    """``model.train_step(batch, optim_wrapper)`` (AMP optimiser wrapper on CUDA for bf16 / fp16,
    autocast around it on the CPU for bf16)."""

    def __init__(self, cfg: Any, device: torch.device, precision: str, seed: int) -> None:
        from mmengine.optim import build_optim_wrapper
        from mmselfsup.registry import MODELS

        torch.manual_seed(seed)
        self.model = MODELS.build(cfg.model).to(device)
        self.model.init_weights()
        self.model.train()
        optim = dict(optimizer=dict(type="SGD", lr=0.03, momentum=0.9, weight_decay=1e-4))
        if precision != "fp32" and device.type == "cuda":
            optim.update(type="AmpOptimWrapper", dtype="bfloat16" if precision == "bf16" else "float16")
        self.optim_wrapper = build_optim_wrapper(self.model, optim)
        self.context = (lambda: autocast(device, precision)) if device.type == "cpu" else contextlib.nullcontext
        autocast(device, precision)  # validates the precision for the device

    def __call__(self, batch: Dict[str, Any]) -> None:
        with self.context():
            self.model.train_step(batch, self.optim_wrapper)


def mmselfsup_benchmark(args: argparse.Namespace, device: torch.device, log: Log) -> Dict[str, Any]:
    """The MMSelfSup part: per pair, compute only and end to end, with the floor."""
    import numpy as np

    import hcl_plugin.mmselfsup  # noqa: F401  (registers the HCL modules)
    from mmengine.dataset import default_collate
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmselfsup.registry import DATASETS

    from hcl_plugin.lightly.data import ensure_embedded_dataset

    embedded = ensure_embedded_dataset(args.embedded_dir)
    init_default_scope("mmselfsup")
    MMLogger.get_instance("bench_train_step", log_level="WARNING")  # the current logger: no init_weights listing
    results: Dict[str, Any] = {"backbone": args.backbone}
    for pair in args.mmselfsup_pairs:
        cfgs = {role: mmselfsup_config(name, args, embedded) for role, name in zip(("hcl", "baseline"),
                                                                                     MMSELFSUP_PAIRS[pair])}
        with warnings.catch_warnings(), value_checks(every=args.value_check_interval):
            warnings.simplefilter("ignore")
            runners = {role: MMSelfSupStep(cfg, device, args.precision, args.seed) for role, cfg in cfgs.items()}
            entry: Dict[str, Any] = dict(zip(("hcl_config", "baseline_config"), MMSELFSUP_PAIRS[pair]))
            # one fixed batch per model, from the config's own pipeline, inputs already on the device
            batches = {}
            for role, cfg in cfgs.items():
                dataset = DATASETS.build(cfg.train_dataloader.dataset)
                torch.manual_seed(args.seed)
                np.random.seed(args.seed)
                batch = default_collate([dataset[i] for i in range(args.batch_size)])
                batch["inputs"] = [view.to(device) for view in batch["inputs"]]
                batches[role] = batch
            counters = {role: PassCounter(r.model) for role, r in runners.items()}
            for role, runner in runners.items():
                with counters[role]:
                    runner(copy.copy(batches[role]))
            floor = arithmetic_floor(counters["hcl"], counters["baseline"])
            log(f"[mmselfsup] {pair}: arithmetic floor {floor['floor']:.3f}x")
            if "compute" in args.parts:
                log(f"[mmselfsup] {pair}: compute only")
                steps = {role: (lambda r=r, b=batches[role]: r(copy.copy(b))) for role, r in runners.items()}
                times = interleaved(steps, args.steps, args.warmup, device, log, "compute only")
                entry["compute"] = compute_summary(times, floor, log)
            else:
                entry["compute"] = {**floor}
            if "end-to-end" in args.parts:
                log(f"[mmselfsup] {pair}: end to end, {args.num_workers} worker(s)")

                def fresh(role: str) -> Steps:
                    loader = Runner.build_dataloader(cfgs[role].train_dataloader, seed=args.seed)
                    return _steps_from(loader, runners[role])

                times = end_to_end_blocks({"hcl": lambda: fresh("hcl"), "baseline": lambda: fresh("baseline")},
                                          args.steps, args.block_steps, args.block_warmup, device, log, "end to end")
                entry["end_to_end"] = _end_to_end_summary(times, "baseline", args)
                entry["end_to_end"]["note"] = ("the baseline config loads only its two object views "
                                               "(SceneObjectMultiView(hyperbolic_views=False))")
        results[pair] = entry
    return results


# ---------------------------------------------------------------- report


def rows(report: Dict[str, Any]) -> List[Dict[str, Any]]:
    """One row per (framework, model, measurement): HCL ms, baseline ms, ratio, floor, target verdict."""
    out = []
    frameworks = report["frameworks"]
    entries = []
    if isinstance(frameworks.get("lightly"), dict) and "error" not in frameworks["lightly"]:
        entries.append((f"lightly {frameworks['lightly']['model']}", frameworks["lightly"]))
    mm = frameworks.get("mmselfsup")
    if isinstance(mm, dict) and "error" not in mm and "skipped" not in mm:
        entries += [(f"mmselfsup {pair}", mm[pair]) for pair in MMSELFSUP_PAIRS if pair in mm]
    for label, entry in entries:
        compute = entry.get("compute") or {}
        floor = compute.get("floor")
        if "ratio" in compute:
            out.append({"what": f"{label}, compute only", "hcl_ms": compute["hcl_ms"],
                        "baseline_ms": compute["baseline_ms"], "ratio": compute["ratio"], "floor": floor,
                        "target": f"<= floor x {1 + FLOOR_TOLERANCE:.2f} = {floor * (1 + FLOOR_TOLERANCE):.3f}x",
                        "met": compute["meets_floor_target"]})
        e2e = entry.get("end_to_end")
        if e2e:
            for name in [k for k in e2e if k.startswith("ratio_vs_")]:
                base = name[len("ratio_vs_"):]
                fair = base == e2e["fair_baseline"]
                out.append({"what": f"{label}, end to end vs {base}", "hcl_ms": e2e["hcl"]["median_ms"],
                            "baseline_ms": e2e[base]["median_ms"], "ratio": e2e[name], "floor": floor,
                            "target": f"<= {END_TO_END_TARGET}x" if fair else "(not the target's baseline)",
                            "met": e2e["meets_target"] if fair else None})
    return out


def table(report: Dict[str, Any]) -> str:
    """The rows as a Markdown table."""
    lines = ["| measurement | HCL ms/step | baseline ms/step | ratio | arithmetic floor | target | met |",
             "|---|---|---|---|---|---|---|"]
    for row in rows(report):
        met = "-" if row["met"] is None else ("yes" if row["met"] else "**no**")
        floor = "-" if row["floor"] is None else f"{row['floor']:.3f}x"
        lines.append(f"| {row['what']} | {row['hcl_ms']:.1f} | {row['baseline_ms']:.1f} | {row['ratio']:.3f}x | "
                     f"{floor} | {row['target']} | {met} |")
    return "\n".join(lines)


def plot(report: Dict[str, Any], path: Path) -> Optional[Path]:
    """Per-step times of every measurement (one panel each) as a PNG; ``None`` without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    panels = []
    for framework, value in report["frameworks"].items():
        if not isinstance(value, dict):
            continue
        entries = [(framework, value)] if framework == "lightly" else [
            (f"{framework} {pair}", value[pair]) for pair in MMSELFSUP_PAIRS if isinstance(value.get(pair), dict)]
        for label, entry in entries:
            for part in ("compute", "end_to_end"):
                times = (entry.get(part) or {}).get("times_ms")
                if times:
                    panels.append((f"{label}: {part.replace('_', ' ')}", times))
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 2.6 * len(panels)), squeeze=False)
    for ax, (title, times) in zip(axes[:, 0], panels):
        for name, ms in times.items():
            ax.plot(range(1, len(ms) + 1), ms, marker="o", ms=3, label=f"{name} (median {statistics.median(ms):.0f})")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("timed step")
        ax.set_ylabel("ms")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--framework", default="both", choices=["lightly", "mmselfsup", "both"],
                        help="which framework's HCL step to time against its baseline")
    parser.add_argument("--parts", nargs="+", default=["compute", "end-to-end"], choices=["compute", "end-to-end"],
                        help="compute only (one batch on the device) and/or end to end (the real DataLoader)")
    parser.add_argument("--lightly-model", default="moco", choices=["moco", "densecl", "simclr"],
                        help="the Lightly example's model")
    parser.add_argument("--mmselfsup-pairs", nargs="+", default=["mocov2", "densecl"], choices=sorted(MMSELFSUP_PAIRS),
                        help="MMSelfSup algorithm pairs (HCL vs baseline tiny configs)")
    parser.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet34", "resnet50"],
                        help="torchvision ResNet of both models")
    parser.add_argument("--image-size", type=int, default=64, help="side of the object (Euclidean) views")
    parser.add_argument("--hyperbolic-size", type=int, default=None,
                        help="side of the scene and object views of the hyperbolic branch (default: --image-size)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step")
    parser.add_argument("--memory-bank-size", type=int, default=4096, help="queue length of both models")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model and part")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model before the compute-only part")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers of the end-to-end part")
    parser.add_argument("--block-steps", type=int, default=5, help="timed end-to-end steps per interleaved block")
    parser.add_argument("--block-warmup", type=int, default=2,
                        help="untimed steps at the start of each end-to-end block (workers starting)")
    parser.add_argument("--precision", default="fp32", choices=sorted(PRECISIONS),
                        help="autocast dtype (fp16 on CUDA only)")
    parser.add_argument("--value-check-interval", type=int, default=VALUE_CHECK_INTERVAL,
                        help="NaN / in-ball checks on every N-th call (docs/numerics.md)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="where the steps run (default: cuda when present)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads of the main process (on a CPU shared with other jobs, 1 gives "
                             "steadier times)")
    parser.add_argument("--embedded-dir", type=Path, default=ROOT / "data" / "embedded",
                        help="the embedded scene set (built there when missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the models and the data order")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "bench_train_step",
                        help="folder for bench_train_step.json and step_times.png")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Run the benchmark described by ``argv``; print the table, write the JSON and the plot; return the report."""
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    for name in ("image_size", "batch_size", "steps", "block_steps"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.hyperbolic_size is not None and args.hyperbolic_size < 1:
        parser.error(f"--hyperbolic-size must be >= 1, got {args.hyperbolic_size}")
    args.hyperbolic_size = args.hyperbolic_size or args.image_size
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is present (use --device cpu)")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    try:
        autocast(device, args.precision)
    except ValueError as error:
        parser.error(str(error))
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

    cpu_name = platform.processor() or platform.machine()
    report: Dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name,
        "torch_threads": torch.get_num_threads(), "targets": {
            "compute_only": f"ratio <= arithmetic floor x {1 + FLOOR_TOLERANCE}",
            "end_to_end": f"ratio <= {END_TO_END_TARGET} (recommended hyperbolic view size)"},
        "frameworks": {},
    }
    frameworks = ["lightly", "mmselfsup"] if args.framework == "both" else [args.framework]
    for framework in frameworks:
        if framework == "mmselfsup":
            missing = mmselfsup_missing()
            if missing:
                log(missing)
                report["frameworks"]["mmselfsup"] = {"skipped": missing}
                continue
        run = lightly_benchmark if framework == "lightly" else mmselfsup_benchmark
        try:
            report["frameworks"][framework] = run(args, device, log)
        except Exception as error:  # recorded; the other framework still runs and the report is written
            log(traceback.format_exc())
            report["frameworks"][framework] = {"error": f"{type(error).__name__}: {error}"}
    report["seconds"] = time.perf_counter() - started
    report["table"] = rows(report)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / "bench_train_step.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    png = plot(report, args.out / "step_times.png")
    print(f"\n{args.backbone}, {args.image_size} px views (hyperbolic {args.hyperbolic_size} px), batch "
          f"{args.batch_size}, queue {args.memory_bank_size}, {args.precision}, {report['device_name']}, "
          f"{args.num_workers} worker(s):\n")
    print(table(report))
    for framework, value in report["frameworks"].items():
        if "error" in value:
            print(f"\n{framework} FAILED: {value['error']}")
    print("\nArithmetic floor = HCL backbone work / baseline backbone work per step (batch x pixels, "
          "x3 with a backward pass), counted from the models.")
    print(f"\nWrote {json_path}" + (f" and {png}" if png else " (no plot: nothing was timed, or matplotlib is missing)")
          + f" in {report['seconds']:.0f} s.\nNext: rerun on a GPU with the recommended hyperbolic view size, e.g.\n"
          f"  python benchmarks/bench_train_step.py --device cuda --backbone resnet50 --image-size 224 "
          f"--hyperbolic-size 112 --batch-size 64 --precision bf16 --num-workers 8 --out {args.out}\n"
          f"and copy the table into docs/benchmarks.md (section on bench_train_step.py).")
    return report


if __name__ == "__main__":
    sys.exit(1 if any("error" in value for value in main()["frameworks"].values()) else 0)
