"""The README's FusionModel example runs as printed (the plug-and-play one is tests/test_plug_and_play.py)."""

import re
from pathlib import Path

import torch
from torch import nn

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_fusion_model_example_trains_one_step():
    (example,) = [block for block in python_blocks(README.read_text()) if "spec.build_model" in block]
    torch.manual_seed(0)
    namespace = {
        "encoders": {"a": nn.Linear(5, 8), "b": nn.Linear(7, 8)},
        "encoder_dims": {"a": 8, "b": 8},
        "num_classes": 3,
        "train_set": range(12),
        "batch": {
            "inputs": {"a": torch.randn(6, 5), "b": torch.randn(6, 7)},
            "label": torch.tensor([0, 1, 2, 0, 1, 2]),
            "index": torch.arange(6),
        },
    }
    exec(compile(example, str(README), "exec"), namespace)
    terms = namespace["loss"].terms
    assert {"task", "informatic", "coherence"} <= set(terms)
    assert all(torch.isfinite(value) for value in terms.values())
    encoder = namespace["encoders"]["a"]
    assert encoder.weight.grad is not None and encoder.weight.grad.abs().sum() > 0


def test_load_model_example_runs_on_a_fresh_fit(tmp_path, monkeypatch, capsys):
    """The README's reuse example, on the checkpoint its own `fit` line writes (shortened here)."""
    from iidfusion.cli.main import main

    (example,) = [block for block in python_blocks(README.read_text()) if "load_model(" in block]
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "fit",
                "--data",
                "handwritten",
                "--method",
                "iid-q",
                "--seed",
                "0",
                "--out",
                "runs",
                "--max-epochs",
                "1",
                "--width",
                "8",
                "--hidden",
                "16",
                "--threads",
                "1",
                "--no-progress-bar",
                "--loggers",
                "",
            ]
        )
        == 0
    )
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)
    assert len(namespace["predicted"]) == 400 and set(namespace["predicted"]) <= set(namespace["trained"].output_names)
    assert namespace["output"].weights.shape == (400, 6)
    assert "iid-q 1.0 tensor([[" in capsys.readouterr().out


def test_the_python_api_example_runs_as_printed(tmp_path, monkeypatch, capsys):
    """The README's whole-run example, shortened to one quick epoch per fit (the options it
    gives stand; only the size and the threads are added)."""
    import iidfusion

    quick = {"max_epochs": 1, "width": 8, "hidden": 16, "threads": 1, "progress_bar": False, "loggers": ()}
    fit, compare = iidfusion.fit, iidfusion.compare
    monkeypatch.setattr(iidfusion, "fit", lambda *args, **options: fit(*args, **(options | quick)))
    monkeypatch.setattr(iidfusion, "compare", lambda *args, **options: compare(*args, **(options | quick), log=print))
    (example,) = [block for block in python_blocks(README.read_text()) if "iidfusion.compare(" in block]
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "handwritten.yaml").write_text((README.parent / "configs" / "handwritten.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    exec(compile(example, str(README), "exec"), {})
    assert (tmp_path / "runs" / "iid-q" / "seed0" / "metrics.json").is_file() and (
        tmp_path / "kept" / "config.yaml"
    ).is_file()
    assert (tmp_path / "runs" / "cmp" / "results.md").read_text() in capsys.readouterr().out


def test_the_readme_names_the_departures_of_the_defaults():
    """The README's first lines say how the defaults depart from the paper, word for word as the
    commands print it (docs/method.md, "Departures from the paper")."""
    from iidfusion.fusion.methods import MAIN_METHODS
    from iidfusion.tasks.classification.config import load_config
    from iidfusion.tasks.classification.departures import departures_line

    head = README.read_text().split("## Quick start")[0]
    assert departures_line(load_config(), MAIN_METHODS) in " ".join(head.split())


def test_the_quick_start_begins_with_pip_and_keeps_the_two_make_commands():
    quick = README.read_text().split("## Quick start")[1].split("## ")[0]
    lines = [line.strip() for line in quick.splitlines() if line.strip()]
    assert lines[0].startswith('pip install "torch==') and lines[1].startswith('pip install -e ".[all]"')
    assert "make demo" in lines and "make test" in lines


def test_the_arrays_in_memory_example_runs_as_printed(tmp_path, monkeypatch, capsys):
    import iidfusion

    quick = {"max_epochs": 1, "width": 8, "hidden": 16, "threads": 1, "progress_bar": False, "loggers": ()}
    fit = iidfusion.fit
    monkeypatch.setattr(iidfusion, "fit", lambda *args, **options: fit(*args, **(options | quick)))
    (example,) = [block for block in python_blocks(README.read_text()) if "iidfusion.predict(" in block]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)
    found = namespace["found"]
    assert (
        len(found.labels) == 4 and tuple(found.probabilities.shape) == (4, 3) and tuple(found.weights.shape) == (4, 2)
    )
    assert len(list((tmp_path / "runs" / "memory").glob("data-*.npz"))) == 1
