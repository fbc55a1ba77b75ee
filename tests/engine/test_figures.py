import pytest

from iidfusion.engine import figures
from iidfusion.engine.figures import figure_files, new_figure


def test_one_drawing_saved_as_png_and_pdf_then_closed(tmp_path, monkeypatch):
    drawn, closed = [], []
    monkeypatch.setattr(figures, "close_figure", closed.append)

    def draw():
        figure, (axes,) = new_figure()
        axes.plot([0, 1], [1, 0])
        drawn.append(figure)
        return figure

    savers = figure_files("plot", draw)
    assert list(savers) == ["plot.png", "plot.pdf"]
    for name, save in savers.items():
        save(tmp_path / name)
    assert len(drawn) == 1 and closed == drawn  # drawn at the first save, closed after the last
    assert (tmp_path / "plot.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "plot.pdf").read_bytes()[:4] == b"%PDF"


def test_a_failed_save_closes_the_figure(tmp_path, monkeypatch):
    closed = []
    monkeypatch.setattr(figures, "close_figure", closed.append)
    savers = figure_files("plot", lambda: new_figure()[0])
    with pytest.raises(OSError):
        savers["plot.png"](tmp_path / "missing" / "plot.png")
    assert len(closed) == 1
