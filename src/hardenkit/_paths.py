"""Path patterns, written the same way in every hardenkit setting.

A pattern is an exact path (``/docs``), a prefix ending in ``*`` (``/api/reports/*``), or
``*`` alone (every path). ``/auth/*`` matches ``/auth/token`` and ``/auth`` itself, never
``/authority``. Patterns start with ``/`` (or are ``*``); a ``*`` anywhere but at the end
is refused, at startup. Public paths, rate-limit rules and exemptions, webhook paths,
per-route headers and timeouts all match through this one module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

__all__ = ["PathPatterns", "PathTable", "check_pattern"]

T = TypeVar("T")


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is well formed, else raise ``ValueError`` saying why."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("a path pattern must be a non-empty string")
    if pattern != "*" and not pattern.startswith("/"):
        raise ValueError(f"path pattern {pattern!r}: paths start with '/' (or are '*')")
    if "*" in pattern[:-1]:
        raise ValueError(f"path pattern {pattern!r}: '*' is only allowed at the end")
    return pattern


class PathTable(Generic[T]):
    """The value of the most specific pattern matching a path: exact first, then longest prefix.

    Args:
        entries: Pattern to value.
    """

    __slots__ = ("_exact", "_prefixes")

    def __init__(self, entries: Mapping[str, T] | None = None) -> None:
        exact: dict[str, T] = {}
        prefixes: list[tuple[str, T]] = []
        for pattern, value in (entries or {}).items():
            check_pattern(pattern)
            if pattern.endswith("*"):
                prefix = pattern[:-1]
                prefixes.append((prefix, value))
                if len(prefix) > 1 and prefix.endswith("/"):
                    exact.setdefault(prefix[:-1], value)  # "/auth/*" covers "/auth"
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


class PathPatterns:
    """A set of path patterns; :meth:`matches` says whether a path is in it."""

    __slots__ = ("_exact", "_prefixes", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(check_pattern(pattern) for pattern in patterns)
        exact: set[str] = set()
        prefixes: list[str] = []
        for pattern in self.patterns:
            if pattern.endswith("*"):
                prefix = pattern[:-1]
                prefixes.append(prefix)
                if len(prefix) > 1 and prefix.endswith("/"):
                    exact.add(prefix[:-1])
            else:
                exact.add(pattern)
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: str) -> bool:
        """Return whether ``path`` matches one of the patterns."""
        return path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes))

    __call__ = matches
