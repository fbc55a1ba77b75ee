"""All-or-nothing outputs: result files renamed into place together, run folders that a failure
removes, and output folders checked before any work starts.

A run that fails half way (bad input found late, an exception while plotting, Ctrl-C)
must leave no partial ``results.csv`` or half a table behind. Files are staged next to their
final place (same file system, so ``os.replace`` is atomic) and only renamed once every one
of them has been written.

An output folder is checked first (:func:`check_output_folder`): not a file, writable, and
not holding a previous run unless the user asked to replace it (``--overwrite``) or to
continue it (``--resume``), so that one folder never mixes the files of two runs.
:func:`run_folder` then removes what a failed run created, and replaces a previous run as a
whole only once the new one has succeeded.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


_UMASK = os.umask(0o022)  # read once: the permissions a plain open() would give a new file
os.umask(_UMASK)


PATH_NAME_LENGTH = 100


def path_name(name: str, fallback: str = "data") -> str:
    """``name`` (read from data: a file's stem, a view) as one harmless path component.

    Letters, digits, ``_``, ``-`` and inner dots only, at most :data:`PATH_NAME_LENGTH`
    characters: never ``..``, a hidden name, a separator or an absolute path, so a name taken
    from a file cannot make a write land outside the output folder. ``fallback`` when nothing is left.
    """
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:PATH_NAME_LENGTH].strip("._")
    return cleaned or fallback


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
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would make results private to their owner
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


def check_output_folder(
    path: str | Path,
    *,
    name: str | None = None,
    overwrite: bool = False,
    resume: bool | None = None,
    shared: bool = False,
) -> None:
    """Refuse ``path`` as an output folder if it is a file, cannot be written, or holds a previous run.

    ``name``: how messages call it (default ``--out PATH``). A non-empty folder is a previous
    run: accepted only with ``overwrite`` (replaced as a whole by :func:`run_folder`) or
    ``resume`` (continued; ``None`` where the command cannot resume), or if it is ``shared``
    by several runs (``fit --out``, which holds one folder per method and seed). The nearest existing
    folder on the way is probed with a temporary file, which also catches read-only file
    systems and permissions that ``os.access`` misjudges (e.g. for root).
    """
    path = Path(path)
    name = name or f"--out {path}"
    if path.exists() and not path.is_dir():
        raise ValueError(f"{name} is a file; it must be a folder" + ("" if shared else " (a new one, or a run to --overwrite)"))
    if not shared and path.is_dir() and any(path.iterdir()) and not (overwrite or resume):
        how = "pass --overwrite to replace it" + (" or --resume last to continue it" if resume is not None else "")
        raise ValueError(f"{name} already holds a run; {how}")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{name}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".iidfusion-write-test.", dir=existing)
    except OSError as error:
        raise ValueError(f"{name}: cannot write in {existing} ({error.strerror or error})") from None
    os.close(fd)
    os.unlink(probe)


@contextmanager
def run_folder(
    path: str | Path, *, overwrite: bool = False, resumable: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """The folder of one run: a failed run leaves nothing of its own in it.

    A folder the run creates (with any missing parents) is removed if the block raises, or is
    interrupted, unless ``resumable(path)`` says that what the interrupted run left can be
    continued (``fit``: a last checkpoint for ``--resume``). With ``overwrite``, a
    previous run in ``path`` is moved aside (a hidden sibling, same file system) and deleted
    only once the block succeeds; if it fails or is interrupted, the new files are removed
    and the previous run is put back as it was. A folder that exists and is not overwritten
    (a resumed run) is left as the run leaves it.
    """
    path = Path(path)
    created = [folder for folder in (path, *path.parents) if not folder.exists()]
    previous = None
    if overwrite and path.is_dir() and any(path.iterdir()):
        previous = path.with_name(f".{path.name}.previous-{uuid.uuid4().hex[:8]}")
        path.rename(previous)
        created = [path]
    try:
        yield path
    except BaseException as error:
        kept = isinstance(error, KeyboardInterrupt) and resumable is not None and resumable(path)
        if previous is not None or (created and not kept):
            _remove_created(created)
            if previous is not None:
                previous.rename(path)
        raise
    if previous is not None:
        shutil.rmtree(previous)


def _remove_created(created: list[Path]) -> None:
    """Remove the run's folder and the parents it created (innermost first), if still ours."""
    if created and created[0].exists():
        shutil.rmtree(created[0])
    for parent in created[1:]:
        try:
            parent.rmdir()  # only if empty: another run may have written there meanwhile
        except OSError:
            break
