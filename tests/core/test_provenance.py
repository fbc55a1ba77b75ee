"""Provenance: which code produced a result (the git state of the package's own checkout)."""

import subprocess
from pathlib import Path

import pytest

import iidfusion
from iidfusion.core import provenance


def test_the_package_whose_checkout_is_read_is_iidfusion_itself():
    assert Path(iidfusion.__file__).resolve().parent == provenance._PACKAGE


def _commit_all(repo: Path) -> str:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "x")
    return git("rev-parse", "HEAD")


def test_a_checkout_with_the_package_at_src_reports_its_commit_and_changes(tmp_path):
    package = tmp_path / "src" / "iidfusion"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    try:
        commit = _commit_all(tmp_path)
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.fail(f"git is needed by provenance and by this test: {error}")
    assert provenance.git_state(package) == (commit, False)
    (package / "__init__.py").write_text("x = 1\n")
    assert provenance.git_state(package) == (commit, True)


def test_a_package_inside_some_other_repository_reports_no_commit(tmp_path):
    elsewhere = tmp_path / "venv" / "site-packages" / "iidfusion"
    elsewhere.mkdir(parents=True)
    (elsewhere / "__init__.py").write_text("")
    _commit_all(tmp_path)
    assert provenance.git_state(elsewhere) == (None, None)
