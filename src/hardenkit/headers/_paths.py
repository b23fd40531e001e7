"""PathTable: a value per path pattern, written as hardenkit writes paths everywhere.

A pattern is an exact path (``/docs``) or a prefix ending in ``*`` (``/api/reports/*``,
``*``). The exact path wins, then the longest prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Generic, TypeVar

__all__ = ["PathTable"]

T = TypeVar("T")


class PathTable(Generic[T]):
    """Look up the value of the most specific pattern matching a path.

    Args:
        entries: Pattern to value. A ``*`` anywhere but at the end raises ``ValueError``.
    """

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, entries: Mapping[str, T] | None = None) -> None:
        exact: dict[str, T] = {}
        prefixes: list[tuple[str, T]] = []
        for pattern, value in (entries or {}).items():
            if not isinstance(pattern, str) or not pattern:
                raise ValueError("a path pattern must be a non-empty string")
            if pattern.endswith("*"):
                prefix = pattern[:-1]
                if "*" in prefix:
                    raise ValueError(f"path pattern {pattern!r}: '*' is only allowed at the end")
                prefixes.append((prefix, value))
            elif "*" in pattern:
                raise ValueError(f"path pattern {pattern!r}: '*' is only allowed at the end")
            else:
                exact[pattern] = value
        prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        self._exact = exact
        self._prefixes = tuple(prefixes)

    def __bool__(self) -> bool:
        return bool(self._exact or self._prefixes)

    def get(self, path: str, default: T) -> T:
        """Return the value for ``path``, or ``default`` when no pattern matches."""
        if path in self._exact:
            return self._exact[path]
        for prefix, value in self._prefixes:
            if path.startswith(prefix):
                return value
        return default
