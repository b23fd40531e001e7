"""Tenant binding: header, path and query parameters; one tenant id encoding; audits.

The refusals a user relies on run against a real uvicorn (its own path and query
parsing), the encoding rule against generated tenant ids, the audit contents in process.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient
from structlog.testing import capture_logs

from hardenkit import HardenSettings, install
from hardenkit.auth.claims import TENANT_ID_PATTERN
from tests.auth.binding_app import echo
from tests.auth.support import AUDIENCE, ISSUER, SECRET, claims, hs256
from tests.support.uvicorn_server import UvicornServer

SERVER_ENV = {
    "HARDENKIT_REDIS_URL": "",
    "HARDENKIT_JWT_SECRET": SECRET,
    "HARDENKIT_JWT_ISSUER": ISSUER,
    "HARDENKIT_JWT_AUDIENCE": AUDIENCE,
    "HARDENKIT_TENANT_PATH_PARAMS": "tenant_id,org_id",
    "HARDENKIT_RATE_LIMIT_DEFAULT": "10000/m",
}


def bearer(tenant: Any = "acme") -> dict[str, str]:
    return {"Authorization": f"Bearer {hs256(claims(tenant_id=tenant))}"}


@pytest.fixture(scope="module")
def server() -> Iterator[UvicornServer]:
    with UvicornServer("tests.auth.binding_app:app", env=SERVER_ENV) as running:
        yield running


def make_client(**options: Any) -> TestClient:
    app = Starlette(
        routes=[
            Route("/orgs/{org_id}/things", echo),
            Route("/tenants/{tenant_id}/items", echo),
            Route("/items", echo),
        ]
    )
    values: dict[str, Any] = {
        "jwt_secret": SECRET,
        "jwt_issuer": ISSUER,
        "jwt_audience": [AUDIENCE],
        "tenant_path_params": ["tenant_id", "org_id"],
        "rate_limit_default": "100000/m",
        "rate_limit_tenant": "100000/m",
        **options,
    }
    install(app, HardenSettings(**values))
    return TestClient(app)


# --- on a real server -------------------------------------------------------------------


def test_a_bound_org_id_path_parameter_refuses_another_tenant_on_a_real_server(
    server: UvicornServer,
) -> None:
    own = httpx.get(f"{server.url}/orgs/acme/things", headers=bearer())
    assert own.status_code == 200
    assert own.json()["tenant"] == "acme"
    other = httpx.get(f"{server.url}/orgs/globex/things", headers=bearer())
    assert other.status_code == 403
    assert other.json()["code"] == "TENANT_MISMATCH"


@pytest.mark.parametrize(
    "query",
    [
        "tenant_id=globex",
        "tenant_id=acme&tenant_id=globex",  # the app would read the last one
        "tenant_id=globex&tenant_id=acme",
        "tenant%5Fid=globex",  # an encoded name is the same name to the app
        "tenant_id=glob%65x",
        "tenant_id=",
    ],
)
def test_a_query_tenant_of_another_tenant_is_refused_on_a_real_server(
    server: UvicornServer, query: str
) -> None:
    response = httpx.get(f"{server.url}/items?{query}", headers=bearer())
    assert response.status_code == 403
    assert response.json()["code"] == "TENANT_MISMATCH"


def test_the_own_tenant_in_the_query_reaches_the_app_on_a_real_server(
    server: UvicornServer,
) -> None:
    response = httpx.get(f"{server.url}/items?tenant_id=acme&page=2", headers=bearer())
    assert response.status_code == 200
    assert response.json()["query"] == ["acme"]


def test_a_non_ascii_tenant_claim_is_a_clear_401_not_a_false_403_on_a_real_server(
    server: UvicornServer,
) -> None:
    token = bearer("café")
    for path in ("/items", "/orgs/caf%C3%A9/things"):
        response = httpx.get(f"{server.url}{path}", headers={**token, "X-Tenant-ID": "acme"})
        assert response.status_code == 401
        assert "tenant id" in response.json()["detail"]


def test_a_utf8_tenant_header_is_a_mismatch_never_a_500_on_a_real_server(
    server: UvicornServer,
) -> None:
    response = httpx.get(
        f"{server.url}/items",
        headers=[
            ("Authorization", bearer()["Authorization"].encode()),
            ("X-Tenant-ID", "café".encode()),
        ],
    )
    assert response.status_code == 403
    assert response.json()["code"] == "TENANT_MISMATCH"


# --- the one encoding rule --------------------------------------------------------------

VALID_TENANTS = st.from_regex(TENANT_ID_PATTERN, fullmatch=True).filter(lambda t: len(t) <= 64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(VALID_TENANTS)
def test_a_tenant_in_the_charset_is_the_same_text_in_claim_header_path_and_query(
    tenant: str,
) -> None:
    client = CLIENT
    response = client.get(
        f"/orgs/{quote(tenant, safe='')}/things",
        params={"tenant_id": tenant},
        headers={**bearer(tenant), "X-Tenant-ID": tenant},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant"] == tenant
    assert body["tenant_header"] == [tenant]
    assert body["path_params"] == {"org_id": tenant}
    assert body["query"] == [tenant]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(min_size=1, max_size=40).filter(lambda t: not TENANT_ID_PATTERN.fullmatch(t)))
def test_a_tenant_outside_the_charset_is_refused_at_verification_with_401(tenant: str) -> None:
    with capture_logs() as logs:
        response = CLIENT.get("/items", headers={**bearer(tenant), "X-Tenant-ID": "acme"})
    assert response.status_code == 401
    assert [entry["reason"] for entry in logs if entry.get("audit")] == ["invalid_tenant_id"]


CLIENT = make_client()


# --- what the audit event says --------------------------------------------------------


def refusal_audit(client: TestClient, path: str, **headers: str) -> dict[str, Any]:
    with capture_logs() as logs:
        response = client.get(path, headers={**bearer(), **headers})
    assert response.status_code == 403
    (event,) = [entry for entry in logs if entry.get("audit")]
    assert event["event_type"] == "tenant_mismatch"
    assert event["tenant"] == "acme"
    details: dict[str, Any] = event["details"]
    return details


def test_a_header_path_conflict_audits_the_tenant_the_client_asked_for_and_where() -> None:
    # The header asks for another tenant, the path for the token's own: the header is it.
    details = refusal_audit(CLIENT, "/tenants/acme/items", **{"X-Tenant-ID": "globex"})
    assert details["requested_tenant"] == "globex"
    assert details["requested_from"] == "header"
    # And the other way round.
    details = refusal_audit(CLIENT, "/tenants/globex/items", **{"X-Tenant-ID": "acme"})
    assert details["requested_tenant"] == "globex"
    assert details["requested_from"] == "path"
    assert details["requested_tenants"] == [
        {"from": "header", "tenant": "acme"},
        {"from": "path", "tenant": "globex"},
    ]


def test_a_query_refusal_audits_the_query_tenant() -> None:
    details = refusal_audit(CLIENT, "/orgs/acme/things?tenant_id=globex")
    assert (details["requested_tenant"], details["requested_from"]) == ("globex", "query")


def test_a_utf8_header_is_audited_as_the_client_wrote_it_not_as_mojibake() -> None:
    with capture_logs() as logs:
        response = CLIENT.get(
            "/items",
            headers=[
                (b"authorization", bearer()["Authorization"].encode()),
                (b"x-tenant-id", "café".encode()),
            ],
        )
    assert response.status_code == 403
    (event,) = [entry for entry in logs if entry.get("audit")]
    assert event["details"]["requested_tenant"] == "café"


def test_two_memberships_asked_for_at_once_are_a_conflict() -> None:
    client = make_client(tenant_multi_membership=True)
    token = {"Authorization": f"Bearer {hs256(claims(tenant_id=['acme', 'globex']))}"}
    assert client.get("/tenants/acme/items", headers=token).status_code == 200
    with capture_logs() as logs:
        response = client.get("/tenants/acme/items?tenant_id=globex", headers=token)
    assert response.status_code == 403
    (event,) = [entry for entry in logs if entry.get("audit")]
    assert event["reason"] == "conflicting_tenant_requests"


def test_query_binding_can_be_switched_to_other_names() -> None:
    client = make_client(tenant_query_params=["org"])
    assert client.get("/items?org=globex", headers=bearer()).status_code == 403
    assert client.get("/items?tenant_id=globex", headers=bearer()).status_code == 200


def test_a_flood_of_query_tenants_is_refused_cheaply_with_a_bounded_audit_event() -> None:
    client = make_client(tenant_multi_membership=True)
    memberships = [f"t{index}" for index in range(300)]  # what fits in a token
    token = {"Authorization": f"Bearer {hs256(claims(tenant_id=memberships))}"}
    query = "&".join(f"tenant_id=t{index}" for index in range(1500))
    with capture_logs() as logs:
        response = client.get(f"/items?{query}", headers=token)
    assert response.status_code == 403
    (event,) = [entry for entry in logs if entry.get("audit")]
    assert event["reason"] == "conflicting_tenant_requests"
    assert len(event["details"]["requested_tenants"]) <= 8


# --- typed path parameters compare as the text their converter prints ---------------------

UPPER_UUID = "0F8FAD5B-D9CB-469F-A165-70867728950E"


async def tenant_of(request: Request) -> Response:
    return JSONResponse({"tenant": request.state.principal.tenant})


def typed_client() -> TestClient:
    app = Starlette(
        routes=[
            Route("/u/{tenant_id:uuid}/items", tenant_of),
            Route("/n/{tenant_id:int}/items", tenant_of),
        ]
    )
    install(
        app,
        HardenSettings(
            jwt_secret=SECRET,
            jwt_issuer=ISSUER,
            jwt_audience=[AUDIENCE],
            rate_limit_default="100000/m",
            rate_limit_tenant="100000/m",
        ),
    )
    return TestClient(app)


def test_a_tenant_in_another_case_is_refused_and_the_refusal_says_why() -> None:
    # The identity provider may hold both spellings as two tenants: never let one read
    # the other's path. A uuid route reads lower case, so the refusal names the cause.
    client = typed_client()
    lower = UPPER_UUID.lower()
    assert client.get(f"/u/{UPPER_UUID}/items", headers=bearer(lower)).status_code == 200
    with capture_logs() as logs:
        refused = client.get(f"/u/{UPPER_UUID}/items", headers=bearer(UPPER_UUID))
    assert refused.status_code == 403
    assert refused.json()["code"] == "TENANT_MISMATCH"
    (said,) = [log for log in logs if log["event"] == "tenant_named_in_another_case"]
    assert said["requested_from"] == "path"
    assert UPPER_UUID not in said["detail"]
    with capture_logs() as logs:
        other = client.get(f"/u/{'1' * 8}-d9cb-469f-a165-70867728950e/items", headers=bearer(lower))
    assert other.status_code == 403
    assert "tenant_named_in_another_case" not in [log["event"] for log in logs]


def test_an_int_route_compares_the_number_as_printed() -> None:
    client = typed_client()
    # The handler reads 7 for `/n/007`: that is tenant "7".
    assert client.get("/n/007/items", headers=bearer("7")).json()["tenant"] == "7"
    # "007" may be another tenant than "7" at the identity provider: it never reads 7.
    refused = client.get("/n/7/items", headers=bearer("007"))
    assert refused.status_code == 403
    assert refused.json()["code"] == "TENANT_MISMATCH"
