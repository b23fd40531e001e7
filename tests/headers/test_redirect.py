"""safe_redirect: only this site or allowed hosts, whatever trick the target tries."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hardenkit import HardenError, HardenSettings, install, safe_redirect
from hardenkit.headers import is_safe_redirect

ALLOWED = ["app.example", "*.tenants.example", "admin.example:8443"]
BASE = "https://service.example/account/settings"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example",
        "//evil.example/path",
        "///evil.example",
        "https:evil.example",
        "https:/evil.example",
        "http:evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\\/evil.example",
        "https://evil.example",
        "https://app.example.evil.example/",
        "https://evilapp.example",
        "https://app.example@evil.example",
        "https://evil.example@app.example",
        "https://app.example:444/",
        "https://admin.example/",
        "https://tenants.example/",
        "https://%65vil.example/",
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:x",
        "/\t/evil.example",
        "/\n/evil.example",
        " //evil.example",
        "\x00/x",
        "/caf\u00e9",
        "https://app.example\u3002evil.example",
        "",
        "/" + "a" * 3000,
    ],
)
def test_tricks_are_refused(target: str) -> None:
    assert not is_safe_redirect(target, ALLOWED)
    with pytest.raises(HardenError) as caught:
        safe_redirect(target, ALLOWED)
    assert caught.value.status == 400
    assert target not in str(caught.value) or not target


@pytest.mark.parametrize(
    "target",
    [
        "/",
        "/account",
        "/a/b?next=//evil.example#top",
        "settings",
        "../up",
        "./here",
        "?page=2",
        "#section",
        "a/b:c",
        "https://app.example",
        "https://app.example/dashboard?x=1",
        "HTTPS://APP.EXAMPLE/x",
        "http://app.example/",
        "https://acme.tenants.example/home",
        "https://admin.example:8443/",
        "/%2F%2Fevil.example",
    ],
)
def test_site_paths_relative_references_and_allowed_hosts_are_followed(target: str) -> None:
    assert is_safe_redirect(target, ALLOWED)
    response = safe_redirect(target, ALLOWED)
    assert response.status_code == 303
    assert response.headers["location"]


def test_require_https_refuses_plain_http_hosts() -> None:
    assert not is_safe_redirect("http://app.example/", ALLOWED, require_https=True)
    assert is_safe_redirect("https://app.example/", ALLOWED, require_https=True)


def test_fallback_replaces_a_refused_target_and_must_itself_be_safe() -> None:
    response = safe_redirect("//evil.example", ALLOWED, fallback="/home")
    assert response.headers["location"] == "/home"
    with pytest.raises(ValueError, match="fallback"):
        safe_redirect("/ok", ALLOWED, fallback="//evil.example")


@pytest.mark.parametrize("hosts", [["https://app.example"], ["app.example/path"], ["a b"]])
def test_allowed_hosts_must_be_hosts(hosts: list[str]) -> None:
    with pytest.raises(ValueError, match="allowed host"):
        is_safe_redirect("/", hosts)


def test_a_single_string_of_hosts_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        is_safe_redirect("/", "app.example")


def test_bad_status_code_is_refused() -> None:
    with pytest.raises(ValueError, match="status_code"):
        safe_redirect("/", status_code=200)


def test_a_refused_redirect_is_a_400_problem_in_an_app() -> None:
    async def login(request: Request) -> Response:
        return safe_redirect(request.query_params.get("next", "/"), ALLOWED)

    app = Starlette(routes=[Route("/login", login)])
    install(app, HardenSettings(auth_mode="off"))
    client = TestClient(app, follow_redirects=False)
    refused = client.get("/login", params={"next": "//evil.example"})
    assert refused.status_code == 400
    assert refused.json()["code"] == "BAD_REQUEST"
    followed = client.get("/login", params={"next": "/inbox"})
    assert followed.status_code == 303
    assert followed.headers["location"] == "/inbox"


_PIECES = [
    *"/\\:@.?#%-_ab",
    "evil",
    "app.example",
    "https",
    "http",
    "//",
    "\t",
    "\n",
    " ",
    "\u3002",
    "%2f",
    "[::1]",
    "80",
]
_TRICKY = st.lists(st.sampled_from(_PIECES), max_size=14).map("".join)


def browser_host(target: str) -> str | None:
    """Where a browser goes from BASE, for targets that passed (no backslash or whitespace)."""
    return urlsplit(urljoin(BASE, target)).hostname


@settings(max_examples=400, deadline=None)
@given(_TRICKY)
@example("https:\\\\evil.example")
@example("/.//evil.example")
@example("http:/\\/evil.example")
def test_an_accepted_target_never_leaves_for_a_host_not_allowed(target: str) -> None:
    if not is_safe_redirect(target, ["app.example"]):
        return
    assert not any(char in target for char in "\\\t\n \u3002")
    assert not target.startswith("//")
    assert browser_host(target) in {"service.example", "app.example"}
