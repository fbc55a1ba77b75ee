"""All-or-nothing result files: write every file under a temporary name, then rename them.

A run that fails half way (bad input found late, an exception while plotting, Ctrl-C)
must leave no partial ``results.csv`` or half a table behind (issue 4, item 6). Files are
staged next to their final place (same file system, so ``os.replace`` is atomic) and only
renamed once every one of them has been written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class StagedFiles:
    """Temporary paths in ``folder`` that become their final names together on :meth:`commit`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._staged: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        """A temporary path to write the file ``name`` to (keeps the suffix, for savefig)."""
        if name in self._staged:
            return self._staged[name]
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{Path(name).suffix}", dir=self.folder)
        os.close(fd)
        self._staged[name] = Path(tmp)
        return self._staged[name]

    def write_text(self, name: str, text: str) -> None:
        self.path(name).write_text(text, encoding="utf-8")

    def commit(self) -> list[Path]:
        """Rename every staged file to its final name; returns the final paths."""
        final = []
        for name, tmp in self._staged.items():
            os.replace(tmp, self.folder / name)
            final.append(self.folder / name)
        self._staged.clear()
        return final

    def discard(self) -> None:
        for tmp in self._staged.values():
            tmp.unlink(missing_ok=True)
        self._staged.clear()


@contextmanager
def staged_files(folder: str | Path) -> Iterator[StagedFiles]:
    """Stage files in ``folder``; they appear at their names only if the block succeeds."""
    stage = StagedFiles(Path(folder))
    try:
        yield stage
    except BaseException:
        stage.discard()
        raise
    stage.commit()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write one text file atomically."""
    path = Path(path)
    with staged_files(path.parent) as stage:
        stage.write_text(path.name, text)
    return path
