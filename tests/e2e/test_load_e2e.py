"""5,000 mixed requests at 50 connections on a real uvicorn: every refusal counted exactly.

The rates are set so every expected count follows from the plan alone: with GCRA a rate
of ``N/30day`` (burst ``N``) admits exactly ``N`` requests of one key and then one more
every ``30 × 86400 / N`` seconds (28.8 minutes for the tenant rule), far longer than the
run even on a loaded machine (with ``1500/day`` a run over 57.6 s admitted one more). So:

- per client ip (every request comes from 127.0.0.1): 1,000,000/day, never reached;
- the auth paths, per ip: 10/30day: 60 logins with a wrong password get 10x401, 50x429;
- per tenant: 1500/30day: ``globex`` sends 1940 and gets exactly 1500x200 and 440x429;
  ``acme`` sends 1200 good requests and 800 tenant-mismatched ones: refused by auth,
  before the tenant layer, mismatches cost nothing, so all 1200 pass (if they were
  charged, acme's 2000 would exceed 1500 and 429s would appear);
- 1000 unauthorised requests (no token, garbage, wrong key, expired): 401, never
  counted per tenant.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.e2e._traffic import (
    BEHIND_PROXY_ENV,
    Planned,
    bearer,
    hs256_token,
    problems_of,
    run_plan,
    statuses,
)
from tests.support.uvicorn_server import UvicornServer

pytestmark = pytest.mark.e2e

APP = "examples.reference_app.app:create_app"
TENANT_LIMIT = 1500
AUTH_LIMIT = 10
PERIOD_SECONDS = 30 * 86400
LOAD_ENV = {
    "HARDENKIT_REDIS_URL": "",  # memory stores, as `make demo`
    "HARDENKIT_RATE_LIMIT_DEFAULT": "1000000/day",
    "HARDENKIT_RATE_LIMIT_AUTH": f"{AUTH_LIMIT}/30day",
    "HARDENKIT_RATE_LIMIT_TENANT": f"{TENANT_LIMIT}/30day",
    "HARDENKIT_LOG_LEVEL": "WARNING",
    **BEHIND_PROXY_ENV,
}


def _plan() -> list[Planned]:
    acme, globex = hs256_token("acme"), hs256_token("globex")
    unauthorised = [
        {},
        {"Authorization": "Bearer not-a-jwt"},
        bearer(hs256_token("acme", secret="an-attacker-secret-that-is-long-enough-Zq9xW2")),
        bearer(hs256_token("acme", exp=int(time.time()) - 3600, iat=0, nbf=0)),
    ]
    plan = [
        *(
            Planned("acme", "/api/tenants/acme/items", bearer(acme), expected=frozenset({200}))
            for _ in range(1200)
        ),
        *(
            Planned(
                "mismatch", "/api/tenants/globex/items", bearer(acme), expected=frozenset({403})
            )
            for _ in range(400)
        ),
        *(
            Planned(
                "mismatch",
                "/api/me",
                {**bearer(acme), "X-Tenant-ID": "globex"},
                expected=frozenset({403}),
            )
            for _ in range(400)
        ),
        *(
            Planned("globex", "/api/me", bearer(globex), expected=frozenset({200, 429}))
            for _ in range(1940)
        ),
        *(
            Planned("unauthorised", "/api/me", unauthorised[i % 4], expected=frozenset({401}))
            for i in range(1000)
        ),
        *(
            Planned(
                "login",
                "/auth/token",
                method="POST",
                json={"username": "alice", "password": "wrong"},
                expected=frozenset({401, 429}),
            )
            for _ in range(60)
        ),
    ]
    random.Random(8).shuffle(plan)
    return plan


async def test_mixed_load_gets_no_5xx_and_exactly_the_expected_refusals(tmp_path: Path) -> None:
    plan = _plan()
    assert len(plan) == 5000
    with UvicornServer(
        APP, factory=True, env=LOAD_ENV, log_path=tmp_path / "uvicorn.log"
    ) as server:
        started = time.monotonic()
        results = await run_plan(server.url, plan, concurrency=50, time_limit=90)
        elapsed = time.monotonic() - started

    assert len(results) == 5000
    assert problems_of(results) == []  # no 5xx; ids and headers on every response
    assert max(r.status for r in results) < 500
    assert statuses(results) == {200: 2700, 401: 1010, 403: 800, 429: 490}, elapsed
    assert statuses(results, "globex") == {200: TENANT_LIMIT, 429: 1940 - TENANT_LIMIT}
    assert statuses(results, "login") == {401: AUTH_LIMIT, 429: 60 - AUTH_LIMIT}
    codes = {(r.status, r.code) for r in results if r.status >= 400}
    assert codes == {
        (401, "AUTHENTICATION_ERROR"),
        (403, "TENANT_MISMATCH"),
        (429, "RATE_LIMITED"),
    }
    # A refusal says when to come back: when the next token of its rule is due (at most
    # one emission interval; the auth rule's is the longest), never zero.
    retry_afters = {int(r.retry_after or 0) for r in results if r.status == 429}
    assert min(retry_afters) >= 1
    assert max(retry_afters) <= PERIOD_SECONDS // AUTH_LIMIT
    assert all(r.body["tenant"] == "acme" for r in results if r.planned.kind == "acme")
