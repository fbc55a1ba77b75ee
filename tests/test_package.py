"""The public API is importable from the top-level package, and each name is the sub-package's own."""

import importlib

import pytest

import iidfusion


@pytest.mark.parametrize("name", sorted(iidfusion._EXPORTS))
def test_every_export_resolves_to_its_subpackage(name):
    package = importlib.import_module(f"iidfusion.{iidfusion._EXPORTS[name]}")
    assert getattr(iidfusion, name) is getattr(package, name)
    assert name in package.__all__


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        iidfusion.no_such_thing  # noqa: B018
