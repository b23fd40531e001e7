"""Shared pieces of the settings sections: problems, list parsing, the section base."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator
from pydantic_settings import NoDecode

ENV_PREFIX = "HARDENKIT_"

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class SettingProblem:
    """One violated rule, naming the environment variable that fixes it.

    ``severity="error"`` refuses to start in production; ``"warning"`` is reported by
    ``hardenkit doctor`` and logged at startup. ``risk`` names the id under which an
    operator may accept the problem (``HARDENKIT_ACCEPT_RISKS``; see
    :mod:`hardenkit._risks`); a problem without one can only be fixed. ``fix``
    says what to change.
    """

    setting: str
    message: str
    severity: Severity = "error"
    production_only: bool = True
    risk: str | None = None
    fix: str | None = None

    @property
    def detail(self) -> str:
        """The problem and, when known, its fix (no variable name; never a value)."""
        return f"{self.message}; fix: {self.fix}" if self.fix else self.message

    def __str__(self) -> str:
        return f"{self.setting}: {self.detail}"


def env_name(field_name: str) -> str:
    """Return the environment variable that sets ``field_name``."""
    return ENV_PREFIX + field_name.upper()


def _split_list(value: Any) -> Any:
    """Accept a JSON list or comma-separated text for list-valued settings.

    JSON when it reads as a list of strings (``[]``, or ``[`` with a quote in it): an
    IPv6 address in brackets (``[::1]:26379``) starts with ``[`` too, and is one entry.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and (text == "[]" or '"' in text):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]
"""A list of strings from ``a,b,c`` or ``["a","b","c"]``."""


def _unescape_newlines(value: Any) -> Any:
    r"""Turn literal ``\n`` into newlines, for PEM keys pasted into one-line variables."""
    if isinstance(value, str) and "\\n" in value and "\n" not in value:
        return value.replace("\\n", "\n")
    return value


MultiLine = BeforeValidator(_unescape_newlines)
"""Validator for multi-line values (PEM keys) given as real or escaped newlines."""


class Section(BaseModel):
    """Base of every settings section."""

    def collect_problems(self) -> list[SettingProblem]:
        """Return rule violations of this section and of those after it in the MRO.

        Sections override this and call ``super().collect_problems()``.
        """
        return []

    @classmethod
    def dynamic_env_prefixes(cls) -> tuple[str, ...]:
        """Return prefixes of variables this section reads outside its fields."""
        return ()
