"""The flags of the commands: grouped by section in --help, choices as placeholders, one name per thing."""

import pytest

from iidfusion.cli.main import main


def help_of(capsys, *command: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", [("fit",), ("compare",), ("suite",), ("demo",), ("finetune",), ("kg", "fit")])
def test_help_is_grouped_by_section(capsys, command):
    out = help_of(capsys, *command)
    sections = ("data options:", "model options:", "train options:")
    assert all(section in out for section in sections), out
    assert out.index("data options:") < out.index("model options:") < out.index("train options:")


def test_choices_are_the_placeholders(capsys):
    out = " ".join(help_of(capsys, "fit").split())
    for flag in (
        "--unimodal-heads {separate,shared}",
        "--stop-on {acc,loss,acc_or_loss}",
        "--noise-kind {gaussian,salt-and-pepper}",
        "--ic-reduction {mean,sum,weighted}",
        "--config FILE_OR_NAME",
    ):
        assert flag in out
    kg = " ".join(help_of(capsys, "kg", "fit").split())
    assert "--lr LR" in kg and "LEARNING_RATE" not in kg and "--optimizer {adagrad,adam,sgd}" in kg
    assert "--accelerator {auto,cpu,gpu,cuda,mps}" in " ".join(help_of(capsys, "extract").split())


@pytest.mark.parametrize(
    ("command", "old", "new"),
    [
        (["extract", "--data-format", "rgbd", "--root", "r", "--out", "o"], ["--force"], "--overwrite"),
        (["extract", "--data-format", "rgbd", "--root", "r", "--out", "o"], ["--device", "cpu"], "--accelerator"),
        (["bench", "train"], ["--device", "cuda"], "--accelerator and --devices"),
    ],
)
def test_an_old_name_is_refused_naming_the_new_one(capsys, command, old, new):
    with pytest.raises(SystemExit) as exit_info:
        main([*command, *old])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and f"{old[0]} is now {new}" in err


@pytest.mark.parametrize("command", ["fit", "compare", "suite", "demo", "finetune", "extract", "predict", "datasets"])
def test_one_name_for_one_thing(capsys, command):
    """Every command replaces with --overwrite, picks hardware with --accelerator/--devices, continues with --resume."""
    out = help_of(capsys, command)
    assert "--force" not in out and "--device " not in out and "--learning-rate" not in out
    if command in ("fit", "compare", "demo", "suite"):
        assert "--resume" in out and "--accelerator" in out and "--devices" in out


def test_views_of_a_table_as_patterns_and_view_as_its_short_form():
    from iidfusion.cli.main import build_parser
    from iidfusion.cli.options import config_from_args

    for flag in ("--views", "--view"):
        args = build_parser({}).parse_args(
            ["fit", flag, "image=img_*,tab=tab_*", "--labels", "y", "--id-column", "key"]
        )
        config = config_from_args(args)
        assert config.views == ("image=img_*", "tab=tab_*") and config.labels == "y" and config.id_column == "key"


def test_a_shipped_config_by_name_on_the_command_line():
    from iidfusion.cli.main import build_parser
    from iidfusion.cli.options import config_from_args

    config = config_from_args(build_parser({}).parse_args(["compare", "--config", "synthetic", "--seeds", "2"]))
    assert config.data == "synthetic" and config.seeds == 2
