"""The operator's per-name overrides of ``resilient(name)``: ``HARDENKIT_RESILIENT_<NAME>_<KEY>``.

``<NAME>`` is the name upper-cased with every character other than a letter or digit
turned into ``_`` (``payments-api`` → ``PAYMENTS_API``). The environment is parsed once
per process: :func:`hardenkit.install` hands the settings' parse to the resilience
config, and ``resilient()`` used without it parses the environment on first use (see
:mod:`hardenkit.resilience._config`). A variable that does not parse is a problem naming
the variable, never echoing its value.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hardenkit._section import SettingProblem
from hardenkit.errors import ConfigurationError

__all__ = [
    "OVERRIDE_KEYS",
    "RESILIENT_PREFIX",
    "ResilientOverrides",
    "env_name_part",
    "read_resilient_overrides",
]

RESILIENT_PREFIX = "HARDENKIT_RESILIENT_"


def _seconds(value: str, *, optional: bool = False, zero: bool = False) -> float | None:
    if optional and value.strip().lower() in ("none", "off"):
        return None
    number = float(value)
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        raise ValueError(
            "must be a positive number of seconds" + (" or 'none'" if optional else "")
        )
    return number


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(value: str) -> int:
        number = int(value)
        if not low <= number <= high:
            raise ValueError(f"must be an integer from {low} to {high}")
        return number

    return parse


def _percent(value: str) -> float:
    number = float(value)
    if not 0 < number <= 100:
        raise ValueError("must be a percentage in (0, 100]")
    return number


def _breaker_state(value: str) -> str | None:
    state = value.strip().lower()
    if state not in ("auto", "forced_open", "disabled"):
        raise ValueError("must be auto, forced_open or disabled")
    return None if state == "auto" else state


OVERRIDE_KEYS: dict[str, tuple[str, Callable[[str], Any], str]] = {
    "TIMEOUT": ("timeout", lambda v: _seconds(v, optional=True), "seconds per attempt, or none"),
    "DEADLINE": ("deadline", lambda v: _seconds(v, optional=True), "seconds per call in all"),
    "ATTEMPTS": ("attempts", _count(1, 20), "attempts in all, the first included"),
    "MAX_TOTAL": ("max_total", _seconds, "seconds after which no retry starts"),
    "MAX_RETRY_AFTER": (
        "max_retry_after",
        lambda v: _seconds(v, zero=True),
        "longest Retry-After honoured",
    ),
    "FAILURE_RATE_THRESHOLD": ("failure_rate_threshold", _percent, "percent failures to open"),
    "SLOW_CALL_DURATION": (
        "slow_call_duration",
        lambda v: _seconds(v, optional=True),
        "seconds after which a call is slow",
    ),
    "MINIMUM_CALLS": ("minimum_calls", _count(1, 100_000), "calls before rates are judged"),
    "WINDOW_SIZE": ("window_size", _count(1, 100_000), "calls in the breaker's window"),
    "WAIT_IN_OPEN": ("wait_in_open", _seconds, "seconds open before trial calls"),
    "MAX_CONCURRENT": ("max_concurrent", _count(1, 100_000), "bulkhead: calls in flight"),
    "BREAKER": ("breaker", _breaker_state, "auto, forced_open or disabled"),
}
"""Per-name keys: environment suffix → (argument, parser, meaning)."""

_KEYS_LONGEST_FIRST = sorted(OVERRIDE_KEYS, key=len, reverse=True)


def env_name_part(name: str) -> str:
    """The ``<NAME>`` part of the per-name variables of ``resilient(name)``."""
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


@dataclass(frozen=True, slots=True)
class ResilientOverrides:
    """Every ``HARDENKIT_RESILIENT_*`` variable, parsed: values by ``<NAME>``, and problems."""

    by_name: Mapping[str, Mapping[str, Any]]
    problems: tuple[SettingProblem, ...] = ()

    def of(self, name: str) -> dict[str, Any]:
        """The overrides for ``resilient(name)``; raise if any of its variables is invalid.

        Raises:
            ConfigurationError: Names each invalid variable of this name.
        """
        part = env_name_part(name)
        own = [p for p in self.problems if p.setting.startswith(f"{RESILIENT_PREFIX}{part}_")]
        if own:
            raise ConfigurationError("; ".join(str(problem) for problem in own))
        return dict(self.by_name.get(part, {}))


def read_resilient_overrides(environ: Mapping[str, str] | None = None) -> ResilientOverrides:
    """Parse every ``HARDENKIT_RESILIENT_*`` variable of ``environ`` (``os.environ``).

    Each variable that does not parse becomes a problem (never including its value).
    """
    environ = os.environ if environ is None else environ
    overrides: dict[str, dict[str, Any]] = {}
    problems: list[SettingProblem] = []
    for raw_variable, value in environ.items():
        variable = raw_variable.upper()
        if not variable.startswith(RESILIENT_PREFIX):
            continue
        rest = variable[len(RESILIENT_PREFIX) :]
        key = next((k for k in _KEYS_LONGEST_FIRST if rest.endswith("_" + k)), None)
        name = rest[: -len(key) - 1] if key else ""
        if key is None or not name:
            problems.append(
                SettingProblem(
                    variable,
                    "expected HARDENKIT_RESILIENT_<NAME>_<KEY> with KEY one of "
                    + ", ".join(OVERRIDE_KEYS),
                    production_only=False,
                )
            )
            continue
        argument, parse, meaning = OVERRIDE_KEYS[key]
        try:
            parsed = parse(value)
        except ValueError as error:
            message = str(error) if "must be" in str(error) else "does not parse"
            problems.append(
                SettingProblem(variable, f"{message} ({meaning})", production_only=False)
            )
            continue
        overrides.setdefault(name, {})[argument] = parsed
    return ResilientOverrides(overrides, tuple(problems))
