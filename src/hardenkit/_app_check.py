"""When the route rules run: at ``install()``, at startup, or on the first request.

Routes are often added after ``install(app)`` (FastAPI decorators below it, routers
included later), so the rules of :mod:`hardenkit._app_policy` run three times at most:
``install()`` refuses what the routes it sees already show; the lifespan startup runs
them on the complete app (a refusal stops the server from starting, as any startup
error); a server that runs no lifespan gets them on its first request, and a refusal
then answers every request 503 instead of serving an app production refuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from hardenkit._installed import INSTALLED_KEY
from hardenkit._refusals import refuse
from hardenkit._section import SettingProblem
from hardenkit.context import FACTS_KEY, REQUESTS, own_facts
from hardenkit.errors import ErrorCode, Refusal, send_refusal
from hardenkit.settings import SettingsError

if TYPE_CHECKING:
    from collections.abc import Callable

    from starlette.types import ASGIApp, Receive, Scope, Send

    from hardenkit.settings import HardenSettings

__all__ = ["AppCheck", "AppCheckMiddleware"]

_logger = structlog.get_logger("hardenkit.install")


class AppCheck:
    """The policy run against one app's routes, until the routes are complete."""

    def __init__(self, app: Any, settings: HardenSettings) -> None:
        self.app = app
        self.settings = settings
        self.done = False
        self._failure: SettingsError | None = None
        self._logged: set[SettingProblem] = set(settings.startup_warnings())
        self._on_complete: list[Callable[[], None]] = []
        self.kit: Any = None  # the Hardened it belongs to, once install() built it

    def on_complete(self, step: Callable[[], None]) -> None:
        """Run ``step`` once every route exists, before the app is judged for the last time."""
        self._on_complete.append(step)

    def run_early(self) -> None:
        """Refuse what the routes seen so far already show (more may come).

        Raises:
            SettingsError: The routes break a rule production refuses.
        """
        errors = self.settings.policy(self.app, complete=False).errors
        if errors:
            refuse(SettingsError(list(errors), self.settings))

    def run_final(self) -> None:
        """Judge the complete app once: raise its errors, log its new warnings.

        Raises:
            SettingsError: The routes break a rule production refuses (raised again on
                every later call: a refused app stays refused).
        """
        if self._failure is not None:
            raise self._failure
        if self.done:
            return
        for step in self._on_complete:
            step()
        report = self.settings.policy(self.app)
        if report.errors:
            self._failure = SettingsError(list(report.errors), self.settings)
            raise self._failure
        for problem in report.warnings:
            if problem not in self._logged:
                self._logged.add(problem)
                _logger.warning("setting_warning", setting=problem.setting, message=problem.detail)
        self.done = True


class AppCheckMiddleware:
    """Runs :meth:`AppCheck.run_final` on the first request when no lifespan ran it.

    Args:
        app: The next ASGI application.
        check: The app's check (``kit.app_check``).
    """

    def __init__(self, app: ASGIApp, *, check: AppCheck) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection."""
        if scope["type"] in REQUESTS and FACTS_KEY not in scope:  # the request's first layer
            await own_facts(self, scope, receive, send)
            return
        if scope["type"] in REQUESTS:
            # Which stack serves it, for a route limit of a mounted app (_installed).
            scope[INSTALLED_KEY] = self.check.kit
            if not self.check.done:
                try:
                    self.check.run_final()
                except SettingsError as error:
                    problems = [str(p) for p in error.problems]
                    _logger.error("app_refused_by_policy", problems=problems)
                    refusal = Refusal(
                        503,
                        ErrorCode.SERVICE_UNAVAILABLE,
                        "The service refuses to serve: its configuration is unsafe.",
                    )
                    await send_refusal(send, scope, refusal)
                    return
        await self.app(scope, receive, send)
