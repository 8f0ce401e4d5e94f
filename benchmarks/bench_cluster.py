"""Time, peak memory and quality of ``hcl_plugin.uhml.hierarchical_labels`` at data-set scale.

Data: N points in the Poincaré ball (c = 1) with a planted two-level hierarchy (``--coarse`` clusters,
each split into ``--fine / --coarse`` sub-clusters, Gaussian noise), mapped with ``expmap0``. The
clustering is cut at ``--counts`` (default ``[fine, coarse]`` = the released code's CUB setting
[100, 50]) with the two-stage scheme (MiniBatchKMeans -> Ward on the centroids).

Reported: wall time of the clustering call, the process's peak resident set size (``VmHWM``, the
whole process: Python, torch, the data and the clustering; the target is <= 4 GB) and the rise of the
peak over the call, the adjusted Rand index of each level against the planted labels, and (with
``--compare-exact M``) the agreement with exact Ward on a random subset of M points.

Usage:
    python benchmarks/bench_cluster.py [--n 50000] [--dim 128] [--fine 100] [--coarse 50]
                                       [--counts 100 50] [--noise 3.0] [--seed 0] [--compare-exact 8000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from hcl_plugin.geometry import expmap0
from hcl_plugin.uhml import default_num_centroids, hierarchical_labels
from peak_memory import reset_peak, vm_kib  # benchmarks/peak_memory.py, beside this script

C = 1.0


from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402

def planted(n: int, dim: int, fine: int, coarse: int, seed: int, noise: float):
    gen = torch.Generator().manual_seed(seed)
    coarse_centres = 4.0 * torch.randn(coarse, dim, generator=gen, dtype=torch.float64)
    fine_offsets = 1.5 * torch.randn(fine, dim, generator=gen, dtype=torch.float64)
    fine_labels = torch.randint(0, fine, (n,), generator=gen)
    coarse_labels = fine_labels % coarse
    tangent = coarse_centres[coarse_labels] + fine_offsets[fine_labels]
    tangent += noise * torch.randn(n, dim, generator=gen, dtype=torch.float64)
    tangent *= 2.5 / tangent.norm(dim=1).max()
    return expmap0(tangent, C).float(), fine_labels.numpy(), coarse_labels.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="points clustered")
    parser.add_argument("--dim", type=int, default=128, help="dimension of the points")
    parser.add_argument("--fine", type=int, default=100, help="fine clusters")
    parser.add_argument("--coarse", type=int, default=50, help="coarse clusters")
    parser.add_argument("--counts", type=int, nargs="+", default=None, help="cluster counts per level, fine -> coarse (default: --fine --coarse)")
    parser.add_argument("--noise", type=float, default=3.0, help="noise scale (fine offsets 1.5, coarse 4.0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--compare-exact", type=int, default=0, metavar="M", help="also compare against exact Ward on the first M points (0: skip)")
    args = parser.parse_args()
    counts = args.counts or [args.fine, args.coarse]

    z, fine, coarse = planted(args.n, args.dim, args.fine, args.coarse, args.seed, args.noise)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    print(f"data: {args.n} x {args.dim} float32 in the ball (c = {C}), planted {args.fine} fine / {args.coarse} coarse")
    print(f"two-stage: MiniBatchKMeans to {default_num_centroids(args.n, counts[0])} centroids, Ward on them, cut at {counts}")

    base = vm_kib("VmRSS:")
    reset_peak()
    start = time.perf_counter()
    labels = hierarchical_labels(z, C, n_clusters=counts, seed=args.seed)
    seconds = time.perf_counter() - start
    peak = vm_kib("VmHWM:")
    print(f"time: {seconds:.1f} s (target <= 120 s)")
    print(f"peak RSS of the process: {peak / 2**20:.2f} GiB (target <= 4 GB); rise over the call: {(peak - base) / 2**10:.0f} MiB")
    if counts == [args.fine, args.coarse]:
        print(f"ARI vs planted: fine {adjusted_rand_score(fine, labels[0]):.3f}, coarse {adjusted_rand_score(coarse, labels[1]):.3f}")

    if args.compare_exact:
        rng = np.random.default_rng(args.seed)
        subset = rng.choice(args.n, size=args.compare_exact, replace=False)
        start = time.perf_counter()
        exact = hierarchical_labels(z[subset], C, n_clusters=counts, max_exact=args.compare_exact)
        exact_s = time.perf_counter() - start
        two_stage = hierarchical_labels(z[subset], C, n_clusters=counts, max_exact=0, seed=args.seed)
        agreement = ", ".join(f"level {k} {adjusted_rand_score(exact[k], two_stage[k]):.3f}" for k in range(len(counts)))
        print(f"exact Ward on {args.compare_exact} points: {exact_s:.1f} s; ARI(two-stage, exact): {agreement}")
    print(f"final peak RSS: {vm_kib('VmHWM:') / 2**20:.2f} GiB (after the optional comparison)")


if __name__ == "__main__":
    main()
