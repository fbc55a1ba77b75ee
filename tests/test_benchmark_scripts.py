"""The standalone benchmark scripts that no `iidfusion` subcommand wraps."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_regularizer_cost_reports_each_regularizer():
    completed = subprocess.run(
        [sys.executable, str(SCRIPTS / "regularizer_cost.py"), "--repeats", "1", "--label", "now"],
        capture_output=True, text=True, check=True, timeout=300,
    )
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["label"] == "now"
    assert set(report["objective_ms"]) == {"if-static", "iid-l", "iid-l-no-ic", "iid-l-no-dc", "if-pdf", "iid-p", "iid-p-no-ic", "iid-p-no-dc"}
    for family in ("static", "pdf"):
        costs = report[family]
        assert set(costs) == {"L_ic + L_dc (ms)", "L_dc (ms)", "L_ic (ms)"}
        assert costs["L_dc (ms)"] > 0  # 15 transport problems cannot be free
