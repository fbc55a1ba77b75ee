"""The training queries of a knowledge graph and their batch order, as a LightningDataModule.

Batch order (:class:`EpochShuffle`): epoch ``e`` (0-based) trains on the ``e + 1``-th
``randperm`` drawn from ``torch.Generator().manual_seed(seed)``, OTKGE's order, one epoch
after the other. It is a pure function of (seed, epoch), so a run resumed from its last
checkpoint trains on the batches an uninterrupted one does. Under data parallelism each process
takes every ``world_size``-th query of that order (the same number on every process; the at
most ``world_size - 1`` left over sit the epoch out).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from iidfusion.kg.data import KnowledgeGraph, with_reciprocals


class EpochShuffle(Sampler[int]):
    """Positions of the training queries in the order of the current epoch (module docstring).

    Lightning calls :meth:`set_epoch` before each epoch (on a loader's ``batch_sampler.sampler``).
    The generator of the last epoch drawn is kept, so the usual call for the next epoch draws
    one permutation; any other epoch replays the draws from the seed.
    """

    def __init__(self, size: int, seed: int, world_size: int = 1, rank: int = 0) -> None:
        if size < world_size:
            raise ValueError(f"need at least one training query per process, got {size} for {world_size} processes")
        self.size, self.seed, self.world_size, self.rank = int(size), int(seed), int(world_size), int(rank)
        self.epoch = 0
        self._generator = torch.Generator().manual_seed(self.seed)
        self._order = torch.empty(0, dtype=torch.long)  # the last permutation drawn
        self._epochs_drawn = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> Tensor:
        """The permutation of all ``size`` queries of the current epoch."""
        if self._epochs_drawn > self.epoch + 1:
            self._generator, self._epochs_drawn = torch.Generator().manual_seed(self.seed), 0
        while self._epochs_drawn < self.epoch + 1:
            self._order = torch.randperm(self.size, generator=self._generator)
            self._epochs_drawn += 1
        return self._order

    def __iter__(self) -> Iterator[int]:
        order = self.order()
        if self.world_size > 1:
            order = order[self.rank : self.size - self.size % self.world_size : self.world_size]
        return iter(order.tolist())

    def __len__(self) -> int:
        return self.size // self.world_size


class TrainingQueries(Dataset):
    """The training queries (with reciprocals); a batch is fetched by one tensor indexing."""

    def __init__(self, queries: Tensor) -> None:
        self.queries = queries

    def __len__(self) -> int:
        return len(self.queries)

    def __getitem__(self, position: int) -> Tensor:
        return self.queries[position]

    def __getitems__(self, positions: list[int]) -> tuple[Tensor, Tensor]:
        """(B, 3) queries and their (B,) positions, which per-sample strategy state (QMF) reads."""
        index = torch.as_tensor(positions, dtype=torch.long)
        return self.queries[index], index


def _as_is(batch: Any) -> Any:
    return batch


class KGDataModule(L.LightningDataModule):
    """The shuffled training queries, and one placeholder validation batch: validation ranks the
    whole split against every entity in :meth:`~iidfusion.tasks.kg.module.KGModule.validation_step`, on every process.
    """

    def __init__(self, kg: KnowledgeGraph, *, batch_size: int, seed: int) -> None:
        super().__init__()
        self.queries = with_reciprocals(kg.train, kg.num_relations)
        self.batch_size, self.seed = int(batch_size), int(seed)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        world_size, rank = (1, 0) if trainer is None else (trainer.world_size, trainer.global_rank)
        shuffle = EpochShuffle(len(self.queries), self.seed, world_size, rank)
        batches = BatchSampler(shuffle, self.batch_size, drop_last=False)
        return DataLoader(TrainingQueries(self.queries), batch_sampler=batches, collate_fn=_as_is)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(cast(Dataset[int], [0]), batch_size=1)
