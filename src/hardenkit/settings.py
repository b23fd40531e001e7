"""HardenSettings: every knob of hardenkit, read from ``HARDENKIT_*`` environment variables.

Fields are flat (``jwt_secret`` comes from ``HARDENKIT_JWT_SECRET``). Lists accept
``a,b,c`` or JSON. :func:`load_settings` also reads ``HARDENKIT_*`` lines of a ``.env``
file (the environment wins), judged by the same typo check. In production
(``HARDENKIT_ENV=production``) unsafe combinations refuse to start with a
:class:`SettingsError` that names each offending variable; an unknown ``HARDENKIT_*``
variable is refused in every environment, because a typo must never fall back to a
default silently. ``HARDENKIT_TEST_*`` is reserved for hardenkit's own test suite.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from dotenv import dotenv_values
from pydantic import PrivateAttr, ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings import SettingsError as SourceError

from hardenkit._app_policy import app_problems
from hardenkit._refusals import refuse
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

__all__ = [
    "HardenSettings",
    "PolicyReport",
    "SettingProblem",
    "SettingsError",
    "load_settings",
    "name_problems",
    "refuse_unsafe",
]

_RESERVED_PREFIXES = ("HARDENKIT_TEST_",)
ENV_FILE_VARIABLE = "HARDENKIT_ENV_FILE"
"""Names the ``.env`` file settings are read from (empty: read none)."""

# The .env file load_settings(env_file=...) is reading, for the one construction it
# makes; None otherwise, and HardenSettings() reads the default file itself.
_env_file_var: ContextVar[_EnvFile | None] = ContextVar("hardenkit_env_file", default=None)


class _DotEnvLines(EnvSettingsSource):
    """The ``HARDENKIT_*`` lines of a ``.env`` file, parsed as environment variables are.

    pydantic-settings' own dotenv source refuses every other line of the file under
    ``extra="forbid"``; a ``.env`` shared with the rest of the service holds many.
    """

    def __init__(self, settings_cls: type[BaseSettings], lines: Mapping[str, str]) -> None:
        self._lines = lines
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._lines.items()}


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

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read arguments, then the environment, then the ``HARDENKIT_*`` lines of ``.env``.

        The file is the one :func:`load_settings` was given, else the default one (see
        there). Constructed directly, a named file that is missing is read as empty:
        :func:`load_settings` and ``hardenkit doctor`` report it.
        """
        env_file = _env_file_var.get()
        if env_file is None:
            try:
                env_file = _read_env_file(None)
            except SettingsError:
                env_file = _EnvFile(None, {})
        lines = env_file.lines
        dotenv = _DotEnvLines(settings_cls, lines) if lines else dotenv_settings
        return init_settings, env_settings, dotenv, file_secret_settings

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

    def policy(self, app: ASGIApp | None = None, *, complete: bool = True) -> PolicyReport:
        """Judge this configuration (and ``app``'s routes, when given) by the one policy.

        Startup and ``hardenkit doctor`` both use this: what one refuses, the other fails.
        ``complete=False``: more routes may be added to ``app`` (the check at
        ``install()``); rules about a route that should exist wait for the last check.
        """
        problems = self.problems()
        if app is not None:
            problems += app_problems(self, app, complete=complete)
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
        known = {env_name(name) for name in cls.model_fields} | {ENV_FILE_VARIABLE}
        prefixes = cls._reserved_prefixes + cls.dynamic_env_prefixes()
        return sorted(
            key
            for key in (name.upper() for name in environ)
            if key.startswith(ENV_PREFIX) and key not in known and not key.startswith(prefixes)
        )


def load_settings(
    env_file: str | os.PathLike[str] | None = None, **overrides: Any
) -> HardenSettings:
    """Read and check settings; raise :class:`SettingsError` on anything unsafe.

    Settings come from ``overrides``, then ``HARDENKIT_*`` environment variables, then
    ``HARDENKIT_*`` lines of a ``.env`` file: each source wins over the next. The file is
    ``env_file`` when given, else the one ``HARDENKIT_ENV_FILE`` names (empty: no file),
    else ``.env`` in the working directory when there is one. A file named explicitly
    must exist. Lines without the ``HARDENKIT_`` prefix are left to other readers.

    Checks, in order: unknown ``HARDENKIT_*`` variables in the environment or the file
    (likely typos), values that do not parse, and the rules for the current
    environment. Messages name the variable and never include its value.

    Args:
        env_file: The ``.env`` file to read (added in 0.2).
        overrides: Values that win over every other source, by field name.
    """
    env = _read_env_file(env_file)
    problems = name_problems(env)
    if problems:
        refuse(SettingsError(problems))
    token = _env_file_var.set(env)
    try:
        settings = HardenSettings(**overrides)
    except ValidationError as exc:
        raise SettingsError(_problems_from_validation(exc)) from None
    except SourceError as exc:
        raise SettingsError(_problems_from_source(exc)) from None
    finally:
        _env_file_var.reset(token)
    return refuse_unsafe(settings)


def refuse_unsafe(settings: HardenSettings) -> HardenSettings:
    """Return ``settings``; raise :class:`SettingsError` first if they refuse startup.

    While ``hardenkit doctor --app`` imports the app (:mod:`hardenkit._refusals`), the
    refusal is recorded instead and the settings are returned all the same.
    """
    errors = settings.startup_errors()
    if errors:
        refuse(SettingsError(errors, settings))
    return settings


def _typo_hint(name: str) -> str:
    """``a typo?``, with the closest setting's name when one is close enough."""
    known = [env_name(field) for field in HardenSettings.model_fields]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.75)
    return f"a typo? did you mean {close[0]}" if close else "a typo?"


def name_problems(env_file: _EnvFile | None = None) -> list[SettingProblem]:
    """Return a problem for each ``HARDENKIT_*`` name no setting reads (likely a typo).

    Judges the environment and the ``.env`` file (the default one unless given), as
    startup (:func:`load_settings`) and ``hardenkit doctor`` both do: an unknown name, a
    name the file may not hold, or a named file that does not exist.
    """
    try:
        env = _read_env_file(None) if env_file is None else env_file
    except SettingsError as missing:
        return missing.problems
    in_environment = HardenSettings.unknown_variables()
    problems = [
        SettingProblem(name, f"unknown setting ({_typo_hint(name)}); see docs/settings.md")
        for name in in_environment
    ]
    problems += [
        SettingProblem(
            name, f"unknown setting ({_typo_hint(name)}) in {env.path}; see docs/settings.md"
        )
        for name in HardenSettings.unknown_variables(env.lines)
        if name not in in_environment
    ]
    problems += [
        SettingProblem(
            name, f"read from the environment only, not from {env.path}", production_only=False
        )
        for name in sorted(env.lines)
        if name.startswith(HardenSettings.dynamic_env_prefixes()) or name == ENV_FILE_VARIABLE
    ]
    return problems


@dataclass(frozen=True, slots=True)
class _EnvFile:
    path: Path | None
    lines: Mapping[str, str]  # its HARDENKIT_* lines, names upper-cased


def _read_env_file(env_file: str | os.PathLike[str] | None) -> _EnvFile:
    """Return the ``.env`` file to read and its ``HARDENKIT_*`` lines.

    Raises:
        SettingsError: A file named explicitly does not exist.
    """
    named_by = "env_file"
    if env_file is None:
        named = os.environ.get(ENV_FILE_VARIABLE)
        if named is None:
            default = Path(".env")
            if not default.is_file():
                return _EnvFile(None, {})
            env_file = default
        elif not named.strip():
            return _EnvFile(None, {})
        else:
            env_file, named_by = named, ENV_FILE_VARIABLE
    path = Path(env_file)
    if not path.is_file():
        raise SettingsError(
            [SettingProblem(named_by, f"no such file: {path}", production_only=False)]
        )
    lines = dotenv_values(path, interpolate=False)
    return _EnvFile(
        path,
        {
            name.upper(): value or ""
            for name, value in lines.items()
            if name.upper().startswith(ENV_PREFIX)
        },
    )


_SOURCE_FIELD = re.compile(r'field "([A-Za-z0-9_]+)"')


def unparsable_field(exc: SourceError) -> str | None:
    """The field whose environment value pydantic-settings could not decode (JSON), if named."""
    found = _SOURCE_FIELD.search(str(exc))
    return found.group(1) if found else None


def _problems_from_source(exc: SourceError) -> list[SettingProblem]:
    """pydantic-settings' decoding errors, named by variable and never with the value."""
    field = unparsable_field(exc)
    setting = env_name(field) if field else f"{ENV_PREFIX}*"
    message = "is not valid JSON: write a JSON object or list as docs/settings.md shows"
    return [SettingProblem(setting, message, production_only=False)]


def _problems_from_validation(exc: ValidationError) -> list[SettingProblem]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        field = str(error["loc"][0]) if error["loc"] else "settings"
        problems.append(SettingProblem(env_name(field), error["msg"], production_only=False))
    return problems


read_settings_with(load_settings)  # configure_logging() without settings reads them so
