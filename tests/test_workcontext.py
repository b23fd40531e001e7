"""Request id, principal, tenant and deadline follow work into tasks, threads and jobs."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import queue
import threading
import time
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from hardenkit import Principal, WorkContext, install
from hardenkit.context import (
    deadline_var,
    get_principal,
    get_request_id,
    principal_var,
    remaining_time,
    request_id_var,
    set_deadline,
)
from hardenkit.logs.processors import add_request_context
from hardenkit.settings import HardenSettings
from hardenkit.workcontext import (
    DEADLINE_HEADER,
    PRINCIPAL_HEADER,
    REQUEST_ID_HEADER,
    WorkContextError,
    bind,
    inject,
)

ALICE = Principal(
    subject="alice",
    tenant="acme",
    roles=frozenset({"admin"}),
    scopes=frozenset({"orders:read"}),
    claims={"email": "alice@example.com"},
    tenants=frozenset({"acme"}),
)


def principal_json(**fields: object) -> str:
    return json.dumps({"subject": "alice", "credential": "jwt", **fields})


def in_request(request_id: str = "req-12345678", principal: Principal | None = ALICE) -> Any:
    """Set request facts as the middleware would; return the tokens to reset."""
    return request_id_var.set(request_id), principal_var.set(principal)


def test_headers_round_trip_the_facts_without_token_claims() -> None:
    request_token, principal_token = in_request()
    deadline_token = set_deadline(5.0)
    try:
        headers = WorkContext.capture().headers()
    finally:
        deadline_var.reset(deadline_token)
        principal_var.reset(principal_token)
        request_id_var.reset(request_token)
    assert headers[REQUEST_ID_HEADER] == "req-12345678"
    assert "alice@example.com" not in json.dumps(headers)
    received = WorkContext.from_headers(headers)
    assert received.request_id == "req-12345678"
    assert received.tenant == "acme"
    assert received.principal is not None
    assert received.principal.roles == frozenset({"admin"})
    assert received.principal.claims == {}
    assert received.deadline_at is not None
    assert 4.0 < received.deadline_at - time.time() <= 5.0


def test_outside_a_request_nothing_is_carried() -> None:
    assert WorkContext.capture().headers() == {}
    assert WorkContext.from_headers({"content-type": "x"}) == WorkContext()


def test_applied_sets_the_facts_for_the_block_and_restores_them() -> None:
    received = WorkContext.from_headers(
        {REQUEST_ID_HEADER: "req-abcdefgh", DEADLINE_HEADER: repr(time.time() + 3)}
    )
    with received.applied():
        assert get_request_id() == "req-abcdefgh"
        remaining = remaining_time()
        assert remaining is not None
        assert 2.0 < remaining <= 3.0
    assert get_request_id() is None
    assert remaining_time() is None


def test_a_deadline_that_passed_in_the_queue_leaves_no_time() -> None:
    received = WorkContext(deadline_at=time.time() - 10)
    with received.applied():
        assert remaining_time() == 0.0


def test_a_received_deadline_never_extends_one_already_in_force() -> None:
    outer = set_deadline(1.0)
    try:
        with WorkContext(deadline_at=time.time() + 60).applied():
            remaining = remaining_time()
            assert remaining is not None
            assert remaining <= 1.0
    finally:
        deadline_var.reset(outer)


@pytest.mark.parametrize(
    ("headers", "header"),
    [
        ({REQUEST_ID_HEADER: "bad id with spaces"}, REQUEST_ID_HEADER),
        ({PRINCIPAL_HEADER: "{not json"}, PRINCIPAL_HEADER),
        ({PRINCIPAL_HEADER: '["alice"]'}, PRINCIPAL_HEADER),
        ({PRINCIPAL_HEADER: '{"subject":"","credential":"jwt"}'}, PRINCIPAL_HEADER),
        (
            {PRINCIPAL_HEADER: '{"subject":"a","credential":"jwt","roles":"admin"}'},
            PRINCIPAL_HEADER,
        ),
        ({PRINCIPAL_HEADER: '{"subject":"a","credential":"jwt","tenant":7}'}, PRINCIPAL_HEADER),
        (
            {PRINCIPAL_HEADER: '{"subject":"a","credential":"jwt","x":"' + "y" * 9000 + '"}'},
            PRINCIPAL_HEADER,
        ),
        ({DEADLINE_HEADER: "soon"}, DEADLINE_HEADER),
        ({DEADLINE_HEADER: "nan"}, DEADLINE_HEADER),
        ({DEADLINE_HEADER: 12.5}, DEADLINE_HEADER),
        ({"Hardenkit-Request-ID": b"\xff\xfe"}, REQUEST_ID_HEADER),
    ],
)
def test_malformed_headers_are_refused_naming_the_header_not_the_value(
    headers: dict[str, object], header: str
) -> None:
    with pytest.raises(WorkContextError) as refused:
        WorkContext.from_headers(headers)
    assert refused.value.header == header
    assert str(refused.value).startswith(header + ":")
    for value in headers.values():
        assert str(value)[:40] not in str(refused.value)


@given(st.dictionaries(st.text(max_size=30), st.one_of(st.text(), st.binary(), st.integers())))
def test_any_headers_parse_or_are_refused_with_work_context_error(
    headers: dict[str, object],
) -> None:
    with contextlib.suppress(WorkContextError):  # any other exception fails the test
        WorkContext.from_headers(headers)


@given(
    subject=st.text(min_size=1, max_size=40),
    tenant=st.one_of(st.none(), st.text(max_size=40)),
    roles=st.frozensets(st.text(max_size=20), max_size=5),
)
def test_any_principal_survives_the_round_trip(
    subject: str, tenant: str | None, roles: frozenset[str]
) -> None:
    principal = Principal(subject=subject, tenant=tenant, roles=roles)
    received = WorkContext.from_headers(WorkContext(principal=principal).headers())
    assert received.principal == Principal(subject=subject, tenant=tenant, roles=roles)


def test_header_names_match_case_insensitively_and_bytes_values_are_read() -> None:
    received = WorkContext.from_headers({"Hardenkit-Request-Id": b"req-abcdefgh"})
    assert received.request_id == "req-abcdefgh"


def test_inject_fills_a_publishers_headers_without_replacing_its_own() -> None:
    request_token, principal_token = in_request()
    try:
        headers = inject({"id": "task-1", REQUEST_ID_HEADER: "req-already-set"})
    finally:
        principal_var.reset(principal_token)
        request_id_var.reset(request_token)
    assert headers["id"] == "task-1"
    assert headers[REQUEST_ID_HEADER] == "req-already-set"
    assert PRINCIPAL_HEADER in headers


async def test_bound_coroutine_function_runs_in_the_request_facts_from_a_fresh_context() -> None:
    request_token, principal_token = in_request()
    try:

        async def job(amount: int) -> tuple[str | None, str | None, int]:
            principal = get_principal()
            return get_request_id(), principal.tenant if principal else None, amount

        bound = bind(job)
    finally:
        principal_var.reset(principal_token)
        request_id_var.reset(request_token)
    assert asyncio.iscoroutinefunction(bound)
    # A worker task started outside any request: its context has none of the facts.
    task = asyncio.create_task(bound(3), context=contextvars.Context())
    assert await task == ("req-12345678", "acme", 3)
    assert get_request_id() is None


async def test_bound_function_carries_the_facts_into_run_in_executor() -> None:
    request_token, principal_token = in_request()
    try:
        bound = bind(lambda: (get_request_id(), get_principal()))
    finally:
        principal_var.reset(principal_token)
        request_id_var.reset(request_token)
    loop = asyncio.get_running_loop()
    request_id, principal = await loop.run_in_executor(None, bound)
    assert (request_id, principal) == ("req-12345678", ALICE)


class HeadersBroker:
    """A publisher with a headers dict, like Celery's or arq's: a queue between threads."""

    def __init__(self) -> None:
        self.messages: queue.Queue[tuple[dict[str, Any], dict[str, Any]]] = queue.Queue()

    def publish(self, body: dict[str, Any]) -> None:
        self.messages.put((inject({}), body))


def test_a_job_published_during_a_request_runs_with_its_request_id_tenant_and_logs() -> None:
    broker = HeadersBroker()
    settings = HardenSettings(auth_mode="off")

    async def order(request: Request) -> JSONResponse:
        token = principal_var.set(ALICE)  # what the auth layer sets for a verified caller
        try:
            broker.publish({"order": 42})
        finally:
            principal_var.reset(token)
        return JSONResponse({"queued": True})

    app = Starlette(routes=[Route("/orders", order, methods=["POST"])])
    install(app, settings)
    with TestClient(app) as client:
        response = client.post("/orders", headers={"X-Request-ID": "req-from-client-1"})
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]

    seen: dict[str, Any] = {}

    def worker() -> None:  # another thread: a fresh context, as a Celery worker has
        headers, body = broker.messages.get(timeout=5)
        with (
            WorkContext.from_headers(headers).applied(),
            structlog.testing.capture_logs(processors=[add_request_context]) as logs,
        ):
            principal = get_principal()
            seen.update(
                request_id=get_request_id(),
                tenant=principal.tenant if principal else None,
                body=body,
            )
            structlog.get_logger("job").info("order_processed")
        seen["logs"] = logs

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join(10)
    assert seen["request_id"] == request_id
    assert seen["tenant"] == "acme"
    assert seen["body"] == {"order": 42}
    assert seen["logs"] == [
        {
            "event": "order_processed",
            "log_level": "info",
            "request_id": request_id,
            "subject": "alice",
            "tenant": "acme",
        }
    ]
