"""``iidfusion predict``: a trained model's predictions, one CSV row per sample."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iidfusion.cli.options import bounded_int
from iidfusion.core.config import MAX_BATCH

if TYPE_CHECKING:
    from iidfusion.data.features.base import DatasetSplits
    from iidfusion.data.features.multiview import MultiViewArrays
    from iidfusion.engine.checkpoint import TrainedModel
    from iidfusion.tasks.classification.predict import Predictions

SPLIT_CHOICES = ("test", "val", "train", "all", "none")

DESCRIPTION = """\
Load a checkpoint of `iidfusion fit` (OUT/METHOD/seedK/checkpoints/best.ckpt: the weights of
the best validation epoch, those metrics.json reports) and predict the rows of --data, scaled
with the scaling fitted on the run's training split (stored in the checkpoint). Data without
labels (new data to score) are predicted whole: every row, in file order (--split none, their
default). Data with labels are split as `fit` split them (the run's seed and fractions), so the
training file gives back the run's own splits, and --split picks which (default test; none:
every row, unsplit). Writes --out (CSV): row (the row of --data, from 0) and id (with an id
column, --id-column), split and index (position in the split) when split, label (the file's
class) when labelled, predicted and predicted_name, prob_<class> per class, and weight_<view>
per view (the fusion weight the model gave each view for that row). Prints the accuracy when
labelled."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict with a trained model; one CSV row per sample", description=DESCRIPTION
    )
    model = parser.add_argument_group("model options")
    model.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="a checkpoint of `iidfusion fit` (e.g. .../checkpoints/best.ckpt)",
    )
    model.add_argument(
        "--batch-size", type=bounded_int(1, MAX_BATCH), default=1024, help="samples per forward pass (default 1024)"
    )
    data = parser.add_argument_group("data options")
    data.add_argument(
        "--data",
        required=True,
        help="bundled data set name or a .mat, .npz, .csv or .parquet file with the model's views",
    )
    data.add_argument(
        "--split",
        choices=SPLIT_CHOICES,
        default=None,
        help="which split of --data to predict; none: every row in file order, unsplit "
        "(default: test with labels, none without)",
    )
    data.add_argument(
        "--views", default=None, help="the data file's views, comma-separated, as `fit` takes them (default: the run's)"
    )
    data.add_argument("--labels", default=None, help="key or column of the data file's labels (default: the run's)")
    data.add_argument(
        "--id-column",
        default=None,
        help="key or column of the rows' ids, written beside each prediction (default: the run's)",
    )
    output = parser.add_argument_group("output options")
    output.add_argument("--out", required=True, type=Path, help="the CSV file to write")
    output.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="replace --out if it exists (default: refuse)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from iidfusion.api import load_model
    from iidfusion.data.features.multiview import make_splits
    from iidfusion.data.features.registry import load_dataset, read_dataset
    from iidfusion.engine.outputs import check_output_folder, write_text_atomic

    if args.out.is_dir():
        raise ValueError(f"--out {args.out} is a folder; give the path of a CSV file")
    if args.out.exists() and not args.overwrite:
        raise ValueError(f"--out {args.out} exists; pass --overwrite to replace it")
    check_output_folder(args.out.parent, name=f"the folder of --out {args.out}", shared=True)
    trained = load_model(args.checkpoint, flag="--checkpoint")
    if trained.method == "kg":
        raise ValueError(
            f"--checkpoint {args.checkpoint} is a knowledge-graph model; `predict` reads checkpoints of `iidfusion fit`"
        )
    config = trained.config
    views = tuple(v for v in args.views.split(",") if v) if args.views is not None else config.views
    labels = (args.labels if args.labels is not None else config.labels) or None
    id_column = (args.id_column if args.id_column is not None else config.id_column) or None
    if Path(args.data).is_dir():  # a feature cache: its own splits
        if args.split == "none":
            raise ValueError(f"--data {args.data} is a feature cache, whose rows come in splits: choose a --split")
        splits = load_dataset(args.data, seed=trained.seed or 0, scale=trained.scaler)
        name, rows = splits.name, _split_rows(trained, splits, args.split or "test", args.batch_size)
    else:
        name, arrays = read_dataset(args.data, views=views, labels=labels, id_column=id_column, require_labels=False)
        split = args.split or ("test" if arrays.labels is not None else "none")
        if split == "none":
            rows = _file_rows(trained, arrays, args.batch_size, args.data)
        elif arrays.labels is None:
            raise ValueError(
                f"--data {args.data}: no labels, so no split of `fit` to predict; --split none (the default "
                "for data without labels) predicts every row"
            )
        else:
            splits = make_splits(
                arrays,
                name,
                seed=trained.seed or 0,
                val_fraction=config.val_fraction,
                test_fraction=config.test_fraction,
                scale=trained.scaler,
            )
            rows = _split_rows(trained, splits, split, args.batch_size)
    if not rows:
        raise ValueError(f"--data {args.data}: no rows to predict")
    write_text_atomic(args.out, _csv(rows))
    labelled = [row for row in rows if "label" in row]
    accuracy = (
        f", accuracy {100 * sum(r['label'] == r['predicted_name'] for r in labelled) / len(labelled):.2f}%"
        if labelled
        else " (no labels)"
    )
    print(f"{trained.method}: {len(rows)} rows of {name}{accuracy}; written to {args.out}")
    return 0


def _split_rows(trained: TrainedModel, splits: DatasetSplits, split: str, batch_size: int) -> list[dict[str, Any]]:
    """The rows of the predictions of ``split`` (or every split, "all") of ``splits``."""
    from iidfusion.tasks.classification.predict import predict_scaled

    parts = ("train", "val", "test") if split == "all" else (split,)
    class_index = _class_index(splits.class_names, trained.output_names, splits.name)
    rows: list[dict[str, Any]] = []
    for part in parts:
        data = splits.split(part)
        found = predict_scaled(trained, data.views, batch_size)
        file_rows = splits.rows.get(part)
        for index, row in enumerate(_rows(found, [class_index[int(y)] for y in data.labels])):
            where = {"split": part, "index": index}
            if file_rows is not None:
                where["row"] = int(file_rows[index])
                if splits.ids is not None:
                    where["id"] = _id_text(splits.ids[file_rows[index]])
            rows.append(where | row)
    return rows


def _file_rows(trained: TrainedModel, arrays: MultiViewArrays, batch_size: int, data: str) -> list[dict[str, Any]]:
    """The rows of the predictions of every row of ``arrays``, in file order."""
    from iidfusion.data.features.multiview import encode_labels
    from iidfusion.tasks.classification.predict import predict_views

    found = predict_views(trained, arrays.views, batch_size=batch_size, source=f"--data {data}")
    labels = None
    if arrays.labels is not None:
        codes, names = encode_labels(arrays.labels, arrays.source)
        class_index = _class_index(names, trained.output_names, data)
        labels = [class_index[int(code)] for code in codes]
    ids = arrays.ids
    return [
        {"row": number} | ({"id": _id_text(ids[number])} if ids is not None else {}) | row
        for number, row in enumerate(_rows(found, labels))
    ]


def _id_text(value: Any) -> str:
    """A row id as written: a whole number without its ``.0`` (a numeric id column is read as floats)."""
    if isinstance(value, float) and value.is_integer():  # numpy's float64 too
        return str(int(value))
    return str(value)


def _class_index(file_classes: tuple[str, ...], model_classes: tuple[str, ...], data: str) -> dict[int, int]:
    """The model's class index of each class code of the data file (matched by name)."""
    if file_classes == model_classes:
        return {k: k for k in range(len(file_classes))}
    unknown = [name for name in file_classes if name not in model_classes]
    if unknown:
        raise ValueError(f"--data {data}: class {unknown[0]!r} is not one the model knows ({', '.join(model_classes)})")
    return {k: model_classes.index(name) for k, name in enumerate(file_classes)}


def _rows(found: Predictions, labels: list[int] | None) -> list[dict[str, Any]]:
    """One CSV row per prediction: the label (when known), the prediction, the probabilities, the weights."""
    rows = []
    for k, (guess, probs, w) in enumerate(
        zip(found.predicted.tolist(), found.probabilities.tolist(), found.weights.tolist(), strict=True)
    ):
        row: dict[str, Any] = {"label": found.classes[labels[k]]} if labels is not None else {}
        row |= {"predicted": guess, "predicted_name": found.classes[guess]}
        row |= {f"prob_{name}": f"{p:.6g}" for name, p in zip(found.classes, probs, strict=True)}
        row |= {f"weight_{view}": f"{v:.6g}" for view, v in zip(found.views, w, strict=True)}
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
