import os
import subprocess
import sys
from pathlib import Path

from cli_support import files_under
from iidfusion.cli.demo import DEMO_CONFIG, PINNED_KERNELS
from iidfusion.cli.main import main
from iidfusion.engine.outputs import MARKER
from iidfusion.tasks.classification.config import config_to_dict, load_config, resolve_methods
from iidfusion.tasks.classification.report import CLASS_FILES, RESULT_FILES

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_demo_config_file_matches_the_builtin_demo():
    assert load_config(CONFIGS / "demo.yaml") == DEMO_CONFIG
    assert resolve_methods(DEMO_CONFIG.methods) == resolve_methods(("main",)) and len(resolve_methods(("main",))) == 9
    assert (DEMO_CONFIG.data, DEMO_CONFIG.seeds, DEMO_CONFIG.eval.noise) == ("handwritten", 5, (0.0, 5.0, 10.0))


def test_every_config_file_loads():
    for path in sorted(CONFIGS.glob("*.yaml")):
        config = load_config(path)
        assert config_to_dict(config) == config_to_dict(load_config(None, None, config))
        resolve_methods(config.methods)
        resolve_methods((config.method,))


def test_demo_runs_shrunk_on_handwritten(tmp_path, capsys, monkeypatch):
    """The demo command on the real data, cut to two methods, one seed and one epoch; run twice,
    the second replaces the first's results (the demo's --overwrite is on)."""
    for name in PINNED_KERNELS:  # recorded, so that the demo's setting is undone after the test
        monkeypatch.setenv(name, "unset")
        monkeypatch.delenv(name)
    out = tmp_path / "demo"
    args = [
        "demo",
        "--methods",
        "lf-static,iid-l",
        "--seeds",
        "1",
        "--max-epochs",
        "1",
        "--jobs",
        "1",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "# handwritten: 2 methods x 1 seeds" in printed and "| lf-static |" in printed and "| iid-l |" in printed
    assert files_under(out) == sorted([MARKER, *RESULT_FILES, *CLASS_FILES])
    assert {name: os.environ[name] for name in PINNED_KERNELS} == PINNED_KERNELS
    (out / "results.csv").write_text("of the first demo")
    assert main([*args, "--methods", "lf-static"]) == 0
    assert "lf-static" in (out / "results.csv").read_text() and "iid-l" not in (out / "results.csv").read_text()
    assert main([*args, "--no-overwrite"]) == 2


def test_the_pinned_kernels_take_effect_in_a_fresh_process():
    """What the demo's worker processes see: ATen's default (non-vectorised) kernels."""
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    result = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **PINNED_KERNELS}, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "DEFAULT"
