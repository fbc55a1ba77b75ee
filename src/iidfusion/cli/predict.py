"""``iidfusion predict``: a trained model's predictions, one CSV row per sample."""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from iidfusion.cli.options import bounded_int
from iidfusion.core.config import MAX_BATCH

if TYPE_CHECKING:
    from iidfusion.fusion.model import FusionModel

SPLIT_CHOICES = ("test", "val", "train", "all")

DESCRIPTION = """\
Load a checkpoint of `iidfusion fit` (OUT/METHOD/seedK/checkpoints/best.ckpt: the weights of
the best validation epoch, those metrics.json reports) and predict every sample of --split of
--data. --data is read like `fit` reads it, split by the run's seed and scaled with the scaling
fitted on the run's training split (stored in the checkpoint), so the training file gives back
the run's own splits. Writes --out (CSV): split, index (position in the split), label (the
file's class, by name), predicted and predicted_name, prob_<class> per class, and weight_<view>
per view (the fusion weights the model gave each view for that sample). Prints the accuracy."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "predict", help="predict with a trained model; one CSV row per sample", description=DESCRIPTION
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="a checkpoint of `iidfusion fit` (e.g. .../checkpoints/best.ckpt)",
    )
    parser.add_argument(
        "--data", required=True, help="bundled data set name or a .mat / .npz file with the model's views"
    )
    parser.add_argument("--out", required=True, type=Path, help="the CSV file to write")
    parser.add_argument(
        "--split", choices=SPLIT_CHOICES, default="test", help="which split of --data to predict (default: test)"
    )
    parser.add_argument(
        "--views", default=None, help="keys of the data file's views, comma-separated (default: the run's)"
    )
    parser.add_argument("--labels", default=None, help="key of the data file's labels (default: the run's)")
    parser.add_argument(
        "--batch-size", type=bounded_int(1, MAX_BATCH), default=1024, help="samples per forward pass (default 1024)"
    )
    parser.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="replace --out if it exists (default: refuse)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from iidfusion.api import load_model
    from iidfusion.data.features.registry import load_dataset
    from iidfusion.engine.outputs import check_output_folder, write_text_atomic
    from iidfusion.tasks.classification.evaluate import infer

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
    labels = args.labels if args.labels is not None else config.labels
    splits = load_dataset(args.data, seed=trained.seed or 0, views=views, labels=labels or None, scale=trained.scaler)
    if splits.view_dims != trained.inputs:
        raise ValueError(
            f"--data {args.data}: views {splits.view_dims} (name: width), the model was trained on {trained.inputs}"
        )
    class_index = _class_index(splits.class_names, trained.output_names, args.data)
    parts = ("train", "val", "test") if args.split == "all" else (args.split,)
    rows, correct, total = [], 0, 0
    for part in parts:
        data = splits.split(part)
        model = cast("FusionModel", trained.model)  # a checkpoint of `fit`
        logits, weights = infer(model, data, args.batch_size)
        predicted = logits.argmax(dim=1)
        labels_here = [class_index[int(y)] for y in data.labels]
        correct += sum(int(p) == y for p, y in zip(predicted.tolist(), labels_here, strict=True))
        total += len(data)
        rows += _rows(
            part, labels_here, predicted, logits.softmax(dim=1), weights, trained.output_names, model.modalities
        )
    write_text_atomic(args.out, _csv(rows))
    print(
        f"{trained.method}: {total} samples of {splits.name} ({', '.join(parts)}), accuracy "
        f"{100 * correct / total:.2f}%; "
        ""
        f"written to {args.out}"
    )
    return 0


def _class_index(file_classes: tuple[str, ...], model_classes: tuple[str, ...], data: str) -> dict[int, int]:
    """The model's class index of each class code of the data file (matched by name)."""
    if file_classes == model_classes:
        return {k: k for k in range(len(file_classes))}
    unknown = [name for name in file_classes if name not in model_classes]
    if unknown:
        raise ValueError(f"--data {data}: class {unknown[0]!r} is not one the model knows ({', '.join(model_classes)})")
    return {k: model_classes.index(name) for k, name in enumerate(file_classes)}


def _rows(
    part: str,
    labels: list[int],
    predicted: Any,
    probabilities: Any,
    weights: Any,
    classes: tuple[str, ...],
    views: tuple[str, ...],
) -> list[dict[str, Any]]:
    rows = []
    for index, (label, guess, probs, w) in enumerate(
        zip(labels, predicted.tolist(), probabilities.tolist(), weights.tolist(), strict=True)
    ):
        row: dict[str, Any] = {
            "split": part,
            "index": index,
            "label": classes[label],
            "predicted": guess,
            "predicted_name": classes[guess],
        }
        row |= {f"prob_{name}": f"{p:.6g}" for name, p in zip(classes, probs, strict=True)}
        row |= {f"weight_{view}": f"{v:.6g}" for view, v in zip(views, w, strict=True)}
        rows.append(row)
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
