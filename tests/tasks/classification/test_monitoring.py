import math

import pytest

from iidfusion.tasks.classification.monitoring import (
    diagnostics_table,
    metrics_files,
    monitoring_table,
    plot_monitoring,
    read_run_log,
)

# The shape of Lightning's CSVLogger output: one row per logging call, empty cells elsewhere.
HEADER = "epoch,step,train/loss,val/wasserstein/fou-fac,val/wasserstein/mean,val/acc,val/shared_head_acc/fou,"
LOG = (
    HEADER
    + """val/drop_acc/fou
0,10,,1.5,1.25,0.50,0.4,0.3
0,10,2.0,,,,,
1,21,,0.5,0.75,0.75,0.6,0.7
1,21,1.0,,,,,
2,32,,,,0.70,,
"""
)


def _run(tmp_path, name="run", text=LOG, method="iid-q"):
    folder = tmp_path / name / "csv"
    folder.mkdir(parents=True)
    (folder / "metrics.csv").write_text(text)
    (folder / "hparams.yaml").write_text(f"method: {method}\nseed: 3\n")
    return tmp_path / name


def test_rows_fold_into_one_value_per_epoch(tmp_path):
    log = read_run_log(_run(tmp_path))
    assert log.name == "iid-q (seed 3)"
    assert log.epochs == (0, 1, 2)
    assert log.series("val/wasserstein/mean") == ([0, 1], [1.25, 0.75])
    assert log.series("val/acc") == ([0, 1, 2], [0.5, 0.75, 0.7])
    assert math.isnan(log.values["train/loss"][2])
    assert read_run_log(_run(tmp_path, "other"), name="mine").name == "mine"


def test_table_reports_the_plotted_numbers(tmp_path):
    log = read_run_log(_run(tmp_path))
    table = monitoring_table([log])
    row = table.splitlines()[2].split(" | ")
    # first and last distance, change -40 %, mean 1, accuracy first 50, best 75, last 70
    assert row[2:] == ["1.25", "0.75", "-40.0", "1", "50.00", "75.00", "70.00 |"]
    figure = plot_monitoring([log, log])
    assert len(figure.axes) == 4 and len(figure.axes[0].lines) == 2 and len(figure.axes[2].lines) == 2
    assert log.per_modality("val/drop_acc/") == {"fou": ([0, 1], [0.3, 0.7])}
    assert diagnostics_table([log]).splitlines()[2].split(" | ")[1:] == ["fou", "60.00", "70.00 |"]
    bare = read_run_log(_run(tmp_path, "bare", "epoch,step,val/wasserstein/mean,val/acc\n0,1,1.0,0.5\n"))
    assert len(plot_monitoring([bare]).axes) == 2 and diagnostics_table([bare]) == ""


def test_bad_logs_raise_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        metrics_files(tmp_path / "missing")
    log = read_run_log(_run(tmp_path))
    with pytest.raises(ValueError, match="'train/other' is not in .*metrics.csv; logged metrics: .*val/acc"):
        log.series("train/other")
    with pytest.raises(ValueError, match="line 3: not a number"):
        read_run_log(_run(tmp_path, "bad", LOG.replace("2.0,,", "x,,")))
    with pytest.raises(ValueError, match="'epoch' column"):
        read_run_log(_run(tmp_path, "noepoch", "step,val/acc\n1,0.5\n"))
    with pytest.raises(ValueError, match="no value"):
        read_run_log(_run(tmp_path, "empty", "epoch,step,val/acc,val/wasserstein/mean\n0,1,0.5,\n")).series(
            "val/wasserstein/mean"
        )


def test_every_lightning_version_folder_is_read_in_order(tmp_path):
    """A resumed run: version_0 holds epochs 0-1 and the start of the interrupted epoch 2,
    version_1 redoes epoch 2 and goes on; version_10 sorts after version_2."""
    texts = {
        0: LOG,
        2: "epoch,step,val/acc,val/wasserstein/mean\n2,32,0.80,0.5\n3,43,0.85,0.25\n",
        10: "epoch,step,val/acc\n4,54,0.9\n",
    }
    for version, text in texts.items():
        folder = tmp_path / "run" / "csv" / f"version_{version}"
        folder.mkdir(parents=True)
        (folder / "metrics.csv").write_text(text)
    assert metrics_files(tmp_path / "run") == [
        tmp_path / "run" / "csv" / f"version_{v}" / "metrics.csv" for v in (0, 2, 10)
    ]
    log = read_run_log(tmp_path / "run")
    assert log.name == "run" and log.epochs == (0, 1, 2, 3, 4)
    assert log.series("val/acc") == ([0, 1, 2, 3, 4], [0.5, 0.75, 0.8, 0.85, 0.9])
    assert log.series("val/wasserstein/mean") == ([0, 1, 2, 3], [1.25, 0.75, 0.5, 0.25])


def test_a_binary_file_is_named(tmp_path):
    (tmp_path / "figure.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8")
    with pytest.raises(ValueError, match=r"figure\.csv is not a text CSV log \(byte 0 is not UTF-8\)"):
        read_run_log(tmp_path / "figure.csv")
