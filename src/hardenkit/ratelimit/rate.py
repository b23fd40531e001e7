"""Rates: how many units per period, and how many may be taken at once.

One parser for every rate string hardenkit reads (settings, rules, decorators)::

    Rate.parse("100/15m")          # 100 per 15 minutes, burst 100
    Rate.parse("5/15 minutes")
    Rate.parse("10/s burst 50")    # 10 per second, up to 50 at once
    Rate.parse("1000 per hour")
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

__all__ = ["Rate"]

_UNIT_SECONDS: Final[dict[str, int]] = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}

_RATE_PATTERN: Final = re.compile(
    r"""
    \s*(?P<count>\d{1,10})\s*
    (?:/|\s+per\s+)
    \s*(?P<multiplier>\d{1,8})?\s*(?P<unit>[a-z]+)\s*
    (?:\s+burst\s+(?P<burst>\d{1,10})\s*)?
    """,
    re.VERBOSE | re.IGNORECASE,
)

_MAX_COUNT: Final = 1_000_000_000
_MAX_PERIOD_SECONDS: Final = 366 * 86400
MAX_TOLERANCE_US: Final = _MAX_PERIOD_SECONDS * 1_000_000
"""The longest a full burst may take to refill (366 days), in microseconds."""
_MICROSECONDS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` units per ``period_seconds``, of which ``burst`` may be taken at once.

    The default burst equals the count: ``"100/hour"`` admits 100 at once, then one more
    every 36 seconds, which is what users of window limiters expect, without the
    double burst a fixed window allows at its edge.

    Args:
        count: Units admitted per period (1 to 10⁹).
        period_seconds: Length of the period in whole seconds (1 s to 366 days).
        burst: Units that may be taken at once; defaults to ``count``. A full burst
            must refill within 366 days (``burst × period_seconds / count``).

    Raises:
        ValueError: A value is out of range.
    """

    count: int
    period_seconds: int
    burst: int = 0
    emission_interval_us: int = field(init=False, repr=False, compare=False)
    tolerance_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.count <= _MAX_COUNT:
            raise ValueError(f"rate count must be between 1 and {_MAX_COUNT}")
        if not 1 <= self.period_seconds <= _MAX_PERIOD_SECONDS:
            raise ValueError("rate period must be between 1 second and 366 days")
        burst = self.burst or self.count
        if not 1 <= burst <= _MAX_COUNT:
            raise ValueError(f"rate burst must be between 1 and {_MAX_COUNT}")
        object.__setattr__(self, "burst", burst)
        # Rounded up so a period never admits more than ``count`` beyond the burst.
        emission = -(-self.period_seconds * _MICROSECONDS // self.count)
        if emission * burst > MAX_TOLERANCE_US:
            # Also what keeps every value gcra.lua computes exact in Lua's doubles.
            raise ValueError(
                "a full burst must refill within 366 days (burst × period / count); "
                f"{burst} × {self.period_seconds} s / {self.count} is longer"
            )
        object.__setattr__(self, "emission_interval_us", emission)
        object.__setattr__(self, "tolerance_us", emission * burst)

    @classmethod
    def parse(cls, text: str) -> Rate:
        """Parse ``"<count>/<period>[ burst <n>]"``, e.g. ``"100/15m"``, ``"10/s burst 50"``.

        The period is an optional whole multiplier and a unit: ``s``, ``m``/``min``,
        ``h``/``hour``, ``d``/``day`` (singular or plural); ``per`` may replace ``/``.

        Raises:
            ValueError: The text is not a rate; the message quotes the expected form.
        """
        match = _RATE_PATTERN.fullmatch(text)
        unit_seconds = _UNIT_SECONDS.get(match.group("unit").lower()) if match else None
        if match is None or unit_seconds is None:
            raise ValueError(
                f"{text!r} is not a rate; expected '<count>/<period>' such as '100/15m', "
                "'5/15 minutes', '10/s' or '100/hour burst 20'"
            )
        multiplier = int(match.group("multiplier") or 1)
        burst = int(match.group("burst") or 0)
        if match.group("burst") is not None and burst == 0:
            raise ValueError(f"{text!r}: burst must be at least 1")
        try:
            return cls(int(match.group("count")), multiplier * unit_seconds, burst)
        except ValueError as error:
            raise ValueError(f"{text!r}: {error}") from None

    @classmethod
    def coerce(cls, value: Rate | str) -> Rate:
        """Return ``value`` as a :class:`Rate`, parsing it when it is a string."""
        return value if isinstance(value, Rate) else cls.parse(value)

    def __str__(self) -> str:
        text = f"{self.count}/{self.period_seconds}s"
        return text if self.burst == self.count else f"{text} burst {self.burst}"
