import torch

from iidfusion.tasks.classification.data import MultiViewDataModule


def _order(datamodule, epoch):
    loader = datamodule.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(epoch)
    return torch.cat([batch["index"] for batch in loader])


def test_batches_follow_the_contract(tiny_splits):
    datamodule = MultiViewDataModule(tiny_splits, batch_size=32, seed=0)
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"inputs", "label", "index"}
    assert set(batch["inputs"]) == set(tiny_splits.view_dims)
    assert batch["inputs"]["m0"].shape == (32, 8) and batch["label"].dtype == torch.long
    rows = batch["index"]
    assert torch.equal(batch["inputs"]["m1"], tiny_splits.train.views["m1"][rows])
    assert torch.equal(batch["label"], tiny_splits.train.labels[rows])
    val = next(iter(datamodule.val_dataloader()))
    assert torch.equal(val["index"], torch.arange(len(tiny_splits.val)))


def test_shuffle_is_a_function_of_seed_and_epoch(tiny_splits):
    a, b = (
        MultiViewDataModule(tiny_splits, batch_size=32, seed=3),
        MultiViewDataModule(tiny_splits, batch_size=32, seed=3),
    )
    torch.manual_seed(0)
    first = _order(a, 1)
    torch.manual_seed(1)  # the global RNG does not matter
    assert torch.equal(first, _order(b, 1))
    assert not torch.equal(first, _order(a, 2))
    assert sorted(first.tolist()) == list(range(len(tiny_splits.train)))


def test_shards_are_disjoint_and_last_single_batch_dropped(tiny_splits, monkeypatch):
    datamodule = MultiViewDataModule(tiny_splits, batch_size=33, seed=0)
    shards = []
    for rank in range(2):
        monkeypatch.setattr(datamodule, "_replicas", lambda rank=rank: (2, rank))
        shards.append(_order(datamodule, 0))
    n = len(tiny_splits.train)
    assert len(shards[0]) == len(shards[1]) == (n + 1) // 2
    assert set(shards[0].tolist()) | set(shards[1].tolist()) == set(range(n))
    monkeypatch.setattr(datamodule, "_replicas", lambda: (1, 0))
    datamodule.batch_size = n - 1  # would leave a last batch of one sample
    sizes = [len(b["label"]) for b in datamodule.train_dataloader()]
    assert sizes == [n - 1]
