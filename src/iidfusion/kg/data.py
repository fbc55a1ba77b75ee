"""Knowledge-graph triples: raw ``train/valid/test`` files, id maps, reciprocal relations.

The format is the one OTKGE and PyKEEN distribute: one triple a line, ``head<TAB>relation<TAB>tail``,
LF or CRLF line endings, blank lines ignored. Entity and relation ids are positions in the
SORTED names of the training split (OTKGE sorts too, so per-entity feature matrices whose rows
follow the sorted entity names line up with our ids). An entity or relation of valid/test that
training never saw cannot be scored by an embedding model and is an error unless the caller
asks for the vocabulary of all splits (``vocabulary="all"``, what OTKGE's preprocessing does).

Link prediction with reciprocal relations (Lacroix et al., 2018; OTKGE): the triple (h, r, t)
also yields the query (t, r + R, ?) with answer h, so every query is "predict the tail" and
the model needs one 1-N scoring only.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from iidfusion.core.files import read_utf8_lines

SPLITS: tuple[str, ...] = ("train", "valid", "test")
# Suffixes tried for each split file, in order: OTKGE ships bare names, PyKEEN ``.txt``.
SPLIT_SUFFIXES: tuple[str, ...] = ("", ".txt", ".tsv")
# Knowledge graphs known by name. "umls" is bundled with PyKEEN; the others are looked up as a
# folder of that name under the data roots (see :func:`data_roots`).
BUNDLED_KGS: tuple[str, ...] = ("umls",)
EXTERNAL_KGS: dict[str, tuple[str, ...]] = {"wn9img": ("wn9img", "WN9IMG"), "fbimg": ("fbimg", "FBIMG")}
Vocabulary = Literal["train", "all"]


@dataclass(frozen=True)
class KnowledgeGraph:
    """Triples of one knowledge graph as (n, 3) LongTensors of ids (head, relation, tail).

    ``entities`` and ``relations`` are the sorted names; an id is the position of its name.
    ``num_relations`` counts the original relations R; reciprocal queries use ids R..2R-1.
    """

    name: str
    entities: tuple[str, ...]
    relations: tuple[str, ...]
    train: Tensor
    valid: Tensor
    test: Tensor

    def __post_init__(self) -> None:
        for split in SPLITS:
            triples = self.split(split)
            if triples.ndim != 2 or triples.shape[1] != 3 or triples.dtype != torch.long:
                raise ValueError(
                    f"{split} triples must be an (n, 3) LongTensor, got {triples.dtype} {tuple(triples.shape)}"
                )
            if len(triples) and (
                int(triples[:, [0, 2]].min()) < 0
                or int(triples[:, [0, 2]].max()) >= self.num_entities
                or int(triples[:, 1].min()) < 0
                or int(triples[:, 1].max()) >= self.num_relations
            ):
                raise ValueError(
                    f"{split} triples hold ids outside {self.num_entities} entities / {self.num_relations} relations"
                )
        if len(self.train) == 0:
            raise ValueError(f"knowledge graph {self.name!r} has no training triples")

    @property
    def num_entities(self) -> int:
        return len(self.entities)

    @property
    def num_relations(self) -> int:
        return len(self.relations)

    def split(self, name: str) -> Tensor:
        """The triples of split ``name`` ("train", "valid" or "test")."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {list(SPLITS)}")
        return getattr(self, name)

    def summary(self) -> str:
        sizes = " / ".join(f"{len(self.split(s)):,}" for s in SPLITS)
        return (
            f"{self.name}: {self.num_entities:,} entities, {self.num_relations:,} relations, "
            f"{sizes} train / valid / test triples"
        )


def with_reciprocals(triples: Tensor, num_relations: int) -> Tensor:
    """(h, r, t) rows followed by their reciprocals (t, r + R, h): tail queries for both directions."""
    reciprocal = torch.stack([triples[:, 2], triples[:, 1] + num_relations, triples[:, 0]], dim=1)
    return torch.cat([triples, reciprocal], dim=0)


def read_triples(path: str | Path) -> list[tuple[str, str, str]]:
    """The (head, relation, tail) name triples of a tab-separated file.

    CRLF line endings and blank lines are accepted; any other line that does not split into
    exactly three non-empty tab-separated fields raises ValueError naming ``file:line``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"triple file not found: {path}")
    triples = []
    for number, line in enumerate(read_utf8_lines(path), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not all(field.strip() for field in fields):
            raise ValueError(
                f"{path}:{number}: expected 'head<TAB>relation<TAB>tail', got {len(fields)} field(s): {line[:80]!r}"
            )
        head, relation, tail = (field.strip() for field in fields)
        triples.append((head, relation, tail))
    return triples


def _to_ids(
    triples: Sequence[tuple[str, str, str]],
    entity_ids: dict[str, int],
    relation_ids: dict[str, int],
    source: Path,
) -> Tensor:
    rows = []
    for head, relation, tail in triples:
        for entity in (head, tail):
            if entity not in entity_ids:
                raise ValueError(
                    f"{source}: entity {entity!r} does not occur in the training triples "
                    "(an embedding model cannot score it; pass vocabulary='all' to index every split)"
                )
        if relation not in relation_ids:
            raise ValueError(f"{source}: relation {relation!r} does not occur in the training triples")
        rows.append((entity_ids[head], relation_ids[relation], entity_ids[tail]))
    return torch.tensor(rows, dtype=torch.long).reshape(-1, 3)


def find_split_file(folder: Path, split: str) -> Path:
    """``folder/split`` with the first suffix of :data:`SPLIT_SUFFIXES` that exists."""
    for suffix in SPLIT_SUFFIXES:
        candidate = folder / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    tried = ", ".join(f"{split}{s}" for s in SPLIT_SUFFIXES)
    raise FileNotFoundError(f"no {split} split in {folder} (looked for {tried})")


def load_triples_folder(
    folder: str | Path, *, name: str | None = None, vocabulary: Vocabulary = "train"
) -> KnowledgeGraph:
    """A :class:`KnowledgeGraph` from ``folder/{train,valid,test}`` (bare, ``.txt`` or ``.tsv``).

    ``vocabulary="train"`` (default): ids from the training triples; an unseen entity or
    relation in valid/test is a ValueError. ``"all"``: ids from all three splits (OTKGE).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"knowledge-graph folder not found: {folder}")
    if vocabulary not in ("train", "all"):
        raise ValueError(f"vocabulary must be 'train' or 'all', got {vocabulary!r}")
    files = {split: find_split_file(folder, split) for split in SPLITS}
    named = {split: read_triples(path) for split, path in files.items()}
    indexed = named["train"] if vocabulary == "train" else [t for s in SPLITS for t in named[s]]
    entities = tuple(sorted({e for h, _, t in indexed for e in (h, t)}))
    relations = tuple(sorted({r for _, r, _ in indexed}))
    entity_ids = {e: i for i, e in enumerate(entities)}
    relation_ids = {r: i for i, r in enumerate(relations)}
    ids = {split: _to_ids(named[split], entity_ids, relation_ids, files[split]) for split in SPLITS}
    return KnowledgeGraph(name or folder.name, entities, relations, ids["train"], ids["valid"], ids["test"])


def pykeen_umls_folder() -> Path:
    """The folder of the UMLS triples bundled with the installed ``pykeen`` (read, not imported).

    Locating the package without importing it avoids PyKEEN's import time and any download.
    """
    spec = importlib.util.find_spec("pykeen")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the UMLS triples come with the 'pykeen' package: pip install 'iidfusion[kg]'")
    folder = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "umls"
    if not folder.is_dir():
        raise FileNotFoundError(f"the installed pykeen has no bundled UMLS folder at {folder}")
    return folder


def data_roots() -> list[Path]:
    """Where named external graphs are looked up, in order.

    ``$IIDFUSION_DATA`` (a path list, ``os.pathsep``-separated), then ``./data`` and
    ``../shared/data`` relative to the working directory.
    """
    roots = [Path(p) for p in os.environ.get("IIDFUSION_DATA", "").split(os.pathsep) if p]
    return roots + [Path("data"), Path("..") / "shared" / "data"]


def resolve_kg_path(name_or_path: str | Path) -> tuple[str, Path]:
    """(name, folder) for a bundled name, an external name (``wn9img``, ``fbimg``) or a folder."""
    key = str(name_or_path).lower()
    if key in BUNDLED_KGS:
        return key, pykeen_umls_folder()
    if key in EXTERNAL_KGS:
        roots = data_roots()
        for root in roots:
            for folder_name in EXTERNAL_KGS[key]:
                if (root / folder_name).is_dir():
                    return key, root / folder_name
        looked = ", ".join(str(root / EXTERNAL_KGS[key][0]) for root in roots)
        raise FileNotFoundError(
            f"knowledge graph {key!r} is not bundled; put its train/valid/test files in one of: {looked} "
            "(or set IIDFUSION_DATA, or pass the folder path)"
        )
    path = Path(name_or_path)
    if not path.is_dir():
        known = list(BUNDLED_KGS) + list(EXTERNAL_KGS)
        raise FileNotFoundError(f"{name_or_path!s} is neither a known knowledge graph {known} nor a folder")
    return path.name, path


def load_kg(name_or_path: str | Path, *, vocabulary: Vocabulary = "train") -> KnowledgeGraph:
    """Load a knowledge graph by name (``umls``, ``wn9img``, ``fbimg``) or from a folder of triples."""
    name, folder = resolve_kg_path(name_or_path)
    return load_triples_folder(folder, name=name, vocabulary=vocabulary)
