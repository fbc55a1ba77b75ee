"""Which arrays of a multi-view file are the views and which the labels, whatever the layout.

Multi-view files come in many layouts (cells named ``X``, ``fea``, ``data``; labels under
``gnd``, ``truth``, ``truelabel``; matrices stored features x samples; an all-views matrix
beside the views). :func:`find_layout` takes a file's arrays by name (MATLAB cells as numpy
object arrays, 1x1 structs as numpy records, sparse matrices) and decides:

Labels: a vector (N, 1xN or Nx1) of integers, or of strings (a MATLAB cell of strings or a
char matrix), or a cell holding identical copies of one label vector (one per view). Names in
:data:`LABEL_NAMES` are tried first, in that order (exact, then ignoring case); a vector under
another name is taken only when it is the single candidate whose length matches a view
matrix, and a vector whose values are all distinct (an index) or all equal is not taken.
Several candidates that disagree are an error listing them.

Views, for N labels: a cell array of matrices, or the matrix fields of a struct, or else the
file's top-level 2-D matrices (label names excluded), each with N rows or N columns (N
columns: features x samples, transposed; square: samples x features), and its top-level arrays
of three or more axes whose first axis has N entries (images, ``(N, 8, 8)``), flattened to N rows
with a note. A cell or struct wins
over top-level matrices, which are then ignored with a note; two candidate cells or structs
are an error. Within the chosen views, a matrix equal to the column concatenation of all the
others (in any order) is dropped with a note. Sparse views are made dense.

``views=`` (keys: a matrix, a cell, a struct or ``STRUCT.FIELD``) and ``labels=`` (a key)
replace the detection; an unknown key is an error listing the candidates. What was picked is
returned as notes, which ``iidfusion datasets FILE`` prints; every array that is neither a view nor
the labels is named in a note (nothing is dropped unsaid).

Data that may have no labels (what ``iidfusion predict`` reads, ``require_labels=False``): labels
are taken only under the key given or a common label name; the views are found the same way, for
N the number of rows most of the file's matrices have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse

# Common label names, in the order they are tried.
LABEL_NAMES: tuple[str, ...] = ("Y", "y", "gt", "gnd", "truth", "truelabel", "label", "labels", "class")
# Cells of strings that name the views, in the order they are tried.
VIEW_NAME_KEYS: tuple[str, ...] = ("view_names", "feas")


@dataclass
class Layout:
    """The views (samples x features, dense), the labels (1-D) and how they were found.

    ``view_keys`` and ``label_key`` are the keys that, passed back as ``views=`` and
    ``labels=``, select the same arrays (how the other splits of a split-form file are read).
    """

    views: dict[str, np.ndarray]
    labels: np.ndarray | None
    view_keys: tuple[str, ...]
    label_key: str
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Item:
    """One array of the file, classified: kind is matrix, vector, strings, label-cell, view-cell, struct or other."""

    key: str
    kind: str
    value: Any
    shape: tuple[int, ...]


def find_layout(
    content: Mapping[str, Any],
    source: str,
    *,
    views: Sequence[str] = (),
    labels: str | None = None,
    view_names: Sequence[str] | None = None,
    require_labels: bool = True,
) -> Layout:
    """The views and labels of ``content`` (a file's arrays by name); rules in the module docstring.

    ``labels``: a key, or None to detect them. ``require_labels=False``: data that may have none
    (``Layout.labels`` is then None when none are found). ``view_names`` names the views of a
    cell (default ``view0``, ``view1``, ...).
    """
    items = _classify(content)
    notes: list[str] = []
    label_key, label_vector = "", None
    if require_labels or (labels in items if labels else _has_label_name(items)):
        label_key, label_vector = _pick_labels(items, labels or None, source, notes)
    n = len(label_vector) if label_vector is not None else _common_rows(items, views)
    ignored: list[_Item] = []
    if views:
        view_keys, raw = _named_views(items, views, source, view_names)
        notes.append(f"views: {', '.join(repr(k) for k in view_keys)}")
    else:
        view_keys, raw, ignored = _detect_views(items, n, label_key, source, view_names, notes)
    oriented = _orient_views(raw, n, source, notes)
    if not views:
        oriented = _drop_concatenation(oriented, notes)
    for item in ignored:
        matrix = _dense(item.value)
        whole = matrix.T if matrix.shape[1] == n and matrix.shape[0] != n else matrix
        what = (
            "the concatenation of the views" if whole.shape[0] == n and _concatenates(whole, oriented) else "not a view"
        )
        notes.append(f"ignored {item.key!r} {item.shape}: {what}")
    notes += _passed_over(items, label_key, view_keys, n, notes)
    return Layout(oriented, label_vector, tuple(view_keys), label_key, notes)


def _passed_over(
    items: Mapping[str, _Item], label_key: str, view_keys: Sequence[str], n: int, notes: Sequence[str]
) -> list[str]:
    """A note for every array of the file that is neither the labels nor in a view and that no
    note names yet (a 1-D, 3-D, empty or complex array, a scalar, text): nothing is dropped unsaid.
    The fields of a struct that is not used are named with the struct.
    """
    structs = {key for key in view_keys if items.get(key) is not None and items[key].kind == "struct"}
    used = {label_key, *view_keys} | {field for key in structs for field in items[key].value}
    used |= {key.rsplit(".", 1)[0] for key in view_keys if "." in key}  # STRUCT of a view given as STRUCT.FIELD
    said = " ".join(notes)
    passed = []
    for key, item in items.items():
        parent = items.get(key.rsplit(".", 1)[0]) if "." in key else None  # a struct's field, or a name with a dot
        if (
            key in used
            or f"{key!r}" in said
            or (parent is not None and parent.kind == "struct" and parent.key not in structs)
        ):
            continue
        passed.append(f"ignored {key!r} {_what(item)}: {_why(item, n)}")
    return passed


def _what(item: _Item) -> str:
    value = item.value
    if item.kind == "other" and not isinstance(value, np.ndarray):
        return type(value).__name__
    dtype = f" {value.dtype}" if isinstance(value, np.ndarray) and value.dtype != object else ""
    return f"{item.kind if item.kind in ('struct', 'view-cell', 'label-cell') else 'array'} {item.shape}{dtype}"


def _why(item: _Item, n: int) -> str:
    """Why an array is neither a view nor the labels, in a few words."""
    value = item.value
    if item.kind == "vector":
        return f"a vector of {len(value)} numbers, not the labels"
    if item.kind in ("strings", "label-cell"):
        return "labels, not the ones used"
    if item.kind in ("view-cell", "struct"):
        return "matrices, not the views used"
    if item.kind == "matrix":
        return (
            f"a matrix without {n} rows or columns (one per label)"
            if n not in item.shape
            else "a matrix, not a view used"
        )
    if not isinstance(value, np.ndarray):
        return "not an array"
    if value.dtype.kind == "c":
        return "complex numbers"
    if value.size == 0 or 0 in value.shape:
        return "empty"
    if value.ndim > 2:
        first = f"without {n} entries on its first axis (one per label)" if value.shape[0] != n else "not a view used"
        return f"{value.ndim}-D, {first}"
    if value.size == 1:
        return "a single value"
    return "neither numbers nor text" if value.dtype.kind not in "biufUS" else "neither a view nor the labels"


# ---------------------------------------------------------------- classifying the arrays


def _classify(content: Mapping[str, Any], prefix: str = "") -> dict[str, _Item]:
    items: dict[str, _Item] = {}
    for name, value in content.items():
        if name.startswith("__") or (not prefix and name in VIEW_NAME_KEYS):
            continue
        key = prefix + name
        while (
            isinstance(value, np.ndarray)
            and value.dtype == object
            and value.size == 1
            and _is_cell(value.reshape(-1)[0])
        ):
            value = value.reshape(-1)[0]  # a cell boxed in a 1x1 cell
        if isinstance(value, np.ndarray) and value.dtype.names is not None and value.size == 1:
            record = value.reshape(-1)[0]
            fields = {field_name: record[field_name] for field_name in value.dtype.names}
            nested = _classify(fields, key + ".")
            items.update(nested)
            items[key] = _Item(key, "struct", [k for k, item in nested.items() if item.kind == "matrix"], value.shape)
            continue
        items[key] = _item(key, value)
    return items


def _is_cell(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype == object


def _unwrap(value: Any) -> Any:
    """A 1x1 cell's content (recursively): MATLAB files often box a cell element in a cell."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.reshape(-1)[0]
    return value


def _is_vector(shape: tuple[int, ...]) -> bool:
    return (len(shape) == 1 and shape[0] >= 2) or (len(shape) == 2 and min(shape) == 1 and max(shape) >= 2)


def _item(key: str, value: Any) -> _Item:
    if scipy.sparse.issparse(value):
        return _Item(key, "matrix", value, tuple(value.shape))
    if not isinstance(value, np.ndarray):
        return _Item(key, "other", value, ())
    shape = tuple(value.shape)
    if value.dtype == object:
        return _cell_item(key, value)
    if value.dtype.kind in "US":
        return (
            _Item(key, "strings", value.reshape(-1), shape) if _is_vector(shape) else _Item(key, "other", value, shape)
        )
    if value.dtype.kind in "biuf" and len(shape) == 2 and min(shape) > 1:
        return _Item(key, "matrix", value, shape)
    if value.dtype.kind in "biuf" and _is_vector(shape):
        return _Item(key, "vector", value.reshape(-1), shape)
    if value.dtype.kind in "biuf" and len(shape) > 2 and value.size > 0:
        return _Item(key, "tensor", value, shape)  # images and the like: a view when its first axis is the samples
    return _Item(key, "other", value, shape)


def _cell_item(key: str, cell: np.ndarray) -> _Item:
    elements = [_unwrap(element) for element in cell.reshape(-1, order="F")]
    shape = tuple(cell.shape)
    if elements and all(isinstance(e, np.ndarray) and e.dtype.kind in "US" for e in elements):
        return _Item(key, "strings", np.array([cell_string(e) for e in elements]), shape)
    kinds = [_item(f"{key}{{{i + 1}}}", e).kind for i, e in enumerate(elements)]
    if elements and all(kind == "vector" for kind in kinds):
        return _Item(key, "label-cell", [np.asarray(e).reshape(-1) for e in elements], shape)
    if elements and all(kind in ("matrix", "vector") for kind in kinds) and "matrix" in kinds:
        return _Item(key, "view-cell", elements, shape)
    return _Item(key, "other", cell, shape)


def cell_string(item: object) -> str:
    """A MATLAB string as loadmat gives it (an array of characters or of one string) as text."""
    return "".join(str(part) for part in np.asarray(item).ravel())


# ---------------------------------------------------------------- labels


def _leaf(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def _label_value(item: _Item, source: str) -> np.ndarray | None:
    """The 1-D labels an item holds, or None; a label cell whose copies differ is an error."""
    if item.kind in ("vector", "strings"):
        return np.asarray(item.value)
    if item.kind == "label-cell":
        copies = item.value
        if all(len(c) == len(copies[0]) and np.array_equal(c, copies[0]) for c in copies[1:]):
            return copies[0]
        raise ValueError(
            f"{source}: the cell {item.key!r} holds {len(copies)} label vectors that differ; pass --labels KEY"
        )
    return None


def _looks_like_labels(vector: np.ndarray) -> bool:
    """Integers (or strings) with at least two values and not one value per sample (an index)."""
    if vector.dtype.kind == "f" and not (np.all(np.isfinite(vector)) and np.all(vector == np.round(vector))):
        return False
    distinct = len(np.unique(vector))
    return 2 <= distinct < len(vector)


def _name_rank(key: str) -> int | None:
    leaf = _leaf(key)
    if leaf in LABEL_NAMES:
        return LABEL_NAMES.index(leaf)
    lowered = [name.lower() for name in LABEL_NAMES]
    return len(LABEL_NAMES) + lowered.index(leaf.lower()) if leaf.lower() in lowered else None


def _pick_labels(items: Mapping[str, _Item], key: str | None, source: str, notes: list[str]) -> tuple[str, np.ndarray]:
    if key is not None:
        if key not in items:
            candidates = [k for k, item in items.items() if item.kind in ("vector", "strings", "label-cell")]
            raise ValueError(
                f"{source}: --labels {key!r} is not in the file; label candidates: {candidates}, keys: {list(items)}"
            )
        value = _label_value(items[key], source)
        if value is None:
            _refuse_label_values(items[key], source)
            raise ValueError(
                f"{source}: labels under {key!r} have shape {items[key].shape}; expected N, 1xN or Nx1 "
                "(or a cell of identical label vectors)"
            )
        notes.append(f"labels: {key!r}")
        return key, value
    lengths = {dim for item in items.values() if item.kind == "matrix" for dim in item.shape}
    lengths |= {dim for item in items.values() if item.kind == "view-cell" for e in item.value for dim in np.shape(e)}
    named: list[tuple[int, str, np.ndarray]] = []
    others: dict[str, np.ndarray] = {}
    for k, item in items.items():
        rank = _name_rank(k)
        if rank is not None:
            value = _label_value(item, source)
            if value is not None:
                named.append((rank, k, value))
        elif item.kind in ("vector", "strings", "label-cell"):
            value = _agreeing_copies(item)
            if value is not None and len(value) in lengths and _looks_like_labels(value):
                others[k] = value
    named.sort(key=lambda entry: entry[0])
    if named:
        _, chosen, value = named[0]
        clash = [k for _, k, v in named[1:] if len(v) == len(value) and not np.array_equal(v, value)]
        if clash:
            raise ValueError(f"{source}: label keys {[chosen, *clash]} disagree; pass --labels KEY to keep one")
        notes.append(f"labels: {chosen!r}")
        if others:
            notes.append(f"not used as labels: {', '.join(repr(k) for k in others)}")
        return chosen, value
    distinct: dict[str, np.ndarray] = {}
    for k, value in others.items():
        if not any(len(value) == len(v) and np.array_equal(value, v) for v in distinct.values()):
            distinct[k] = value
    if len(distinct) == 1:
        chosen, value = next(iter(distinct.items()))
        notes.append(f"labels: {chosen!r} (the only integer vector as long as the views; no common label name)")
        return chosen, value
    if distinct:
        listed = ", ".join(f"{k!r} ({len(v)} values)" for k, v in distinct.items())
        raise ValueError(f"{source}: several label candidates: {listed}; pass --labels KEY")
    misshapen = [k for k in items if _name_rank(k) is not None]
    if misshapen:
        k = misshapen[0]
        _refuse_label_values(items[k], source)
        raise ValueError(f"{source}: labels under {k!r} have shape {items[k].shape}; expected N, 1xN or Nx1")
    raise ValueError(
        f"{source}: no labels; expected an integer or string vector as long as the views (common names: "
        f"{', '.join(LABEL_NAMES)}) or --labels KEY; keys found: {list(items)}"
    )


def _has_label_name(items: Mapping[str, _Item]) -> bool:
    """Whether an array of the file has a common label name (data that may have no labels)."""
    return any(
        _name_rank(key) is not None and item.kind in ("vector", "strings", "label-cell") for key, item in items.items()
    )


def _refuse_label_values(item: _Item, source: str) -> None:
    """A label-shaped array of values that are no labels (complex numbers, objects) is named as such."""
    if _is_vector(item.shape) and isinstance(item.value, np.ndarray):
        raise ValueError(
            f"{source}: labels under {item.key!r} hold {item.value.dtype} values; class labels are integers or strings"
        )


def _agreeing_copies(item: _Item) -> np.ndarray | None:
    """The labels of a vector, or of a label cell whose copies agree (else None: not a candidate)."""
    if item.kind != "label-cell":
        return np.asarray(item.value)
    copies = item.value
    return copies[0] if all(len(c) == len(copies[0]) and np.array_equal(c, copies[0]) for c in copies[1:]) else None


# ---------------------------------------------------------------- views


def _cell_views(item: _Item, names: Sequence[str] | None, prefix: str | None) -> dict[str, Any]:
    elements = item.value
    if prefix is not None:
        return {f"{prefix}{i}": e for i, e in enumerate(elements)}
    if names is not None and len(names) == len(elements) and len(set(names)) == len(names):
        return dict(zip(names, elements, strict=True))
    return {f"view{i}": e for i, e in enumerate(elements)}


def _struct_views(items: Mapping[str, _Item], struct: _Item) -> dict[str, Any]:
    return {_leaf(key): items[key].value for key in struct.value}


def _view_candidates(items: Mapping[str, _Item]) -> list[str]:
    return [k for k, item in items.items() if item.kind in ("matrix", "view-cell", "struct", "vector", "tensor")]


def _named_views(
    items: Mapping[str, _Item], keys: Sequence[str], source: str, view_names: Sequence[str] | None
) -> tuple[list[str], dict[str, Any]]:
    views: dict[str, Any] = {}
    for key in keys:
        item = items.get(key)
        if item is None or item.kind not in ("matrix", "view-cell", "struct", "vector", "tensor"):
            found = (
                "not in the file"
                if item is None
                else f"not a numeric matrix, cell or struct ({item.kind}, shape {item.shape})"
            )
            raise ValueError(f"{source}: --views {key!r} is {found}; candidates: {_view_candidates(items)}")
        if item.kind == "view-cell":
            picked = _cell_views(item, view_names, None if len(keys) == 1 else key)
        elif item.kind == "struct":
            picked = _struct_views(items, item)
        else:
            picked = {key: item.value}
        for name, value in picked.items():
            if name in views:
                raise ValueError(f"{source}: --views gives the view {name!r} twice")
            views[name] = value
    return list(keys), views


def _has_samples(shape: tuple[int, ...], n: int) -> bool:
    return (len(shape) == 2 and n in shape) or (len(shape) > 2 and shape[0] == n)


def _common_rows(items: Mapping[str, _Item], views: Sequence[str]) -> int:
    """The number of samples of data without labels: the rows of the first view named, else the
    row count most of the file's matrices share (the first such count on a tie).
    """
    named = [items[key] for key in views if key in items and items[key].shape]
    candidates = named or [item for item in items.values() if item.kind in ("matrix", "tensor")]
    counts = [item.shape[0] for item in candidates]
    if not counts:
        raise ValueError("no matrices in the file: nothing to read as views")
    return max(counts, key=counts.count)


def _detect_views(
    items: Mapping[str, _Item], n: int, label_key: str, source: str, view_names: Sequence[str] | None, notes: list[str]
) -> tuple[list[str], dict[str, Any], list[_Item]]:
    """Keys and views found for ``n`` labels, and the top-level matrices passed over for a cell or struct."""
    containers = [item for item in items.values() if item.kind in ("view-cell", "struct") and item.value]
    top = [
        item
        for item in items.values()
        if (item.kind == "matrix" or (item.kind == "tensor" and item.shape[0] == n))
        and "." not in item.key
        and _name_rank(item.key) is None
        and item.key != label_key
    ]
    for item in items.values():
        if item.kind == "matrix" and "." not in item.key and _name_rank(item.key) is not None:
            notes.append(f"ignored {item.key!r} {item.shape}: a label name, not a view")

    def members(item: _Item) -> dict[str, Any]:
        return _cell_views(item, view_names, None) if item.kind == "view-cell" else _struct_views(items, item)

    fitting = [c for c in containers if all(_has_samples(np.shape(v), n) for v in members(c).values())]
    if len(fitting) > 1:
        listed = ", ".join(f"{c.kind.split('-')[-1]} {c.key!r} ({len(members(c))} views)" for c in fitting)
        raise ValueError(f"{source}: several candidates for the views: {listed}; pass --views KEY")
    if fitting:
        chosen = fitting[0]
        views = members(chosen)
        notes.append(f"views: {chosen.kind.split('-')[-1]} {chosen.key!r} ({len(views)} views)")
        return [chosen.key], views, top
    if containers and not any(_has_samples(t.shape, n) for t in top):
        return [containers[0].key], members(containers[0]), []  # _orient_views names the misfits
    if not top:
        raise ValueError(
            f"{source}: no views found; expected a cell array or struct of matrices, or 2-D matrices with {n} rows "
            f"or columns (one per label), or --views KEY; keys in the file: {list(items)}"
        )
    notes.append(f"views: top-level matrices {', '.join(repr(t.key) for t in top)}")
    return [t.key for t in top], {t.key: t.value for t in top}, []


def _dense(view: Any) -> np.ndarray:
    return view.toarray() if scipy.sparse.issparse(view) else np.asarray(view)


def _orient_views(views: Mapping[str, Any], n: int, source: str, notes: list[str]) -> dict[str, np.ndarray]:
    """Dense samples x features arrays: the axis of length ``n`` is the sample axis (rows when square).

    Every view is numeric: :func:`_classify` admits nothing else; an array of more axes whose
    first axis is the samples (an image per sample) is flattened, with a note.
    """
    oriented: dict[str, np.ndarray] = {}
    flipped = []
    sparse = [name for name, view in views.items() if scipy.sparse.issparse(view)]
    flattened = []
    for name, view in views.items():
        view = _dense(view)
        if view.ndim == 1:
            view = view.reshape(-1, 1)
        if view.ndim > 2 and view.shape[0] == n:
            flattened.append(f"{name!r} {view.shape}")
            view = view.reshape(n, -1)
        if view.shape[0] == n:
            oriented[name] = view
        elif view.shape[1] == n:
            oriented[name] = view.T
            flipped.append(name)
    if len(oriented) < len(views):
        shapes = ", ".join(f"{name!r} {np.shape(view)}" for name, view in views.items())
        raise ValueError(
            f"{source}: views have different sample counts: {n} labels, view shapes {shapes}; "
            f"each view needs {n} rows (samples x features) or {n} columns (features x samples); "
            "pass --views KEY[,KEY...] to choose"
        )
    if flipped:
        notes.append(f"stored features x samples, transposed: {', '.join(repr(name) for name in flipped)}")
    if flattened:
        notes.append(f"{', '.join(flattened)}: flattened to one feature per entry, one row per sample")
    if sparse:
        notes.append(f"sparse, made dense: {', '.join(repr(name) for name in sparse)}")
    return oriented


def _drop_concatenation(views: dict[str, np.ndarray], notes: list[str]) -> dict[str, np.ndarray]:
    """The views without one that is the column concatenation of all the others (any order)."""
    for name, view in views.items():
        others = {k: v for k, v in views.items() if k != name}
        if (
            len(others) >= 2
            and view.shape[1] == sum(v.shape[1] for v in others.values())
            and _concatenates(view, others)
        ):
            notes.append(f"ignored {name!r} {view.shape}: the concatenation of the other views")
            return others
    return views


def _concatenates(whole: np.ndarray, parts: Mapping[str, np.ndarray]) -> bool:
    whole = whole.astype(np.float64, copy=False)
    remaining = dict(parts)
    start = 0
    while remaining:
        match = next(
            (
                name
                for name, part in remaining.items()
                if start + part.shape[1] <= whole.shape[1]
                and np.allclose(whole[:, start : start + part.shape[1]], part, rtol=1e-6, atol=1e-9, equal_nan=True)
            ),
            None,
        )
        if match is None:
            return False
        start += remaining.pop(match).shape[1]
    return start == whole.shape[1]
