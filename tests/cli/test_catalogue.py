"""A catalogue of bad input, every command: exit code 2, one line on stderr that names the problem,
no file left behind (in the output folder or anywhere under the working directory), no payload run.

Each case runs in its own empty working directory; files a case needs beforehand (a previous run,
a file where a folder belongs) are made by its ``setup`` and are not counted as left behind. The
payloads of crafted files (a pickle, a checkpoint, a YAML tag) would all create :data:`MARKER`.
"""

from __future__ import annotations

import pickle
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from cli_support import FAST

from iidfusion.cli.demo import PINNED_KERNELS
from iidfusion.cli.main import main
from iidfusion_studies.cli import STUDIES
from iidfusion_studies.cli import main as studies_main
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


def _compare(*extra: str) -> Callable[[Path], list[str]]:
    return lambda i: ["compare", "--data", str(i / "tiny.npz"), "--methods", "lf-static", "--seeds", "1", "--out", "{out}",
                      *FAST, *extra]


def _kg(command: str, *extra: str, data: str = "kg", placement: tuple[str, ...] = ("--accelerator", "cpu")) -> Callable[[Path], list[str]]:
    return lambda i: ["kg", command, "--data", str(i / data), "--features", f"img={i / 'kg_img.npy'}", "--rank", "4",
                      "--max-epochs", "1", *placement, "--out", "{out}", *[e.format(i=i) for e in extra]]


def _predict(checkpoint: str = "run/if-static/seed0/checkpoints/best.ckpt", data: str = "tiny.npz") -> Callable[[Path], list[str]]:
    return lambda i: ["predict", "--checkpoint", str(i / checkpoint), "--data", str(i / data), "--out", "{out}"]


def _previous_fit(cwd: Path, inputs: Path) -> None:
    shutil.copytree(inputs / "run", cwd / "out")


def _a_file_at_out(cwd: Path, inputs: Path) -> None:
    (cwd / "out").write_text("not a folder")


def _previous_results(cwd: Path, inputs: Path) -> None:
    (cwd / "out").mkdir()
    (cwd / "out" / "results.md").write_text("of an earlier comparison")


def _without(module: str) -> Callable[[pytest.MonkeyPatch], None]:
    return lambda patch: patch.setitem(sys.modules, module, None)


UNWRITABLE = "/proc/iidfusion/out"  # cannot be created, not even by root
CASES: dict[str, Case] = {
    # fit: data
    "fit missing data file": Case(_fit("missing.npz"), "no such file: "),
    "fit garbage .mat": Case(_fit("garbage.mat"), "cannot read"),
    "fit NaN in a view": Case(_fit("nan.npz"), "view 'a' has 1 NaN"),
    "fit a single class": Case(_fit("one_class.npz"), "single class"),
    "fit 1e300 becomes inf in float32": Case(_fit("huge.npz"), "view 'a' of the test split has 1 values beyond float32"),
    "fit a training split of one class": Case(_fit("train_one_class.npz"), "the training split has a single class"),
    "fit a test class absent from training": Case(_fit("unseen_class.npz"), "class '2' of the test split has no training"),
    "fit one view": Case(_fit("one_view.npz"), "fusion needs at least two"),
    # fit: options, checked before any data is read
    "fit --lr -1": Case(_fit("tiny.npz", "--lr", "-1"), "--lr (optim.lr) must be finite and > 0, got -1.0"),
    "fit --lam nan": Case(_fit("tiny.npz", "--lam", "nan"), "--lam (loss.lam) must be finite and >= 0, got nan"),
    "fit beta: .inf in YAML": Case(_fit("tiny.npz", "--config", "{inputs}/beta_inf.yaml"), "--beta (loss.beta) must be finite"),
    "fit --seed -1": Case(_fit("tiny.npz", "--seed", "-1"), "--seed (seed) must be in [0, 4294967295], got -1"),
    "fit --dropout 1": Case(_fit("tiny.npz", "--dropout", "1"), "--dropout (model.dropout) must be in [0, 1)"),
    "fit --variant typo": Case(_fit("tiny.npz", "--variant", "aimm"), "--variant (loss.variant) must be one of paper, vib, margin, literal, ce-only, got 'aimm'"),
    "fit --max-epochs abc": Case(_fit("tiny.npz", "--max-epochs", "abc"), "config key 'train.max_epochs' must be an int"),
    "fit --precision 13": Case(_fit("tiny.npz", "--precision", "13"), "--precision 13: Precision '13' is invalid"),
    "fit --num-nodes 0": Case(_fit("tiny.npz", "--num-nodes", "0"), "--num-nodes (train.num_nodes) must be finite and >= 1, got 0"),
    "fit --devices 1,x": Case(_fit("tiny.npz", "--devices", "1,x"), "--devices must be a count, a comma list"),
    "fit a method group": Case(_fit("tiny.npz", "--method", "main"), "fit trains one method"),
    "fit unknown flag": Case(_fit("tiny.npz", "--alhpa", "1"), "unrecognized arguments: --alhpa 1 (see iidfusion fit --help)"),
    "fit YAML with a python tag": Case(_fit("tiny.npz", "--config", "{inputs}/python_tag.yaml"), "cannot read config file"),
    "fit unknown YAML key": Case(_fit("tiny.npz", "--config", "{inputs}/bad_key.yaml"), "unknown config key 'loss.alpah'"),
    # fit: the output folder
    "fit --out is a file": Case(_fit(), "--out out is a file", setup=_a_file_at_out),
    "fit --out unwritable": Case(lambda i: [*_fit()(i), "--out", UNWRITABLE], f"--out {UNWRITABLE}: cannot write in /proc"),
    "fit over a previous run": Case(_fit(), "already holds a run; pass --overwrite to replace it or --resume last", setup=_previous_fit),
    "fit --resume with --overwrite": Case(_fit("tiny.npz", "--resume", "last", "--overwrite"), "give one", setup=_previous_fit),
    # fit --resume
    "resume a missing checkpoint": Case(_fit("tiny.npz", "--resume", "last"), "checkpoint not found"),
    "resume a garbage checkpoint": Case(_fit("tiny.npz", "--resume", "{inputs}/garbage.ckpt"), "garbage.ckpt: not a readable checkpoint"),
    "resume a truncated checkpoint": Case(_fit("tiny.npz", "--resume", "{inputs}/truncated.ckpt"), "truncated.ckpt: not a readable"),
    "resume a crafted checkpoint": Case(_fit("tiny.npz", "--resume", "{inputs}/crafted.ckpt"), "crafted.ckpt: not a readable checkpoint"),
    "resume a foreign checkpoint": Case(_fit("tiny.npz", "--resume", "{inputs}/foreign.ckpt"), "not a checkpoint written by `iidfusion fit`"),
    "resume with other data": Case(_fit("other.npz", "--resume", "last"), "trained on other data", setup=_previous_fit),
    "resume with another alpha": Case(_fit("tiny.npz", "--resume", "last", "--alpha", "0.7"), "(--alpha 1.0 -> 0.7)",
                                      setup=_previous_fit),
    # fit: found while training (the trainer has started its logs: they must go)
    "fit --eps 1e-9": Case(lambda i: [*_fit()(i), "--method", "iid-p", "--eps", "1e-9"], "--eps (loss.eps): eps=1e-09 is too small"),
    # compare and demo
    "compare --out is a file": Case(_compare(), "--out out is a file", setup=_a_file_at_out),
    "compare over previous results": Case(_compare(), "--out out already holds a run; pass --overwrite", setup=_previous_results),
    "compare --jobs 0": Case(_compare("--jobs", "0"), "--jobs (jobs) must be finite and >= 1, got 0"),
    "compare negative noise": Case(_compare("--noise", "0,-5"), "noise levels must be finite and >= 0"),
    "compare unknown method": Case(lambda i: [*_compare()(i), "--methods", "iid-x"], "unknown method 'iid-x'"),
    "demo --max-epochs 0": Case(lambda i: ["demo", "--max-epochs", "0", "--out", "{out}"], "--max-epochs (train.max_epochs) must be"),
    "demo --batch-size 0": Case(lambda i: ["demo", "--batch-size", "0", "--out", "{out}"], "--batch-size (train.batch_size)"),
    "suite --out is a file": Case(lambda i: ["suite", "--datasets", str(i / "tiny.npz"), "--out", "{out}"], "--out out is a file",
                                  setup=_a_file_at_out),
    "suite --lr -1": Case(lambda i: ["suite", "--datasets", str(i / "tiny.npz"), "--lr", "-1", "--out", "{out}"], "--lr (optim.lr)"),
    # kg
    "kg --rank 4 --beta 0.1": Case(_kg("fit", "--beta", "0.1"), "objective.iid.d1 = 32 Fourier bins do not fit L_dc's embeddings of width 8 (--rank 4): it must be in [1, 5]"),
    "kg YAML value of the wrong type": Case(_kg("fit", "--config", "{i}/kg_wrong_type.yaml"), "config key 'train.max_epochs' must be an int, got 'ten'"),
    "kg YAML eps: .nan": Case(_kg("fit", "--config", "{i}/kg_nan_eps.yaml"), "--eps (objective.iid.eps) must be finite and > 0, got nan"),
    "kg crafted pickle features": Case(lambda i: [*_kg("fit")(i), "--features", f"img={i / 'payload.pkl'}"],
                                       "payload.pkl: not a pickle of plain arrays (it names posix.system, refused"),
    "kg garbage .npy features": Case(lambda i: [*_kg("fit")(i), "--features", f"img={i / 'garbage.npy'}"], "garbage.npy: not a readable .npy"),
    "kg object .npy features": Case(lambda i: [*_kg("fit")(i), "--features", f"img={i / 'objects.npy'}"], "objects.npy: not a readable .npy"),
    "kg --device cudaa": Case(_kg("fit", placement=("--device", "cudaa")), "train.device (--device) 'cudaa'"),
    "kg --loggers wandb": Case(_kg("fit", "--loggers", "wandb"), "unknown logger 'wandb'"),
    "kg --strategy bogus (Lightning's)": Case(
        _kg("fit", "--strategy", "bogus"), "--num-nodes 1 --strategy bogus: You selected an invalid strategy name"),
    "kg --strategy qmf, the fusion strategy's earlier flag": Case(
        _kg("fit", "--strategy", "qmf"),
        "--strategy is Lightning's strategy (train.strategy), as in `fit`; the fusion strategy of the query weights is --fusion-strategy qmf"),
    "kg --strategy ddp_spawn without checkpoints": Case(
        _kg("fit", "--strategy", "ddp_spawn", "--devices", "2", "--no-checkpoints"),
        "needs train.checkpoints"),
    "kg --seed -1": Case(_kg("fit", "--seed", "-1"), "--seed (seed) must be in [0, 4294967295], got -1"),
    "kg --out is a file": Case(_kg("fit"), "--out out is a file", setup=_a_file_at_out),
    "kg compare over previous results": Case(_kg("compare", "--seeds", "1", "--beta", "0"), "already holds a run", setup=_previous_results),
    "kg compare section of the wrong type": Case(_kg("compare", "--config", "{i}/kg_bad_compare.yaml"), "config key 'compare.seeds' must be an int, got 'x'"),
    "kg YAML with a python tag": Case(_kg("fit", "--config", "{i}/python_tag.yaml"), "cannot read config file"),
    "kg YAML that is a list": Case(_kg("fit", "--config", "{i}/kg_list.yaml"), "must hold a mapping of options, got list"),
    "kg missing graph": Case(_kg("fit", data="no_graph"), "neither a known knowledge graph"),
    # predict: a checkpoint is read with weights_only, the data must have the model's views
    "predict a missing checkpoint": Case(_predict("missing.ckpt"), "missing.ckpt: checkpoint not found"),
    "predict a crafted checkpoint": Case(_predict("crafted.ckpt"), "crafted.ckpt: not a readable checkpoint"),
    "predict a foreign checkpoint": Case(_predict("foreign.ckpt"), "not a checkpoint of `iidfusion fit`"),
    "predict data of other views": Case(_predict(data="one_view.npz"), "one_view.npz: view 'a' is not one of the views the scaling was fitted on"),
    "predict over an existing file": Case(_predict(), "--out out exists; pass --overwrite", setup=_a_file_at_out),
    # the other commands
    "datasets missing file": Case(lambda i: ["datasets", str(i / "missing.mat")], "no such file: "),
    "datasets garbage .mat": Case(lambda i: ["datasets", str(i / "garbage.mat")], "cannot read"),
    "plot a binary CSV": Case(lambda i: ["plot", "--runs", str(i / "figure.csv"), "--out", "{out}/f.png"],
                              "figure.csv is not a text CSV log (byte 0 is not UTF-8)"),
    "plot no run log": Case(lambda i: ["plot", "--runs", str(i / "missing_run"), "--out", "{out}/f.png"], "no run log in"),
    "plot --out .jpg": Case(lambda i: ["plot", "--runs", str(i / "run"), "--out", "{out}/f.jpg"], ".png, .pdf or .svg"),
    "extract without transformers": Case(lambda i: ["extract", "--data-format", "mmbt", "--root", str(i / "mvsa"), "--out", "{out}"],
                                         "needs the optional package 'transformers', which is not installed: pip install 'iidfusion[vl]'",
                                         patch=_without("transformers")),
    "extract timm:NAME without timm": Case(
        lambda i: ["extract", "--data-format", "mmbt", "--root", str(i / "mvsa"), "--image-encoder", "timm:resnet18", "--out", "{out}"],
        "needs the optional package 'timm', which is not installed: pip install 'iidfusion[vision]'", patch=_without("timm")),
    "extract --out is a file": Case(lambda i: ["extract", "--data-format", "rgbd", "--root", str(i / "none"), "--out", "{out}"],
                                    "--out out is a file", setup=_a_file_at_out),
    "plot --out inside a file": Case(lambda i: ["plot", "--runs", str(i / "run"), "--out", "{out}/f.png"],
                                     "the folder out of --out out/f.png is a file; it must be a folder", setup=_a_file_at_out),
    "extract a missing data folder": Case(lambda i: ["extract", "--data-format", "rgbd", "--root", str(i / "none"), "--out", "{out}"],
                                          "RGB-D split folder not found"),
    "finetune --out is a file": Case(lambda i: ["finetune", "--data-format", "rgbd", "--root", str(i / "none"), "--out", "{out}"],
                                     "--out out is a file", setup=_a_file_at_out),
    "sweep --out is a file": Case(lambda i: ["sweep", "--data", str(i / "tiny.npz"), "--out", "{out}"], "--out out is a file",
                                  setup=_a_file_at_out),
    "sweep --trials with a grid": Case(lambda i: ["sweep", "--data", str(i / "tiny.npz"), "--trials", "3", "--out", "{out}"],
                                       "--trials applies to --search optuna only"),
    "bench --out is a file": Case(lambda i: ["bench", "wasserstein", "--quick", "--out", "{out}"], "--out out is a file",
                                  setup=_a_file_at_out),
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
    huge = a[40:].copy()
    huge[1, 2] = 1e300
    _npz(folder / "huge.npz", a_train=a[:40], b_train=b[:40], labels_train=labels[:40], a_test=huge, b_test=b[40:],
         labels_test=labels[40:])
    _npz(folder / "train_one_class.npz", a_train=a[:40], b_train=b[:40], labels_train=np.zeros(40), a_test=a[40:],
         b_test=b[40:], labels_test=labels[40:])
    _npz(folder / "unseen_class.npz", a_train=a[:40], b_train=b[:40], labels_train=labels[:40] % 2, a_test=a[40:],
         b_test=b[40:], labels_test=labels[40:])
    (folder / "beta_inf.yaml").write_text("loss:\n  beta: .inf\n")
    (folder / "python_tag.yaml").write_text(f"loss: !!python/object/apply:os.system ['touch {marker}']\n")
    (folder / "bad_key.yaml").write_text("loss:\n  alpah: 1\n")
    # a real run (one epoch) to resume from, and checkpoints made from it
    assert main(["fit", "--data", str(tiny_npz), "--method", "if-static", "--out", str(folder / "run"), *FAST,
                 "--max-epochs", "1", "--loggers", "csv"]) == 0
    last = folder / "run" / "if-static" / "seed0" / "checkpoints" / "last.ckpt"
    (folder / "garbage.ckpt").write_bytes(b"\x00garbage" * 50)
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
    np.save(folder / "objects.npy", np.array([None] * 12, dtype=object), allow_pickle=True)
    (folder / "kg_wrong_type.yaml").write_text("train:\n  max_epochs: ten\n")
    (folder / "kg_nan_eps.yaml").write_text("objective:\n  iid:\n    eps: .nan\n")
    (folder / "kg_bad_compare.yaml").write_text("compare:\n  seeds: x\n")
    (folder / "kg_list.yaml").write_text("- train\n- max_epochs\n")
    # others
    (folder / "figure.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8")
    write_toy_vision_language(folder / "mvsa", "mmbt", per_class=(2, 1, 1))
    return folder


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
    study = argv[0] in {module.rpartition(".")[2] for module in STUDIES.modules}  # python -m iidfusion_studies
    try:
        code = (studies_main if study else main)(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    prog = STUDIES.prog if study else "iidfusion"
    assert err.count("\n") == 1 and err.startswith(prog + " ") and ": error: " in err, err
    assert case.said in err, err
    assert sorted(cwd.rglob("*")) == before, "files left behind"
    assert sorted(inputs.rglob("*")) == inputs_before, "files written next to the inputs"
    assert not (inputs / "payload_ran").exists(), "a payload ran"
