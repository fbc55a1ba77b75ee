"""core.config: options declared once (default, help, flag, rule), checked with one line naming the
flag, the key and the value, and the one loader of nested mappings (merge_config, nest)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from iidfusion.core.config import (
    INT_LIMIT,
    at_least,
    check_rules,
    coerce_option,
    iter_options,
    merge_config,
    nest,
    one_of,
    option,
    positive,
    redefault,
)


@dataclass(frozen=True)
class Optim:
    lr: float = option(0.1, "learning rate", rule=positive())
    max_epochs: int = option(5, "epochs", rule=at_least(1, 100))
    kind: str = option("adam", "optimizer", flag="--optimizer", rule=one_of(("adam", "sgd")))


@dataclass(frozen=True)
class Head:
    hidden_units: int = option(4, "hidden units", rule=at_least(1))


@dataclass(frozen=True)
class Heads:
    fused: Head = field(default_factory=Head)
    late_view: Head = field(default_factory=Head)


@dataclass(frozen=True)
class Experiment:
    name: str = option("run", "the run's name")
    noise: tuple[float, ...] = option((0.0, 5.0), "noise levels")
    budget: int | None = option(None, "trials (none: unlimited)")
    verbose: bool = option(False, "print more")
    extra: dict[str, float] = option(None, "named weights")
    anything: Any = option(None, "passed through")
    optim: Optim = field(default_factory=Optim)
    heads: Heads = field(default_factory=Heads, metadata={"flags_named_by_section": True})


# ---------------------------------------------------------------- rules


def test_at_least_accepts_its_bound_and_refuses_below_it_and_non_finite_values():
    rule = at_least(0.5)
    assert rule.expected == "finite and >= 0.5" and rule.choices == ()
    assert rule.check(0.5) and rule.check(1e9)
    assert not any(rule.check(v) for v in (0.49, math.nan, math.inf))


def test_at_least_with_an_upper_bound_is_a_closed_interval():
    rule = at_least(1, 2**16)
    assert rule.expected == "in [1, 65536]"
    assert rule.check(1) and rule.check(2**16)
    assert not any(rule.check(v) for v in (0, 2**16 + 1, math.nan, -math.inf))


def test_positive_refuses_zero_and_infinity():
    rule = positive()
    assert rule.expected == "finite and > 0"
    assert rule.check(1e-300) and not rule.check(0.0) and not rule.check(math.inf) and not rule.check(math.nan)


def test_one_of_lists_its_choices_in_the_message_and_as_the_placeholder():
    rule = one_of(("adam", "sgd"))
    assert rule.expected == "one of adam, sgd" and rule.choices == ("adam", "sgd")
    assert rule.check("sgd") and not rule.check("Adam")


# ---------------------------------------------------------------- option, redefault, iter_options


def test_option_stores_help_and_only_the_flag_and_rule_it_is_given():
    fields = {f.name: f for f in dataclasses.fields(Optim)}
    assert dict(fields["lr"].metadata) == {"help": "learning rate", "rule": fields["lr"].metadata["rule"]}
    assert fields["kind"].metadata["flag"] == "--optimizer"
    plain = {f.name: f for f in dataclasses.fields(Experiment)}["name"]
    assert dict(plain.metadata) == {"help": "the run's name"} and plain.default == "run"


def test_redefault_keeps_the_rule_and_flag_and_may_replace_the_help():
    @dataclass(frozen=True)
    class QuickOptim(Optim):
        kind: str = redefault(Optim, "kind", "sgd")
        lr: float = redefault(Optim, "lr", 0.5, "a larger step")

    fields = {f.name: f for f in dataclasses.fields(QuickOptim)}
    assert QuickOptim().kind == "sgd" and QuickOptim().lr == 0.5
    assert fields["kind"].metadata["flag"] == "--optimizer" and fields["kind"].metadata["help"] == "optimizer"
    assert fields["lr"].metadata["help"] == "a larger step"
    with pytest.raises(ValueError, match=r"^--optimizer \(kind\) must be one of adam, sgd, got 'rmsprop'$"):
        check_rules(QuickOptim(kind="rmsprop"))
    assert {f.name: f for f in dataclasses.fields(Optim)}["lr"].metadata["help"] == "learning rate"  # base unchanged


def test_iter_options_gives_dotted_keys_flags_and_destinations_depth_first():
    leaves = {leaf.key: leaf for leaf in iter_options(Experiment())}
    assert list(leaves) == [
        "name",
        "noise",
        "budget",
        "verbose",
        "extra",
        "anything",
        "optim.lr",
        "optim.max_epochs",
        "optim.kind",
        "heads.fused.hidden_units",
        "heads.late_view.hidden_units",
    ]
    assert leaves["optim.max_epochs"].flag == "--max-epochs" and leaves["optim.max_epochs"].dest == "optim__max_epochs"
    assert leaves["optim.kind"].flag == "--optimizer"
    # a section marked flags_named_by_section puts each sub-section's name before its leaves' flags
    assert leaves["heads.fused.hidden_units"].flag == "--fused-hidden-units"
    assert leaves["heads.late_view.hidden_units"].flag == "--late-view-hidden-units"
    assert leaves["optim.lr"].default == 0.1 and leaves["optim.lr"].help == "learning rate"
    assert leaves["noise"].type == tuple[float, ...] and leaves["noise"].rule is None


# ---------------------------------------------------------------- check_rules


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (Optim(lr=-1.0), "--lr (optim.lr) must be finite and > 0, got -1.0"),
        (Optim(lr=math.nan), "--lr (optim.lr) must be finite and > 0, got nan"),
        (Optim(max_epochs=101), "--max-epochs (optim.max_epochs) must be in [1, 100], got 101"),
        (Optim(kind="lbfgs"), "--optimizer (optim.kind) must be one of adam, sgd, got 'lbfgs'"),
    ],
)
def test_a_value_breaking_its_rule_is_one_line_naming_flag_key_and_value(config, message):
    with pytest.raises(ValueError) as error:
        check_rules(Experiment(optim=config))
    assert str(error.value) == message


def test_check_rules_names_the_first_bad_option_and_the_key_alone_without_flags():
    bad = Experiment(optim=Optim(lr=0.0, max_epochs=0), heads=Heads(late_view=Head(hidden_units=0)))
    with pytest.raises(ValueError, match=r"^--lr \(optim\.lr\) "):
        check_rules(bad)
    with pytest.raises(ValueError) as error:
        check_rules(Heads(late_view=Head(hidden_units=0)), "model.options.", name_flags=False)
    assert str(error.value) == "model.options.late_view.hidden_units must be finite and >= 1, got 0"
    check_rules(Experiment())  # the defaults obey their rules


# ---------------------------------------------------------------- coerce_option


@pytest.mark.parametrize(
    ("tp", "value", "expected"),
    [
        (tuple[float, ...], "0, 2.5,,", (0.0, 2.5)),
        (tuple[float, ...], [1, "2"], (1.0, 2.0)),
        (tuple[str, ...], "", ()),
        (int | None, "None", None),
        (int | None, "null", None),
        (int | None, None, None),
        (int | None, "7", 7),
        (bool, "YES", True),
        (bool, "0", False),
        (str, 12, "12"),
        (int, 3.0, 3),
        (int, "-4", -4),
        (float, "1e-3", 0.001),
        (float, 2, 2.0),
        (dict[str, float], {"a": 1, "b": "0.5"}, {"a": 1.0, "b": 0.5}),
        (Any, [1, "x"], [1, "x"]),
    ],
)
def test_values_from_yaml_or_a_flag_string_are_coerced_to_the_option_type(tp, value, expected):
    coerced = coerce_option("k", tp, value)
    assert coerced == expected and type(coerced) is type(expected)


@pytest.mark.parametrize(
    ("tp", "value", "message"),
    [
        (int, 2.5, "config key 'k' must be an int, got 2.5"),
        (int, "abc", "config key 'k' must be an int, got 'abc'"),
        (int, True, "config key 'k' must be a number, got True"),
        (int, 2**63, f"config key 'k' must be an int within +-{INT_LIMIT}, got {2**63}"),
        (float, "fast", "config key 'k' must be a float, got 'fast'"),
        (float, [1.0], "config key 'k' must be a float, got [1.0]"),
        (bool, "maybe", "config key 'k' must be true or false, got 'maybe'"),
        (bool, 1, "config key 'k' must be true or false, got 1"),
        (str, 1.5, "config key 'k' must be a string, got 1.5"),
        (str, False, "config key 'k' must be a string, got False"),
        (tuple[int, ...], 3, "config key 'k' must be a list, got 3"),
        (tuple[int, ...], [1, "x"], "config key 'k' must be an int, got 'x'"),
        (dict[str, float], [1], "config key 'k' must be a mapping, got [1]"),
        (dict[str, float], {"w": "heavy"}, "config key \"k['w']\" must be a float, got 'heavy'"),
    ],
)
def test_a_value_of_the_wrong_type_is_one_line_naming_the_key(tp, value, message):
    with pytest.raises(ValueError) as error:
        coerce_option("k", tp, value)
    assert str(error.value) == message


def test_an_option_type_the_loader_cannot_read_is_a_type_error():
    with pytest.raises(TypeError, match="unsupported option type for 'k'"):
        coerce_option("k", set[int], {1})


# ---------------------------------------------------------------- merge_config, nest


def test_merge_config_changes_only_the_given_keys_and_returns_a_new_config():
    base = Experiment()
    merged = merge_config(base, {"optim": {"lr": "0.01"}, "heads": {"fused": {"hidden_units": 8}}, "noise": "1,2"}, "f")
    assert merged.optim == Optim(lr=0.01) and merged.heads == Heads(fused=Head(8)) and merged.noise == (1.0, 2.0)
    assert dataclasses.replace(merged, optim=base.optim, heads=base.heads, noise=base.noise) == base
    assert base == Experiment()  # the given config is not changed


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"optim": {"learning_rate": 1}},
            "unknown config key 'optim.learning_rate' in c.yaml; known keys: kind, lr, max_epochs",
        ),
        (
            {"nmae": "x"},
            "unknown config key 'nmae' in c.yaml; known keys: "
            "anything, budget, extra, heads, name, noise, optim, verbose",
        ),
        ({"optim": 3}, "config key 'optim' in c.yaml must be a mapping of options, got 3"),
        ({"heads": {"fused": "wide"}}, "config key 'heads.fused' in c.yaml must be a mapping of options, got 'wide'"),
        ({"optim": {"max_epochs": "ten"}}, "config key 'optim.max_epochs' must be an int, got 'ten'"),
    ],
)
def test_merge_config_names_the_dotted_key_of_an_unknown_or_mistyped_value(values, message):
    with pytest.raises(ValueError) as error:
        merge_config(Experiment(), values, "c.yaml")
    assert str(error.value) == message


def test_values_that_are_not_a_mapping_are_named_by_their_section():
    with pytest.raises(ValueError, match=r"^the config in c\.yaml must be a mapping of options, got \['a'\]$"):
        merge_config(Experiment(), ["a"], "c.yaml")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^compare in flags must be a mapping of options, got 1$"):
        merge_config(Optim(), 1, "flags", "compare.")  # type: ignore[arg-type]


def test_merge_config_reads_types_but_leaves_ranges_to_check_rules():
    merged = merge_config(Experiment(), {"optim": {"lr": -2}}, "c.yaml")
    assert merged.optim.lr == -2.0
    with pytest.raises(ValueError, match=r"^--lr \(optim\.lr\) must be finite and > 0, got -2\.0$"):
        check_rules(merged)


def test_nest_turns_dotted_keys_into_the_mapping_merge_config_reads():
    flat = {"optim.lr": 0.2, "heads.fused.hidden_units": 3, "heads.late_view.hidden_units": 6, "verbose": "true"}
    assert nest(flat) == {
        "optim": {"lr": 0.2},
        "heads": {"fused": {"hidden_units": 3}, "late_view": {"hidden_units": 6}},
        "verbose": "true",
    }
    merged = merge_config(Experiment(), nest(flat), "the command line")
    assert merged == Experiment(optim=Optim(lr=0.2), heads=Heads(Head(3), Head(6)), verbose=True)
    assert nest({}) == {}


@pytest.mark.parametrize(
    "flat, message",
    [
        ({"optim": 1, "optim.lr": 2}, "'optim.lr' sets a key inside 'optim', which is set to a value"),
        ({"a.b": 1, "a.b.c": 2}, "'a.b.c' sets a key inside 'a.b', which is set to a value"),
        ({"optim.lr": 2, "optim": 1}, "'optim' is set to a value and also has keys set inside it"),
    ],
)
def test_nest_refuses_a_key_set_both_to_a_value_and_inside(flat, message):
    with pytest.raises(ValueError) as error:
        nest(flat)
    assert str(error.value) == message
