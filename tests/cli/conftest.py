"""The knowledge-graph fixtures (tests/kg/conftest.py) for the tests of `iidfusion kg`."""

from tests.kg.conftest import tiny_kg, tiny_kg_folder, wn9img_folder, write_split_fixture

__all__ = ["tiny_kg", "tiny_kg_folder", "wn9img_folder", "write_split_fixture"]
