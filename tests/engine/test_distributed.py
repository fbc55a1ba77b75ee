"""Data parallelism on CPU: 2 processes, gloo backend (training, and evaluation split across them)."""

import json
import os
import socket
from dataclasses import replace

import lightning as L
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from iidfusion.engine.distributed import GatheredCoherence, gather_with_local_grad
from iidfusion.engine.trainer import build_strategy
from iidfusion.losses.coherence import DistributionCoherence
from iidfusion.tasks.classification.data import MultiViewDataModule, ShardSampler
from iidfusion.tasks.classification.evaluate import evaluate_under_noise
from iidfusion.tasks.classification.fit import fit_method
from iidfusion.tasks.classification.module import FusionModule


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
    # trained in the children: the history of the run comes back through its last checkpoint
    assert (result.epochs, result.best_epoch) == (1, 0) and 0 <= result.best_val_acc <= 1


def test_evaluation_shares_cover_the_split_once():
    shares = [ShardSampler(12, 3, rank).indices for rank in range(3)]
    assert sorted(i for share in shares for i in share) == list(range(12)) and [len(s) for s in shares] == [4, 4, 4]
    assert ShardSampler(5, 1, 0).indices == list(range(5))
    with pytest.raises(ValueError, match="cannot be shared by 4 processes"):
        ShardSampler(3, 4, 0)


def _module(splits, config):
    """An iid-p module with fixed weights and the training-epoch feature means the drop metrics read."""
    torch.manual_seed(0)
    module = FusionModule.for_feature_views("iid-p", splits.view_dims, splits.num_classes, len(splits.train), config)
    module._feature_means.add({m: torch.randn(config.model.width) for m in splits.view_dims}, 7)
    return module


class _Captured(Logger):
    """A logger that writes what it is given to a JSON file (the diagnostics go to loggers only;
    under ``ddp_fork`` the process of rank 0, which logs, is a child of the test's). Lightning
    calls loggers on every rank; like its own loggers, this one writes on rank 0 only, and
    through a temporary file, so that no reader sees half a file."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    name = "captured"
    version = 0

    @rank_zero_only
    def log_metrics(self, metrics, step=None):
        kept = json.loads(self.path.read_text()) if self.path.is_file() else {}
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(kept | metrics))
        partial.replace(self.path)

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def _validate(module, splits, strategy, devices, path):
    logger = _Captured(path)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy=build_strategy(strategy),
        logger=logger,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    (metrics,) = trainer.validate(
        module, MultiViewDataModule(splits, batch_size=32, seed=0, eval_batch_size=4), verbose=False
    )
    return metrics | {k: v for k, v in json.loads(path.read_text()).items() if k != "epoch"}


def test_validation_split_across_two_processes_gives_the_metrics_of_one(tiny_splits, fast_config, tmp_path):
    """Every per-epoch diagnostic stays the same (up to float32 rounding) when the 12 validation samples are shared by
    2 processes
    (batches of 4: each process sees 6 of them in 2 batches); the monitored W~ uses 9 of them, held by both."""
    config = replace(fast_config, train=replace(fast_config.train, monitor_samples=9))
    alone = _validate(_module(tiny_splits, config), tiny_splits, "auto", 1, tmp_path / "alone.json")
    shared = _validate(_module(tiny_splits, config), tiny_splits, "ddp_fork", 2, tmp_path / "shared.json")
    assert {"val/acc", "val/macro_f1", "val/loss", "val/wasserstein/mean"} <= set(alone)
    assert any(k.startswith("val/drop_acc/") for k in alone) and any(
        k.startswith("val/shared_head_acc/") for k in alone
    )
    assert set(shared) == set(alone)
    # Sharing moves samples into other batches (4 + 2 per process instead of 4 + 4 + 4) and sums
    # in another order: float32 features then differ in their last bits (~1e-7 relative, more or
    # less depending on the processor's BLAS kernels), which L_dc's Sinkhorn iterations amplify
    # (3.4e-6 relative seen on an AMD EPYC). Equal up to float32 arithmetic: 1e-5 relative.
    for name, value in alone.items():
        assert shared[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def _test_split_worker(rank: int, port: int, out: str, model, splits) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    metrics = evaluate_under_noise(model, splits, [0.0, 5.0], seed=3)
    torch.save([(m.noise, m.accuracy, m.macro_f1) for m in metrics], f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_test_split_across_two_processes_gives_the_metrics_of_one(tiny_splits, fast_config, tmp_path):
    model = _module(tiny_splits, fast_config).model.eval()
    alone = [(m.noise, m.accuracy, m.macro_f1) for m in evaluate_under_noise(model, tiny_splits, [0.0, 5.0], seed=3)]
    mp.start_processes(
        _test_split_worker,
        args=(_free_port(), str(tmp_path), model, tiny_splits),
        nprocs=2,
        join=True,
        start_method="fork",
    )
    for rank in range(2):
        assert torch.load(tmp_path / f"rank{rank}.pt") == alone
