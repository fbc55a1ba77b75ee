import json
import math
from pathlib import Path

import pytest

from iidfusion.engine.results import (
    RESULT_FILES,
    csv_text,
    fmt_number,
    format_params,
    json_text,
    markdown_table,
    rounded,
    write_results,
)


def test_the_results_files_are_written_together_in_one_style(tmp_path):
    rows = [{"arm": "iid", "seed": 0, "mrr": 0.25}, {"arm": "baseline", "seed": 0, "mrr": 1 / 3}]
    payload = {"runs": rows, "p": math.nan, "where": Path("x/y")}
    write_results(
        tmp_path,
        rows=rows,
        payload=payload,
        report="# r\n",
        figures={"plot.png": lambda path: path.write_bytes(b"png")},
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*RESULT_FILES, "plot.png"])
    assert (tmp_path / "results.csv").read_text() == "arm,seed,mrr\niid,0,0.25\nbaseline,0,0.333333\n"
    assert json.loads((tmp_path / "results.json").read_text()) == {"runs": rounded(rows), "p": None, "where": "x/y"}
    assert (tmp_path / "results.md").read_text() == "# r\n"


def test_a_failing_writer_leaves_no_file(tmp_path):
    def fail(path: Path) -> None:
        raise RuntimeError("plotting failed")

    with pytest.raises(RuntimeError):
        write_results(tmp_path, rows=[{"a": 1}], payload={}, report="", figures={"plot.png": fail})
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="no results"):
        write_results(tmp_path, rows=[], payload={}, report="")


def test_formats():
    assert csv_text([], fieldnames=["a"]) == "a\n"
    assert json_text({"x": [1.0, math.inf]}, indent=1) == '{\n "x": [\n  1.0,\n  null\n ]\n}\n'
    assert (fmt_number(math.nan), fmt_number(None), fmt_number(0.12345)) == ("n/a", "n/a", "0.123")
    assert markdown_table(["name", "value"], [["a", "1"]]) == "| name | value |\n|---|---:|\n| a | 1 |"


def test_numbers_for_people_are_rounded_and_the_rest_kept():
    noisy = {"acc": 0.9700000286102295, "p": [1.234567891e-9, math.nan], "n": 3, "name": "x", "t": (2.0000001,)}
    assert rounded(noisy) == {"acc": 0.97, "p": [1.23457e-9, noisy["p"][1]], "n": 3, "name": "x", "t": [2.0]}
    assert rounded(123456.789) == 123457.0 and rounded(True) is True


def test_hyperparameters_read_as_name_equals_value_floats_shortest():
    assert format_params({"loss.alpha": 0.1, "optim.lr": 0.0005, "variant": "vib", "d1": 16}) == (
        "loss.alpha=0.1, optim.lr=0.0005, variant=vib, d1=16"
    )
    assert format_params({}) == ""
