"""All-or-nothing outputs: result files renamed into place together, run folders that a failure
removes, and output folders checked before any work starts.

A run that fails half way (bad input found late, an exception while plotting, Ctrl-C)
must leave no partial ``results.csv`` or half a table behind. Files are staged next to their
final place (same file system, so ``os.replace`` is atomic) and only renamed once every one
of them has been written.

A run's folder is ours only when it holds our marker file, :data:`MARKER` (written when the run
starts, with its state): a folder without one is never replaced, continued or cleaned, whatever
the flags, so a user's own files are never deleted. An output folder is checked first
(:func:`check_output_folder`): not a file, writable, not a folder of someone else's files, not in
use by another process (the marker is locked while a run writes), and not holding a previous run
unless the user asked to replace it (``--overwrite``) or to continue it (``--resume``), so that
one folder never mixes the files of two runs. :func:`run_folder` then removes what a failed run
created, and replaces a previous run as a whole only once the new one has succeeded.

Replacing is crash-safe: the previous run is first renamed to a visible sibling,
``NAME.previous-<time>``, which the new run's marker names. If the process is killed (even with
``kill -9``) before the new run is done, the next command on that folder puts the previous run
back and says so; if it is killed after, while the old copy was being deleted, the next command
finishes the deletion and says so.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]


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


MARKER = ".iidfusion-run"  # in every run folder: JSON {"state", "pid", "host", "started", "replaces"?}
_PREVIOUS = ".previous-"
# The ranks torchrun, SLURM, LSF and Lightning's own launcher give each process of a data-parallel run.
_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def first_process() -> bool:
    """Whether this process is the first (global rank 0) of a data-parallel run, or runs alone.

    Every process of such a run executes the same command on the same output folder: the first
    one checks, marks, locks, replaces and cleans it; the others only write their part in it.
    """
    return all(os.environ.get(name, "0").strip() in ("", "0") for name in _RANK_VARIABLES)


def is_run_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder that iidfusion made for a run (it holds :data:`MARKER`)."""
    return (Path(path) / MARKER).is_file()


def run_state(path: str | Path) -> str | None:
    """The state a run folder's marker records (``"running"``, ``"stopped"``, ``"done"``), ``"running"``
    while a process holds its lock, None for a folder that is not a run of ours.
    """
    path = Path(path)
    if not is_run_folder(path):
        return None
    return "running" if _locked(path) else _read_marker(path).get("state")


_NO_LINKS = getattr(os, "O_NOFOLLOW", 0)  # a marker planted as a link is refused, never followed to the file it names


def _read_marker(path: Path) -> dict:
    try:
        fd = os.open(path / MARKER, os.O_RDONLY | _NO_LINKS)
        try:
            values = json.loads(os.read(fd, 2**16).decode("utf-8"))
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return {}  # being written, or damaged by a crash: ours all the same
    return values if isinstance(values, dict) else {}


class _Marker:
    """The marker of one run folder, created if missing and locked (``flock``) while open, so a
    second process cannot write to the same folder; its state is rewritten in place.
    """

    def __init__(self, folder: Path) -> None:
        self.fd = os.open(folder / MARKER, os.O_RDWR | os.O_CREAT | _NO_LINKS, 0o666 & ~_UMASK)
        if not _try_lock(self.fd):
            os.close(self.fd)
            raise ValueError(_in_use(folder))
        self.state = _read_marker(folder)

    def write(self, **state: object) -> None:
        self.state.update(state)
        text = json.dumps({k: v for k, v in self.state.items() if v is not None}) + "\n"
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, text.encode("utf-8"), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = -1


def _try_lock(fd: int) -> bool:
    if fcntl is None:  # no flock (Windows): no lock
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _locked(folder: Path) -> bool:
    """Whether another open marker of ``folder`` holds its lock (a process writing to it)."""
    try:
        fd = os.open(folder / MARKER, os.O_RDONLY | _NO_LINKS)
    except OSError:
        return False
    try:
        return not _try_lock(fd)
    finally:
        os.close(fd)


def _in_use(folder: Path) -> str:
    pid = _read_marker(folder).get("pid")
    who = f"process {pid}" if pid else "process"
    return (
        f"{folder} is in use: another iidfusion {who} is writing to it; wait for it to finish or choose another folder"
    )


def _previous_copies(path: Path) -> list[Path]:
    """The folders an interrupted ``--overwrite`` of ``path`` left beside it (ours, by their marker)."""
    if not path.parent.is_dir():
        return []
    pattern = glob.escape(path.name) + _PREVIOUS + "*"
    return sorted(p for p in path.parent.glob(pattern) if p.is_dir() and is_run_folder(p))


def recover(path: str | Path) -> None:
    """Finish what an ``--overwrite`` of ``path`` stopped by a crash left: the previous run put
    back where the new one did not finish, its old copy deleted where the new one did; a warning
    says what was done. Any other such copy left beside ``path`` is named in a warning.
    """
    path = Path(path)
    copies = _previous_copies(path)
    if not copies:
        return
    busy = [p for p in (path, *copies) if _locked(p)]
    if busy:
        raise ValueError(_in_use(busy[0]))
    state = _read_marker(path) if is_run_folder(path) else None
    empty = not path.exists() or (
        path.is_dir() and all(p.name == MARKER for p in path.iterdir())
    )  # nothing of a new run
    if state is not None and state.get("state") == "done":
        for copy in copies:
            if state.get("replaced") == copy.name:
                _remove_run(copy)
                warnings.warn(
                    f"removed {copy}, the run that --overwrite replaced with {path} (a crash had interrupted "
                    "its removal)",
                    stacklevel=3,
                )
    elif state is not None or empty:
        wanted = state.get("replaces") if state is not None else None
        restore = [c for c in copies if c.name == wanted] if wanted else (copies if empty and len(copies) == 1 else [])
        if restore:
            if path.exists():
                _remove_run(path)
            restore[0].rename(path)
            what = "the unfinished new run removed" if not empty else "nothing of the new run was left"
            warnings.warn(
                f"restored {path} from {restore[0].name}: an --overwrite stopped before it finished ({what})",
                stacklevel=3,
            )
    for copy in _previous_copies(path):
        warnings.warn(
            f"{copy} holds an earlier run of {path} that an interrupted --overwrite moved aside; "
            f"delete it, or move it back to {path}",
            stacklevel=3,
        )


def check_output_folder(
    path: str | Path,
    *,
    name: str | None = None,
    overwrite: bool | None = False,
    resume: bool | None = None,
    shared: bool = False,
    resume_flag: str = "--resume",
) -> None:
    """Refuse ``path`` as an output folder if it is a file, cannot be written, holds files that
    are not a run of ours, is in use, or holds a previous run.

    ``name``: how messages call it (default ``--out PATH``). A folder of ours that is not empty is
    a previous run: accepted only with ``overwrite`` (replaced as a whole by :func:`run_folder`;
    ``None`` where the command has no ``--overwrite``) or ``resume`` (continued; ``None`` where
    the command cannot resume). A non-empty folder without our marker is refused whatever the
    flags, unless it is ``shared`` by several runs (``fit --out``, which holds one folder per
    method and seed, and into which nothing is deleted). The leftovers of an interrupted
    ``--overwrite`` are dealt with first (:func:`recover`). The nearest existing folder on the way
    is probed with a temporary file, which also catches read-only file systems and permissions that
    ``os.access`` misjudges (e.g. for root). ``resume_flag``: the command's flag that continues a run.
    """
    path = Path(path)
    name = name or f"--out {path}"
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"{name} is a file; it must be a folder" + ("" if shared else " (a new one, or a run to --overwrite)")
        )
    shared = shared or not first_process()  # the first process of a data-parallel run checks the run
    if not shared:
        recover(path)
    if not shared and path.is_dir() and any(path.iterdir()):
        if not is_run_folder(path):
            raise ValueError(
                f"{name} holds files that are not a run of iidfusion (it has no {MARKER} file); nothing in it "
                "is replaced or deleted: choose a new or empty folder"
            )
        if _locked(path):
            raise ValueError(_in_use(path))
        if not (overwrite or resume):
            how = [
                f"{flag} to {verb} it"
                for flag, verb, given in (("--overwrite", "replace", overwrite), (resume_flag, "continue", resume))
                if given is not None
            ]
            raise ValueError(f"{name} already holds a run; pass {' or '.join(how)}")
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
    path: str | Path,
    *,
    overwrite: bool = False,
    resumable: Callable[[Path], bool] | None = None,
    keep_on_failure: bool = False,
) -> Iterator[Path]:
    """The folder of one run, made (with any missing parents), marked and locked for the block.

    A folder the run creates is removed if the block raises or is interrupted, unless
    ``resumable(path)`` says that what it left can be continued: after Ctrl-C, or after any
    failure with ``keep_on_failure`` (``compare``, ``suite``: their finished runs). With
    ``overwrite``, a previous run in ``path`` is moved aside (``NAME.previous-<time>``, same file
    system) and deleted only once the block succeeds; if it fails or is interrupted, the new files
    are removed and the previous run is put back as it was (after a crash, the next command does
    it: :func:`recover`). A folder that exists and is not overwritten (a resumed run) is left as
    the run leaves it. A folder another process is writing to, or a non-empty one without our
    marker, is a ValueError, and nothing is touched. In a data-parallel run, only the first process
    does any of this (:func:`first_process`); the others get the folder as it is.
    """
    path = Path(path)
    if not first_process():
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    recover(path)
    created = [folder for folder in (path, *path.parents) if not folder.exists()]
    path.mkdir(parents=True, exist_ok=True)
    if not created and any(path.iterdir()) and not is_run_folder(path):
        raise ValueError(f"{path} holds files that are not a run of iidfusion; nothing in it is replaced or deleted")
    started = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    marker = _Marker(path)
    previous = None
    try:
        if overwrite and any(p.name != MARKER for p in path.iterdir()):
            previous = path.with_name(f"{path.name}{_PREVIOUS}{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}")
            path.rename(previous)  # the previous run's marker stays locked by us until the new one is made
            try:
                path.mkdir()
                fresh = _Marker(path)
            except BaseException:
                if not path.exists():
                    previous.rename(path)
                raise
            marker.release()
            marker, created = fresh, [path]
        marker.write(state="running", replaces=previous.name if previous else None, **started)
    except BaseException:
        marker.release()
        raise
    try:
        yield path
    except BaseException as error:
        stopped = isinstance(error, KeyboardInterrupt) or keep_on_failure
        kept = stopped and resumable is not None and resumable(path)
        if previous is not None or (created and not kept):
            _remove_run(path)
            if previous is not None:
                previous.rename(path)
            _remove_parents(created[1:])
        else:
            marker.write(state="stopped")
        marker.release()
        raise
    marker.write(state="done", replaces=None, replaced=previous.name if previous else None)
    if previous is not None:
        _remove_run(previous)
    marker.release()


def _remove_run(folder: Path) -> None:
    """Delete a run folder of ours, its marker last, so that a crash half way leaves a folder
    that is still recognised as ours (and can be replaced), never a folder of nobody's files.
    """
    for child in folder.iterdir():
        if child.name != MARKER:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    (folder / MARKER).unlink(missing_ok=True)
    folder.rmdir()


def _remove_parents(created: list[Path]) -> None:
    """Remove the parents a run created (innermost first), if still empty."""
    for parent in created:
        try:
            parent.rmdir()  # only if empty: another run may have written there meanwhile
        except OSError:
            break
