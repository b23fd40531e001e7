"""Rules: which requests a rate applies to, and who is counted."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from hardenkit._paths import PathPatterns
from hardenkit.ratelimit import keys
from hardenkit.ratelimit.decision import RedisDownBehaviour
from hardenkit.ratelimit.keys import KeyFunction
from hardenkit.ratelimit.limiter import check_name
from hardenkit.ratelimit.rate import Rate

__all__ = ["PathPatterns", "RateLimitRule"]

_REDIS_DOWN: Final = ("fallback", "open", "closed")


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """A rate, the requests it applies to, and who it counts.

    Several rules can apply to one request: all must allow it, and the response reports
    the tightest.

    Args:
        name: Names the rule in keys, headers, logs and metrics (``[a-z0-9_.-]``).
        rate: A :class:`Rate` or a rate string (``"5/15m"``).
        key: Who is counted (:mod:`hardenkit.ratelimit.keys` or your own callable);
            when it returns ``None`` the rule does not apply to the request.
        paths: Path patterns the rule applies to (exact, or a prefix ending in ``*``).
        except_paths: Path patterns the rule never applies to, even when ``paths`` match
            (the per-ip default leaves webhook paths to their own rule).
        methods: HTTP methods it applies to; empty means all. ``GET`` covers ``HEAD``
            too: Starlette answers ``HEAD`` with the ``GET`` handler (FastAPI answers
            ``405`` unless a route serves ``HEAD``; counted all the same, as the rule's
            methods cannot see the route).
        cost: Units each matching request takes.
        when_down: While Redis is down: ``fallback`` (memory), ``open`` (allow) or
            ``closed`` (503).

    Raises:
        ValueError: An option is invalid (at construction, never per request).
    """

    name: str
    rate: Rate | str
    key: KeyFunction = keys.client_ip
    paths: Iterable[str] = ("*",)
    except_paths: Iterable[str] = ()
    methods: Iterable[str] = ()
    cost: int = 1
    when_down: RedisDownBehaviour = "fallback"
    path_patterns: PathPatterns = field(init=False, repr=False, compare=False)
    except_patterns: PathPatterns = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_name(self.name, "rate limit rule")
        rate = Rate.coerce(self.rate)
        object.__setattr__(self, "rate", rate)
        if not 1 <= self.cost <= rate.burst:
            raise ValueError(f"rule {self.name!r}: cost must be between 1 and the burst")
        if self.when_down not in _REDIS_DOWN:
            raise ValueError(f"rule {self.name!r}: when_down must be one of {_REDIS_DOWN}")
        if not callable(self.key):
            raise ValueError(f"rule {self.name!r}: key must be callable")
        object.__setattr__(self, "paths", tuple(self.paths))
        object.__setattr__(self, "path_patterns", PathPatterns(self.paths, any_case=True))
        object.__setattr__(self, "except_paths", tuple(self.except_paths))
        object.__setattr__(self, "except_patterns", PathPatterns(self.except_paths))
        methods = frozenset(method.upper() for method in self.methods)
        if "GET" in methods:
            methods |= {"HEAD"}  # Starlette's GET handler answers it
        object.__setattr__(self, "methods", methods)

    @property
    def parsed_rate(self) -> Rate:
        """The rule's rate as a :class:`Rate`."""
        rate = self.rate
        assert isinstance(rate, Rate)  # noqa: S101 - converted in __post_init__
        return rate

    def applies_to(self, path: str, method: str) -> bool:
        """Return whether the rule covers a request to ``path`` with ``method``."""
        return (
            (not self.methods or method in self.methods)
            and self.path_patterns.matches(path)
            and not self.except_patterns.matches(path)
        )
