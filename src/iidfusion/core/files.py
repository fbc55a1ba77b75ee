"""Text files a user gives (triples, HFM's literal lists, entity texts), read as UTF-8.

A byte that is not UTF-8 is the user's file, not a bug: it is a ValueError naming the file, the
line and the byte (Python's own decoding error names neither), raised before any line is used.
Standard library only, so that every layer may use it.
"""

from __future__ import annotations

from pathlib import Path


def read_utf8_lines(path: str | Path) -> list[str]:
    """The lines of the UTF-8 text file ``path``, without their LF or CRLF endings."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{path}:{line}: not UTF-8 text (byte 0x{data[error.start]:02x} at offset {error.start}); "
                         "save the file as UTF-8") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the end of the last line, not a line
    return [line.removesuffix("\r") for line in lines]
