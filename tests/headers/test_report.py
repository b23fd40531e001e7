"""The CSP report endpoint: both browser formats, bounded, logged without secrets."""

from __future__ import annotations

import json

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.testclient import TestClient

from hardenkit import HardenSettings, install
from hardenkit.headers import csp_report_route

LEGACY = {
    "csp-report": {
        "document-uri": "https://app.example/reset?token=s3cr3t-reset-token#frag",
        "referrer": "https://mail.example/inbox?session=abc",
        "violated-directive": "script-src-elem",
        "effective-directive": "script-src-elem",
        "blocked-uri": "https://evil.example/x.js?k=leak",
        "disposition": "enforce",
        "line-number": 12,
        "script-sample": "alert(document.cookie) // user text",
        "status-code": 200,
    }
}
REPORTING_API = [
    {
        "type": "csp-violation",
        "age": 10,
        "url": "https://app.example/page",
        "body": {
            "documentURL": "https://app.example/page?q=private",
            "blockedURL": "inline",
            "effectiveDirective": "style-src-elem",
            "disposition": "report",
            "sample": "body{}",
            "lineNumber": 3,
            "columnNumber": 9,
        },
    },
    {"type": "deprecation", "body": {"id": "x"}},
]


def client(max_bytes: int = 1024) -> TestClient:
    app = Starlette(routes=[csp_report_route("/csp-report", max_bytes=max_bytes)])
    install(app, HardenSettings(auth_mode="off"))
    return TestClient(app)


def test_a_legacy_report_is_logged_without_query_strings_or_samples() -> None:
    with structlog.testing.capture_logs() as logs:
        response = client().post(
            "/csp-report",
            content=json.dumps(LEGACY),
            headers={"content-type": "application/csp-report"},
        )
    assert response.status_code == 204
    [line] = [log for log in logs if log["event"] == "csp_violation"]
    assert line["document"] == "https://app.example/reset"
    assert line["blocked"] == "https://evil.example/x.js"
    assert line["referrer"] == "https://mail.example/inbox"
    assert line["effective_directive"] == "script-src-elem"
    assert line["line"] == 12
    assert line["sample_length"] == len(LEGACY["csp-report"]["script-sample"])
    everything = json.dumps(logs)
    for secret in ("s3cr3t", "session=abc", "leak", "document.cookie", "frag"):
        assert secret not in everything


def test_a_reporting_api_batch_is_accepted_and_other_report_types_ignored() -> None:
    with structlog.testing.capture_logs() as logs:
        response = client().post(
            "/csp-report",
            content=json.dumps(REPORTING_API),
            headers={"content-type": "application/reports+json"},
        )
    assert response.status_code == 204
    [line] = [log for log in logs if log["event"] == "csp_violation"]
    assert line["document"] == "https://app.example/page"
    assert line["blocked"] == "inline"
    assert line["column"] == 9


def test_an_oversized_report_is_refused_with_413_before_it_is_parsed() -> None:
    body = json.dumps({"csp-report": {"document-uri": "x" * 5000}})
    response = client().post(
        "/csp-report", content=body, headers={"content-type": "application/csp-report"}
    )
    assert response.status_code == 413
    assert response.json()["code"] == "PAYLOAD_TOO_LARGE"


def test_an_oversized_chunked_report_is_refused_too() -> None:
    def chunks() -> object:
        for _ in range(10):
            yield b" " * 200

    response = client().post(
        "/csp-report", content=chunks(), headers={"content-type": "application/csp-report"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("text/plain", b"{}", 415, "UNSUPPORTED_MEDIA_TYPE"),
        ("application/csp-report", b"{not json", 400, "BAD_REQUEST"),
        ("application/csp-report", b"\xff\xfe", 400, "BAD_REQUEST"),
        ("application/csp-report", b"\x00{\x00\xd8\x00\xdc", 400, "BAD_REQUEST"),
        (
            "application/csp-report",
            b"\xff\xfe{\x00\x00\xd8}\x00",  # UTF-16 with a lone surrogate
            400,
            "BAD_REQUEST",
        ),
        ("application/csp-report", b'{"other": 1}', 400, "BAD_REQUEST"),
        ("application/reports+json", b"[1, 2]", 400, "BAD_REQUEST"),
    ],
)
def test_garbage_gets_a_coded_4xx_never_a_500(
    content_type: str, body: bytes, status: int, code: str
) -> None:
    response = client().post("/csp-report", content=body, headers={"content-type": content_type})
    assert response.status_code == status
    assert response.json()["code"] == code


def test_control_characters_in_report_fields_do_not_reach_the_log() -> None:
    report = {
        "csp-report": {"blocked-uri": "inline\n\x1b[31mFAKE LOG LINE", "disposition": "enforce"}
    }
    with structlog.testing.capture_logs() as logs:
        client().post(
            "/csp-report",
            content=json.dumps(report),
            headers={"content-type": "application/csp-report"},
        )
    [line] = [log for log in logs if log["event"] == "csp_violation"]
    assert "\n" not in line["blocked"]
    assert "\x1b" not in line["blocked"]


def test_the_size_limit_itself_is_validated() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        csp_report_route("/r", max_bytes=10)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 4000 + b"1" + b"]" * 4000,
        b'{"a":' * 4000 + b"1" + b"}" * 4000,
        b'{"csp-report": {"line-number": ' + b"9" * 5000 + b"}}",  # past int's digit limit
    ],
    ids=["list-4000-deep", "object-4000-deep", "5000-digit-number"],
)
def test_a_report_nested_4000_deep_or_with_a_huge_number_is_a_400_not_a_500(body: bytes) -> None:
    response = client(max_bytes=65536).post(
        "/csp-report", content=body, headers={"content-type": "application/csp-report"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "BAD_REQUEST"


@settings(max_examples=60, deadline=None)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=12), inner, max_size=3)
            ),
            max_leaves=20,
        ).map(lambda value: json.dumps(value).encode()),
    ),
    content_type=st.sampled_from(
        ["application/csp-report", "application/reports+json", "application/json; charset=x"]
    ),
)
def test_any_body_gets_204_or_a_coded_4xx(body: bytes, content_type: str) -> None:
    response = _FUZZ_CLIENT.post(
        "/csp-report", content=body, headers={"content-type": content_type}
    )
    assert response.status_code in (204, 400), response.text
    if response.status_code == 400:
        assert response.json()["code"] == "BAD_REQUEST"


_FUZZ_CLIENT = client(max_bytes=4096)
