"""Path patterns: an exact path, or a prefix ending in ``*`` (as ``HARDENKIT_PUBLIC_PATHS``)."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["PathMatcher"]


class PathMatcher:
    """Matches request paths against exact paths and ``prefix*`` patterns."""

    def __init__(self, patterns: Iterable[str]) -> None:
        exact: set[str] = set()
        prefixes: list[str] = []
        for pattern in patterns:
            if not pattern.startswith("/"):
                raise ValueError(f"path pattern {pattern!r} must start with '/'")
            if pattern.endswith("*"):
                prefixes.append(pattern[:-1])
            elif "*" in pattern:
                raise ValueError(f"path pattern {pattern!r} may only end in '*'")
            else:
                exact.add(pattern)
        if not exact and not prefixes:
            raise ValueError("at least one path pattern is required")
        self._exact = frozenset(exact)
        self._prefixes = tuple(prefixes)

    def __call__(self, path: str) -> bool:
        """Return whether ``path`` matches a pattern."""
        return path in self._exact or path.startswith(self._prefixes)
