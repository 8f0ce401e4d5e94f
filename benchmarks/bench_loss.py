"""Speed and memory of HyperbolicInfoNCELoss against the Euclidean InfoNCE, measured in one process.

For each setting (queue of K negatives, and in-batch 2B-way) the forward+backward of both losses runs
interleaved (E, H, H, E, ...), so machine noise hits both alike; the table reports medians and the
ratio hyperbolic / Euclidean. Peak memory is the rise of the process's peak resident set over one
call (``/proc/self/clear_refs`` resets the high-water mark), measured in a child process run with
``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc returns freed blocks at once (timings use the default
allocator, as training does). A third row compares with geoopt's
broadcasting distance ``PoincareBall.dist(q[:, None], k[None])`` (what the official HCL code does).

Usage:
    python benchmarks/bench_loss.py [--batch 256] [--dim 128] [--ks 4096 16384 65536]
                                    [--repeats 15] [--out bench_loss.json] [--no-geoopt]
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
import warnings
from typing import Callable, Dict, List

import torch

from hcl_plugin.geometry import expmap0
from hcl_plugin.losses import HyperbolicInfoNCELoss, InfoNCELoss
from hcl_plugin.losses.poincare_logsumexp import BlockWorkspace
from peak_memory import peak_rise_mib  # benchmarks/peak_memory.py, beside this script

C, TAU = 0.05, 0.2


from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402

def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def make_case(batch: int, dim: int, k: int | None, seed: int) -> Dict[str, Callable[[], None]]:
    """Forward+backward closures for both losses on fresh random inputs (queue negatives need no grad)."""
    gen = torch.Generator().manual_seed(seed)
    feats = {name: torch.randn(batch, dim, generator=gen) for name in ("q", "p")}
    queue = torch.randn(k, dim, generator=gen) if k else None
    euc, hyp = InfoNCELoss(TAU), HyperbolicInfoNCELoss(TAU, C)
    hyp_queue = expmap0(queue, C) if k else None

    def run_euc() -> None:
        q = feats["q"].clone().requires_grad_()
        p = feats["p"].clone().requires_grad_()
        euc(q, p, queue).backward()

    def run_hyp() -> None:
        q = feats["q"].clone().requires_grad_()
        p = feats["p"].clone().requires_grad_()
        hyp(expmap0(q, C), expmap0(p, C), hyp_queue).backward()

    def reset_hyp() -> None:  # drop the kept scratch so the measured call allocates it again
        hyp.workspace = BlockWorkspace()

    run_hyp.reset = reset_hyp  # type: ignore[attr-defined]
    return {"euclidean": run_euc, "hyperbolic": run_hyp}


def make_geoopt_case(batch: int, dim: int, k: int, seed: int) -> Callable[[], None]:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    import geoopt

    gen = torch.Generator().manual_seed(seed)
    ball = geoopt.PoincareBall(c=C)
    q0, p0, queue = (torch.randn(n, dim, generator=gen) for n in (batch, batch, k))
    keys = ball.expmap0(queue)

    def run() -> None:
        q = ball.expmap0(q0.clone().requires_grad_())
        p = ball.expmap0(p0.clone().requires_grad_())
        logits = torch.cat([-ball.dist(q, p)[:, None], -ball.dist(q[:, None], keys[None])], dim=1) / TAU
        torch.nn.functional.cross_entropy(logits, torch.zeros(batch, dtype=torch.long)).backward()

    return run


def memory_in_child(argv: List[str]) -> Dict[str, float]:
    """Run this script with ``--memory-only`` in a child process with a small mmap threshold."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *argv],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure_memory(cases: Dict[str, Callable[[], None]]) -> Dict[str, float]:
    """Peak rise per case; the hyperbolic loss's kept scratch buffers are counted (allocated in the call)."""
    for fn in cases.values():
        fn()

    def once(fn: Callable[[], None]) -> float:
        if hasattr(fn, "reset"):
            fn.reset()
        return peak_rise_mib(fn)

    return {n: statistics.median(once(fn) for _ in range(3)) for n, fn in cases.items()}


def measure(cases: Dict[str, Callable[[], None]], repeats: int) -> Dict[str, Dict[str, float]]:
    names = list(cases)
    for fn in cases.values():  # warm-up
        fn()
    times: Dict[str, List[float]] = {n: [] for n in names}
    for rep in range(repeats):
        order = names if rep % 2 == 0 else names[::-1]
        for n in order:
            times[n].append(timed(cases[n]))
    out = {}
    for n in names:
        out[n] = {
            "median_s": statistics.median(times[n]),
            "min_s": min(times[n]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--batch", type=int, default=256, help="queries per batch")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension")
    parser.add_argument("--ks", type=int, nargs="+", default=[4096, 16384, 65536], help="queue lengths timed")
    parser.add_argument("--repeats", type=int, default=15, help="timed repetitions")
    parser.add_argument("--geoopt-k", type=int, default=4096, help="queue length of the geoopt comparison")
    parser.add_argument("--geoopt-repeats", type=int, default=3, help="timed repetitions of the geoopt comparison")
    parser.add_argument("--no-geoopt", action="store_true", help="skip the geoopt comparison")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="outputs/bench_loss.json", help="report (JSON file)")
    parser.add_argument("--memory-only", choices=["queue", "in-batch", "geoopt"], help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_only:  # child process: print peak memory of each case as JSON
        if args.memory_only == "geoopt":
            cases = {"hcl_plugin": make_case(args.batch, args.dim, args.k, args.seed)["hyperbolic"],
                     "geoopt": make_geoopt_case(args.batch, args.dim, args.k, args.seed)}
        else:
            cases = make_case(args.batch, args.dim, args.k or None, args.seed)
        print(json.dumps(measure_memory(cases)))
        return
    common = ["--batch", str(args.batch), "--dim", str(args.dim), "--seed", str(args.seed)]

    rows = []
    settings = [(f"queue K={k}", k) for k in args.ks] + [(f"in-batch 2B={2 * args.batch}", None)]
    for label, k in settings:
        res = measure(make_case(args.batch, args.dim, k, args.seed), args.repeats)
        mem = memory_in_child(common + ["--memory-only", "queue" if k else "in-batch", "--k", str(k or 0)])
        for name in res:
            res[name]["peak_mib"] = mem[name]
        e, h = res["euclidean"], res["hyperbolic"]
        rows.append(
            {
                "setting": label,
                "euclidean": e,
                "hyperbolic": h,
                "time_ratio": h["median_s"] / e["median_s"],
                "memory_ratio": h["peak_mib"] / e["peak_mib"] if e["peak_mib"] > 0 else float("nan"),
            }
        )
        print(f"{label}: euc {e['median_s'] * 1e3:.1f} ms, hyp {h['median_s'] * 1e3:.1f} ms", flush=True)

    geoopt_row = None
    if not args.no_geoopt:
        ours = make_case(args.batch, args.dim, args.geoopt_k, args.seed)["hyperbolic"]
        theirs = make_geoopt_case(args.batch, args.dim, args.geoopt_k, args.seed)
        ours(), theirs()
        # geoopt takes seconds per call: time ours 5 times around each geoopt call
        times: Dict[str, List[float]] = {"hcl_plugin": [], "geoopt": []}
        for _ in range(args.geoopt_repeats):
            times["geoopt"].append(timed(theirs))
            times["hcl_plugin"] += [timed(ours) for _ in range(5)]
        res = {n: {"median_s": statistics.median(t), "min_s": min(t)} for n, t in times.items()}
        mem = memory_in_child(common + ["--memory-only", "geoopt", "--k", str(args.geoopt_k)])
        for name in res:
            res[name]["peak_mib"] = mem[name]
        geoopt_row = {
            "setting": f"queue K={args.geoopt_k}",
            "hcl_plugin": res["hcl_plugin"],
            "geoopt_broadcast": res["geoopt"],
            "speedup": res["geoopt"]["median_s"] / res["hcl_plugin"]["median_s"],
            "memory_ratio": res["geoopt"]["peak_mib"] / res["hcl_plugin"]["peak_mib"],
        }

    header = f"B={args.batch}, D={args.dim}, float32, torch {torch.__version__}, {torch.get_num_threads()} threads"
    print(f"\n{header}")
    print("| setting | Euclidean fwd+bwd | hyperbolic fwd+bwd | time ratio | Euclidean peak | hyperbolic peak | memory ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        e, h = r["euclidean"], r["hyperbolic"]
        print(
            f"| {r['setting']} | {e['median_s'] * 1e3:.1f} ms | {h['median_s'] * 1e3:.1f} ms | {r['time_ratio']:.2f}x "
            f"| {e['peak_mib']:.0f} MiB | {h['peak_mib']:.0f} MiB | {r['memory_ratio']:.2f}x |"
        )
    if geoopt_row:
        g, o = geoopt_row["geoopt_broadcast"], geoopt_row["hcl_plugin"]
        print(
            f"\ngeoopt broadcasting at {geoopt_row['setting']}: {g['median_s']:.2f} s, {g['peak_mib']:.0f} MiB; "
            f"hcl_plugin {o['median_s'] * 1e3:.1f} ms, {o['peak_mib']:.0f} MiB -> {geoopt_row['speedup']:.0f}x faster, "
            f"{geoopt_row['memory_ratio']:.0f}x less memory"
        )
    result = {
        "config": {"batch": args.batch, "dim": args.dim, "c": C, "temperature": TAU, "repeats": args.repeats,
                   "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine(),
                   "processor": platform.processor() or platform.machine()},
        "rows": rows,
        "geoopt": geoopt_row,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
