"""HardenSettings: every knob of hardenkit, read from ``HARDENKIT_*`` environment variables.

Fields are flat (``jwt_secret`` comes from ``HARDENKIT_JWT_SECRET``). Lists accept
``a,b,c`` or JSON. In production (``HARDENKIT_ENV=production``) unsafe combinations refuse
to start with a :class:`SettingsError` that names each offending variable; an unknown
``HARDENKIT_*`` variable is refused in every environment, because a typo must never fall
back to a default silently. ``HARDENKIT_TEST_*`` is reserved for hardenkit's own test suite.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import PrivateAttr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from hardenkit._app_policy import app_problems
from hardenkit._section import ENV_PREFIX, SettingProblem, env_name
from hardenkit._settings.core import CoreSettings
from hardenkit._settings.logs import LoggingSettings
from hardenkit._settings.policy import PolicyReport, judge
from hardenkit._settings.requests import RequestSettings
from hardenkit._settings.risks import RiskSettings
from hardenkit.auth._settings import AuthSettings
from hardenkit.errors import ConfigurationError
from hardenkit.headers._settings import HeadersSettings
from hardenkit.logs.setup import read_settings_with
from hardenkit.ratelimit._settings import RateLimitSettings
from hardenkit.resilience._settings import ResilienceSettings
from hardenkit.signing._settings import SigningSettings

if TYPE_CHECKING:
    from starlette.types import ASGIApp

__all__ = ["HardenSettings", "PolicyReport", "SettingProblem", "SettingsError", "load_settings"]

_RESERVED_PREFIXES = ("HARDENKIT_TEST_",)


class SettingsError(ConfigurationError):
    """Settings that must not be used: names each variable and what is wrong, never values."""

    def __init__(
        self, problems: list[SettingProblem], settings: HardenSettings | None = None
    ) -> None:
        self.problems = problems
        # The parsed settings the problems were found in (None when parsing failed), so
        # `hardenkit doctor` can still check Redis and the JWKS they name.
        self.settings = settings
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid hardenkit settings:\n{lines}")


class HardenSettings(
    BaseSettings,
    CoreSettings,
    AuthSettings,
    RateLimitSettings,
    ResilienceSettings,
    RequestSettings,
    HeadersSettings,
    LoggingSettings,
    SigningSettings,
    RiskSettings,
):
    """Every hardenkit setting, validated once at construction and immutable after.

    Construct it with no arguments to read the environment, or pass values directly
    (they win over the environment). Use :func:`load_settings` to get a
    :class:`SettingsError` naming the variables instead of a pydantic error.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
        validate_default=True,
    )

    _reserved_prefixes: ClassVar[tuple[str, ...]] = _RESERVED_PREFIXES
    # The rule chain (PEM keys parsed, secrets judged) runs once per settings object:
    # the fields are frozen, so its answer cannot change.
    _problems: tuple[SettingProblem, ...] | None = PrivateAttr(default=None)

    @property
    def is_production(self) -> bool:
        """Whether production rules are enforced."""
        return self.env == "production"

    def problems(self) -> list[SettingProblem]:
        """Return every rule this configuration violates, production-only ones included.

        Computed on first use and kept: startup, the route checks and ``hardenkit doctor``
        all ask, and the answer of frozen settings never changes.
        """
        if self._problems is None:
            self._problems = tuple(self.collect_problems())
        return list(self._problems)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """Return a copy (with ``update`` applied) whose problems are judged afresh."""
        copied = super().model_copy(update=update, deep=deep)
        copied._problems = None
        return copied

    def enforced(self, problem: SettingProblem) -> bool:
        """Whether ``problem`` counts here: production-only rules count only in production."""
        return self.is_production or not problem.production_only

    def policy(self, app: ASGIApp | None = None) -> PolicyReport:
        """Judge this configuration (and ``app``'s routes, when given) by the one policy.

        Startup and ``hardenkit doctor`` both use this: what one refuses, the other fails.
        """
        problems = self.problems()
        if app is not None:
            problems += app_problems(self, app)
        return judge(
            problems,
            production=self.is_production,
            accepted_risks=self.accept_risks,
            app_checked=app is not None,
        )

    def startup_errors(self) -> list[SettingProblem]:
        """Return the problems that refuse startup in this environment."""
        return list(self.policy().errors)

    def startup_warnings(self) -> list[SettingProblem]:
        """Return the problems logged as warnings at startup (accepted risks included)."""
        return list(self.policy().warnings)

    def raise_for_errors(self) -> HardenSettings:
        """Raise :class:`SettingsError` if these settings refuse startup; return them otherwise."""
        errors = self.startup_errors()
        if errors:
            raise SettingsError(errors, self)
        return self

    @classmethod
    def unknown_variables(cls, environ: Mapping[str, str] | None = None) -> list[str]:
        """Return ``HARDENKIT_*`` variables in ``environ`` that no setting reads."""
        environ = os.environ if environ is None else environ
        known = {env_name(name) for name in cls.model_fields}
        prefixes = cls._reserved_prefixes + cls.dynamic_env_prefixes()
        return sorted(
            key
            for key in (name.upper() for name in environ)
            if key.startswith(ENV_PREFIX) and key not in known and not key.startswith(prefixes)
        )


def load_settings(**overrides: Any) -> HardenSettings:
    """Read and check settings; raise :class:`SettingsError` on anything unsafe.

    Checks, in order: unknown ``HARDENKIT_*`` variables (likely typos), values that do not
    parse, and the rules for the current environment. Messages name the variable and
    never include its value.
    """
    unknown = HardenSettings.unknown_variables()
    if unknown:
        raise SettingsError(
            [
                SettingProblem(name, "unknown setting (a typo?); see docs/settings.md")
                for name in unknown
            ]
        )
    try:
        settings = HardenSettings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_problems_from_validation(exc)) from None
    return settings.raise_for_errors()


def _problems_from_validation(exc: ValidationError) -> list[SettingProblem]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "settings"
        problems.append(SettingProblem(env_name(field), error["msg"], production_only=False))
    return problems


read_settings_with(load_settings)  # configure_logging() without settings reads them so
