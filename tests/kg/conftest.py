"""Fixtures of the knowledge-graph tests: a tiny generated graph in OTKGE's file format."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from iidfusion.kg.data import KnowledgeGraph, load_triples_folder

# The leading 400 / 30 / 30 triples of the real WN9-IMG splits, bytes unchanged (CRLF line
# ends): tests/fixtures/make_excerpts.py.
WN9IMG_EXCERPT = Path(__file__).resolve().parents[1] / "fixtures" / "wn9img"


def write_split(path: Path, triples: list[tuple[str, str, str]], newline: str = "\n") -> None:
    path.write_text("".join(f"{h}\t{r}\t{t}{newline}" for h, r, t in triples), encoding="utf-8")


def tiny_triples(
    num_entities: int = 12, num_relations: int = 3, seed: int = 0
) -> dict[str, list[tuple[str, str, str]]]:
    """A small graph with learnable structure: relation k maps entity i to entity (i + k + 1) mod N.

    Every entity and relation occurs in training; valid/test hold held-out edges of the same rules.
    """
    generator = torch.Generator().manual_seed(seed)
    triples = [
        (f"e{i:02d}", f"rel_{k}", f"e{(i + k + 1) % num_entities:02d}")
        for k in range(num_relations)
        for i in range(num_entities)
    ]
    order = torch.randperm(len(triples), generator=generator).tolist()
    shuffled = [triples[i] for i in order]
    held = len(shuffled) // 8
    valid, test, train = shuffled[:held], shuffled[held : 2 * held], shuffled[2 * held :]
    seen = {e for h, _, t in train for e in (h, t)} | {r for _, r, _ in train}
    # Move any held-out triple whose names training lacks back into training.
    for split in (valid, test):
        for triple in list(split):
            if not {triple[0], triple[1], triple[2]} <= seen:
                split.remove(triple)
                train.append(triple)
    return {"train": train, "valid": valid, "test": test}


@pytest.fixture
def tiny_kg_folder(tmp_path: Path) -> Path:
    """A folder with bare-named ``train/valid/test`` files, CRLF line endings as in WN9-IMG."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    for split, triples in tiny_triples().items():
        write_split(folder / split, triples, newline="\r\n")
    return folder


@pytest.fixture
def tiny_kg(tiny_kg_folder: Path) -> KnowledgeGraph:
    return load_triples_folder(tiny_kg_folder)


@pytest.fixture(name="write_split")
def write_split_fixture():
    """The writer of triple files, for tests that build their own small graphs."""
    return write_split


@pytest.fixture(scope="session")
def wn9img_folder() -> Path:
    """The WN9-IMG excerpt (train / valid / test)."""
    return WN9IMG_EXCERPT
