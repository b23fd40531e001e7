"""FastAPI's /docs, /redoc and OAuth2 redirect pages render under the preset's strict policy.

The check reads the HTML FastAPI actually serves and the policy sent with it, and does
what a browser does: every inline script must match the nonce or a hash in script-src,
every external script, stylesheet, image and font must come from an allowed source.
"""

from __future__ import annotations

import base64
import hashlib
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from hardenkit import HardenSettings, install
from hardenkit.headers import HeaderPolicy, SecurityHeadersMiddleware, fastapi_docs_routes


class PageAssets(HTMLParser):
    """Collects what a page loads and runs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.inline_scripts: list[tuple[str, str | None]] = []  # (text, nonce)
        self.script_urls: list[str] = []
        self.stylesheet_urls: list[str] = []
        self.image_urls: list[str] = []
        self.inline_styles = 0
        self._script: tuple[list[str], str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script":
            if values.get("src"):
                self.script_urls.append(str(values["src"]))
            else:
                self._script = ([], values.get("nonce"))
        elif tag == "link":
            rel = (values.get("rel") or "").lower()
            if "stylesheet" in rel:
                self.stylesheet_urls.append(str(values["href"]))
            elif "icon" in rel:
                self.image_urls.append(str(values["href"]))
        elif tag == "style":
            self.inline_styles += 1

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script[0].append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._script is not None:
            self.inline_scripts.append(("".join(self._script[0]), self._script[1]))
            self._script = None


class ReceivedPolicy:
    """A CSP header as received (nonce filled in), directive by directive."""

    def __init__(self, header: str) -> None:
        self.directives: dict[str, tuple[str, ...]] = {}
        for part in header.split(";"):
            words = part.split()
            if words:
                self.directives[words[0]] = tuple(words[1:])

    def sources(self, directive: str) -> tuple[str, ...]:
        return self.directives.get(directive, ())


def source_allows(sources: tuple[str, ...], url: str) -> bool:
    """A browser's host-source matching, for the absolute and same-origin URLs docs use."""
    parts = urlsplit(url)
    if not parts.scheme:
        return "'self'" in sources
    for source in sources:
        if source == f"{parts.scheme}:":
            return True
        allowed = urlsplit(source)
        if allowed.scheme == parts.scheme and allowed.netloc == parts.netloc:
            return True
    return False


def assert_page_renders_under(html: str, csp: ReceivedPolicy) -> PageAssets:
    assets = PageAssets()
    assets.feed(html)
    scripts = csp.sources("script-src")
    assert "'unsafe-inline'" not in scripts
    assert "'unsafe-eval'" not in scripts
    for text, nonce in assets.inline_scripts:
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        allowed = f"'sha256-{digest}'" in scripts or (
            nonce is not None and f"'nonce-{nonce}'" in scripts
        )
        assert allowed, f"inline script not allowed: {text[:60]!r}"
    for url in assets.script_urls:
        assert source_allows(scripts, url), url
    for url in assets.stylesheet_urls:
        assert source_allows(csp.sources("style-src"), url), url
    for url in assets.image_urls:
        assert source_allows(csp.sources("img-src"), url), url
    if assets.inline_styles:
        assert "'unsafe-inline'" in csp.sources("style-src")
    return assets


def docs_app(**fastapi_options: object) -> FastAPI:
    app = FastAPI(title="Orders", **fastapi_options)  # type: ignore[arg-type]

    @app.get("/items")
    async def items() -> list[int]:
        return [1]

    install(app, HardenSettings(auth_mode="off"))
    return app


def test_swagger_ui_page_renders_under_the_preset() -> None:
    response = TestClient(docs_app(), base_url="https://testserver").get("/docs")
    assert response.status_code == 200
    csp = ReceivedPolicy(response.headers["content-security-policy"])
    assets = assert_page_renders_under(response.text, csp)
    assert len(assets.inline_scripts) == 1  # SwaggerUIBundle({...}) is allowed by its hash
    assert assets.script_urls == [
        "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"
    ]
    assert source_allows(csp.sources("connect-src"), "/openapi.json")
    assert csp.sources("frame-ancestors") == ("'none'",)
    assert csp.sources("object-src") == ("'none'",)
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["strict-transport-security"]
    assert int(response.headers["content-length"]) == len(response.content)


def test_swagger_ui_with_oauth_settings_and_parameters_still_renders() -> None:
    app = docs_app(
        swagger_ui_parameters={"deepLinking": False, "syntaxHighlight": {"theme": "obsidian"}},
        swagger_ui_init_oauth={"clientId": "orders-ui"},
    )
    response = TestClient(app, root_path="/orders").get("/docs")
    assert "/orders/openapi.json" in response.text
    assert response.status_code == 200
    assert_page_renders_under(
        response.text, ReceivedPolicy(response.headers["content-security-policy"])
    )


def test_redoc_page_renders_under_the_preset() -> None:
    response = TestClient(docs_app()).get("/redoc")
    assert response.status_code == 200
    csp = ReceivedPolicy(response.headers["content-security-policy"])
    assets = assert_page_renders_under(response.text, csp)
    assert assets.script_urls == [
        "https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"
    ]
    assert "blob:" in csp.sources("worker-src")  # ReDoc's search worker
    assert "https://fonts.gstatic.com" in csp.sources("font-src")


def test_oauth2_redirect_page_renders_under_the_preset() -> None:
    response = TestClient(docs_app()).get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assets = assert_page_renders_under(
        response.text, ReceivedPolicy(response.headers["content-security-policy"])
    )
    assert len(assets.inline_scripts) == 1


def test_an_injected_script_on_another_page_is_not_hashed_into_the_policy() -> None:
    app = docs_app()

    @app.get("/page")
    async def page() -> object:
        from fastapi.responses import HTMLResponse

        return HTMLResponse("<script>alert(1)</script>")

    response = TestClient(app).get("/page")
    assert "sha256-" not in response.headers["content-security-policy"]


def test_moved_or_disabled_docs_follow_the_app_settings() -> None:
    moved = docs_app(docs_url="/api-docs", redoc_url=None)
    client = TestClient(moved)
    assert "cdn.jsdelivr.net" in client.get("/api-docs").headers["content-security-policy"]
    assert fastapi_docs_routes(moved).keys() == {"/api-docs", "/docs/oauth2-redirect"}
    assert fastapi_docs_routes(FastAPI(openapi_url=None)) == {}


def test_without_the_preset_the_docs_page_script_is_blocked() -> None:
    app = FastAPI()
    app.add_middleware(SecurityHeadersMiddleware, policy=HeaderPolicy())
    response = TestClient(app).get("/docs")
    csp = ReceivedPolicy(response.headers["content-security-policy"])
    with pytest.raises(AssertionError, match="not allowed"):
        assert_page_renders_under(response.text, csp)


def test_a_page_too_large_to_hash_keeps_its_inline_scripts_blocked() -> None:
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    from hardenkit.headers import fastapi_docs_policy

    async def big(request: object) -> HTMLResponse:
        return HTMLResponse("<script>run()</script>" + "x" * 2000)

    policy = fastapi_docs_policy(HeaderPolicy(hash_max_bytes=1000))
    app = SecurityHeadersMiddleware(Starlette(routes=[Route("/big", big)]), policy=policy)
    response = TestClient(app).get("/big")
    assert response.status_code == 200
    assert len(response.content) == 2022
    assert "sha256-" not in response.headers["content-security-policy"]
