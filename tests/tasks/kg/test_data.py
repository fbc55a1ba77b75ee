"""The KG training batches (iidfusion.tasks.kg.data): every query with its reciprocal once an
epoch, in the order a (seed, epoch) fixes, split across processes; one placeholder validation batch."""

from types import SimpleNamespace

import pytest
import torch

from iidfusion.kg.data import with_reciprocals
from iidfusion.tasks.kg.data import EpochShuffle, KGDataModule, TrainingQueries


def epoch_batches(loader, epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader.batch_sampler.sampler.set_epoch(epoch)  # what Lightning calls before each epoch
    return list(loader)


def test_an_epoch_is_every_query_once_in_batches_of_the_seeds_order(tiny_kg):
    data = KGDataModule(tiny_kg, batch_size=16, seed=5)
    queries = with_reciprocals(tiny_kg.train, tiny_kg.num_relations)
    assert torch.equal(data.queries, queries) and len(queries) == 56
    loader = data.train_dataloader()
    generator = torch.Generator().manual_seed(5)
    for epoch in range(2):
        batches = epoch_batches(loader, epoch)
        assert [len(b) for b, _ in batches] == [16, 16, 16, 8]  # the last batch is kept, short
        for batch, index in batches:  # each batch is the (B, 3) queries at its (B,) positions
            assert batch.shape == (len(index), 3) and index.dtype == torch.long
            assert torch.equal(batch, queries[index])
        order = torch.cat([index for _, index in batches])
        assert torch.equal(order, torch.randperm(56, generator=generator))  # OTKGE's draws, one an epoch


def test_the_batches_are_a_function_of_the_seed_alone(tiny_kg):
    def first_epoch(seed: int) -> list[torch.Tensor]:
        return [
            index for _, index in epoch_batches(KGDataModule(tiny_kg, batch_size=20, seed=seed).train_dataloader(), 0)
        ]

    same, again, other = first_epoch(1), first_epoch(1), first_epoch(2)
    assert all(torch.equal(a, b) for a, b in zip(same, again, strict=True))
    assert not torch.equal(torch.cat(same), torch.cat(other))
    assert sorted(torch.cat(other).tolist()) == list(range(56))


def test_each_process_takes_its_share_of_the_same_order(tiny_kg):
    data = KGDataModule(tiny_kg, batch_size=8, seed=0)
    full = torch.cat([index for _, index in epoch_batches(data.train_dataloader(), 1)])
    shares = []
    for rank in range(3):
        data.trainer = SimpleNamespace(world_size=3, global_rank=rank)
        shares.append(torch.cat([index for _, index in epoch_batches(data.train_dataloader(), 1)]))
    assert [len(s) for s in shares] == [18, 18, 18]  # 56 = 3 * 18 + 2 left over
    assert all(torch.equal(share, full[rank:54:3]) for rank, share in enumerate(shares))


def test_the_next_epoch_draws_one_permutation(monkeypatch):
    """The generator is kept across epochs: epoch e + 1 after epoch e costs one draw, not e + 2."""
    draws = []
    randperm = torch.randperm
    monkeypatch.setattr(torch, "randperm", lambda *args, **kwargs: draws.append(1) or randperm(*args, **kwargs))
    shuffle = EpochShuffle(10, seed=0)
    for epoch in range(4):
        shuffle.set_epoch(epoch)
        list(shuffle)
    assert len(draws) == 4
    shuffle.set_epoch(1)  # back: replayed from the seed
    list(shuffle)
    assert len(draws) == 6


def test_fewer_queries_than_processes_is_refused():
    with pytest.raises(ValueError, match="^need at least one training query per process, got 2 for 3 processes$"):
        EpochShuffle(2, seed=0, world_size=3)
    assert len(EpochShuffle(3, seed=0, world_size=3)) == 1


def test_a_query_and_the_placeholder_validation_batch(tiny_kg):
    queries = with_reciprocals(tiny_kg.train, tiny_kg.num_relations)
    assert torch.equal(TrainingQueries(queries)[3], queries[3]) and len(TrainingQueries(queries)) == 56
    validation = list(KGDataModule(tiny_kg, batch_size=4, seed=0).val_dataloader())
    assert len(validation) == 1 and torch.equal(validation[0], torch.tensor([0]))
