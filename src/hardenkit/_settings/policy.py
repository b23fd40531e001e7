"""The one production policy: which problems refuse startup, which warn, which were accepted.

Every rule lives in a settings section's ``collect_problems`` (and, for the rules that need
the application's routes, in :mod:`hardenkit._app_policy`); :func:`judge` turns that list
into one :class:`PolicyReport`. ``load_settings``/``install()`` raise its errors and log
its warnings, and ``hardenkit doctor`` prints the same report, so the two can never
disagree. In production an error refuses; elsewhere it is a warning that says it would be
refused. A problem with a risk id accepted in ``HARDENKIT_ACCEPT_RISKS`` becomes a warning
that names the acceptance, in every environment, every time.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, replace

from hardenkit._risks import ACCEPT_RISKS, RISKS
from hardenkit._section import SettingProblem

__all__ = ["PolicyReport", "judge"]


@dataclass(frozen=True, slots=True)
class PolicyReport:
    """What the policy says about one configuration.

    Attributes:
        errors: Problems that refuse startup here (and fail ``hardenkit doctor``).
        warnings: Problems logged at startup and warned by doctor, accepted risks first.
    """

    errors: tuple[SettingProblem, ...]
    warnings: tuple[SettingProblem, ...]


def judge(
    problems: Iterable[SettingProblem],
    *,
    production: bool,
    accepted_risks: Collection[str],
    app_checked: bool,
) -> PolicyReport:
    """Sort ``problems`` into errors and warnings for this environment.

    Args:
        problems: Every rule violation found (settings sections, and the app's routes).
        production: Whether production-only rules refuse.
        accepted_risks: Risk ids of ``HARDENKIT_ACCEPT_RISKS``.
        app_checked: Whether the rules that need the app's routes ran (an acceptance of
            one of those is only called unneeded when they did).
    """
    errors: list[SettingProblem] = []
    accepted: list[SettingProblem] = []
    warnings: list[SettingProblem] = []
    found_risks: set[str] = set()
    for problem in problems:
        if problem.risk is not None:
            found_risks.add(problem.risk)
        enforced = production or not problem.production_only
        if problem.severity == "warning":
            if enforced:
                warnings.append(problem)
        elif problem.risk is not None and problem.risk in accepted_risks:
            accepted.append(
                replace(
                    problem,
                    severity="warning",
                    message=f"{problem.message} (risk accepted: {ACCEPT_RISKS} "
                    f"holds {problem.risk})",
                    fix=None,
                )
            )
        elif enforced:
            errors.append(problem)
        else:
            warnings.append(
                replace(
                    problem,
                    severity="warning",
                    message=f"{problem.message} (refused in production)",
                )
            )
    warnings.extend(
        SettingProblem(
            ACCEPT_RISKS,
            f"accepts {risk_id}, which this configuration does not have",
            severity="warning",
            production_only=False,
            fix=f"remove {risk_id}, so the risk is refused again if it comes back",
        )
        for risk_id in accepted_risks
        if risk_id not in found_risks and (app_checked or not RISKS[risk_id].needs_app)
    )
    return PolicyReport(errors=tuple(errors), warnings=tuple(accepted + warnings))
