"""A catalogue of bad input, every command: exit code 2, one line on stderr that names the problem,
no file left behind (in the output folder or anywhere under the working directory), no payload run.

Each case runs in its own empty working directory; files a case needs beforehand (a previous run,
a file where a folder belongs) are made by its ``setup`` and are not counted as left behind. The
payloads of crafted files (a pickle, a checkpoint, a YAML tag) would all create :data:`MARKER`.
"""

from __future__ import annotations

import io
import json
import pickle
import shutil
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_support import FAST
from iidfusion.cli.demo import PINNED_KERNELS
from iidfusion.cli.main import main
from iidfusion.tasks.classification.checkpoint import CHECKPOINT_RECORD
from tests.toy_data import write_toy_vision_language


@dataclass(frozen=True)
class Case:
    """``args(inputs)`` the command line (``{out}`` is replaced by the case's output folder);
    ``said`` a fragment of the one-line message; ``setup(cwd, inputs)`` prepares the folder."""

    args: Callable[[Path], list[str]]
    said: str
    setup: Callable[[Path, Path], None] | None = None
    patch: Callable[[pytest.MonkeyPatch], None] | None = None


def _fit(data: str = "tiny.npz", *extra: str) -> Callable[[Path], list[str]]:
    return lambda i: ["fit", "--data", str(i / data), "--method", "if-static", "--out", "{out}", *FAST, *extra]


def _extract_rgbd(*extra: str) -> Callable[[Path], list[str]]:
    return lambda i: ["extract", "--data-format", "rgbd", "--root", str(i / "none"), *extra, "--out", "{out}"]


def _compare(*extra: str) -> Callable[[Path], list[str]]:
    return lambda i: [
        "compare",
        "--data",
        str(i / "tiny.npz"),
        "--methods",
        "lf-static",
        "--seeds",
        "1",
        "--out",
        "{out}",
        *FAST,
        *extra,
    ]


def _kg(
    command: str, *extra: str, data: str = "kg", placement: tuple[str, ...] = ("--accelerator", "cpu")
) -> Callable[[Path], list[str]]:
    return lambda i: [
        "kg",
        command,
        "--data",
        str(i / data),
        "--features",
        f"img={i / 'kg_img.npy'}",
        "--rank",
        "4",
        "--max-epochs",
        "1",
        *placement,
        "--out",
        "{out}",
        *[e.format(i=i) for e in extra],
    ]


def _predict(
    checkpoint: str = "run/if-static/seed0/checkpoints/best.ckpt", data: str = "tiny.npz"
) -> Callable[[Path], list[str]]:
    return lambda i: ["predict", "--checkpoint", str(i / checkpoint), "--data", str(i / data), "--out", "{out}"]


def _previous_fit(cwd: Path, inputs: Path) -> None:
    shutil.copytree(inputs / "run", cwd / "out")


def _a_file_at_out(cwd: Path, inputs: Path) -> None:
    (cwd / "out").write_text("not a folder")


def _previous_results(cwd: Path, inputs: Path) -> None:
    shutil.copytree(inputs / "compared", cwd / "out")


def _users_files(*at: str) -> Callable[[Path, Path], None]:
    """A folder of the user's own files (no marker of ours) where the command would write."""

    def setup(cwd: Path, inputs: Path) -> None:
        folder = cwd.joinpath("out", *at)
        folder.mkdir(parents=True)
        for name in ("features.npz", "features_noise5.npz", "results.md", "notes.txt"):
            (folder / name).write_text("the user's own")

    return setup


NOT_OURS = (
    "holds files that are not a run of iidfusion (it has no .iidfusion-run file); nothing in it is replaced or deleted"
)


def _without(module: str) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda patch: patch.setitem(sys.modules, module, None)


def _extract(text_encoder: str, command: str = "extract") -> Callable[[Path], list[str]]:
    return lambda i: [
        command,
        "--data-format",
        "mmbt",
        "--root",
        str(i / "mvsa"),
        "--text-encoder",
        str(i / text_encoder),
        "--image-encoder",
        "resnet18",
        "--image-size",
        "32",
        "--max-length",
        "8",
        *(["--accelerator", "cpu"] if command == "extract" else ["--accelerator", "cpu", "--no-progress-bar"]),
        "--out",
        "{out}",
    ]


UNWRITABLE = "/proc/iidfusion/out"  # cannot be created, not even by root
CASES: dict[str, Case] = {
    # fit: data
    "fit missing data file": Case(_fit("missing.npz"), "no such file: "),
    "fit garbage .mat": Case(_fit("garbage.mat"), "cannot read"),
    "fit NaN in a view": Case(_fit("nan.npz"), "view 'a' has 1 NaN"),
    "fit a single class": Case(_fit("one_class.npz"), "single class"),
    "fit 1e300 becomes inf in float32": Case(
        _fit("huge.npz"), "view 'a' of the test split has 1 values beyond float32"
    ),
    "fit a training split of one class": Case(_fit("train_one_class.npz"), "the training split has a single class"),
    "fit a test class absent from training": Case(
        _fit("unseen_class.npz"), "class '2' of the test split has no training"
    ),
    "fit one view": Case(_fit("one_view.npz"), "fusion needs at least two"),
    # fit: options, checked before any data is read
    "fit --lr -1": Case(_fit("tiny.npz", "--lr", "-1"), "--lr (optim.lr) must be finite and > 0, got -1.0"),
    "fit --lam nan": Case(_fit("tiny.npz", "--lam", "nan"), "--lam (loss.lam) must be finite and >= 0, got nan"),
    "fit beta: .inf in YAML": Case(
        _fit("tiny.npz", "--config", "{inputs}/beta_inf.yaml"), "--beta (loss.beta) must be finite"
    ),
    "fit --seed -1": Case(_fit("tiny.npz", "--seed", "-1"), "--seed (seed) must be in [0, 4294967295], got -1"),
    "fit --dropout 1": Case(_fit("tiny.npz", "--dropout", "1"), "--dropout (model.dropout) must be in [0, 1)"),
    "fit --variant typo": Case(
        _fit("tiny.npz", "--variant", "aimm"),
        "--variant (loss.variant) must be one of paper, vib, margin, literal, ce-only, got 'aimm'",
    ),
    "fit --max-epochs abc": Case(
        _fit("tiny.npz", "--max-epochs", "abc"), "config key 'train.max_epochs' must be an int"
    ),
    "fit --precision 13": Case(_fit("tiny.npz", "--precision", "13"), "--precision 13: Precision '13' is invalid"),
    "fit --num-nodes 0": Case(
        _fit("tiny.npz", "--num-nodes", "0"), "--num-nodes (train.num_nodes) must be in [1, 4096], got 0"
    ),
    "fit --devices 1,x": Case(_fit("tiny.npz", "--devices", "1,x"), "--devices must be a count, a comma list"),
    "fit a method group": Case(_fit("tiny.npz", "--method", "main"), "fit trains one method"),
    "fit unknown flag": Case(
        _fit("tiny.npz", "--alhpa", "1"), "unrecognized arguments: --alhpa 1 (see iidfusion fit --help)"
    ),
    "fit YAML with a python tag": Case(
        _fit("tiny.npz", "--config", "{inputs}/python_tag.yaml"), "cannot read config file"
    ),
    "fit unknown YAML key": Case(
        _fit("tiny.npz", "--config", "{inputs}/bad_key.yaml"), "unknown config key 'loss.alpah'"
    ),
    # fit: the output folder
    "fit --out is a file": Case(_fit(), "--out out is a file", setup=_a_file_at_out),
    "fit --out unwritable": Case(
        lambda i: [*_fit()(i), "--out", UNWRITABLE], f"--out {UNWRITABLE}: cannot write in /proc"
    ),
    "fit over a previous run": Case(
        _fit(), "already holds a run; pass --overwrite to replace it or --resume ", setup=_previous_fit
    ),
    "fit --resume with --overwrite": Case(
        _fit("tiny.npz", "--resume", "last", "--overwrite"), "give one", setup=_previous_fit
    ),
    # fit --resume
    "resume a missing checkpoint": Case(_fit("tiny.npz", "--resume", "last"), "checkpoint not found"),
    "resume a garbage checkpoint": Case(
        _fit("tiny.npz", "--resume", "{inputs}/garbage.ckpt"), "garbage.ckpt: not a readable checkpoint"
    ),
    "resume a truncated checkpoint": Case(
        _fit("tiny.npz", "--resume", "{inputs}/truncated.ckpt"), "truncated.ckpt: not a readable"
    ),
    "resume a crafted checkpoint": Case(
        _fit("tiny.npz", "--resume", "{inputs}/crafted.ckpt"), "crafted.ckpt: not a readable checkpoint"
    ),
    "resume a foreign checkpoint": Case(
        _fit("tiny.npz", "--resume", "{inputs}/foreign.ckpt"), "not a checkpoint written by `iidfusion fit`"
    ),
    "resume with other data": Case(_fit("other.npz", "--resume", "last"), "trained on other data", setup=_previous_fit),
    "resume with another alpha": Case(
        _fit("tiny.npz", "--resume", "last", "--alpha", "0.7"), "(--alpha 1.0 -> 0.7)", setup=_previous_fit
    ),
    # fit: found while training (the trainer has started its logs: they must go)
    "fit --eps 1e-9": Case(
        lambda i: [*_fit()(i), "--method", "iid-p", "--eps", "1e-9"], "--eps (loss.eps): eps=1e-09 is too small"
    ),
    # security: nothing a user gives runs code, no name from data leaves --out, no input expands without bound
    "extract a model folder whose config maps custom code": Case(
        _extract("custom_model"), "config.json maps classes to custom code (auto_map)"
    ),
    "extract a model folder whose tokenizer maps custom code": Case(
        _extract("custom_tokenizer"), "tokenizer_config.json maps classes to custom code"
    ),
    "extract a model folder holding Python files": Case(
        _extract("python_files"), "holds Python code (modeling_bert.py)"
    ),
    "extract a model folder of an unknown architecture": Case(
        _extract("unknown_model"), "cannot load a Hugging Face model from"
    ),
    "finetune a model folder with custom code": Case(
        _extract("custom_model", "finetune"), "maps classes to custom code (auto_map)"
    ),
    "fit YAML alias bomb": Case(
        _fit("tiny.npz", "--config", "{inputs}/alias_bomb.yaml"), "more than 20000 values once its aliases are expanded"
    ),
    "fit YAML nested too deep": Case(
        _fit("tiny.npz", "--config", "{inputs}/deep.yaml"), "nested deeper than 16 levels"
    ),
    "fit YAML recursive alias": Case(
        _fit("tiny.npz", "--config", "{inputs}/recursive.yaml"), "an alias inside the value it names"
    ),
    "fit .npz decompression bomb": Case(_fit("bomb.npz"), "more than 100x); refused as a decompression bomb"),
    "fit .npz whose array header lies": Case(_fit("lying_header.npz"), "declares shape (1000000000000,)"),
    "fit .npz array without an .npy header": Case(_fit("no_header.npz"), "array 'a.npy' has no readable .npy header"),
    "fit .mat decompression bomb": Case(_fit("bomb.mat"), "refused as a decompression bomb"),
    # bounded inputs: sizes refused before anything is allocated, checkpoints checked before they are used
    "fit --batch-size 10**20": Case(
        _fit("tiny.npz", "--batch-size", str(10**20)), "config key 'train.batch_size' must be an int within"
    ),
    "fit --width 100000": Case(
        _fit("tiny.npz", "--width", "100000"), "--width (model.width) must be in [1, 65536], got 100000"
    ),
    "fit width: 1.0e+20 in YAML": Case(
        _fit("tiny.npz", "--config", "{inputs}/huge_width.yaml"), "config key 'model.width' must be an int within"
    ),
    "compare --seeds 1000000": Case(
        _compare("--seeds", "1000000"), "--seeds (seeds) must be in [1, 100000], got 1000000"
    ),
    "extract --batch-size 1e20": Case(
        _extract_rgbd("--batch-size", "1e20"),
        "argument --batch-size: must be an int in [1, 16777216], got '1e20'",
    ),
    "predict --batch-size 0": Case(
        lambda i: [*_predict()(i), "--batch-size", "0"], "argument --batch-size: must be an int in [1, "
    ),
    "predict a checkpoint with NaN weights": Case(
        _predict("nan_weights.ckpt"), "holds 1 NaN or inf values; the run diverged"
    ),
    "predict a checkpoint without its scaler": Case(
        _predict("no_scaler.ckpt"), "lacks the feature scaling of its training data"
    ),
    "predict a checkpoint with a damaged scaler": Case(_predict("bad_scaler.ckpt"), "its feature scaling is damaged"),
    "predict a checkpoint recording a huge width": Case(
        _predict("huge_width.ckpt"), "its recorded configuration is out of range (--width"
    ),
    "predict a checkpoint recording a huge view": Case(
        _predict("huge_view.ckpt"), "a model record with view width 1099511627776"
    ),
    # exit codes by cause: the user's files and machine, whichever library finds the problem
    "kg triples that are not UTF-8": Case(
        _kg("fit", data="kg_latin1"), "kg_latin1/train:25: not UTF-8 text (byte 0xe9 at offset"
    ),
    "extract HFM files that are not UTF-8": Case(
        lambda i: [
            "extract",
            "--data-format",
            "hfm",
            "--root",
            str(i / "hfm_latin1"),
            "--text-encoder",
            "random",
            "--out",
            "{out}",
        ],
        "hfm_latin1/train.txt:2: not UTF-8 text (byte 0xe9",
    ),
    "extract --accelerator gpu without a GPU": Case(
        _extract_rgbd("--accelerator", "gpu"),
        "--accelerator gpu: torch sees no CUDA device",
        patch=lambda patch: patch.setattr(torch.cuda, "is_available", lambda: False),
    ),
    "extract --accelerator cudaa": Case(
        _extract_rgbd("--accelerator", "cudaa"),
        "argument --accelerator: invalid choice: 'cudaa'",
    ),
    "extract --devices 2 (two devices)": Case(
        lambda i: ["extract", "--data-format", "rgbd", "--root", str(i / "none"), "--devices", "2", "--out", "{out}"],
        "--devices 2: this command runs on one device",
    ),
    "extract --force (renamed)": Case(
        lambda i: ["extract", "--data-format", "rgbd", "--root", str(i / "none"), "--force", "--out", "{out}"],
        "--force is now --overwrite",
    ),
    "extract --device (renamed)": Case(
        lambda i: ["extract", "--data-format", "rgbd", "--root", str(i / "none"), "--device", "cpu", "--out", "{out}"],
        "--device is now --accelerator and --devices",
    ),
    # nothing dropped or guessed silently
    "fit float labels": Case(_fit("float_labels.npz"), "60 labels are not whole numbers (e.g. 0.5)"),
    "fit complex labels": Case(
        _fit("complex_labels.npz"), "labels under 'labels' hold complex128 values; class labels are integers or strings"
    ),
    "fit static weights whose sum overflows": Case(
        _fit("tiny.npz", "--static-weights", "1e308,1e308,1"),
        "--static-weights (strategy.static.weights) must be finite, non-negative, with a positive and finite sum",
    ),
    "compare a noise level that overflows": Case(
        _compare("--noise", "0,1e308"), "noise levels must be finite and >= 0, at most 1e+06"
    ),
    "extract a noise level that overflows": Case(
        lambda i: ["extract", "--data-format", "rgbd", "--root", str(i / "none"), "--noise", "1e308", "--out", "{out}"],
        "--noise levels must be >= 0, at most 1e+06",
    ),
    # data loss: a folder of the user's files is never a run, whatever the command and flags
    "demo over the user's files (its --overwrite is on)": Case(
        lambda i: ["demo", "--out", "{out}", "--max-epochs", "1"], NOT_OURS, setup=_users_files()
    ),
    "compare --overwrite over the user's files": Case(_compare("--overwrite"), NOT_OURS, setup=_users_files()),
    "compare --resume over the user's files": Case(_compare("--resume"), NOT_OURS, setup=_users_files()),
    "compare --resume with --overwrite": Case(_compare("--resume", "--overwrite"), "give one"),
    "fit --overwrite over the user's files": Case(
        _fit("tiny.npz", "--overwrite"), NOT_OURS, setup=_users_files("if-static", "seed0")
    ),
    "compare --resume a finished comparison": Case(
        _compare("--resume"), "holds a finished comparison, nothing to resume", setup=_previous_results
    ),
    "compare over a marker that is a link": Case(
        _compare("--resume"),
        "out/.iidfusion-run: Too many levels of symbolic links",
        setup=lambda cwd, i: ((cwd / "out").mkdir(), (cwd / "out" / ".iidfusion-run").symlink_to(i / "tiny.npz")),
    ),
    "fit into the folder of a comparison": Case(
        _fit(), "--out out is the folder of one run of iidfusion", setup=_previous_results
    ),
    "suite --resume over the user's files": Case(
        lambda i: ["suite", "--datasets", str(i / "tiny.npz"), "--resume", "--out", "{out}"],
        NOT_OURS,
        setup=_users_files(),
    ),
    "extract over the user's feature files": Case(
        lambda i: ["extract", "--data-format", "rgbd", "--root", str(i / "none"), "--out", "{out}"],
        NOT_OURS,
        setup=_users_files(),
    ),
    "finetune --overwrite over the user's files": Case(
        lambda i: ["finetune", "--data-format", "rgbd", "--root", str(i / "none"), "--overwrite", "--out", "{out}"],
        NOT_OURS,
        setup=_users_files(),
    ),
    "kg fit --overwrite over the user's files": Case(_kg("fit", "--overwrite"), NOT_OURS, setup=_users_files()),
    # compare and demo
    "compare --out is a file": Case(_compare(), "--out out is a file", setup=_a_file_at_out),
    "compare over previous results": Case(
        _compare(),
        "--out out already holds a run; pass --overwrite to replace it or --resume to continue it",
        setup=_previous_results,
    ),
    "compare --jobs 0": Case(_compare("--jobs", "0"), "--jobs (jobs) must be in [1, 4096], got 0"),
    "compare negative noise": Case(_compare("--noise", "0,-5"), "noise levels must be finite and >= 0"),
    "compare unknown method": Case(lambda i: [*_compare()(i), "--methods", "iid-x"], "unknown method 'iid-x'"),
    "demo --max-epochs 0": Case(
        lambda i: ["demo", "--max-epochs", "0", "--out", "{out}"], "--max-epochs (train.max_epochs) must be"
    ),
    "demo --batch-size 0": Case(
        lambda i: ["demo", "--batch-size", "0", "--out", "{out}"], "--batch-size (train.batch_size)"
    ),
    "suite --out is a file": Case(
        lambda i: ["suite", "--datasets", str(i / "tiny.npz"), "--out", "{out}"],
        "--out out is a file",
        setup=_a_file_at_out,
    ),
    "suite --lr -1": Case(
        lambda i: ["suite", "--datasets", str(i / "tiny.npz"), "--lr", "-1", "--out", "{out}"], "--lr (optim.lr)"
    ),
    # kg
    "kg --rank 4 --beta 0.1": Case(
        _kg("fit", "--beta", "0.1"),
        "objective.iid.d1 = 32 Fourier bins do not fit L_dc's embeddings of width 8 (--rank 4): it must be in [1, 5]",
    ),
    "kg YAML value of the wrong type": Case(
        _kg("fit", "--config", "{i}/kg_wrong_type.yaml"), "config key 'train.max_epochs' must be an int, got 'ten'"
    ),
    "kg YAML eps: .nan": Case(
        _kg("fit", "--config", "{i}/kg_nan_eps.yaml"), "--eps (objective.iid.eps) must be finite and > 0, got nan"
    ),
    "kg crafted pickle features": Case(
        lambda i: [*_kg("fit")(i), "--features", f"img={i / 'payload.pkl'}"],
        "payload.pkl: not a pickle of plain arrays (it names posix.system, refused",
    ),
    "kg garbage .npy features": Case(
        lambda i: [*_kg("fit")(i), "--features", f"img={i / 'garbage.npy'}"], "garbage.npy: not a readable .npy"
    ),
    "kg .npy features whose header lies": Case(
        lambda i: [*_kg("fit")(i), "--features", f"img={i / 'lying.npy'}"],
        "lying.npy: not a readable .npy matrix (its header declares shape (1000000000000,)",
    ),
    "kg object .npy features": Case(
        lambda i: [*_kg("fit")(i), "--features", f"img={i / 'objects.npy'}"], "objects.npy: not a readable .npy"
    ),
    "kg --devices cudaa": Case(_kg("fit", placement=("--devices", "cudaa")), "--devices cudaa"),
    "kg --loggers bogus": Case(_kg("fit", "--loggers", "bogus"), "unknown logger 'bogus'"),
    "kg --loggers wandb without wandb": Case(
        _kg("fit", "--loggers", "wandb"),
        "--loggers wandb needs the optional package 'wandb', which is not installed: pip install 'iidfusion[wandb]'",
        patch=_without("wandb"),
    ),
    "fit --loggers mlflow without mlflow": Case(
        _fit("tiny.npz", "--loggers", "csv,mlflow"),
        "--loggers mlflow needs the optional package 'mlflow', which is not installed: pip install 'iidfusion[mlflow]'",
        patch=_without("mlflow"),
    ),
    "compare --loggers wandb without wandb": Case(
        _compare("--loggers", "wandb"), "pip install 'iidfusion[wandb]'", patch=_without("wandb")
    ),
    "fit --pruner sometimes": Case(
        _fit("tiny.npz", "--tune", "--pruner", "sometimes"),
        "--pruner (tune.pruner) must be one of none, median, hyperband, got 'sometimes'",
    ),
    "fit --strategy ddp_spawn without checkpoints": Case(
        _fit("tiny.npz", "--strategy", "ddp_spawn", "--devices", "2", "--no-checkpoints"),
        "it needs --checkpoints and cannot tune; --strategy ddp has neither limit",
    ),
    "compare --strategy ddp_spawn with --tune": Case(
        _compare("--strategy", "ddp_spawn", "--tune"), "--strategy ddp_spawn trains in child processes"
    ),
    "kg --strategy bogus (Lightning's)": Case(
        _kg("fit", "--strategy", "bogus"), "--num-nodes 1 --strategy bogus: You selected an invalid strategy name"
    ),
    "kg --strategy ddp_spawn without checkpoints": Case(
        _kg("fit", "--strategy", "ddp_spawn", "--devices", "2", "--no-checkpoints"), "needs train.checkpoints"
    ),
    "kg --seed -1": Case(_kg("fit", "--seed", "-1"), "--seed (seed) must be in [0, 4294967295], got -1"),
    "kg --out is a file": Case(_kg("fit"), "--out out is a file", setup=_a_file_at_out),
    "kg compare over previous results": Case(
        _kg("compare", "--seeds", "1", "--beta", "0"), "already holds a run", setup=_previous_results
    ),
    "kg compare section of the wrong type": Case(
        _kg("compare", "--config", "{i}/kg_bad_compare.yaml"), "config key 'compare.seeds' must be an int, got 'x'"
    ),
    "kg YAML with a python tag": Case(_kg("fit", "--config", "{i}/python_tag.yaml"), "cannot read config file"),
    "kg YAML that is a list": Case(
        _kg("fit", "--config", "{i}/kg_list.yaml"), "must hold a mapping of options, got list"
    ),
    "kg missing graph": Case(_kg("fit", data="no_graph"), "neither a known knowledge graph"),
    # predict: a checkpoint is read with weights_only, the data must have the model's views
    "predict a missing checkpoint": Case(_predict("missing.ckpt"), "missing.ckpt: checkpoint not found"),
    "predict a crafted checkpoint": Case(_predict("crafted.ckpt"), "crafted.ckpt: not a readable checkpoint"),
    "predict a foreign checkpoint": Case(_predict("foreign.ckpt"), "not a checkpoint of `iidfusion fit`"),
    "predict data of other views": Case(
        _predict(data="one_view.npz"), "one_view.npz: view 'a' is not one of the views the scaling was fitted on"
    ),
    "predict over an existing file": Case(_predict(), "--out out exists; pass --overwrite", setup=_a_file_at_out),
    # the other commands
    "datasets missing file": Case(lambda i: ["datasets", str(i / "missing.mat")], "no such file: "),
    "datasets garbage .mat": Case(lambda i: ["datasets", str(i / "garbage.mat")], "cannot read"),
    "plot a binary CSV": Case(
        lambda i: ["plot", "--runs", str(i / "figure.csv"), "--out", "{out}/f.png"],
        "figure.csv is not a text CSV log (byte 0 is not UTF-8)",
    ),
    "plot no run log": Case(
        lambda i: ["plot", "--runs", str(i / "missing_run"), "--out", "{out}/f.png"], "no run log in"
    ),
    "plot --out .jpg": Case(lambda i: ["plot", "--runs", str(i / "run"), "--out", "{out}/f.jpg"], ".png, .pdf or .svg"),
    "extract without transformers": Case(
        lambda i: ["extract", "--data-format", "mmbt", "--root", str(i / "mvsa"), "--out", "{out}"],
        "needs the optional package 'transformers', which is not installed: pip install 'iidfusion[vl]'",
        patch=_without("transformers"),
    ),
    "extract timm:NAME without timm": Case(
        lambda i: [
            "extract",
            "--data-format",
            "mmbt",
            "--root",
            str(i / "mvsa"),
            "--image-encoder",
            "timm:resnet18",
            "--out",
            "{out}",
        ],
        "needs the optional package 'timm', which is not installed: pip install 'iidfusion[vision]'",
        patch=_without("timm"),
    ),
    "extract --out is a file": Case(
        lambda i: ["extract", "--data-format", "rgbd", "--root", str(i / "none"), "--out", "{out}"],
        "--out out is a file",
        setup=_a_file_at_out,
    ),
    "plot --out inside a file": Case(
        lambda i: ["plot", "--runs", str(i / "run"), "--out", "{out}/f.png"],
        "the folder out of --out out/f.png is a file; it must be a folder",
        setup=_a_file_at_out,
    ),
    "extract a missing data folder": Case(
        lambda i: ["extract", "--data-format", "rgbd", "--root", str(i / "none"), "--out", "{out}"],
        "RGB-D split folder not found",
    ),
    "finetune --out is a file": Case(
        lambda i: ["finetune", "--data-format", "rgbd", "--root", str(i / "none"), "--out", "{out}"],
        "--out out is a file",
        setup=_a_file_at_out,
    ),
    "sweep --out is a file": Case(
        lambda i: ["sweep", "--data", str(i / "tiny.npz"), "--out", "{out}"],
        "--out out is a file",
        setup=_a_file_at_out,
    ),
    "sweep --trials with a grid": Case(
        lambda i: ["sweep", "--data", str(i / "tiny.npz"), "--trials", "3", "--out", "{out}"],
        "--trials applies to --search optuna only",
    ),
    "bench --out is a file": Case(
        lambda i: ["bench", "wasserstein", "--quick", "--out", "{out}"], "--out out is a file", setup=_a_file_at_out
    ),
}


def _npz(path: Path, **arrays: np.ndarray) -> None:
    np.savez(path, **arrays)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_npz, shell_payload) -> Path:
    """Every bad (and the few good) input files of the catalogue, made once."""
    folder = tmp_path_factory.mktemp("catalogue_inputs")
    marker = folder / "payload_ran"
    rng = np.random.default_rng(0)
    a, b, labels = rng.normal(size=(60, 4)), rng.normal(size=(60, 3)), np.arange(60) % 3
    shutil.copy(tiny_npz, folder / "tiny.npz")
    other = dict(np.load(tiny_npz))
    other[next(k for k in other if k != "labels")] += 1.0
    _npz(folder / "other.npz", **other)
    (folder / "garbage.mat").write_bytes(b"not a MATLAB file" * 20)
    nan = a.copy()
    nan[3, 1] = np.nan
    _npz(folder / "nan.npz", a=nan, b=b, labels=labels)
    _npz(folder / "one_class.npz", a=a, b=b, labels=np.zeros(60))
    _npz(folder / "one_view.npz", a=a, labels=labels)
    _npz(folder / "float_labels.npz", a=a, b=b, labels=labels + 0.5)
    _npz(folder / "complex_labels.npz", a=a, b=b, labels=labels + 1j)
    huge = a[40:].copy()
    huge[1, 2] = 1e300
    _npz(
        folder / "huge.npz",
        a_train=a[:40],
        b_train=b[:40],
        labels_train=labels[:40],
        a_test=huge,
        b_test=b[40:],
        labels_test=labels[40:],
    )
    _npz(
        folder / "train_one_class.npz",
        a_train=a[:40],
        b_train=b[:40],
        labels_train=np.zeros(40),
        a_test=a[40:],
        b_test=b[40:],
        labels_test=labels[40:],
    )
    _npz(
        folder / "unseen_class.npz",
        a_train=a[:40],
        b_train=b[:40],
        labels_train=labels[:40] % 2,
        a_test=a[40:],
        b_test=b[40:],
        labels_test=labels[40:],
    )
    (folder / "beta_inf.yaml").write_text("loss:\n  beta: .inf\n")
    (folder / "python_tag.yaml").write_text(f"loss: !!python/object/apply:os.system ['touch {marker}']\n")
    (folder / "bad_key.yaml").write_text("loss:\n  alpah: 1\n")
    # a real comparison, with nothing in it but its results
    assert (
        main(
            [
                "compare",
                "--data",
                str(tiny_npz),
                "--methods",
                "lf-static",
                "--seeds",
                "1",
                "--out",
                str(folder / "compared"),
                *FAST,
                "--max-epochs",
                "1",
                "--no-checkpoints",
                "--loggers",
                "",
            ]
        )
        == 0
    )
    # a real run (one epoch) to resume from, and checkpoints made from it
    assert (
        main(
            [
                "fit",
                "--data",
                str(tiny_npz),
                "--method",
                "if-static",
                "--out",
                str(folder / "run"),
                *FAST,
                "--max-epochs",
                "1",
                "--loggers",
                "csv",
            ]
        )
        == 0
    )
    last = folder / "run" / "if-static" / "seed0" / "checkpoints" / "last.ckpt"
    (folder / "garbage.ckpt").write_bytes(b"\x00garbage" * 50)
    _damaged_checkpoints(folder, folder / "run" / "if-static" / "seed0" / "checkpoints" / "best.ckpt")
    (folder / "huge_width.yaml").write_text("model:\n  width: 1.0e+20\n")
    (folder / "truncated.ckpt").write_bytes(last.read_bytes()[:3000])
    torch.save({"state_dict": {}, "hyper_parameters": shell_payload(marker)}, folder / "crafted.ckpt")
    torch.save({"state_dict": {"w": torch.ones(2)}}, folder / "foreign.ckpt")
    # knowledge graphs
    (folder / "kg").mkdir()
    triples = [(f"e{i}", f"r{k}", f"e{(i + k + 1) % 12}") for k in range(2) for i in range(12)]
    for split, rows in (("train", triples), ("valid", triples[:4]), ("test", triples[4:8])):
        (folder / "kg" / split).write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in rows))
    np.save(folder / "kg_img.npy", rng.normal(size=(12, 5)).astype(np.float32))
    (folder / "payload.pkl").write_bytes(pickle.dumps({f"e{i}": shell_payload(marker) for i in range(12)}))
    (folder / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    (folder / "lying.npy").write_bytes(header.getvalue() + bytes(64))
    np.save(folder / "objects.npy", np.array([None] * 12, dtype=object), allow_pickle=True)
    shutil.copytree(folder / "kg", folder / "kg_latin1")
    with open(folder / "kg_latin1" / "train", "ab") as handle:
        handle.write("café\tr0\te1\n".encode("latin-1"))
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "hfm", folder / "hfm_latin1")
    lines = (folder / "hfm_latin1" / "train.txt").read_bytes().split(b"\n")
    (folder / "hfm_latin1" / "train.txt").write_bytes(b"\n".join([lines[0], "['café']".encode("latin-1"), *lines[1:]]))
    (folder / "kg_wrong_type.yaml").write_text("train:\n  max_epochs: ten\n")
    (folder / "kg_nan_eps.yaml").write_text("objective:\n  iid:\n    eps: .nan\n")
    (folder / "kg_bad_compare.yaml").write_text("compare:\n  seeds: x\n")
    (folder / "kg_list.yaml").write_text("- train\n- max_epochs\n")
    # others
    (folder / "figure.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8")
    write_toy_vision_language(folder / "mvsa", "mmbt", per_class=(2, 1, 1))
    _model_folders(folder, marker)
    _bombs(folder)
    return folder


def _damaged_checkpoints(folder: Path, best: Path) -> None:
    """Checkpoints of a real run, each changed in one way that must be refused."""

    def changed(name: str, change: Callable[[dict], None]) -> None:
        state = torch.load(best, weights_only=True)
        change(state)
        torch.save(state, folder / name)

    def nan_weight(state: dict) -> None:
        next(v for v in state["state_dict"].values() if v.is_floating_point()).view(-1)[0] = float("nan")

    changed("nan_weights.ckpt", nan_weight)
    changed("no_scaler.ckpt", lambda state: state[CHECKPOINT_RECORD].pop("scaler"))
    changed("bad_scaler.ckpt", lambda state: state[CHECKPOINT_RECORD]["scaler"]["span"].popitem())
    changed("huge_width.ckpt", lambda state: state["hyper_parameters"]["model"].update(width=2**40))
    changed("huge_view.ckpt", lambda state: state[CHECKPOINT_RECORD]["view_dims"].update(a=2**40))


def _model_folders(folder: Path, marker: Path) -> None:
    """Hugging Face model folders that would run code (each .py touches ``marker`` when imported)."""
    payload = f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    bert = {
        "model_type": "bert",
        "vocab_size": 30,
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 1,
        "intermediate_size": 8,
    }
    folders = {
        "custom_model": (
            {
                **bert,
                "model_type": "iidx",
                "auto_map": {"AutoConfig": "configuration_iidx.IIDXConfig", "AutoModel": "modeling_iidx.IIDXModel"},
            },
            None,
        ),
        "custom_tokenizer": (bert, {"auto_map": {"AutoTokenizer": ["tokenization_iidx.IIDXTokenizer", None]}}),
        "python_files": (bert, None),
        "unknown_model": ({**bert, "model_type": "no-such-architecture"}, None),
    }
    for name, (config, tokenizer) in folders.items():
        (folder / name).mkdir()
        (folder / name / "config.json").write_text(json.dumps(config))
        if tokenizer is not None:
            (folder / name / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    for name, module in (
        ("custom_model", "configuration_iidx"),
        ("custom_model", "modeling_iidx"),
        ("custom_tokenizer", "tokenization_iidx"),
        ("python_files", "modeling_bert"),
    ):
        (folder / name / f"{module}.py").write_text(payload)


def _bombs(folder: Path) -> None:
    """Data files that expand 1000-fold (70 MB of zeros), and one whose array header lies about its size."""
    (folder / "alias_bomb.yaml").write_text(
        "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{k}: &a{k} [{', '.join([f'*a{k - 1}'] * 9)}]\n" for k in range(1, 9))
    )
    (folder / "deep.yaml").write_text("loss: " + "[" * 40 + "]" * 40 + "\n")
    (folder / "recursive.yaml").write_text("loss: &a {alpha: *a}\n")
    zeros = bytes(2**20)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (70 * 2**17, 1)})
    with zipfile.ZipFile(folder / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("a.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            for _ in range(70):
                member.write(zeros)
        archive.writestr("labels.npy", _npy(np.arange(70 * 2**17) % 3)[:200])
    with zipfile.ZipFile(folder / "lying_header.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
        archive.writestr("a.npy", header.getvalue() + bytes(64))
        archive.writestr("labels.npy", _npy(np.arange(8) % 2))
    with zipfile.ZipFile(folder / "no_header.npz", "w") as archive:
        archive.writestr("a.npy", b"not an array")
        archive.writestr("labels.npy", _npy(np.arange(8) % 2))
    compress = zlib.compressobj()
    body = b"".join(compress.compress(zeros) for _ in range(70)) + compress.flush()
    mat_header = b"MATLAB 5.0 MAT-file".ljust(124) + b"\x00\x01IM"
    (folder / "bomb.mat").write_bytes(mat_header + struct.pack("<II", 15, len(body)) + body)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_exit_2_nothing_left_no_payload_run(name, inputs, tmp_path, monkeypatch, capsys):
    case = CASES[name]
    for variable in PINNED_KERNELS:  # recorded, so that what the demo sets is undone after the case
        monkeypatch.setenv(variable, "unset")
        monkeypatch.delenv(variable)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    if case.setup is not None:
        case.setup(cwd, inputs)
    if case.patch is not None:
        case.patch(monkeypatch)
    before = sorted(p for p in cwd.rglob("*"))
    inputs_before = sorted(p for p in inputs.rglob("*"))
    argv = [arg.replace("{out}", "out").replace("{inputs}", str(inputs)) for arg in case.args(inputs)]
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("iidfusion ") and ": error: " in err, err
    assert case.said in err, err
    assert sorted(cwd.rglob("*")) == before, "files left behind"
    assert sorted(inputs.rglob("*")) == inputs_before, "files written next to the inputs"
    assert not (inputs / "payload_ran").exists(), "a payload ran"
