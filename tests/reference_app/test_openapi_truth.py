"""The FastAPI reference app's OpenAPI document describes the responses it really sends.

Real responses of every kind the stack produces (200/201, the 401 and 403 of the auth
layer and of require_roles, 413 of the body limit, 422 of validation, 429 of a route
limit, 504 of the timeout) are recorded and each is checked against the operation the
document gives for its method and path: the status is documented, the media type is
the documented one, and the body validates (JSON Schema 2020-12, as OpenAPI 3.1 says).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from starlette.testclient import TestClient

from examples.reference_app.fastapi_app import create_app
from examples.reference_app.settings import FASTAPI_DEMO_DEFAULTS
from hardenkit import HardenSettings


@dataclass(frozen=True)
class Recorded:
    method: str
    template: str
    response: httpx.Response


@pytest.fixture(scope="module")
def client() -> TestClient:
    settings = HardenSettings(
        **{
            **FASTAPI_DEMO_DEFAULTS,
            "rate_limit_auth": "1000/15m",
            "max_body_bytes": 2048,
            "request_timeout": 0.3,
        }
    )
    return TestClient(create_app(settings))


@pytest.fixture(scope="module")
def document(client: TestClient) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/openapi.json").json()
    return body


def login(client: TestClient, user: str) -> dict[str, str]:
    response = client.post(
        "/auth/token", json={"username": user, "password": f"{user}-demo-password"}
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture(scope="module")
def recorded(client: TestClient) -> list[Recorded]:
    alice, bob = login(client, "alice"), login(client, "bob")
    items, notes = "/api/tenants/{tenant_id}/items", "/api/tenants/{tenant_id}/notes"
    record: list[Recorded] = []

    def call(method: str, template: str, path: str, **kwargs: Any) -> None:
        record.append(Recorded(method, template, client.request(method, path, **kwargs)))

    call("POST", "/auth/token", "/auth/token", json={"username": "alice", "password": "no"})
    call("POST", "/auth/token", "/auth/token", json={"username": "alice"})
    call("GET", "/api/me", "/api/me", headers=alice)
    call("GET", "/api/me", "/api/me")
    call("GET", "/api/me", "/api/me", headers={**alice, "X-Tenant-ID": "globex"})
    call("GET", items, "/api/tenants/acme/items", headers=alice)
    call("GET", items, "/api/tenants/globex/items", headers=alice)
    call("GET", "/api/admin/stats", "/api/admin/stats", headers=alice)
    call("GET", "/api/admin/stats", "/api/admin/stats", headers=bob)
    call("POST", notes, "/api/tenants/acme/notes", headers=alice, json={"text": ""})
    call("POST", notes, "/api/tenants/acme/notes", headers=alice, json={"text": "x" * 4000})
    for _ in range(3):  # the route's limit is 2/minute per tenant
        call("POST", notes, "/api/tenants/acme/notes", headers=alice, json={"text": "hello"})
    call("GET", "/api/slow", "/api/slow?seconds=2", headers=alice)
    return record


def test_every_kind_of_answer_was_recorded(recorded: list[Recorded]) -> None:
    statuses = {item.response.status_code for item in recorded}
    assert {200, 201, 401, 403, 413, 422, 429, 504} <= statuses


def test_every_recorded_response_is_documented_and_valid(
    recorded: list[Recorded], document: dict[str, Any]
) -> None:
    for item in recorded:
        where = f"{item.method} {item.template} -> {item.response.status_code}"
        operation = document["paths"][item.template][item.method.lower()]
        documented = operation["responses"].get(str(item.response.status_code))
        assert documented is not None, f"{where}: status not in the document"
        media_type = item.response.headers["content-type"].split(";")[0]
        assert media_type in documented["content"], f"{where}: {media_type} not documented"
        schema = documented["content"][media_type]["schema"]
        validator = Draft202012Validator({**schema, "components": document["components"]})
        errors = [error.message for error in validator.iter_errors(item.response.json())]
        assert errors == [], where


def test_the_document_has_one_problem_schema_and_no_fastapi_validation_body(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    assert "Problem" in schemas
    assert "HTTPValidationError" not in schemas
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], (
                        method,
                        path,
                        status,
                    )


def test_public_routes_have_no_security_and_protected_ones_have_the_bearer_once(
    document: dict[str, Any],
) -> None:
    assert list(document["components"]["securitySchemes"]) == ["HTTPBearer"]
    token = document["paths"]["/auth/token"]["post"]
    assert "security" not in token
    assert "401" in token["responses"]  # declared by the handler: a wrong password
    public = document["paths"]["/demo/logging"]["post"]
    assert "security" not in public
    assert not {"401", "403"} & set(public["responses"])
    me = document["paths"]["/api/me"]["get"]
    assert me["security"] == [{"HTTPBearer": []}]
    assert {"401", "403", "429", "504"} <= set(me["responses"])
    assert "413" not in me["responses"]  # a GET declares no body
