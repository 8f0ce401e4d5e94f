"""HierarchicalLogRatioLoss (vectorised) against a four-nested-loop formulation, side by side.

Both compute the same quantity, the paper's loss (mean over triplets with s_ij > s_il of
``(log(d_ij / d_il) - (s_ij - s_il) log Omega)^2``), forward + backward to the embeddings, on the same
batch: B points on the Poincaré ball (c = 1) with a two-level pseudo-label hierarchy (``--per-fine``
instances per fine cluster, ``--fine-per-coarse`` fine clusters per coarse one: the released code's
sampler, 8 instances per pseudo-class).

The loop formulation mirrors the released ``LogRatio.py`` (loops over anchor, positive, negative and
level, one autograd scalar expression per triplet), but on this project's distances so the values can
be compared: the (B, B) log-distance matrix is built once, vectorised, for both; only the triplet
sum differs. A third row shows the direct vectorisation (all B^3 triplets under a mask) that the
loss's level-group formulation replaces. The loop is timed ``--loop-repeats`` times (default once: tens of seconds at B = 128); the
vectorised loss ``--repeats`` times (median). Prints both values, both times and the speed ratio
(target >= 100x at B = 128). The loop is single-threaded Python; on a machine shared with other jobs,
``--threads 1`` gives steadier timings of the vectorised loss (torch's thread pool waits on busy cores).

Usage:
    python benchmarks/bench_log_ratio.py [--batch 128] [--dim 128] [--repeats 20] [--loop-repeats 1] [--threads 0]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import time

import torch

from hcl_plugin.geometry import expmap0
from hcl_plugin.losses.hierarchical_log_ratio import HierarchicalLogRatioLoss
from hcl_plugin.uhml import similarity_levels

C, OMEGA = 1.0, 0.1


from hcl_plugin.utils.cli import HelpFormatter  # noqa: E402

def four_loop_loss(loss_fn: HierarchicalLogRatioLoss, z: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Loops over anchor i, positive j, negative l and the level m of the pair (i, l), as the release does."""
    log_d = loss_fn.log_distances(z, torch.tensor(C, dtype=z.dtype))
    s = levels.tolist()
    num_levels = int(levels.max())
    log_omega = math.log(OMEGA)
    batch = z.shape[0]
    total, count = z.new_zeros(()), 0
    for i in range(batch):
        for j in range(batch):
            if j == i:
                continue
            for l in range(batch):
                if l == i or l == j:
                    continue
                for m in range(num_levels):  # the level at which (i, l) meet
                    if s[i][l] == m and s[i][j] > m:
                        total = total + (log_d[i, j] - log_d[i, l] - (s[i][j] - m) * log_omega) ** 2
                        count += 1
    return total / count


def broadcast_loss(loss_fn: HierarchicalLogRatioLoss, z: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """The direct vectorisation: all B^3 triplets broadcast under a mask (O(B^3) time and memory)."""
    shifted = loss_fn.log_distances(z, torch.tensor(C, dtype=z.dtype)) - levels.to(z.dtype) * math.log(OMEGA)
    not_self = ~torch.eye(z.shape[0], dtype=torch.bool)
    valid = (levels[:, :, None] > levels[:, None, :]) & not_self[:, :, None] & not_self[:, None, :]
    residual = shifted[:, :, None] - shifted[:, None, :]
    return (residual * residual * valid).sum() / valid.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--batch", type=int, default=128, help="embeddings per batch")
    parser.add_argument("--dim", type=int, default=128, help="embedding dimension")
    parser.add_argument("--per-fine", type=int, default=8, help="instances per fine class")
    parser.add_argument("--fine-per-coarse", type=int, default=4, help="fine classes per coarse class")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions")
    parser.add_argument("--loop-repeats", type=int, default=1, help="repetitions of the reference loop implementation")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = torch.Generator().manual_seed(args.seed)
    # tangent vectors of norm ~1.5 (|z| ~ tanh(1.5) = 0.9 r): inside the ball, not piled up at its boundary
    features = torch.randn(args.batch, args.dim, generator=gen) * (1.5 / args.dim**0.5)
    fine = torch.arange(args.batch) // args.per_fine
    levels = similarity_levels(torch.stack([fine, fine // args.fine_per_coarse]))
    loss_fn = HierarchicalLogRatioLoss(OMEGA, "poincare", C)

    def run(formulation) -> tuple:
        leaf = features.clone().requires_grad_()
        start = time.perf_counter()
        loss = formulation(expmap0(leaf, C), levels)
        loss.backward()
        return time.perf_counter() - start, loss.item(), leaf.grad

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"batch {args.batch} x {args.dim}, {int(fine.max()) + 1} fine / {int(fine.max()) // args.fine_per_coarse + 1} coarse pseudo-classes, float32, forward + backward")
    run(loss_fn)  # warm-up
    vector = [run(loss_fn) for _ in range(args.repeats)]
    broadcast = [run(lambda z, s: broadcast_loss(loss_fn, z, s)) for _ in range(args.repeats)]
    loops = [run(lambda z, s: four_loop_loss(loss_fn, z, s)) for _ in range(args.loop_repeats)]
    vec_s = statistics.median(t for t, _, _ in vector)
    broadcast_s = statistics.median(t for t, _, _ in broadcast)
    loop_s = statistics.median(t for t, _, _ in loops)
    grad_err = (vector[0][2] - loops[0][2]).abs().max().item() / loops[0][2].abs().max().item()
    exact = loss_fn(expmap0(features, C).double(), levels).item()  # float64 loss on the same float32 points
    print(f"vectorised : {vec_s * 1e3:9.2f} ms (median of {args.repeats}), loss {vector[0][1]:.6f}")
    print(f"B^3 mask   : {broadcast_s * 1e3:9.2f} ms (median of {args.repeats}), loss {broadcast[0][1]:.6f} (reference: direct broadcast)")
    print(f"four loops : {loop_s * 1e3:9.2f} ms (median of {args.loop_repeats}), loss {loops[0][1]:.6f}")
    print(f"float64 value: {exact:.6f}; relative error vectorised {abs(vector[0][1] - exact) / exact:.1e}, "
          f"loops {abs(loops[0][1] - exact) / exact:.1e} (the loops add up the triplets one by one in float32)")
    print(f"max |grad difference| / max |grad| (vectorised vs loops): {grad_err:.2e}")
    print(f"speed ratio (loops / vectorised): {loop_s / vec_s:.0f}x (target >= 100x)")


if __name__ == "__main__":
    main()
