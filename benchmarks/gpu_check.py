"""One call that gathers the accelerator evidence: loss speed and memory, numerics tests, a training step.

Run through ``benchmarks/gpu_check.sh`` (it installs the carried wheels first); directly:

    python benchmarks/gpu_check.py --device cuda --out outputs/gpu_check
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu_check   # the same code, in about a minute

Three parts, each timed and each recorded even when it fails (``"error"`` says why):

1. **Losses**: forward + backward of :class:`~hcl_plugin.losses.HyperbolicInfoNCELoss` (on
   ``expmap0`` of the features) against :class:`~hcl_plugin.losses.InfoNCELoss` and against a
   ``torch.compile``\\ d InfoNCE, for fp32 and bf16 / fp16 autocast, queue sizes K and the in-batch
   2B-way setting; medians of interleaved repeats and peak device memory of one call.
2. **Numerics tests**: ``pytest -m cuda`` on the test files that hold tests marked ``cuda``
   (tests/test_cuda_numerics.py and others) on the device; on the CPU with ``HCL_TEST_DEVICE=cpu``.
3. **Training step**: MoCo-v2 + HCL against MoCo-v2 (λ = 0, the hyperbolic branch not computed),
   the Lightly model of ``lightly_examples/moco_hcl.py``, steps interleaved (HCL, baseline, baseline,
   HCL, ...), compute only (random views already on the device): ratio of median step times and the
   arithmetic floor it is held to (backbone work per step, counted from the models);
   :func:`compare_step_times` of ``benchmarks/bench_train_step.py``.

Writes ``OUT/gpu_check.json`` (every field present; ``null`` where a part does not apply) and
``OUT/gpu_check.md`` (the same as tables).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from hcl_plugin.geometry import expmap0  # noqa: E402
from hcl_plugin.losses import HyperbolicInfoNCELoss, InfoNCELoss  # noqa: E402

C, TAU, DIM = 0.05, 0.2, 128
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Settings:
    """What each part runs: the full check on a GPU, a one-minute version with ``--quick``."""

    device: str
    batches: List[int]
    ks: List[int]
    in_batch: int  # B of the in-batch setting (2B views)
    dtypes: List[str]
    repeats: int
    compile_backend: Optional[str]
    step_backbone: str
    step_image_size: int
    step_batch: int
    step_steps: int
    step_precision: str
    step_queue: int
    step_warmup: int

    @classmethod
    def for_run(cls, device: str, quick: bool) -> "Settings":
        if quick:
            return cls(device, batches=[32], ks=[256, 1024], in_batch=32, dtypes=["fp32", "bf16", "fp16"], repeats=5,
                       compile_backend="eager" if device == "cpu" else "inductor", step_backbone="resnet18",
                       step_image_size=32, step_batch=8, step_steps=4, step_precision="fp32", step_queue=256, step_warmup=1)
        return cls(device, batches=[256, 1024], ks=[4096, 16384, 65536, 262144], in_batch=4096,
                   dtypes=["fp32", "bf16", "fp16"], repeats=20, compile_backend="inductor", step_backbone="resnet50",
                   step_image_size=224, step_batch=64, step_steps=30, step_precision="bf16", step_queue=65536, step_warmup=3)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def peak_mib(fn: Callable[[], None], device: torch.device) -> Optional[float]:
    """Rise of the device's peak allocated memory over one call (None on the CPU: see bench_loss.py)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def loss_cases(batch: int, k: Optional[int], dtype: Optional[torch.dtype], device: torch.device,
               compiled: Optional[Callable]) -> Dict[str, Callable[[], None]]:
    """Forward + backward closures of the three losses on one set of inputs (features in ``dtype``)."""
    gen = torch.Generator().manual_seed(batch + (k or 0))
    feats = [torch.randn(batch, DIM, generator=gen).to(device) for _ in range(2)]
    queue = torch.randn(k, DIM, generator=gen).to(device) if k else None
    hyp_queue = expmap0(queue, C) if k else None
    euclidean, hyperbolic = InfoNCELoss(TAU), HyperbolicInfoNCELoss(TAU, C)
    context = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype is not None else torch.enable_grad

    def inputs():
        q, p = (f.clone().requires_grad_() for f in feats)
        return (q, p) if dtype is None else (q.to(dtype), p.to(dtype))

    def run_euclidean() -> None:
        with context():
            euclidean(*inputs(), queue).backward()

    def run_hyperbolic() -> None:
        with context():
            q, p = inputs()
            hyperbolic(expmap0(q, C), expmap0(p, C), hyp_queue).backward()

    cases = {"euclidean": run_euclidean, "hyperbolic": run_hyperbolic}
    if compiled is not None:
        def run_compiled() -> None:
            with context():
                compiled(*inputs(), queue).backward()

        cases["euclidean_compiled"] = run_compiled
    return cases


def measure(cases: Dict[str, Callable[[], None]], repeats: int, device: torch.device) -> Dict[str, Dict[str, Optional[float]]]:
    """Median time of interleaved repeats (order reversed every other round) and one call's peak memory."""
    for fn in cases.values():
        fn(), fn()
    times: Dict[str, List[float]] = {name: [] for name in cases}
    names = list(cases)
    for rep in range(repeats):
        for name in names if rep % 2 == 0 else names[::-1]:
            times[name].append(timed(cases[name], device))
    return {name: {"median_ms": 1e3 * statistics.median(t), "min_ms": 1e3 * min(t), "peak_mib": peak_mib(cases[name], device)}
            for name, t in times.items()}


def loss_part(settings: Settings, device: torch.device, log: Callable[[str], None]) -> List[dict]:
    compiled = None
    if settings.compile_backend is not None:
        compiled = torch.compile(InfoNCELoss(TAU), backend=settings.compile_backend, dynamic=True)
    rows = []
    grid = [(b, k) for b in settings.batches for k in settings.ks] + [(settings.in_batch, None)]
    for dtype_name in settings.dtypes:
        for batch, k in grid:
            setting = f"queue B={batch} K={k}" if k else f"in-batch 2B={2 * batch}"
            row = {"dtype": dtype_name, "setting": setting, "batch": batch, "k": k, "error": None}
            try:
                res = measure(loss_cases(batch, k, DTYPES[dtype_name], device, compiled), settings.repeats, device)
                row.update(res)
                row["ratio_vs_euclidean"] = res["hyperbolic"]["median_ms"] / res["euclidean"]["median_ms"]
                row["ratio_vs_compiled"] = (res["hyperbolic"]["median_ms"] / res["euclidean_compiled"]["median_ms"]
                                            if "euclidean_compiled" in res else None)
                log(f"  loss {dtype_name:4s} {setting:24s} hyp/euc {row['ratio_vs_euclidean']:.2f}x"
                    + (f"  hyp/compiled {row['ratio_vs_compiled']:.2f}x" if row["ratio_vs_compiled"] else ""))
            except Exception as error:  # recorded, and the next setting runs
                row["error"] = f"{type(error).__name__}: {error}"
                log(f"  loss {dtype_name} {setting}: {row['error']}")
            rows.append(row)
    return rows


def tests_part(device: torch.device, out: Path, log: Callable[[str], None]) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if device.type == "cpu":
        env["HCL_TEST_DEVICE"] = "cpu"
    report = out / "cuda_tests.xml"
    # only the files that hold cuda tests: the others may import frameworks this machine lacks (MMCV)
    files = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").glob("test_*.py")
                   if "mark.cuda" in path.read_text())
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={report}",
               *files]
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    log(f"  tests: {summary}")
    return {"command": " ".join(command), "returncode": proc.returncode, "summary": summary,
            "seconds": time.perf_counter() - start, "junit_xml": report.name,
            "output_tail": (proc.stdout + proc.stderr)[-4000:]}


def step_part(settings: Settings, device: torch.device, log: Callable[[str], None]) -> dict:
    """MoCo-v2 + HCL vs MoCo-v2 step time (the Lightly model), steps interleaved, compute only, and the floor."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_train_step import compare_step_times  # imported late: needs Lightly

    result = compare_step_times(
        backbone=settings.step_backbone, image_size=settings.step_image_size, batch_size=settings.step_batch,
        steps=settings.step_steps, precision=settings.step_precision, memory_bank_size=settings.step_queue,
        device=device, log=log, warmup=settings.step_warmup,
    )
    return result


def run_part(name: str, fn: Callable[[], object], log: Callable[[str], None]) -> dict:
    log(f"[{name}]")
    start = time.perf_counter()
    try:
        value, error = fn(), None
    except Exception as exc:
        value, error = None, f"{type(exc).__name__}: {exc}"
        log(traceback.format_exc())
    return {"seconds": time.perf_counter() - start, "error": error, "result": value}


def markdown(report: dict) -> str:
    lines = [f"# GPU check ({report['device_name']})", "",
             f"torch {report['torch']}, {report['device']}, quick={report['quick']}", ""]
    losses = report["losses"]
    lines += ["## Losses (forward + backward, median ms)", ""]
    if losses["error"]:
        lines.append(f"failed: {losses['error']}")
    else:
        lines += ["| dtype | setting | Euclidean | compiled Euclidean | hyperbolic | hyp / euc | hyp / compiled | peak MiB euc / hyp |",
                  "|---|---|---|---|---|---|---|---|"]
        for row in losses["result"]:
            if row["error"]:
                lines.append(f"| {row['dtype']} | {row['setting']} | failed: {row['error']} |||||| ")
                continue
            comp = row.get("euclidean_compiled")
            euc, hyp = row["euclidean"], row["hyperbolic"]
            compiled_ms = f"{comp['median_ms']:.2f}" if comp else "-"
            vs_compiled = "-" if row["ratio_vs_compiled"] is None else f"{row['ratio_vs_compiled']:.2f}x"
            peak = "-" if euc["peak_mib"] is None else f"{euc['peak_mib']:.0f} / {hyp['peak_mib']:.0f}"
            lines.append(f"| {row['dtype']} | {row['setting']} | {euc['median_ms']:.2f} | {compiled_ms} | "
                         f"{hyp['median_ms']:.2f} | {row['ratio_vs_euclidean']:.2f}x | {vs_compiled} | {peak} |")
    tests = report["tests"]
    lines += ["", "## Numerics tests", "", f"`{tests['result']['summary'] if tests['result'] else tests['error']}`"]
    step = report["step"]
    lines += ["", "## Training step (MoCo-v2 + HCL vs MoCo-v2)", ""]
    if step["error"]:
        lines.append(f"failed: {step['error']}")
    else:
        s = step["result"]
        lines.append(f"{s['backbone']}, {s['image_size']} px, batch {s['batch_size']}, {s['precision']}: "
                     f"MoCo-v2 {s['baseline_ms']:.1f} ms, MoCo-v2 + HCL {s['hcl_ms']:.1f} ms, ratio {s['ratio']:.3f}x "
                     f"(arithmetic floor {s['floor']:.2f}x, ratio / floor {s['ratio_over_floor']:.3f}; "
                     f"value checks every {s['value_check_interval']} calls)")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="where to run every part")
    parser.add_argument("--quick", action="store_true", help="small sizes: the same code in about a minute")
    parser.add_argument("--out", type=Path, default=Path("outputs/gpu_check"), help="folder for gpu_check.json/.md")
    parser.add_argument("--parts", nargs="+", default=["losses", "tests", "step"], choices=["losses", "tests", "step"],
                        help="loss benchmark, cuda-marked numerics tests, training-step ratio")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is present (use --device cpu --quick to check the script)")
    device = torch.device(args.device)
    settings = Settings.for_run(args.device, args.quick)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f}s] {message}", flush=True)

    skipped = {"seconds": 0.0, "error": "not run (--parts)", "result": None}
    report = {
        "device": args.device, "quick": args.quick, "settings": asdict(settings),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__, "python": platform.python_version(),
        "losses": run_part("losses", lambda: loss_part(settings, device, log), log) if "losses" in args.parts else skipped,
        "tests": run_part("tests", lambda: tests_part(device, args.out, log), log) if "tests" in args.parts else skipped,
        "step": run_part("step", lambda: step_part(settings, device, log), log) if "step" in args.parts else skipped,
    }
    report["seconds"] = time.perf_counter() - started
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    (args.out / "gpu_check.md").write_text(markdown(report))
    failed = [name for name in ("losses", "tests", "step") if report[name]["error"] and name in args.parts]
    tests_failed = report["tests"]["result"] is not None and report["tests"]["result"]["returncode"] not in (0, 5)
    print(f"\nWrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'} in {report['seconds']:.0f} s."
          + (f" Failed parts: {', '.join(failed)}." if failed else "")
          + (" Some numerics tests failed: see cuda_tests.xml." if tests_failed else "")
          + "\nNext: copy the tables of gpu_check.md into docs/benchmarks.md (a GPU section).")
    return 1 if failed or tests_failed else 0


if __name__ == "__main__":
    sys.exit(main())
