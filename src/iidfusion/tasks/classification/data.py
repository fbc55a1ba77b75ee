"""LightningDataModule over :class:`~iidfusion.data.features.base.DatasetSplits`.

Batches are ``{"inputs": {view: Tensor (B, d_m)}, "label": (B,), "index": (B,)}``
(docs/architecture.md); ``index`` is the position in the split, which QMF's history reads.

Shuffling is a pure function of (seed, epoch): the training sampler is a
``DistributedSampler`` (with one replica on a single process), whose permutation is drawn
from ``seed + epoch`` and which Lightning calls ``set_epoch`` on. A run resumed from a
checkpoint therefore sees the same batches as an uninterrupted one, and DDP shards are
disjoint. The trainer is built with ``use_distributed_sampler=False`` so Lightning keeps
this sampler instead of replacing it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, Sampler

from iidfusion.data.features.base import DatasetSplits, MultiViewData, MultiViewDataset
from iidfusion.engine.distributed import shard_indices


class BatchedMultiViewDataset(MultiViewDataset):
    """:class:`MultiViewDataset` that also fetches a whole batch by tensor indexing.

    The DataLoader calls ``__getitems__`` with a batch of indices: one gather per view
    instead of B ``__getitem__`` calls and a recursive collate, which for small MLP models
    on feature views costs more than the training step.
    """

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Any]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return {
            "inputs": {name: view[index] for name, view in self.data.views.items()},
            "label": self.data.labels[index],
            "index": index,
        }


def _as_is(batch: Any) -> Any:
    """Collate function of :class:`BatchedMultiViewDataset` batches (already collated)."""
    return batch


class ShardSampler(Sampler[int]):
    """The positions of one process's share of an evaluation split, in order (:func:`shard_indices`):
    every sample exactly once over all processes, none repeated to even the shares out.
    """

    def __init__(self, size: int, world_size: int = 1, rank: int = 0) -> None:
        self.indices = shard_indices(size, world_size, rank)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class MultiViewDataModule(L.LightningDataModule):
    """Loaders for the train / val / test splits of one data set.

    Validation and test loaders are split across processes by :class:`ShardSampler`, and
    :class:`~iidfusion.tasks.classification.module.FusionModule` gathers what its metrics need, so the
    early-stopping metric is that of the whole split, exact (a ``DistributedSampler`` would
    pad the split with repeated samples) and identical on every rank.
    """

    def __init__(
        self, splits: DatasetSplits, *, batch_size: int, seed: int, num_workers: int = 0, eval_batch_size: int = 1024
    ) -> None:
        super().__init__()
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (L_ic and L_dc use batch statistics), got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.splits = splits
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.seed = int(seed)
        self.num_workers = int(num_workers)

    def _replicas(self) -> tuple[int, int]:
        trainer = self.trainer
        return (1, 0) if trainer is None else (trainer.world_size, trainer.global_rank)

    def train_dataloader(self) -> DataLoader:
        dataset = BatchedMultiViewDataset(self.splits.train)
        replicas, rank = self._replicas()
        sampler: DistributedSampler[Any] = DistributedSampler(
            dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=self.seed
        )
        # A final batch of one sample has no batch statistics (L_ic's Gaussian fit, L_dc's cloud).
        drop_last = len(sampler) % self.batch_size == 1
        return self._loader(dataset, BatchSampler(sampler, self.batch_size, drop_last=drop_last))

    def val_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.splits.val)

    def test_dataloader(self) -> DataLoader:
        return self._evaluation_loader(self.splits.test)

    def _evaluation_loader(self, split: MultiViewData) -> DataLoader:
        dataset = BatchedMultiViewDataset(split)
        shard = ShardSampler(len(dataset), *self._replicas())
        return self._loader(dataset, BatchSampler(shard, self.eval_batch_size, drop_last=False))

    def _loader(self, dataset: BatchedMultiViewDataset, batches: BatchSampler) -> DataLoader:
        # Lightning calls set_epoch on ``batch_sampler.sampler``: the shuffle follows the epoch.
        return DataLoader(
            dataset,
            batch_sampler=batches,
            collate_fn=_as_is,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )
