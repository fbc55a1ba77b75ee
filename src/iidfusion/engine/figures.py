"""The figures of results files: drawn once on the non-interactive canvas, saved as PNG and PDF.

A figure meant for a paper goes in a vector format (PDF) beside the PNG a browser shows, both
from the same drawing, at :data:`DPI` for the PNG. Saving goes through the all-or-nothing
writer of results files (:func:`~iidfusion.engine.results.write_files`), which takes one saver
per file name: :func:`figure_files` gives them. Matplotlib is the optional extra ``plot``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

FORMATS = ("png", "pdf")
DPI = 200


def new_figure(columns: int = 1, *, width: float = 6.0, height: float = 4.2) -> tuple[Any, Any]:
    """A figure with ``columns`` side-by-side axes (a flat array of them) on the Agg canvas."""
    import matplotlib  # the optional extra `plot`

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, columns, figsize=(width * columns, height), squeeze=False)
    return figure, axes[0]


def save_figure(figure: Any, path: Path) -> None:
    """Save ``figure`` to ``path`` in the format its suffix names (PNG at :data:`DPI`)."""
    figure.savefig(path, dpi=DPI, bbox_inches="tight")


def close_figure(figure: Any) -> None:
    """Free a figure of :func:`new_figure` (pyplot keeps every open figure alive)."""
    import matplotlib.pyplot as plt

    plt.close(figure)


def figure_files(stem: str, draw: Callable[[], Any]) -> dict[str, Callable[[Path], None]]:
    """``{stem.png: saver, stem.pdf: saver}`` of one figure, drawn by ``draw`` at the first save
    and closed after the last (or after a failed save).
    """
    state: dict[str, Any] = {"figure": None, "left": len(FORMATS)}

    def save(path: Path) -> None:
        try:
            if state["figure"] is None:
                state["figure"] = draw()
            save_figure(state["figure"], path)
            state["left"] -= 1
        except BaseException:
            state["left"] = 0
            raise
        finally:
            if state["left"] == 0 and state["figure"] is not None:
                close_figure(state["figure"])
                state["figure"] = None

    return {f"{stem}.{suffix}": save for suffix in FORMATS}
