"""Checked by mypy --strict (tests/typecheck/test_typing.py), never run: a user's FastAPI app."""

from __future__ import annotations

from typing import Annotated, assert_type

from fastapi import Depends, FastAPI
from starlette.requests import Request

from hardenkit.auth import Principal
from hardenkit.fastapi import (
    CurrentPrincipal,
    OptionalPrincipal,
    exempt,
    limit,
    problem_responses,
    public,
    require_roles,
)
from hardenkit.ratelimit import keys

app = FastAPI()
Admin = Annotated[Principal, Depends(require_roles("admin"))]


def plan(request: Request, principal: Principal | None) -> str:
    return "100/hour" if principal is None else "1000/hour"


@app.get("/me")
@limit("5/minute", key=keys.tenant, cost=1)
async def me(principal: CurrentPrincipal) -> str:
    # Required: a Principal, never None, so no narrowing is needed.
    assert_type(principal, Principal)
    return principal.subject


@app.get("/maybe", responses=problem_responses(409))
@public()
@exempt()
@limit(plan)
def maybe(principal: OptionalPrincipal) -> str | None:
    assert_type(principal, Principal | None)
    return principal.subject if principal else None


@app.get("/admin", dependencies=[Depends(limit("1/second", name="admin"))])
async def admin(principal: Admin) -> frozenset[str]:
    return principal.roles


async def call_decorated(principal: Principal) -> None:
    # The decorators keep the endpoint's own signature for callers and checkers.
    assert_type(await me(principal), str)
    assert_type(maybe(None), str | None)
