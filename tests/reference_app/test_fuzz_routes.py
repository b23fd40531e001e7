"""Every reference route, Starlette and FastAPI, against generated bodies and headers: no 5xx.

Bodies are random bytes, generated JSON, JSON nested up to 5,000 deep, other encodings;
headers are content types, (lying) content lengths, content encodings, any bytes in the
headers a layer reads (tenant, request id, credentials, webhook signature, origin,
traceparent), with and without a valid token. The only 5xx answers allowed are the ones
the routes exist to show, and they are not caused by the input: ``/demo/logging``
crashes on purpose once it has parsed a well-formed body (malformed ones get a 400), and
the token is never sent to the routes whose 5xx comes from elsewhere (``/api/upstream``
from its flaky dependency, ``/api/slow`` and ``/api/stream`` from the clock), which
still get every body without one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from examples.reference_app import app as starlette_app
from examples.reference_app import fastapi_app
from examples.reference_app.settings import DEMO_DEFAULTS
from hardenkit import HardenSettings

_NO_TOKEN_ROUTES = frozenset({"/api/upstream", "/api/slow", "/api/stream"})
_DELIBERATE_CRASH = "/demo/logging"
_PATH_PARAMS = {"tenant_id": "acme"}

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=25,
)
_nested = st.tuples(st.integers(1, 5000), st.sampled_from(["[", '{"a":'])).map(
    lambda pair: (pair[1] * pair[0] + "1" + ("]" if pair[1] == "[" else "}") * pair[0]).encode()
)
_bodies = st.one_of(
    st.binary(max_size=512),
    _json_values.map(lambda value: json.dumps(value).encode()),
    _json_values.map(lambda value: json.dumps(value).encode("utf-16")),
    st.fixed_dictionaries({"username": st.text(max_size=10), "password": st.text(max_size=10)}).map(
        lambda value: json.dumps(value).encode()
    ),
    _nested,
    st.just(b'{"n": ' + b"9" * 5000 + b"}"),
)
_content_types = st.sampled_from(
    [
        None,
        "application/json",
        "application/json; charset=utf-16",
        "application/csp-report",
        "application/reports+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "multipart/form-data",
        "\u00e9/\u00e9",
        ";;;",
    ]
)
_content_lengths = st.one_of(
    st.none(), st.integers(0, 10**12).map(str), st.sampled_from(["-1", "abc", "1e3", ""])
)
_encodings = st.sampled_from([None, "gzip", "br", "identity", "x-bogus"])
# Headers a client controls that some layer reads: values of any byte a server accepts.
_header_bytes = st.binary(max_size=60).map(
    lambda raw: bytes(byte for byte in raw if byte >= 0x20 and byte != 0x7F).strip()
)
_client_headers = st.dictionaries(
    st.sampled_from(
        [
            "x-tenant-id",
            "x-request-id",
            "authorization",
            "x-api-key",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "origin",
            "traceparent",
        ]
    ),
    _header_bytes,
    max_size=4,
)


def _routes(routes: list[Any]) -> list[tuple[str, str]]:
    """Every (method, concrete path) served, path parameters filled in.

    FastAPI's ``include_router`` leaves one route standing for the router's; its
    ``effective_candidates`` carry the prefixed paths and methods.
    """
    found: list[tuple[str, str]] = []
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        if callable(candidates):
            found.extend(_routes(list(candidates())))
            continue
        path = getattr(route, "path", None)
        if not isinstance(path, str) or not hasattr(route, "methods"):
            continue
        for name, value in _PATH_PARAMS.items():
            path = path.replace("{" + name + "}", value)
        found.extend((method, path) for method in sorted(route.methods or {"GET"}))
    return found


def _client(create: Callable[..., Any]) -> tuple[TestClient, list[tuple[str, str]], str]:
    settings_ = HardenSettings(
        **DEMO_DEFAULTS, rate_limit_default="100000/1m", rate_limit_auth="100000/1m"
    )
    app = create(settings_)
    client = TestClient(app, raise_server_exceptions=False)
    login = client.post(
        "/auth/token", json={"username": "alice", "password": "alice-demo-password"}
    )
    assert login.status_code == 200
    return client, _routes(list(app.routes)), login.json()["access_token"]


@pytest.fixture(scope="module", params=["starlette", "fastapi"])
def reference(request: pytest.FixtureRequest) -> tuple[TestClient, list[tuple[str, str]], str]:
    create = starlette_app.create_app if request.param == "starlette" else fastapi_app.create_app
    return _client(create)


def test_the_fuzzed_routes_include_every_json_route(
    reference: tuple[TestClient, list[tuple[str, str]], str],
) -> None:
    _, routes, _ = reference
    for expected in [
        ("POST", "/auth/token"),
        ("POST", "/csp-report"),
        ("POST", "/demo/logging"),
        ("PUT", "/api/upstream/mode"),
        ("POST", "/webhooks/demo"),
        ("POST", "/api/agents/messages"),
        ("GET", "/api/tenants/acme/items"),
    ]:
        assert expected in routes


_MALFORMED = {
    "list-4000-deep": b"[" * 4000 + b"]" * 4000,
    "object-4000-deep": b'{"a":' * 4000 + b"1" + b"}" * 4000,
    "invalid": b'{"username": ',
    "not-utf": b"\xff\xfe\xfd{}",
    "utf16-lone-surrogate": b"\xff\xfe{\x00\x00\xd8}\x00",
    "5000-digit-number": b'{"n": ' + b"9" * 5000 + b"}",
}
# The routes that parse a JSON body. A body over a route's own small limit is a 413
# before it is parsed; the webhook refuses the missing signature first.
_JSON_ROUTES = [
    ("POST", "/auth/token"),
    ("POST", "/csp-report"),
    ("POST", "/demo/logging"),
    ("PUT", "/api/upstream/mode"),
    ("POST", "/api/agents/messages"),
    ("POST", "/webhooks/demo"),
]
_CODES = {"BAD_REQUEST", "VALIDATION_ERROR", "SIGNATURE_INVALID", "PAYLOAD_TOO_LARGE"}


@pytest.mark.parametrize("route", _JSON_ROUTES, ids=" ".join)
@pytest.mark.parametrize("body", sorted(_MALFORMED))
def test_every_json_route_answers_malformed_json_with_a_coded_4xx(
    reference: tuple[TestClient, list[tuple[str, str]], str], route: tuple[str, str], body: str
) -> None:
    client, _, token = reference
    method, path = route
    response = client.request(
        method,
        path,
        content=_MALFORMED[body],
        headers={"content-type": "application/csp-report", "authorization": f"Bearer {token}"},
    )
    assert response.status_code in (400, 413), response.text[:300]
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] in _CODES


def _parses(body: bytes) -> bool:
    if not body:
        return True
    try:
        json.loads(body)
    except (ValueError, RecursionError):
        return False
    return True


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=st.data(),
    body=_bodies,
    content_type=_content_types,
    content_length=_content_lengths,
    encoding=_encodings,
    extra_headers=_client_headers,
    with_token=st.booleans(),
)
def test_no_reference_route_answers_5xx_to_generated_input(  # noqa: PLR0917 - hypothesis
    reference: tuple[TestClient, list[tuple[str, str]], str],
    data: st.DataObject,
    body: bytes,
    content_type: str | None,
    content_length: str | None,
    encoding: str | None,
    extra_headers: dict[str, bytes],
    with_token: bool,
) -> None:
    client, routes, token = reference
    method, path = data.draw(st.sampled_from(routes), label="route")
    headers: dict[str, str | bytes] = dict(extra_headers)
    if content_type is not None:
        headers["content-type"] = content_type.encode("utf-8")  # not always ASCII
    if content_length is not None:
        headers["content-length"] = content_length
    if encoding is not None:
        headers["content-encoding"] = encoding
    if with_token and path not in _NO_TOKEN_ROUTES:
        headers["authorization"] = f"Bearer {token}"
    response = client.request(method, path, content=body, headers=headers)
    if path == _DELIBERATE_CRASH and response.status_code == 500:
        assert _parses(body), "a malformed body must be a 400, not the demo's crash"
        return
    assert response.status_code < 500, (method, path, response.status_code, response.text[:300])
    if response.status_code >= 400 and method != "HEAD":
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"]
