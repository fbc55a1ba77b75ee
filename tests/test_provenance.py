"""Provenance: one function, the same entries in every results file; git only where it tells the truth."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import lightning
import pytest
import torch

import iidfusion
from iidfusion.provenance import git_state, provenance
from iidfusion.training.config import ExperimentConfig

PACKAGE = Path(iidfusion.__file__).resolve().parent


def test_provenance_names_code_libraries_device_and_the_whole_config():
    record = provenance(ExperimentConfig(), device="cuda:0, 8 processes")
    info = record["provenance"]
    assert info["iidfusion"] == iidfusion.__version__ and info["torch"] == torch.__version__
    assert info["lightning"] == lightning.__version__ and info["device"] == "cuda:0, 8 processes"
    assert re.fullmatch(r"3\.\d+\.\d+.*", info["python"])
    assert record["config"]["train"]["max_epochs"] == 100 and record["config"]["eval"]["noise"] == [0.0, 5.0, 10.0]
    json.dumps(record)  # JSON-ready
    assert provenance({"already": "plain"})["config"] == {"already": "plain"}


def test_git_commit_only_from_this_package_s_own_checkout(tmp_path):
    assert git_state(tmp_path) == (None, None), "not a git checkout: nothing, and no failure"
    if shutil.which("git") is None:
        pytest.skip("git is not installed: only the case without a checkout can be checked")
    # A copy of the package inside some other repository (a virtual environment in a user's project).
    other = tmp_path / "project"
    installed = other / ".venv" / "lib" / "iidfusion"
    installed.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    assert git_state(installed) == (None, None)
    commit, dirty = git_state(PACKAGE)
    if (PACKAGE.parents[1] / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", commit) and isinstance(dirty, bool)
