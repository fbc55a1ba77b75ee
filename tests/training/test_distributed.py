"""Data parallelism on CPU: 2 processes, gloo backend."""

import os
import socket
from dataclasses import replace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from iidfusion.losses.coherence import DistributionCoherence
from iidfusion.training.distributed import GatheredCoherence, gather_with_local_grad
from iidfusion.training.runner import fit_method


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    sizes = (5, 3)  # unequal batches: the last batch of one process may be smaller
    everything = {m: torch.randn(sum(sizes), 6, generator=torch.Generator().manual_seed(k)) for k, m in enumerate("ab")}
    start = sum(sizes[:rank])
    local = {m: z[start : start + sizes[rank]].clone().requires_grad_() for m, z in everything.items()}
    gathered = gather_with_local_grad(local["a"])
    weights = torch.arange(gathered.numel(), dtype=torch.float32).reshape(gathered.shape)
    (gathered * weights).sum().backward()
    coherence = GatheredCoherence(6, reduce=False, eps=0.5, rho=10.0)
    result = coherence(local)
    result.loss.backward()
    reference = DistributionCoherence(6, reduce=False, eps=0.5, rho=10.0)(everything)
    torch.save(
        {
            "gathered": gathered.detach(),
            "expected": everything["a"],
            "grad_rows": local["a"].grad is not None,
            "weights_local": weights[start : start + sizes[rank]],
            "loss": result.loss.detach(),
            "reference": reference.loss,
            "grad_b": local["b"].grad,
        },
        f"{out}/rank{rank}.pt",
    )
    dist.destroy_process_group()


def test_gather_shapes_values_and_local_gradient(tmp_path):
    # fork: the workers inherit the imported modules (a spawn re-imports torch in each, ~10 s)
    mp.start_processes(_gather_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    for rank, size in enumerate((5, 3)):
        r = torch.load(tmp_path / f"rank{rank}.pt")
        assert r["gathered"].shape == (8, 6) and torch.equal(r["gathered"], r["expected"])
        assert torch.allclose(r["loss"], r["reference"]) and torch.isfinite(r["loss"])
        assert r["grad_b"].shape == (size, 6) and torch.isfinite(r["grad_b"]).all() and r["grad_b"].abs().sum() > 0


def test_ddp_two_cpu_processes(tiny_splits, fast_config, tmp_path):
    """Lightning DDP (gloo) with gathered L_dc features trains, and QMF's history is merged.

    ``ddp_fork`` is ``ddp_spawn``'s launcher with the fork start method: the same code path,
    without re-importing torch in every process.
    """
    config = replace(
        fast_config,
        train=replace(
            fast_config.train, strategy="ddp_fork", devices="2", max_epochs=1, gather_features=True, loggers=("csv",)
        ),
    )
    result = fit_method(tiny_splits, "iid-q", 0, config, tmp_path)
    history = result.module.state_dict()["model.strategy.loss_history"]
    assert history.gt(0).all(), "each process added its half of the samples; the merged history has them all"
    assert all(0 <= m.accuracy <= 1 for m in result.metrics)
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
