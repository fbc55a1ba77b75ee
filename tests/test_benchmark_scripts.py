"""The standalone benchmark scripts that no `iidfusion` subcommand wraps."""

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmark_modules import benchmark_module

SCRIPTS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_regularizer_cost_reports_each_regularizer():
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / "regularizer_cost.py"), "--repeats", "1", "--label", "now"],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["label"] == "now"
    assert set(report["objective_ms"]) == {
        "if-static",
        "iid-l",
        "iid-l-no-ic",
        "iid-l-no-dc",
        "if-pdf",
        "iid-p",
        "iid-p-no-ic",
        "iid-p-no-dc",
    }
    for family in ("static", "pdf"):
        costs = report[family]
        assert set(costs) == {"L_ic + L_dc (ms)", "L_dc (ms)", "L_ic (ms)"}
        assert costs["L_dc (ms)"] > 0  # 15 transport problems cannot be free


def test_real_data_measures_each_command(tmp_path):
    step = benchmark_module("real_data").run_step("help", ["--help"], tmp_path, threads=1)
    assert step.seconds > 0 and step.peak_mib > 10
    assert "usage: iidfusion" in (tmp_path / "help.log").read_text()


def test_real_data_reports_from_the_commands_outputs(tmp_path):
    """The two reports, from outputs of the very commands the script runs (here in-process, on the fixtures)."""
    from iidfusion.cli.main import main

    real_data = benchmark_module("real_data")
    repo, fixtures = SCRIPTS.parent, SCRIPTS.parent / "tests" / "fixtures"
    quiet = ["--no-progress-bar", "--accelerator", "cpu", "--threads", "1"]
    hfm = tmp_path / "hfm"
    assert (
        main(
            [
                "extract",
                "--data-format",
                "hfm",
                "--root",
                str(fixtures / "hfm"),
                "--text-encoder",
                "minilm",
                "--out",
                str(hfm / "features"),
                "--accelerator",
                "cpu",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "compare",
                "--config",
                str(repo / "configs" / "hfm_attributes.yaml"),
                "--data",
                str(hfm / "features" / "features.npz"),
                "--methods",
                "lf-static,iid-l",
                "--seeds",
                "1",
                "--jobs",
                "1",
                "--max-epochs",
                "1",
                "--out",
                str(hfm / "compare"),
                *quiet,
            ]
        )
        == 0
    )
    args = real_data.build_parser().parse_args(
        ["hfm", "--data", str(fixtures / "hfm"), "--seeds", "1", "--methods", "lf-static,iid-l"]
    )
    steps = [real_data.Step("extract", ["extract"], 12.0, 600.0), real_data.Step("compare", ["compare"], 90.0, 500.0)]
    report = real_data.hfm_report(args, hfm, steps, (1.0, 2.0), "abc1234")
    assert "**The second modality is the image-attribute words**" in report and "not the pixels" in report
    assert (
        "10 / 4 / 4 train / validation / test tweets" in report and "tweets without image attributes: train 1" in report
    )
    assert "| lf-static |" in report and "| iid-l |" in report and "| HFM | IID-P | 86.88 ± 0.39 |" in report
    assert "| `compare` | 1.5 min (90 s) | 500 MiB |" in report and "code at commit abc1234" in report

    wn9 = tmp_path / "wn9img"
    wn9.mkdir()
    with open(wn9 / "kg-compare.log", "w") as log, contextlib.redirect_stdout(log):
        code = main(
            [
                "kg",
                "compare",
                "--config",
                str(repo / "configs" / "kg" / "wn9img_text_cpu.yaml"),
                "--data",
                str(fixtures / "wn9img_layout"),
                "--seeds",
                "1",
                "--max-epochs",
                "1",
                "--batch-size",
                "32",
                "--accelerator",
                "cpu",
                "--cache-dir",
                str(tmp_path / "cache"),
                "--out",
                str(wn9 / "compare"),
            ]
        )
    assert code == 0
    args = real_data.build_parser().parse_args(["wn9img", "--seeds", "1", "--max-epochs", "1", "--batch-size", "32"])
    report = real_data.wn9img_report(
        args, wn9, [real_data.Step("kg-compare", ["kg", "compare"], 60.0, 900.0)], (1.0, 2.0), "abc1234"
    )
    assert "12 entities, 3 relations" in report and "**No image features**" in report
    assert "sized down for a CPU with `--max-epochs 1`, `--batch-size 32`" in report
    assert "| baseline | 0 |" in report and "| iid | 0 |" in report and "| WN9-IMG | OTKGE + IID | 0.932 |" in report


def test_fit_benchmark_judges_each_target_on_its_ratio():
    bench_fit = benchmark_module("bench_fit")
    labels = [c.label for c in bench_fit.fit_configs()]
    cpu = dict.fromkeys(labels, 10.0)
    cpu.update({"iid-l": 12.0, "iid-p": 15.0, "if-static": 10.4})  # IID-L meets 1.3x, IID-P misses it
    runs = {label: [(seconds, 2 * seconds), (seconds + 1, 2 * seconds)] for label, seconds in cpu.items()}
    startup = {
        "import torch": [2.0],
        "import torch, lightning": [6.0],
        "fit: import torch": [2.0],
        "fit: torch -> first step": [4.5],
    }
    report = bench_fit.render(runs, startup, rounds=2, epochs=3, seconds=1.0)
    assert "| iid-l / if-static | default (on) | 10.4 | 12.0 | 1.15 |" in report and "| 1.15 | yes |" in report
    assert "| iid-p / if-pdf | default (on) | 10.0 | 15.0 | 1.50 |" in report and "no (+15 % over)" in report
    assert "| if-static: distances | 10.0 | 10.4 | +4.0 % |" in report  # within the 5 % target
    assert "| of which lightning's own import chain (second row minus the first) | 4.00 |" in report
    assert "Target met: no (+50 % over)." in report  # first step 4.5 s against 3 s


def test_startup_benchmark_reports_ratios_within_rounds():
    bench_startup = benchmark_module("bench_startup")
    labels = list(bench_startup.processes(SCRIPTS.parent))
    wall = dict.fromkeys(labels, 2.0) | {"python -c pass": 0.02, "python -c 'import torch'": 1.6}
    wall |= {"iidfusion --help": 0.16, "iidfusion fit --help": 0.2, "iidfusion --version": 0.1}
    runs = {label: [(seconds, seconds / 2), (2 * seconds, seconds)] for label, seconds in wall.items()}
    imports = {
        label: (0.03, []) if " (baseline)" not in label else (1.5, ["torch"])
        for label in labels
        if label.startswith("iidfusion")
    }
    report = bench_startup.render(runs, imports, rounds=2, baseline="iidfusion-abc1234")
    assert (
        "| `iidfusion --help` | 0.240 | 0.120 | 8.00 | 0.10 | 0.030 | none of torch, lightning, torchmetrics," in report
    )
    assert "| `iidfusion --help (baseline)` | 3.000 | 1.500 | 100.00 | 1.25 | 1.500 | torch |" in report
    assert "the checkout `iidfusion-abc1234`" in report and "| `iidfusion --help` | 0.08 | 0.08 |" in report
    assert "Target `iidfusion --help` <= 0.3 s (wall, median): 0.240 s, met." in report


def test_suite_benchmark_reports_fits_per_hour_and_equal_results(tmp_path):
    bench_suite = benchmark_module("bench_suite")
    assert bench_suite.parse_jobs("1,2") == (1, 2) and bench_suite.fits_per_hour(36, 1800.0) == 72.0
    for bad in ("0", "1,x", "1,1", ""):
        with pytest.raises(ValueError, match="--jobs"):
            bench_suite.parse_jobs(bad)
    assert bench_suite.main(["--baseline", str(tmp_path)]) == 2  # no src/iidfusion: before anything runs

    suite = {
        "config": {"train": {"max_epochs": 100, "patience": 10}},
        "runs": [
            {
                "dataset": "handwritten",
                "variant": "paper",
                "method": method,
                "seed": 0,
                "val_acc": 0.9,
                "val_loss": None,
                "epochs": 12,
                "test": [{"noise": 0.0, "accuracy": 0.95, "macro_f1": 0.94}],
            }
            for method in ("lf-static", "iid-l")
        ],
    }
    (tmp_path / "suite.json").write_text(json.dumps(suite))
    runs, settings = bench_suite.read_runs(tmp_path / "suite.json")
    assert settings == {"max_epochs": 100, "patience": 10}
    base, iid = ("handwritten", "paper", "lf-static", 0), ("handwritten", "paper", "iid-l", 0)
    assert runs[base] == {
        "test accuracy at noise 0.0": 0.95,
        "test macro-F1 at noise 0.0": 0.94,
        "best validation accuracy": 0.9,
        "validation loss": None,
        "epochs": 12,
    }
    changed = {**runs, iid: {**runs[iid], "test accuracy at noise 0.0": 0.95 + 1e-12}}  # no rounding
    assert bench_suite.differences(changed, runs) == {iid: ["test accuracy at noise 0.0"]}

    protocol = bench_suite.Protocol(("handwritten",), ("lf-static", "iid-l"), 1)
    measurements = [
        bench_suite.Measurement("this checkout", 1, 1, 20.0, 18.0, 2, 24, settings, changed),
        bench_suite.Measurement("baseline", 1, 1, 60.0, 45.0, 2, 24, settings, runs),
        bench_suite.Measurement("baseline", 1, 2, 50.0, 45.0, 2, 24, settings, runs),
        bench_suite.Measurement("this checkout", 1, 2, 20.0, 15.0, 2, 24, settings, changed),
    ]
    assert bench_suite.ratios(measurements, 1) == (2.75, 2.75)  # medians of 3 and 2.5; of 2.5 and 3
    names = {"this checkout": "this checkout, `now`", "baseline": "baseline, `then`"}
    report = bench_suite.render(measurements, protocol, "python benchmarks/bench_suite.py", names, rounds=2)
    assert "| this checkout, `now` | 1 | 2 | 24 | 20.0 | 16.5 | 360 | 436 | 2.75 | 2.75 |" in report
    assert "| baseline, `then` | 1 | 2 | 24 | 55.0 | 45.0 | 131 | 160 |  |  |" in report
    assert "--jobs 1: 2.75 x, not met" in report and "--jobs 1, round 1: 1 of 2 identical" in report
    assert "Bases (lf-static): all identical." in report and "| handwritten | paper | iid-l | 0 | no |" in report
    assert "this checkout, `now`: yes, baseline, `then`: yes" in report


@pytest.mark.parametrize("tune_l2", ["", "0.01,0.03"])
def test_mvsa_report_from_the_commands_outputs(tmp_path, tune_l2):
    """The MVSA-Single report, from the outputs of its commands run on the image + text fixture; with
    ``--tune-l2``, of a comparison whose methods chose their L2 penalty on dev.
    """
    from iidfusion.cli.main import main

    real_data = benchmark_module("real_data")
    repo = SCRIPTS.parent
    work = tmp_path / "mvsa"
    fixture = repo / "tests" / "fixtures" / "vision_language" / "mmbt"
    args = real_data.build_parser().parse_args(
        ["mvsa-single", "--data", str(fixture), "--seeds", "1", "--methods", "pdf,iid-p", "--tune-l2", tune_l2]
    )
    assert (
        main(
            [
                "extract",
                "--data-format",
                "mmbt",
                "--root",
                str(fixture),
                "--text-encoder",
                "minilm",
                "--image-encoder",
                "efficientnet-lite0",
                "--image-size",
                "32",
                "--noise",
                "0,5,10",
                "--out",
                str(work / "features"),
                "--accelerator",
                "cpu",
                "--no-progress-bar",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "compare",
                "--config",
                str(repo / "configs" / "vl" / "mvsa_single.yaml"),
                "--data",
                str(work / "features"),
                "--methods",
                "pdf,iid-p",
                "--seeds",
                "1",
                "--max-epochs",
                "1",
                "--batch-size",
                "4",
                "--out",
                str(work / real_data.mvsa_compare_folder(args)),
                "--accelerator",
                "cpu",
                *real_data.mvsa_compare_flags(args),
            ]
        )
        == 0
    )
    probes = [
        real_data.linear_probe(work / "features", ("image", "text"), (0.0, 5.0, 10.0), late=late)
        for late in (False, True)
    ]
    assert set(probes[0]["test"]) == {0.0, 5.0, 10.0} and len(probes[0]["C"]) == 1 and len(probes[1]["C"]) == 2
    assert all(c in real_data.PROBE_C for probe in probes for c in probe["C"])
    steps = [real_data.Step("extract", ["extract"], 600.0, 1800.0), real_data.Step("compare", ["compare"], 90.0, 500.0)]
    report = real_data.mvsa_report(args, work, steps, probes, 3.0, (1.0, 2.0), "abc1234")
    assert (
        "9 / 3 / 3 train / dev / test pairs" in report
        and "**efficientnet-lite0**" in report
        and "**Why not the paper's encoders**" in report
    )
    assert (
        "| image + text | " in report
        and "logits summed (late fusion) |" in report
        and "| pdf | 79.94 ± 0.95 |" in report
        and "| iid-p | 81.13 ± 0.84 |" in report
    )
    assert (
        "## Paired t-tests" in report
        and "p (Holm)" in report
        and "| `extract` | 10.0 min (600 s) | 1800 MiB |" in report
    )
    tuned = "L2 penalty chosen per method and seed on dev among 0.01,0.03 (the same 2 trials for every method"
    assert (tuned in report) == bool(tune_l2) and ("--tune-l2 0.01,0.03`." in report) == bool(tune_l2)
    assert ("Hyperparameters chosen on validation" in report) == bool(tune_l2)


def test_fit_profile_sorts_each_function_into_its_category():
    profile_fit = benchmark_module("profile_fit")
    assert profile_fit.category(("~", 0, "<method 'run_backward' of 'torch._C._EngineBase' objects>")).startswith(
        "backward"
    )
    assert profile_fit.category(("/x/torch/optim/adam.py", 1, "step")).startswith("optimizer")
    assert profile_fit.category(("~", 0, "<built-in method torch._foreach_mul_>")).startswith("optimizer")
    assert profile_fit.category(("/x/src/iidfusion/ot/sinkhorn.py", 1, "iterate")).startswith("Sinkhorn")
    assert profile_fit.category(("~", 0, "<built-in method torch._C._nn.linear>")).startswith("layer kernels")
    assert profile_fit.category(("/x/iidfusion/tasks/classification/data.py", 38, "<dictcomp>")).startswith("data")
    assert profile_fit.category(("/x/lightning/pytorch/loops/fit_loop.py", 1, "run")).startswith("Lightning")
    assert profile_fit.category(("/x/iidfusion/fusion/model.py", 1, "encode")) == profile_fit.OTHER


def test_real_data_mvsa_tunes_only_the_l2_penalty_when_given_a_grid(capsys):
    """``mvsa-single --tune-l2 GRID``: compare's flags give every method the same L2 grid and fix alpha and beta."""
    import yaml

    from iidfusion.cli.main import main

    real_data = benchmark_module("real_data")
    plain = real_data.build_parser().parse_args(["mvsa-single"])
    assert real_data.mvsa_compare_flags(plain) == [] and real_data.mvsa_compare_folder(plain) == "compare"
    args = real_data.build_parser().parse_args(["mvsa-single", "--tune-l2", "0.01,0.03"])
    flags = real_data.mvsa_compare_flags(args)
    assert real_data.mvsa_compare_folder(args) == "compare_tuned_l2"
    assert main(["compare", "--data", "handwritten", *flags, "--print-config"]) == 0
    tune = yaml.safe_load(capsys.readouterr().out)["tune"]
    assert tune["enabled"] is True and tune["l2"] == [0.01, 0.03]
    assert tune["alpha"] == [] and tune["beta"] == [] and tune["lr"] == [] and tune["weight_decay"] == []
