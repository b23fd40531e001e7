"""Path patterns: exact paths, or prefixes written with a trailing ``*``."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PathPatterns"]


class PathPatterns:
    """A set of paths matched exactly, or by prefix when the pattern ends with ``*``.

    ``/auth/*`` matches ``/auth/token`` and ``/auth`` itself, never ``/authority``.

    Raises:
        ValueError: A pattern does not start with ``/`` or has ``*`` before its end.
    """

    __slots__ = ("_exact", "_prefixes", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        exact: set[str] = set()
        prefixes: list[str] = []
        for pattern in self.patterns:
            if not pattern.startswith("/") or "*" in pattern[:-1]:
                raise ValueError(f"{pattern!r}: paths start with `/`; `*` only at the end")
            if pattern.endswith("*"):
                prefix = pattern[:-1]
                prefixes.append(prefix)
                if prefix.endswith("/") and len(prefix) > 1:
                    exact.add(prefix[:-1])
            else:
                exact.add(pattern)
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: str) -> bool:
        """Return whether ``path`` is one of these paths."""
        return path in self._exact or (bool(self._prefixes) and path.startswith(self._prefixes))
