"""Process-wide switches for tests: a principal in place of a token, limits off, reset.

Process-wide on purpose (stamina's testing switch is too): a test client serves the app
in another thread, where a context variable set by the test would not reach. Each switch
logs a warning when it turns on and refuses to turn on when ``HARDENKIT_ENV`` is
``production``: a protection never turns off silently, and never in production.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import structlog

from hardenkit.auth._override import PRINCIPAL_OVERRIDE
from hardenkit.auth.principal import Principal
from hardenkit.ratelimit._switch import COMPUTED_RATES, LIMITS
from hardenkit.ratelimit.memory import MemoryStore
from hardenkit.ratelimit.redis_store import RedisStore
from hardenkit.resilience.registry import ResilienceRegistry, default_registry
from hardenkit.signing.replay import ReplayStore

if TYPE_CHECKING:
    from hardenkit import Hardened
    from hardenkit.ratelimit.decision import RateLimitStore

__all__ = ["areset", "limits_disabled", "override_principal", "reset"]

_logger = structlog.get_logger("hardenkit.testing")


def _refuse_in_production(what: str) -> None:
    if os.environ.get("HARDENKIT_ENV", "").strip().lower() == "production":
        raise RuntimeError(f"{what} is for tests and refuses to run with HARDENKIT_ENV=production")


@contextmanager
def override_principal(
    principal: Principal | None = None,
    *,
    subject: str = "user-1",
    tenant: str | None = "tenant-1",
    roles: Iterable[str] = (),
    scopes: Iterable[str] = (),
) -> Iterator[Principal]:
    """Serve every protected request as ``principal`` (built from the keywords if omitted).

    The auth layer takes it in place of a verified token (bearer or API key), then does
    everything else as usual: the tenant header, path and query parameters are still bound
    to its tenant (403 ``TENANT_MISMATCH``), the tenant status is still checked, and
    ``get_principal()`` / ``request.state.principal`` return it. Public paths stay
    public. Yields the principal in force; nested overrides restore the outer one.

    Raises:
        RuntimeError: ``HARDENKIT_ENV`` is ``production``.
    """
    _refuse_in_production("override_principal()")
    if principal is None:
        principal = Principal(
            subject=subject,
            tenant=tenant,
            roles=frozenset(roles),
            scopes=frozenset(scopes),
            credential="test",
            tenants=frozenset() if tenant is None else frozenset({tenant}),
        )
    previous = PRINCIPAL_OVERRIDE.principal
    _logger.warning("auth_principal_overridden_for_tests", subject=principal.subject)
    PRINCIPAL_OVERRIDE.principal = principal
    try:
        yield principal
    finally:
        PRINCIPAL_OVERRIDE.principal = previous


@contextmanager
def limits_disabled() -> Iterator[None]:
    """Admit every call of every rate limiter in the block, charging no store.

    Like slowapi's ``enabled=False``, for tests that are about something else. Responses
    still carry ``RateLimit`` headers, showing a full budget.

    Raises:
        RuntimeError: ``HARDENKIT_ENV`` is ``production``.
    """
    _refuse_in_production("limits_disabled()")
    previous = LIMITS.disabled
    _logger.warning("ratelimit_disabled_for_tests")
    LIMITS.disabled = True
    try:
        yield
    finally:
        LIMITS.disabled = previous


def reset(
    kit: Hardened | None = None,
    *,
    stores: Iterable[RateLimitStore | ReplayStore] = (),
    registry: ResilienceRegistry = default_registry,
) -> None:
    """Start the next test from scratch: full rate-limit buckets, closed breakers, no ids.

    Resets the breakers and retry budgets of ``registry`` (the process-wide one by
    default; the objects stay, so decorated functions keep them), forgets the rates
    route limits computed per caller (``limit(plan_rate)``: the next request computes
    them again), and forgets the in-memory state of ``kit.rate_limit_store``,
    ``kit.replay_store`` and ``stores``.

    Raises:
        RuntimeError: A store keeps its state in Redis; clear it with ``await areset(...)``
            (the client belongs to the app's event loop), or give each test its own
            Redis database.
    """
    registry.reset()
    COMPUTED_RATES.forget()
    for store in _stores_of(kit, stores):
        if isinstance(store, MemoryStore):
            store.clear()
        elif isinstance(store, ReplayStore) and store.guard is None:
            store.clear_memory()
        else:
            raise RuntimeError(
                f"{type(store).__name__} keeps its state in Redis: use `await areset(...)`"
            )


async def areset(
    kit: Hardened | None = None,
    *,
    stores: Iterable[RateLimitStore | ReplayStore] = (),
    registry: ResilienceRegistry = default_registry,
) -> None:
    """:func:`reset`, Redis included: deletes the keys under each Redis store's prefix.

    Call it on the event loop the app's Redis client belongs to.
    """
    registry.reset()
    COMPUTED_RATES.forget()
    for store in _stores_of(kit, stores):
        if isinstance(store, MemoryStore):
            store.clear()
        elif isinstance(store, RedisStore | ReplayStore):
            await store.clear()
        else:
            raise TypeError(f"cannot reset a {type(store).__name__}")


def _stores_of(
    kit: Hardened | None, stores: Iterable[RateLimitStore | ReplayStore]
) -> list[RateLimitStore | ReplayStore]:
    found: list[RateLimitStore | ReplayStore] = list(stores)
    if kit is not None:
        found += [store for store in (kit.rate_limit_store, kit.replay_store) if store is not None]
    return found
