import pytest

from iidfusion.cli.main import SUBCOMMANDS, main


def test_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("demo", "fit", "compare", "datasets"):
        assert name in SUBCOMMANDS and name in out


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("fit", ["--method METHOD", "(default: iid-p)", "--resume [CKPT]", "--alpha ALPHA", "(default: 0.1)"]),
        (
            "compare",
            [
                "--methods METHODS",
                "(default: main)",
                "--seeds SEEDS",
                "(default: 5)",
                "--noise NOISE",
                "(default: 0,5,10)",
                "--max-epochs MAX_EPOCHS",
                "--out OUT",
                "--config FILE",
                "--data DATA",
            ],
        ),
        ("demo", ["(default: 15)", "(default: runs/demo)", "--jobs JOBS", "(default: 2)"]),
        ("datasets", ["NAME_OR_PATH"]),
    ],
)
def test_subcommand_help_shows_defaults(capsys, command, expected):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for text in expected:
        assert text in out
    assert ("--method " in out) == (command == "fit") and ("--seeds" in out) == (command in ("compare", "demo"))


def test_the_studies_commands_come_through_the_entry_point_group(capsys, monkeypatch):
    from iidfusion.cli import main as cli

    commands = cli.plugin_commands()
    assert {"bench", "sweep"} <= set(commands) and not set(commands) & set(SUBCOMMANDS)
    for command in ("bench", "sweep"):
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0 and f"iidfusion {command}" in capsys.readouterr().out
    # a ValueError raised by a plug-in's own code is bad input (exit 2), as one raised by iidfusion's
    assert any(folder.name == "iidfusion_studies" for folder in cli.own_folders(commands))
    monkeypatch.setattr(cli, "plugin_commands", dict)  # as without the studies installed
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--help"])
    assert exit_info.value.code == 2 and "invalid choice: 'sweep'" in capsys.readouterr().err
    # `plot` is the library's own command: there without the studies
    with pytest.raises(SystemExit) as exit_info:
        main(["plot", "--help"])
    assert exit_info.value.code == 0 and "iidfusion plot" in capsys.readouterr().out


def test_building_the_command_line_imports_no_training_code():
    """`iidfusion --help` stays fast: the parsers are made from the configurations, which import no Lightning."""
    import subprocess
    import sys

    code = "import sys\nfrom iidfusion.cli.main import build_parser\nbuild_parser()\nprint('lightning' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr


def test_version_works_on_the_core_install():
    """`iidfusion --version` imports no command (PyYAML, Lightning and SciPy come with the extra 'train')."""
    import subprocess
    import sys

    code = (
        "import sys\nfor name in ('yaml', 'scipy', 'lightning'): sys.modules[name] = None\n"
        "from iidfusion.cli.main import main\nsys.exit(main(['--version']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    import iidfusion

    assert done.returncode == 0 and done.stdout.strip() == f"iidfusion {iidfusion.__version__}", done.stderr
    code = code.replace("['--version']", "['fit', '--help']")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2 and "pip install 'iidfusion[train]'" in done.stderr
