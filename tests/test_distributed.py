"""Real torch.distributed (gloo, 2 CPU processes): gathered negatives and synchronised memory banks."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hcl_plugin.geometry import expmap0
from hcl_plugin.losses import HyperbolicInfoNCELoss, InfoNCELoss
from hcl_plugin.modules import HyperbolicMemoryBank

WORLD, B, D, C = 2, 6, 8, 0.05

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_inputs(seed: int):
    gen = torch.Generator().manual_seed(seed)
    q = expmap0(torch.randn(WORLD * B, D, generator=gen, dtype=torch.float64), C)
    p = expmap0(torch.randn(WORLD * B, D, generator=gen, dtype=torch.float64), C)
    keys = expmap0(torch.randn(WORLD * 5, D, generator=gen, dtype=torch.float64), C)
    return q, p, keys


def worker(rank: int, port: int, seed: int, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        q_all, p_all, keys_all = make_inputs(seed)
        rows = slice(rank * B, (rank + 1) * B)
        results = {}
        for name, loss_fn in [("hyp", HyperbolicInfoNCELoss(0.2, C, gather_distributed=True)),
                              ("euc", InfoNCELoss(0.2, gather_distributed=True))]:
            q = q_all[rows].clone().requires_grad_()
            p = p_all[rows].clone().requires_grad_()
            loss = loss_fn(q, p)
            loss.backward()
            results[name] = (loss.detach(), q.grad, p.grad)
        bank = HyperbolicMemoryBank(16, D, c=C, seed=1)
        bank.enqueue(keys_all[rank * 5:(rank + 1) * 5])
        bank.enqueue(keys_all[rank * 5:(rank + 1) * 5] * 0.5)
        results["bank"] = (bank.bank.clone(), int(bank.ptr))
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_gathered_negatives_equal_one_process_with_the_concatenated_batch(tmp_path):
    seed = int.from_bytes(os.urandom(4), "little")
    print(f"seed={seed}")
    mp.spawn(worker, args=(free_port(), seed, str(tmp_path)), nprocs=WORLD, join=True)
    per_rank = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    q_all, p_all, keys_all = make_inputs(seed)
    for name, loss_fn in [("hyp", HyperbolicInfoNCELoss(0.2, C)), ("euc", InfoNCELoss(0.2))]:
        q, p = q_all.clone().requires_grad_(), p_all.clone().requires_grad_()
        full = loss_fn(q, p)
        full.backward()
        mean_of_ranks = sum(res[name][0] for res in per_rank) / WORLD
        torch.testing.assert_close(mean_of_ranks, full.detach(), rtol=1e-12, atol=1e-12)
        for r, res in enumerate(per_rank):
            rows = slice(r * B, (r + 1) * B)
            # all_gather's backward sums every rank's gradient; DDP then averages over ranks
            torch.testing.assert_close(res[name][1] / WORLD, q.grad[rows], rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(res[name][2] / WORLD, p.grad[rows], rtol=1e-10, atol=1e-12)
    # memory banks: identical on both ranks and equal to one process enqueueing the gathered keys
    single = HyperbolicMemoryBank(16, D, c=C, seed=1)
    single.enqueue(keys_all)
    single.enqueue(torch.cat([keys_all[r * 5:(r + 1) * 5] * 0.5 for r in range(WORLD)]))
    for res in per_rank:
        torch.testing.assert_close(res["bank"][0], single.bank.to(res["bank"][0].dtype))
        assert res["bank"][1] == int(single.ptr)
