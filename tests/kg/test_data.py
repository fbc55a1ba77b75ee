from pathlib import Path

import pytest
import torch

from iidfusion.kg.data import (
    find_split_file,
    load_kg,
    load_triples_folder,
    pykeen_umls_folder,
    read_triples,
    with_reciprocals,
)


def test_tiny_folder_crlf_ids_sorted(tiny_kg_folder):
    kg = load_triples_folder(tiny_kg_folder)
    assert kg.name == "tiny"
    assert kg.entities == tuple(sorted(kg.entities)) and kg.num_entities == 12
    assert kg.relations == ("rel_0", "rel_1", "rel_2")
    raw = read_triples(tiny_kg_folder / "test")
    assert not any("\r" in field for triple in raw for field in triple)
    # Ids decode back to the names of the file, in the file's order.
    decoded = [(kg.entities[h], kg.relations[r], kg.entities[t]) for h, r, t in kg.test.tolist()]
    assert decoded == raw
    assert len(kg.train) + len(kg.valid) + len(kg.test) == 36


def test_reciprocals_swap_and_offset(tiny_kg):
    both = with_reciprocals(tiny_kg.test, tiny_kg.num_relations)
    n = len(tiny_kg.test)
    assert torch.equal(both[:n], tiny_kg.test)
    assert torch.equal(both[n:, 0], tiny_kg.test[:, 2]) and torch.equal(both[n:, 2], tiny_kg.test[:, 0])
    assert torch.equal(both[n:, 1], tiny_kg.test[:, 1] + tiny_kg.num_relations)


def test_real_wn9img_excerpt_counts(wn9img_folder):
    """The leading triples of the real files (the full graph: 6,555 entities, 9 relations,
    11,741 / 1,337 / 1,319 triples). Counts of the excerpt by `cut -f1,3 | sort -u`: 792
    entities (695 in train), 8 relations."""
    kg = load_triples_folder(wn9img_folder, vocabulary="all")
    assert (kg.num_entities, kg.num_relations) == (792, 8)
    assert (len(kg.train), len(kg.valid), len(kg.test)) == (400, 30, 30)
    assert kg.entities[0].startswith("n") and "_hypernym" in kg.relations
    assert all(not e.endswith("\r") for e in kg.entities)  # CRLF line ends are not part of the names
    with pytest.raises(ValueError, match="valid"):  # train ids only: the excerpt's valid split has unseen entities
        load_triples_folder(wn9img_folder)


def test_umls_from_pykeen_offline():
    folder = pykeen_umls_folder()
    assert find_split_file(folder, "train").name == "train.txt"
    kg = load_kg("umls")
    assert (kg.num_entities, kg.num_relations) == (135, 46)
    assert (len(kg.train), len(kg.valid), len(kg.test)) == (5216, 652, 661)


def test_named_graph_looked_up_under_data_roots(tiny_kg_folder, monkeypatch):
    (tiny_kg_folder.parent / "wn9img").symlink_to(tiny_kg_folder)
    monkeypatch.setenv("IIDFUSION_DATA", str(tiny_kg_folder.parent))
    assert load_kg("wn9img").num_entities == 12
    monkeypatch.setenv("IIDFUSION_DATA", str(tiny_kg_folder))
    monkeypatch.chdir(tiny_kg_folder)
    with pytest.raises(FileNotFoundError, match="fbimg.*not bundled"):
        load_kg("fbimg")
    with pytest.raises(FileNotFoundError, match="neither a known"):
        load_kg("no-such-graph")


def test_malformed_line_names_file_and_line(tmp_path: Path):
    path = tmp_path / "train"
    path.write_text("a\tr\tb\r\n\r\na\tr b\r\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{path}:3: expected"):
        read_triples(path)
    path.write_text("a\tr\t\n", encoding="utf-8")
    with pytest.raises(ValueError, match=":1:"):
        read_triples(path)


def test_unknown_entity_or_relation_in_test(tmp_path: Path, write_split):
    write_split(tmp_path / "train", [("a", "r", "b"), ("b", "r", "c")])
    write_split(tmp_path / "valid", [("a", "r", "c")])
    write_split(tmp_path / "test", [("a", "r", "zebra")])
    with pytest.raises(ValueError, match=r"test: entity 'zebra' does not occur in the training"):
        load_triples_folder(tmp_path)
    # OTKGE's vocabulary over all splits accepts it.
    assert load_triples_folder(tmp_path, vocabulary="all").num_entities == 4
    write_split(tmp_path / "test", [("a", "s", "b")])
    with pytest.raises(ValueError, match="relation 's'"):
        load_triples_folder(tmp_path)


def test_missing_split_file(tmp_path: Path, write_split):
    write_split(tmp_path / "train.txt", [("a", "r", "b")])
    with pytest.raises(FileNotFoundError, match="no valid split"):
        load_triples_folder(tmp_path)
