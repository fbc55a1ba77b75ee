import pytest

from iidfusion.core.registry import Registry


def strategy_a():
    return "a"


def strategy_b():
    return "b"


def test_names_come_back_in_registration_order_and_the_same_object_twice_is_a_no_op():
    registry: Registry = Registry("fusion strategy")
    assert registry.register("b", strategy_b) is strategy_b
    registry.register("a", strategy_a)
    registry.register("b", strategy_b)
    assert registry.names() == ("b", "a") and list(registry) == ["b", "a"] and len(registry) == 2
    assert "a" in registry and "c" not in registry and registry.get("a") is strategy_a


def test_a_clash_or_an_unknown_name_names_the_kind_and_what_there_is():
    registry: Registry = Registry("method")
    registry.register("a", strategy_a)
    with pytest.raises(ValueError, match=r"a method is already registered as 'a': strategy_a"):
        registry.register("a", strategy_b)
    with pytest.raises(ValueError, match=r"unknown method 'z'; available: \['a'\]"):
        registry.get("z")
    with pytest.raises(ValueError, match=r"available: \['x', 'y'\]"):
        registry.get("z", known=("x", "y"))  # the names a caller offers, e.g. those of one kind of data
    for bad in ("", None, 3):
        with pytest.raises(ValueError, match="needs a non-empty name"):
            registry.register(bad, strategy_b)  # type: ignore[arg-type]
    assert registry.names() == ("a",)  # nothing half-registered
