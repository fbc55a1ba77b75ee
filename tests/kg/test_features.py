import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from iidfusion.kg.features import (
    build_modality_features,
    default_cache_dir,
    default_feature_sources,
    entity_name_embeddings,
    entity_text,
    load_entity_features,
    load_ordered_features,
    load_text_features,
    parse_feature_specs,
    read_entity_order,
    read_entity_texts,
)

ENTITIES = ("alga", "amino_acid_sequence", "bird")


def test_npy_rows_follow_entity_order(tmp_path: Path):
    matrix = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.save(tmp_path / "img.npy", matrix)
    features = load_entity_features(tmp_path / "img.npy", ENTITIES)
    assert features.dtype == torch.float32 and torch.equal(features, torch.from_numpy(matrix).float())


def test_pickled_dict_any_order_extra_ignored(tmp_path: Path):
    vectors = {"bird": [3.0, 3.0], "alga": np.array([1.0, 1.0]), "amino_acid_sequence": (2.0, 2.0), "extra": [9.0, 9.0]}
    (tmp_path / "ling.pkl").write_bytes(pickle.dumps(vectors))
    features = load_entity_features(tmp_path / "ling.pkl", ENTITIES)
    assert features[:, 0].tolist() == [1.0, 2.0, 3.0]


def test_missing_entity_width_mismatch_and_row_count(tmp_path: Path):
    (tmp_path / "a.pkl").write_bytes(pickle.dumps({"alga": [1.0], "bird": [2.0]}))
    with pytest.raises(ValueError, match="no features for 1 of 3 entities, e.g. 'amino_acid_sequence'"):
        load_entity_features(tmp_path / "a.pkl", ENTITIES)
    (tmp_path / "b.pkl").write_bytes(
        pickle.dumps({"alga": [1.0, 2.0], "amino_acid_sequence": [1.0], "bird": [2.0, 3.0]})
    )
    with pytest.raises(ValueError, match="'amino_acid_sequence' has a feature vector of width 1"):
        load_entity_features(tmp_path / "b.pkl", ENTITIES)
    np.save(tmp_path / "c.npy", np.zeros((2, 5)))
    with pytest.raises(ValueError, match="2 feature rows for 3 entities"):
        load_entity_features(tmp_path / "c.npy", ENTITIES)
    np.save(tmp_path / "d.npy", np.array([[0.0], [np.nan], [1.0]]))
    with pytest.raises(ValueError, match="non-finite.*row 1"):
        load_entity_features(tmp_path / "d.npy", ENTITIES)
    (tmp_path / "e.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(ValueError, match="pickled dict"):
        load_entity_features(tmp_path / "e.pkl", ENTITIES)
    (tmp_path / "f.csv").write_text("1,2")
    with pytest.raises(ValueError, match="unsupported feature file type"):
        load_entity_features(tmp_path / "f.csv", ENTITIES)
    with pytest.raises(FileNotFoundError):
        load_entity_features(tmp_path / "none.npy", ENTITIES)


def test_name_embeddings_are_cached_by_content(tmp_path: Path):
    calls = []

    def fake_encoder(texts):
        calls.append(list(texts))
        return torch.stack([torch.tensor([len(t), t.count(" ")], dtype=torch.float32) for t in texts])

    first = entity_name_embeddings(ENTITIES, cache_dir=tmp_path, encoder=fake_encoder, encoder_name="fake")
    assert calls == [["alga", "amino acid sequence", "bird"]]
    again = entity_name_embeddings(ENTITIES, cache_dir=tmp_path, encoder=fake_encoder, encoder_name="fake")
    assert len(calls) == 1 and torch.equal(first, again)
    entity_name_embeddings(ENTITIES[:2], cache_dir=tmp_path, encoder=fake_encoder, encoder_name="fake")
    assert len(calls) == 2  # another entity list is another cache entry
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_entity_text_and_specs(tmp_path: Path, monkeypatch):
    assert entity_text("amino_acid__sequence ") == "amino acid sequence"
    assert parse_feature_specs(["ling=minilm", "img = a.npy"]) == {"ling": "minilm", "img": "a.npy"}
    for bad in (["ling"], ["=x.npy"], ["structure=x.npy"], ["a=x.npy", "a=y.npy"]):
        with pytest.raises(ValueError):
            parse_feature_specs(bad)
    monkeypatch.setenv("IIDFUSION_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"


def test_build_modality_features_mixes_files_and_names(tiny_kg, tmp_path: Path):
    np.save(tmp_path / "img.npy", np.ones((tiny_kg.num_entities, 3)))

    def fake_encoder(texts):
        return torch.zeros(len(texts), 5)

    features = build_modality_features(
        tiny_kg, {"img": str(tmp_path / "img.npy"), "ling": "minilm"}, cache_dir=tmp_path, encoder=fake_encoder
    )
    assert {k: tuple(v.shape) for k, v in features.items()} == {"img": (12, 3), "ling": (12, 5)}


# ---------------------------------------------------------------- TransAE's WN9-IMG layout
# (tests/fixtures/wn9img_layout)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "wn9img_layout"


@pytest.fixture
def fixture_kg():
    from iidfusion.kg.data import load_triples_folder

    return load_triples_folder(FIXTURE, vocabulary="all")


def test_npy_rows_in_the_order_of_entity2id(fixture_kg):
    matrix = np.load(FIXTURE / "text_features.npy")
    rows = {
        line.split("\t")[0]: int(line.split("\t")[1]) for line in (FIXTURE / "entity2id.txt").read_text().splitlines()
    }
    assert list(rows) != sorted(rows)  # the file's order is not our id order, so a plain .npy would be wrong
    features = load_ordered_features(FIXTURE / "text_features.npy", FIXTURE / "entity2id.txt", fixture_kg.entities)
    for entity_id, name in enumerate(fixture_kg.entities):
        assert torch.equal(features[entity_id], torch.from_numpy(matrix[rows[name]]))
    via_spec = build_modality_features(fixture_kg, {"text": "text_features.npy@entity2id.txt"}, base_dir=FIXTURE)
    assert torch.equal(via_spec["text"], features)


def test_entity_order_formats_and_errors(tmp_path: Path):
    (tmp_path / "names.txt").write_text("bird\nalga\r\namino_acid_sequence\n\n")
    assert read_entity_order(tmp_path / "names.txt") == ["bird", "alga", "amino_acid_sequence"]
    for text, message in (
        ("alga\t0\nbird\t0\n", r"bad.txt:2: row 0 is given twice"),
        ("alga\t0\nbird\t2\n", r"rows must be 0..1, each once"),
        ("alga\tzero\n", r"bad.txt:1: expected 'entity name<TAB>row'"),
        ("alga\nalga\n", "an entity name is listed twice"),
    ):
        (tmp_path / "bad.txt").write_text(text)
        with pytest.raises(ValueError, match=message):
            read_entity_order(tmp_path / "bad.txt")
    np.save(tmp_path / "m.npy", np.zeros((2, 3)))
    (tmp_path / "order.txt").write_text("alga\t0\nbird\t1\namino_acid_sequence\t2\n")
    with pytest.raises(ValueError, match=r"shape \(2, 3\), but .*order.txt names 3 rows"):
        load_ordered_features(tmp_path / "m.npy", tmp_path / "order.txt", ENTITIES)
    np.save(tmp_path / "m.npy", np.zeros((3, 3)))
    (tmp_path / "order.txt").write_text("alga\t0\nbird\t1\nzebra\t2\n")
    with pytest.raises(ValueError, match="no features for 1 of 3 entities, e.g. 'amino_acid_sequence'"):
        load_ordered_features(tmp_path / "m.npy", tmp_path / "order.txt", ENTITIES)


def test_text_feature_files(tmp_path: Path):
    (tmp_path / "ling.txt").write_text("bird 3 3.5\r\nalga\t1\t1.5\nextra 9 9\n\namino_acid_sequence 2 2.5\n")
    features = load_text_features(tmp_path / "ling.txt", ENTITIES)
    assert features.tolist() == [[1.0, 1.5], [2.0, 2.5], [3.0, 3.5]]
    (tmp_path / "bad.tsv").write_text("alga 1 x\n")
    with pytest.raises(ValueError, match=r"bad.tsv:1: expected an entity name and numbers"):
        load_text_features(tmp_path / "bad.tsv", ENTITIES)


def test_descriptions_encoded_in_entity_order_and_cached(fixture_kg, tmp_path: Path):
    glosses = dict(line.split("\t") for line in (FIXTURE / "descriptions.tsv").read_text().splitlines())
    calls = []

    def fake_encoder(texts):
        calls.append(list(texts))
        return torch.stack([torch.tensor([len(t), t.count(" ")], dtype=torch.float32) for t in texts])

    sources = {"description": "minilm:descriptions.tsv"}
    first = build_modality_features(fixture_kg, sources, cache_dir=tmp_path, encoder=fake_encoder, base_dir=FIXTURE)
    assert calls == [[glosses[e] for e in fixture_kg.entities]]
    again = build_modality_features(fixture_kg, sources, cache_dir=tmp_path, encoder=fake_encoder, base_dir=FIXTURE)
    assert len(calls) == 1 and torch.equal(first["description"], again["description"])
    (tmp_path / "few.tsv").write_text(f"{fixture_kg.entities[0]}\ta gloss\n")
    with pytest.raises(ValueError, match=r"few.tsv: no text for 11 of 12 entities"):
        build_modality_features(fixture_kg, {"d": f"minilm:{tmp_path / 'few.tsv'}"}, encoder=fake_encoder)
    (tmp_path / "twice.tsv").write_text("a\tone\na\ttwo\n")
    with pytest.raises(ValueError, match=r"twice.tsv:2: entity 'a' is given twice"):
        read_entity_texts(tmp_path / "twice.tsv")


def test_default_sources_of_a_folder(tmp_path: Path):
    assert default_feature_sources(FIXTURE) == {
        "text": "text_features.npy@entity2id.txt",
        "description": "minilm:descriptions.tsv",
    }
    assert default_feature_sources(tmp_path) == {"ling": "minilm"}


class _EvalPayload:
    """Pickles as a call of eval that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("kind", ["shell", "eval"])
@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_pickle_that_would_run_code_is_refused_before_it_runs(
    tmp_path: Path, kind: str, protocol: int, shell_payload
):
    payload = shell_payload if kind == "shell" else _EvalPayload
    marker = tmp_path / "ran"
    for name, content in {
        "bare.pkl": payload(marker),
        "in_dict.pkl": {"alga": payload(marker), "bird": [1.0], "amino_acid_sequence": [2.0]},
        "in_object_array.pkl": {"alga": np.array([payload(marker)], dtype=object)},
    }.items():
        (tmp_path / name).write_bytes(pickle.dumps(content, protocol=protocol))
        with pytest.raises(
            ValueError,
            match=r"not a pickle of plain arrays \(it names (posix|nt|builtins|__builtin__)\.(system|eval), refused",
        ):
            load_entity_features(tmp_path / name, ENTITIES)
        assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_pickles_of_every_protocol_load(tmp_path: Path, protocol: int):
    """numpy arrays (transposed, of any width dtype), numpy scalars, lists and tuples."""
    vectors = {
        "alga": np.arange(4, dtype=np.float16).reshape(2, 2).T.ravel(),
        "amino_acid_sequence": [np.float64(2.0)] * 4,
        "bird": (3, 3, 3, 3),
    }
    (tmp_path / "ling.pkl").write_bytes(pickle.dumps(vectors, protocol=protocol))
    features = load_entity_features(tmp_path / "ling.pkl", ENTITIES)
    assert features.tolist() == [[0.0, 2.0, 1.0, 3.0], [2.0] * 4, [3.0] * 4]


def test_object_arrays_and_garbage_are_refused(tmp_path: Path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"objects\.npy: not a readable \.npy matrix \(Object arrays cannot be loaded"):
        load_entity_features(tmp_path / "objects.npy", ENTITIES)
    (tmp_path / "text.pkl").write_bytes(pickle.dumps({e: ["x", "y"] for e in ENTITIES}))
    with pytest.raises(ValueError, match="entity 'alga' holds <U1 values, not numbers"):
        load_entity_features(tmp_path / "text.pkl", ENTITIES)
    for name, content in (("garbage.pkl", b"\x00garbage"), ("truncated.pkl", pickle.dumps({"alga": [1.0]})[:-3])):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f"{name}: not a pickle of plain arrays"):
            load_entity_features(tmp_path / name, ENTITIES)
