"""A missing optional package is said the same way in Python and on the command line: the extra to install."""

import subprocess
import sys

import pytest

from iidfusion.core.extras import OPTIONAL_PACKAGES, extra_hint, missing_extra

# A core install, as far as these names go: importing any of them fails as if it were not installed.
WITHOUT_EXTRAS = (
    "import sys\nfor name in ('yaml', 'scipy', 'lightning', 'torchmetrics', 'pyarrow'):\n    sys.modules[name] = None\n"
)


def run_without_extras(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_EXTRAS + code], capture_output=True, text=True)


@pytest.mark.parametrize(("name", "extra"), [("load_dataset", "train"), ("load_model", "train"), ("fit", "train")])
def test_the_public_names_say_which_extra_they_need(name, extra):
    done = run_without_extras(
        f"import iidfusion\ntry:\n    iidfusion.{name}\nexcept ModuleNotFoundError as error:\n    print(error)\n"
    )
    assert f"pip install 'iidfusion[{extra}]'" in done.stdout, done.stderr


def test_the_data_package_says_so_too():
    done = run_without_extras(
        "import iidfusion.data\ntry:\n    iidfusion.data.read_multiview_file\n"
        "except ModuleNotFoundError as error:\n    print(error)\n"
    )
    assert "optional package 'scipy', which is not installed: pip install 'iidfusion[train]'" in done.stdout


def test_missing_extra_names_the_extra_and_keeps_other_errors():
    hint = r"'pyarrow', which is not installed: pip install 'iidfusion\[parquet\]'"
    with pytest.raises(ModuleNotFoundError, match=hint), missing_extra():
        raise ModuleNotFoundError("No module named 'pyarrow'", name="pyarrow")
    with pytest.raises(ModuleNotFoundError, match="No module named 'somethingelse'"), missing_extra():
        raise ModuleNotFoundError("No module named 'somethingelse'", name="somethingelse")
    assert extra_hint(ValueError("x")) is None


def test_every_extra_named_is_one_of_pyproject():
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    for distribution, extra in OPTIONAL_PACKAGES.values():
        assert any(requirement.startswith(distribution) for requirement in extras[extra]), (distribution, extra)
