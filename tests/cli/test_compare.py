import json

from cli_support import FAST
from iidfusion.cli.main import main
from iidfusion.engine.outputs import MARKER
from iidfusion.tasks.classification.report import CLASS_FILES, RESULT_FILES


def test_compare_writes_every_result(tiny_npz, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--data",
        str(tiny_npz),
        "--methods",
        "if-static,iid-l",
        "--seeds",
        "2",
        "--noise",
        "0,5",
        "--out",
        str(out),
        "--loggers",
        "",
        "--no-checkpoints",
        *FAST,
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "| iid-l | if-static |" in printed and "Avg Acc" in printed and "[4/4] iid-l seed 1" in captured.err
    assert "[4/4]" not in printed, "progress goes to stderr, results to stdout"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*RESULT_FILES, *CLASS_FILES, MARKER]
    )  # the cache of finished runs is gone
    payload = json.loads((out / "results.json").read_text())
    keys = {(r["method"], r["seed"], r["noise"]) for r in payload["results"]}
    assert keys == {(m, s, n) for m in ("if-static", "iid-l") for s in (0, 1) for n in (0.0, 5.0)}
    assert all(set(r) >= {"accuracy", "macro_f1"} for r in payload["results"])
    assert payload["config"]["methods"] == ["if-static", "iid-l"] and payload["paired_tests"][0]["seeds"] == 2
    assert payload["provenance"]["device"] == "cpu" and {"iidfusion", "git_commit", "torch", "lightning"} <= set(
        payload["provenance"]
    )
    assert (
        payload["paired_tests"][0]["p_holm"] is None
        or payload["paired_tests"][0]["p_holm"] >= payload["paired_tests"][0]["p_value"]
    )
    assert (out / "results.md").read_text() in printed


def test_compare_keeps_run_logs(tiny_npz, tmp_path):
    out = tmp_path / "cmp"
    assert main(["compare", "--data", str(tiny_npz), "--methods", "qmf", "--seeds", "1", "--out", str(out), *FAST]) == 0
    assert (out / "runs" / "qmf" / "seed0" / "checkpoints" / "best.ckpt").is_file()
    assert (out / "runs" / "qmf" / "seed0" / "tensorboard").is_dir()
