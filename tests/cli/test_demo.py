from pathlib import Path

from cli_support import files_under

from iidfusion.cli.demo import DEMO_CONFIG
from iidfusion.cli.main import main
from iidfusion.training.config import config_to_dict, load_config, resolve_methods

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


def test_demo_runs_shrunk_on_handwritten(tmp_path, capsys):
    """The demo command on the real data, cut to two methods, one seed and one epoch."""
    out = tmp_path / "demo"
    assert main(["demo", "--methods", "lf-static,iid-l", "--seeds", "1", "--max-epochs", "1", "--jobs", "1", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "# handwritten: 2 methods x 1 seeds" in printed and "| lf-static |" in printed and "| iid-l |" in printed
    assert files_under(out) == sorted(["accuracy_vs_noise.png", "results.csv", "results.json", "results.md"])
