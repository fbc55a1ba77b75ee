"""Configuration files by path or by the name of one shipped in the package (as open_clip's model configs)."""

import fnmatch
import tomllib
from pathlib import Path

import pytest

from iidfusion.core.files import named_configs, read_config_file, resolve_config
from iidfusion.tasks.classification.config import load_config

REPO = Path(__file__).resolve().parents[2]
PACKAGE_CONFIGS = REPO / "src" / "iidfusion" / "configs"


def test_a_shipped_config_is_found_by_its_name_its_path_or_its_stem():
    assert resolve_config("vl/mvsa_single") == resolve_config("mvsa_single") == resolve_config("vl/mvsa_single.yaml")
    assert resolve_config("mvsa_single").read_text() == (PACKAGE_CONFIGS / "vl" / "mvsa_single.yaml").read_text()
    assert resolve_config("kg/umls").parent.name == "kg"
    assert load_config("synthetic").data == "synthetic"


def test_a_file_wins_over_a_name_and_an_unknown_name_lists_the_shipped_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("synthetic").write_text("seeds: 2\n")
    assert read_config_file("synthetic") == {"seeds": 2}
    with pytest.raises(FileNotFoundError, match=r"config file not found: no_such_config \(.*vl/mvsa_single"):
        resolve_config("no_such_config")


def test_the_shipped_configs_are_in_the_wheel_and_the_checkout_links_to_them():
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["iidfusion"]
    shipped = named_configs()
    assert {"demo", "vl/mvsa_single", "kg/umls", "rgbd/nyud2_static"} <= set(shipped)
    for path in shipped.values():
        relative = path.relative_to(REPO / "src" / "iidfusion").as_posix()
        assert any(fnmatch.fnmatch(relative, glob) and glob.count("/") == relative.count("/") for glob in globs)
    assert (REPO / "configs").resolve() == PACKAGE_CONFIGS.resolve()
