import json
import sys

import pytest

from iidfusion.tasks.classification.config import load_config
from iidfusion_studies.sweep import (
    SearchSpace,
    SweepRun,
    plot_heatmap,
    render_markdown,
    run_sweep,
    summarize,
    write_sweep,
)


def _run(alpha, beta, d1, seed, val):
    return SweepRun(alpha, beta, d1, seed, val, val - 0.01, 3, 5, 0.1)


RUNS = [
    _run(0.1, 0.1, 4, 0, 0.80),
    _run(0.1, 0.1, 4, 1, 0.90),
    _run(1.0, 0.1, 4, 0, 0.70),
    _run(1.0, 0.1, 4, 1, 0.70),
    _run(0.1, 1.0, 8, 0, 0.95),
]


def test_search_space_checks_values():
    assert SearchSpace((0.1, 1.0), (0.5,), (4,)).points() == [(0.1, 0.5, 4), (1.0, 0.5, 4)]
    with pytest.raises(ValueError, match="no values given for beta"):
        SearchSpace((0.1,), (), (4,))
    with pytest.raises(ValueError, match="repeated value in alpha"):
        SearchSpace((0.1, 0.1), (1.0,), (4,))
    with pytest.raises(ValueError, match="beta values must be finite and >= 0"):
        SearchSpace((0.1,), (-1.0,), (4,))


def test_summary_report_and_heatmap():
    points = {(p.alpha, p.beta, p.d1): p for p in summarize(RUNS)}
    assert points[(0.1, 0.1, 4)].val_acc == pytest.approx(0.85)
    assert points[(0.1, 0.1, 4)].val_std == pytest.approx(0.0707, abs=1e-4)
    assert points[(0.1, 0.1, 4)].seeds == 2
    report = render_markdown(RUNS, load_config(), "title")
    lines = report.splitlines()
    first_row = next(line for line in lines if line.startswith("| 0.1 | 1 | 8 |"))
    assert lines.index(first_row) < next(i for i, line in enumerate(lines) if line.startswith("| 1 | 0.1 | 4 |"))
    assert "Spread over the 3 points: 25.00 points" in report
    figure = plot_heatmap(RUNS)
    assert len(figure.axes) == 3  # one panel per d1, and the colour bar


def test_heatmap_scale_leaves_collapsed_points_below_it():
    runs = [
        _run(a, b, 4, 0, v)
        for (a, b), v in zip([(0.1, 0.1), (0.1, 1.0), (1.0, 0.1), (1.0, 1.0)], (0.97, 0.98, 0.96, 0.03), strict=True)
    ]
    figure = plot_heatmap(runs)
    image = figure.axes[0].images[0]
    assert image.get_clim() == pytest.approx((96.0, 98.0))  # the collapsed 3 % is below the scale
    assert tuple(image.cmap.get_under()[:3]) != tuple(image.cmap(0.0)[:3])  # drawn in its own colour
    assert figure.axes[-1].get_label() == "<colorbar>"
    trained = plot_heatmap(runs[:3]).axes[0].images[0]
    assert trained.get_clim() == pytest.approx((96.0, 98.0))


def test_optuna_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    config = load_config(overrides={"method": "iid-l", "seeds": 1})
    with pytest.raises(ValueError, match=r"Optuna.*pip install 'iidfusion\[sweep\]'"):
        run_sweep(config, SearchSpace((0.1,), (0.1,), (4,)), search="optuna", trials=1)


def test_method_without_regularizers_is_refused():
    with pytest.raises(ValueError, match="neither L_ic nor L_dc"):
        run_sweep(load_config(overrides={"method": "if-qmf"}), SearchSpace((0.1,), (0.1,), (4,)))


def test_optuna_search_trains_on_the_given_values(tmp_path):
    config = load_config(
        overrides={
            "data": "synthetic",
            "method": "iid-l",
            "seeds": 1,
            "model.width": 16,
            "model.hidden": 16,
            "loss.d2": 8,
            "loss.max_iter": 10,
            "train.max_epochs": 1,
            "train.batch_size": 512,
            "train.checkpoints": False,
            "train.loggers": (),
            "train.progress_bar": False,
            "eval.noise": (0.0,),
        }
    )
    space = SearchSpace((0.1, 1.0), (0.1,), (4, 8))
    runs = run_sweep(config, space, search="optuna", trials=2, log=lambda m: None)
    assert len(runs) == 2
    assert {(r.alpha, r.beta, r.d1) for r in runs} <= set(space.points())
    assert all(0 <= r.val_acc <= 1 and r.epochs == 1 for r in runs)
    report = write_sweep(runs, config, tmp_path, "sweep_tiny", "tiny")
    assert (tmp_path / "sweep_tiny.md").read_text() == report
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"sweep_tiny.{ext}" for ext in ("csv", "json", "md", "png")]
    payload = json.loads((tmp_path / "sweep_tiny.json").read_text())
    assert payload["provenance"]["iidfusion"] and payload["config"]["train"]["batch_size"] == 512
