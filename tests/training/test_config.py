import argparse

import pytest

from iidfusion.cli.options import add_config_arguments, config_from_args
from iidfusion.training.config import ExperimentConfig, dump_config, iter_options, load_config


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
    [("alpah: 1\n", "'alpah'"), ("loss:\n  alpah: 1\n", "'loss.alpah'"), ("train:\n  foo:\n    bar: 1\n", "'train.foo'")],
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
    args = parser.parse_args(["--config", str(path), "--alpha", "2", "--max-epochs", "3", "--methods", "a,b", "--progress-bar"])
    config = config_from_args(args)
    assert (config.loss.alpha, config.loss.beta, config.train.max_epochs) == (2.0, 0.7, 3)
    assert config.methods == ("a", "b") and config.train.progress_bar is True
    text = " ".join(parser.format_help().split())
    for option in iter_options():
        assert option.flag in text
    assert "(default: 100)" in text and "(default: 0,5,10)" in text


def test_every_option_documented_and_flags_unique():
    options = list(iter_options())
    assert all(o.help for o in options)
    flags = [o.flag for o in options]
    assert len(flags) == len(set(flags))
    assert {"--data", "--methods", "--seeds", "--noise", "--max-epochs", "--out"} <= set(flags)
