import argparse
import dataclasses
import typing
from dataclasses import replace

import pytest
import yaml
from torch import nn

from iidfusion.cli.options import add_config_arguments, config_from_args
from iidfusion.core.config import iter_options, option, positive
from iidfusion.fusion import FusionModel, StaticStrategy, available_strategies, register_strategy
from iidfusion.fusion.base import StrategyOptions
from iidfusion.fusion.registry import STRATEGIES, get_strategy_class
from iidfusion.tasks.classification.config import ExperimentConfig, dump_config, load_config
from iidfusion.tasks.classification.validation import check_option_values


def test_defaults_round_trip_through_yaml(tmp_path):
    config = load_config(overrides={"loss.alpha": 0.5, "eval.noise": "0,2.5", "train.loggers": ""})
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(config))
    assert load_config(path) == config
    assert config.eval.noise == (0.0, 2.5) and config.train.loggers == ()


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data: synthetic\nloss:\n  alpha: 0.3\n  beta: 2\ntrain:\n  max_epochs: 7\n")
    config = load_config(path, {"loss.alpha": "0.9"})
    assert config.data == "synthetic"
    assert config.loss.alpha == 0.9 and config.loss.beta == 2.0 and isinstance(config.loss.beta, float)
    assert config.train.max_epochs == 7
    assert config.model == ExperimentConfig().model


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("alpah: 1\n", "'alpah'"),
        ("loss:\n  alpah: 1\n", "'loss.alpah'"),
        ("train:\n  foo:\n    bar: 1\n", "'train.foo'"),
    ],
)
def test_unknown_key_is_named(tmp_path, text, key):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"unknown config key {key}"):
        load_config(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  max_epochs: abc\n", "'train.max_epochs' must be an int"),
        ("train:\n  max_epochs: 2.5\n", "'train.max_epochs' must be an int"),
        ("loss: 3\n", "'loss' .* must be a mapping"),
        ("train:\n  progress_bar: maybe\n", "'train.progress_bar' must be true or false"),
        ("- a\n- b\n", "must hold a mapping"),
        ("a: [\n", "cannot read config file"),
    ],
)
def test_bad_values_are_named(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_config(path)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="config file not found: /no/such.yaml"):
        load_config("/no/such.yaml")


def test_flags_override_file_and_help_shows_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("loss:\n  alpha: 0.3\n  beta: 0.7\ntrain:\n  progress_bar: false\n")
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(
        ["--config", str(path), "--alpha", "2", "--max-epochs", "3", "--methods", "a,b", "--progress-bar"]
    )
    config = config_from_args(args)
    assert (config.loss.alpha, config.loss.beta, config.train.max_epochs) == (2.0, 0.7, 3)
    assert config.methods == ("a", "b") and config.train.progress_bar is True
    text = " ".join(parser.format_help().split())
    for leaf in iter_options(ExperimentConfig()):
        assert leaf.flag in text
    assert "(default: 100)" in text and "(default: 0,5,10)" in text


def test_every_option_documented_and_flags_unique():
    options = list(iter_options(ExperimentConfig()))
    assert all(o.help for o in options)
    flags = [o.flag for o in options]
    assert len(flags) == len(set(flags))
    assert {"--data", "--methods", "--seeds", "--noise", "--max-epochs", "--out"} <= set(flags)


def _changed(option):
    """A value of ``option`` other than its default that its rule accepts, from its type alone."""
    kind = next((a for a in typing.get_args(option.type) if a is not type(None)), option.type)
    default = option.default
    if kind is bool:
        value = not default
    elif kind is float:
        value = default / 2 if default else 0.5
    elif kind is int:
        value = 3 if default is None else default + 1
    elif typing.get_origin(kind) is tuple:
        value = (1.0, 3.0)
    else:
        value = "other"
    assert option.rule is None or option.rule.check(value), (option.key, value)
    return value


def _flag_args(option, value):
    if isinstance(value, bool):
        return [option.flag if value else "--no-" + option.flag[2:]]
    return [option.flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]


@pytest.mark.parametrize("name", available_strategies())
def test_every_strategy_option_round_trips_through_config_files_and_flags(name, tmp_path):
    """Generated from the registry: each option of each strategy is a key strategy.<name>.<option>
    of a YAML file and a flag --<name>-<option>, and config.yaml (dump_config) reads back the same."""
    options = [o for o in iter_options(ExperimentConfig()) if o.key.startswith(f"strategy.{name}.")]
    assert [o.key.rsplit(".", 1)[1] for o in options] == [
        f.name for f in dataclasses.fields(get_strategy_class(name).options_class)
    ]
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    for leaf_option in options:
        value = _changed(leaf_option)
        leaf = leaf_option.key.rsplit(".", 1)[1]
        assert leaf_option.flag == f"--{name}-{leaf.replace('_', '-')}"
        path = tmp_path / f"{leaf}.yaml"
        path.write_text(
            yaml.safe_dump({"strategy": {name: {leaf: list(value) if isinstance(value, tuple) else value}}})
        )
        from_file = load_config(path)
        from_flags = config_from_args(parser.parse_args(_flag_args(leaf_option, value)))
        for config in (from_file, from_flags):
            assert getattr(getattr(config.strategy, name), leaf) == value
            assert replace(config, strategy=ExperimentConfig().strategy) == ExperimentConfig(), (
                "only that leaf_option changed"
            )
        (tmp_path / "dumped.yaml").write_text(dump_config(from_flags))
        assert load_config(tmp_path / "dumped.yaml") == from_flags
        check_option_values(from_file)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--qmf-lam-rank", "-1"], "--qmf-lam-rank (strategy.qmf.lam_rank) must be finite and >= 0, got -1.0"),
        (
            ["--qmf-energy-temperature", "0"],
            "--qmf-energy-temperature (strategy.qmf.energy_temperature) must be finite and > 0, got 0.0",
        ),
        (
            ["--pdf-min-confidence", "1"],
            "--pdf-min-confidence (strategy.pdf.min_confidence) must be in (0, 1), got 1.0",
        ),
        (
            ["--pdf-confidnet-hidden", "0"],
            "--pdf-confidnet-hidden (strategy.pdf.confidnet_hidden) must be in [1, 65536] or none, got 0",
        ),
        (
            ["--static-weights", "0,0"],
            "--static-weights (strategy.static.weights) must be finite, non-negative, with a positive and finite sum "
            "(or none), got (0.0, "
            "0.0)",
        ),
    ],
)
def test_a_strategy_option_out_of_range_is_one_error_naming_flag_key_and_value(flags, message):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    with pytest.raises(ValueError) as error:
        check_option_values(config_from_args(parser.parse_args(flags)))
    assert str(error.value) == message


def test_none_resets_an_optional_strategy_option(tmp_path):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    path = tmp_path / "c.yaml"
    path.write_text("strategy:\n  pdf:\n    confidnet_hidden: 7\n  static:\n    weights: [1, 2]\n")
    assert load_config(path).strategy.pdf.confidnet_hidden == 7 and load_config(path).strategy.static.weights == (
        1.0,
        2.0,
    )
    reset = config_from_args(
        parser.parse_args(["--config", str(path), "--pdf-confidnet-hidden", "none", "--static-weights", "none"])
    )
    assert reset.strategy == ExperimentConfig().strategy
    assert (
        "--pdf-confidnet-hidden PDF_CONFIDNET_HIDDEN hidden width of each modality's ConfidNet (none: the width d) "
        "(default: none)" in (" ".join(parser.format_help().split()))
    )


def test_a_strategy_a_user_registers_gets_its_section_and_flags_with_no_other_edit(monkeypatch, tmp_path):
    monkeypatch.setattr(STRATEGIES, "_entries", dict(STRATEGIES._entries))  # registrations undone after the test

    @dataclasses.dataclass(frozen=True)
    class SharpOptions(StrategyOptions):
        sharpness: float = option(2.0, "exponent of the static weights", rule=positive())

    class SharpStrategy(StaticStrategy):
        def __init__(self, modalities, num_classes, *, sharpness: float = 2.0, **base_options):
            super().__init__(modalities, num_classes, **base_options)
            self.sharpness = sharpness

    register_strategy("sharp", options=SharpOptions)(SharpStrategy)
    path = tmp_path / "c.yaml"
    path.write_text("strategy:\n  sharp:\n    sharpness: 3\n")
    config = load_config(path)
    assert (
        config.strategy.sharp == SharpOptions(sharpness=3.0) and config.strategy.qmf == ExperimentConfig().strategy.qmf
    )
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    assert config_from_args(parser.parse_args(["--sharp-sharpness", "4"])).strategy.sharp.sharpness == 4.0
    with pytest.raises(
        ValueError, match=r"--sharp-sharpness \(strategy\.sharp\.sharpness\) must be finite and > 0, got 0\.0"
    ):
        check_option_values(load_config(overrides={"strategy.sharp.sharpness": 0}))
    model = FusionModel(
        {"a": nn.Identity(), "b": nn.Identity()},
        {"a": 4, "b": 4},
        3,
        width=4,
        strategy="sharp",
        strategy_options=config.strategy.sharp,
    )
    assert isinstance(model.strategy, SharpStrategy) and model.strategy.sharpness == 3.0
