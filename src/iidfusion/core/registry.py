"""A name -> object registry (PyKEEN / timm style), the one used for strategies, methods and data sets.

Unknown names and clashing registrations raise a ValueError that names the kind of object and
lists the known names, so every registry of the library fails the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects of one ``kind`` ("fusion strategy", "method", ...) by name, in registration order."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, value: T) -> T:
        """Add ``value`` as ``name``; registering the same object again is a no-op."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._entries and self._entries[name] is not value:
            raise ValueError(f"a {self.kind} is already registered as {name!r}: {_describe(self._entries[name])}")
        self._entries[name] = value
        return value

    def get(self, name: str, *, known: tuple[str, ...] | None = None) -> T:
        """The object registered as ``name``; a ValueError listing ``known`` (default: every name) otherwise."""
        if name not in self._entries:
            raise ValueError(
                f"unknown {self.kind} {name!r}; available: {list(self.names() if known is None else known)}"
            )
        return self._entries[name]

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def _describe(value: object) -> str:
    return getattr(value, "__name__", None) or getattr(value, "name", None) or type(value).__name__
