"""A server that rewrote ``scope["client"]`` before hardenkit is noticed, and only then."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from structlog.testing import capture_logs
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from hardenkit import HardenSettings, install
from hardenkit._server_rewrite import ServerRewriteDetector
from hardenkit.health import HealthStatus
from hardenkit.proxies import TrustedProxyMiddleware
from tests.support.work import python_calls


def request(client: tuple[str, int] | None, *headers: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "client": client,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


def test_a_client_rewritten_from_its_own_x_forwarded_for_is_detected_and_logged_once() -> None:
    detector = ServerRewriteDetector()
    rewritten = request(("198.51.100.7", 0), ("X-Forwarded-For", "198.51.100.7"))
    with capture_logs() as logs:
        assert detector.inspect_request(rewritten)
        assert detector.inspect_request(rewritten)
    warnings = [log for log in logs if log["event"] == "server_rewrote_client"]
    assert len(warnings) == 1
    assert warnings[0]["log_level"] == "warning"
    assert "--no-proxy-headers" in warnings[0]["fix"]
    assert "HARDENKIT_TRUSTED_PROXIES" in warnings[0]["fix"]
    assert detector.rewritten_requests == 2


def test_a_client_rewritten_from_forwarded_is_detected_whatever_the_spelling() -> None:
    detector = ServerRewriteDetector()
    header = ("Forwarded", 'for="[2001:DB8::0:1]";proto=https')
    assert detector.inspect_request(request(("2001:db8::1", 0), header))


async def test_uvicorn_keeping_a_hops_port_is_detected_on_a_request_without_lifespan() -> None:
    """Attacker review: with ``X-Forwarded-For: 203.0.113.9:4444`` uvicorn keeps the
    header's port, so the client looks like a real peer. Round 14: matching such a
    client against its own header let any client fake a detection (its own address and
    source port), so the server is looked for among the callers instead: at startup,
    or on the first request when no lifespan ran."""
    app = Starlette(routes=[Route("/", whoami)])
    kit = install(app, HardenSettings(auth_mode="off"))
    served = ProxyHeadersMiddleware(app, trusted_hosts="*")  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=served)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        response = await client.get("/", headers={"X-Forwarded-For": "203.0.113.9:4444"})
    assert response.json() == {"client": "203.0.113.9"}  # the header's, port kept
    assert kit.server_rewrite.detected_by is not None
    assert "uvicorn" in kit.server_rewrite.detected_by


class _Layer:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


async def pass_through(request: Request, call_next: Any) -> Response:
    response: Response = await call_next(request)
    return response


class _VirtualHost:
    """Copies the scope with another ``server`` (round 17: the match on it failed)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app({**scope, "server": ("public.example", 443)}, receive, send)


class _AbstractSocket:
    """What uvicorn gives on an abstract unix socket: no ``server`` (round 17)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        scope["server"] = None
        await self.app(scope, receive, send)


@pytest.mark.parametrize(
    "shape",
    [
        "base_http_middleware_around_a_mount",
        "deep_wrapping",
        "virtual_host_copy",
        "abstract_unix_socket",
    ],
)
async def test_uvicorn_keeping_a_hops_port_is_detected_through_a_task_or_deep_wrapping(
    shape: str,
) -> None:
    """Round 15: a ``BaseHTTPMiddleware`` runs the app in a task of its own, and 70
    layers outran the frame walk: uvicorn's middleware went unseen, and rotating
    ``X-Forwarded-For: a.b.c.d:port`` gave a fresh bucket each time, nothing said."""
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.routing import Mount

    hardened = Starlette(routes=[Route("/", whoami)])
    kit = install(hardened, HardenSettings(auth_mode="off"))
    outer: Any
    if shape == "deep_wrapping":
        outer = hardened
        for _ in range(70):
            outer = _Layer(outer)
    else:
        outer = Starlette(routes=[Mount("/", hardened)])
        outer.add_middleware(BaseHTTPMiddleware, dispatch=pass_through)
        if shape == "virtual_host_copy":
            outer = _VirtualHost(outer)
    if shape == "abstract_unix_socket":
        outer = _AbstractSocket(outer)
    served = ProxyHeadersMiddleware(outer, trusted_hosts="*")
    if shape == "abstract_unix_socket":
        served = _AbstractSocket(served)
    transport = httpx.ASGITransport(app=served)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        response = await client.get("/", headers={"X-Forwarded-For": "203.0.113.9:4444"})
    assert response.json() == {"client": "203.0.113.9"}
    assert kit.server_rewrite.detected_by is not None


@contextlib.asynccontextmanager
async def another_server_in_flight(server: tuple[str, int] | None) -> AsyncIterator[None]:
    """A second uvicorn server of the process (proxy headers on, trusting all) serving a
    request on socket ``server`` while the block runs."""
    waiting = asyncio.Event()

    async def admin(scope: Any, receive: Any, send: Any) -> None:
        await waiting.wait()

    other = ProxyHeadersMiddleware(admin, trusted_hosts="*")  # type: ignore[arg-type]
    other_scope = {**request(("127.0.0.1", 40000)), "server": server}
    admin_task = asyncio.ensure_future(other(other_scope, None, None))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    try:
        yield
    finally:
        waiting.set()
        await admin_task


async def test_another_servers_proxy_headers_in_the_same_process_are_not_this_apps() -> None:
    """Round 16: an admin app on a second uvicorn server of the process (defaults: proxy
    headers on) sat in a task inside its ProxyHeadersMiddleware, and the look through
    the loop's tasks took it for this app's server."""
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.routing import Mount

    hardened = Starlette(routes=[Route("/", whoami)])
    kit = install(hardened, HardenSettings(auth_mode="off"))
    outer = Starlette(routes=[Mount("/", hardened)])
    outer.add_middleware(BaseHTTPMiddleware, dispatch=pass_through)
    transport = httpx.ASGITransport(app=outer)
    async with (
        another_server_in_flight(("127.0.0.1", 9100)),
        httpx.AsyncClient(transport=transport, base_url="http://service") as client,
    ):
        await client.get("/", headers={"X-Forwarded-For": "203.0.113.9:4444"})
    assert kit.server_rewrite.detected_by is None


def test_a_client_cannot_make_itself_look_rewritten() -> None:
    """Round 14: ``X-Forwarded-For: <its ip>:<its source port>`` degraded readiness on a
    correctly configured server; an empty hop matched granian's unix-socket client."""
    detector = ServerRewriteDetector()
    assert not detector.inspect_request(
        request(("198.51.100.7", 51234), ("X-Forwarded-For", "198.51.100.7:51234"))
    )
    for header in (("X-Forwarded-For", ",, 203.0.113.6"), ("Forwarded", "proto=https")):
        assert not detector.inspect_request(request(("", "0"), header))  # type: ignore[arg-type]
        assert not detector.inspect_request(request(("", 0), header))
    assert detector.detected_by is None


@pytest.mark.parametrize(
    ("client", "header"),
    [
        # hypercorn's ProxyFixMiddleware and granian's proxy headers keep the header's
        # text as the client, with port 0 (round 13: these went unnoticed, each value
        # its own rate-limit bucket).
        (("x8", 0), ("X-Forwarded-For", "x8")),
        (("203.0.113.9:4444", 0), ("X-Forwarded-For", "203.0.113.9:4444")),
        (('"[2001:db8::1]:4007"', 0), ("Forwarded", 'for="[2001:db8::1]:4007"')),
        (("x9", 0), ("Forwarded", "for=x9")),
        (("203.0.113.9", "0"), ("X-Forwarded-For", "203.0.113.9")),  # a port as text
    ],
)
def test_a_client_copied_from_the_header_by_other_servers_is_detected(
    client: tuple[str, object], header: tuple[str, str]
) -> None:
    assert ServerRewriteDetector().inspect_request(request(client, header))  # type: ignore[arg-type]


def test_a_real_peer_is_never_taken_for_a_rewrite() -> None:
    detector = ServerRewriteDetector()
    # A TCP peer has a port, even when a client lists the proxy's address in its header.
    assert not detector.inspect_request(
        request(("10.0.0.2", 51234), ("X-Forwarded-For", "10.0.0.2"))
    )
    assert not detector.inspect_request(
        request(("10.0.0.2", 51234), ("X-Forwarded-For", "10.0.0.2:4444"))
    )
    # No forwarding header, an address not in it, or no client at all: nothing to see.
    assert not detector.inspect_request(request(("198.51.100.7", 0)))
    assert not detector.inspect_request(
        request(("198.51.100.7", 0), ("X-Forwarded-For", "1.2.3.4"))
    )
    assert not detector.inspect_request(request(None, ("X-Forwarded-For", "1.2.3.4")))
    assert not detector.inspect_request(request(("x8", 0), ("X-Forwarded-For", "x9")))
    assert not detector.inspect_request(  # an in-process client (TestClient) has a port
        request(("testclient", 50000), ("X-Forwarded-For", "testclient"))
    )
    assert detector.detected_by is None


async def test_hardenkits_own_resolution_is_not_taken_for_a_server_rewrite() -> None:
    inner = ServerRewriteDetector()

    async def app(scope: dict[str, Any], receive: object, send: object) -> None:
        inner.inspect_request(scope)

    stack = TrustedProxyMiddleware(app, trusted_proxies=["10.0.0.0/8"])  # type: ignore[arg-type]
    await stack(request(("10.0.0.2", 5000), ("X-Forwarded-For", "198.51.100.4")), None, None)  # type: ignore[arg-type]
    assert stack.detector.detected_by is None
    assert inner.detected_by is None


async def _lifespan(app: Any) -> None:
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: dict[str, Any]) -> None:
        pass

    await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)


async def test_uvicorns_proxy_headers_middleware_is_detected_at_startup() -> None:
    detector = ServerRewriteDetector()
    hardened = TrustedProxyMiddleware(Starlette(), detector=detector)
    with capture_logs() as logs:
        await _lifespan(ProxyHeadersMiddleware(hardened, trusted_hosts="127.0.0.1"))  # type: ignore[arg-type]
    assert detector.detected_by is not None
    assert "uvicorn" in detector.detected_by
    assert [log["event"] for log in logs].count("server_rewrote_client") == 1
    result = await detector.health_check()
    assert result.status is HealthStatus.DEGRADED
    assert result.detail["client_resolved_by"] == "server"


async def test_uvicorn_proxy_headers_trusting_nobody_is_not_a_rewrite() -> None:
    detector = ServerRewriteDetector()
    hardened = TrustedProxyMiddleware(Starlette(), detector=detector)
    await _lifespan(ProxyHeadersMiddleware(hardened, trusted_hosts=""))  # type: ignore[arg-type]
    await _lifespan(hardened)
    assert detector.detected_by is None
    assert (await detector.health_check()).status is HealthStatus.HEALTHY


async def whoami(request: Request) -> Response:
    return JSONResponse({"client": request.client.host if request.client else None})


async def test_readiness_of_an_installed_app_reports_a_rewriting_server() -> None:
    app = Starlette(routes=[Route("/", whoami)])
    install(app, HardenSettings(auth_mode="off"))
    served = ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1")  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=served, client=("127.0.0.1", 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        picked = await client.get("/", headers={"X-Forwarded-For": "198.51.100.77"})
        assert picked.json() == {"client": "198.51.100.77"}  # what the server made of it
        after = (await client.get("/readyz")).json()
    assert after["status"] == "degraded"
    assert after["checks"]["proxy_headers"]["client_resolved_by"] == "server"
    assert "--no-proxy-headers" in after["checks"]["proxy_headers"]["fix"]


_FILLER = ", ".join(["1.1.1.1"] * 40)
_TRUSTED_FILLER = ", ".join(["127.0.0.1"] * 40)


@pytest.mark.parametrize(
    ("client", "headers"),
    [
        # Round 18: the detector read the last 32 hops of both headers together, so a
        # client pushed the hop the server chose out of its window: with a Forwarded
        # header the server does not read (hypercorn legacy mode, granian)...
        (
            ("6.6.0.99", 0),
            [("X-Forwarded-For", "6.6.0.99"), ("Forwarded", ", ".join(["for=1.1.1.1"] * 40))],
        ),
        # ...with hops after the leftmost one (uvicorn and granian trusting "*")...
        (("6.6.0.99", 0), [("X-Forwarded-For", f"6.6.0.99, {_FILLER}")]),
        # ...or with trusted hops after the one the server stopped at.
        (("6.6.0.99", 0), [("X-Forwarded-For", f"6.6.0.99, {_TRUSTED_FILLER}")]),
        (("6.6.0.99", "0"), [("X-Forwarded-For", f"6.6.0.99:80, {_FILLER}")]),
        # hypercorn's modern mode splits Forwarded on every comma, quotes or not; the
        # detector read the quoted string as one hop.
        (('6.6.0.1"', 0), [("Forwarded", 'for="x,for=6.6.0.1"')]),
        (("2001:db8::1", 0), [("X-Forwarded-For", f"{_FILLER}, [2001:DB8::0:1], {_FILLER}")]),
    ],
)
def test_a_chosen_hop_is_found_wherever_the_client_puts_it(
    client: tuple[str, object], headers: list[tuple[str, str]]
) -> None:
    assert ServerRewriteDetector().inspect_request(request(client, *headers))  # type: ignore[arg-type]


def test_an_address_inside_another_hop_is_not_that_hop() -> None:
    detector = ServerRewriteDetector()
    for header in ("11.2.3.45", "1.2.3.45", "11.2.3.4", "for=x1.2.3.4", "1.2.3.4.5"):
        assert not detector.inspect_request(request(("1.2.3.4", 0), ("X-Forwarded-For", header))), (
            header
        )
    assert detector.detected_by is None


def test_a_rewritten_client_with_a_chain_longer_than_any_proxy_path_is_detected() -> None:
    """Another spelling of the address, among more hops than the detector parses: a
    port-0 client with such a header is taken as rewritten (fail toward a warning)."""
    hops = ", ".join(f"10.0.{n // 250}.{n % 250}" for n in range(300))
    header = ("X-Forwarded-For", f"0:0:0:0:0:0:0:1, {hops}")
    assert ServerRewriteDetector().inspect_request(request(("::1", 0), header))
    short = ("X-Forwarded-For", "0:0:0:0:0:0:0:1, 10.0.0.1")
    assert ServerRewriteDetector().inspect_request(request(("::1", 0), short))
    assert not ServerRewriteDetector().inspect_request(
        request(("::2", 0), ("X-Forwarded-For", "10.0.0.1"))
    )


def test_the_per_request_look_costs_the_same_for_any_size_of_header() -> None:
    """Round 18: the detector parsed Forwarded character by character, in Python, before
    cutting it to the last hops (300 ms for 1 MB), on every request of a rewriting
    server. The work is now bounded by the hops it compares, not by the header's bytes."""
    huge = ("Forwarded", ", ".join(['for="[2001:db8::1]:4711";proto=https'] * 20_000))
    with python_calls() as calls:
        assert not ServerRewriteDetector().inspect_request(request(("x7", 0), huge))
    assert calls[0] < 1_000
    with python_calls() as calls:  # more hops than parsed: a port-0 client's, rewritten
        assert ServerRewriteDetector().inspect_request(request(("198.51.100.7", 0), huge))
    assert calls[0] < 1_000


async def test_uvicorn_is_looked_for_on_the_first_request_when_the_lifespan_ran_elsewhere() -> None:
    """Round 18: a parent app running the mounted app's lifespan in a task of its own
    (asgi-lifespan's LifespanManager) passes no server middleware: the look at startup
    found nothing and was never repeated, so uvicorn keeping a hop's port went unseen."""
    hardened = Starlette(routes=[Route("/", whoami)])
    kit = install(hardened, HardenSettings(auth_mode="off"))
    await asyncio.ensure_future(_lifespan(hardened))
    assert kit.server_rewrite.detected_by is None
    served = ProxyHeadersMiddleware(hardened, trusted_hosts="*")  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=served)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        response = await client.get("/", headers={"X-Forwarded-For": "203.0.113.9:4444"})
    assert response.json() == {"client": "203.0.113.9"}
    assert kit.server_rewrite.detected_by is not None
    assert "uvicorn" in kit.server_rewrite.detected_by


async def test_another_server_on_a_unix_socket_is_not_this_apps_either() -> None:
    """Round 18 (reasoned): both servers on unix sockets have no ``server``; matching
    ``None`` with ``None`` took the other's proxy headers for this app's server. The
    first request now looks whenever the lifespan found nothing, so it must not."""
    hardened = Starlette(routes=[Route("/", whoami)])
    kit = install(hardened, HardenSettings(auth_mode="off"))
    await _lifespan(hardened)
    transport = httpx.ASGITransport(app=_AbstractSocket(hardened))  # type: ignore[arg-type]
    async with (
        another_server_in_flight(None),
        httpx.AsyncClient(transport=transport, base_url="http://service") as client,
    ):
        await client.get("/", headers={"X-Forwarded-For": "203.0.113.9:4444"})
    assert kit.server_rewrite.detected_by is None


@pytest.mark.parametrize(
    ("client", "name", "raw"),
    [
        # Round 19: hypercorn and granian strip() each hop after decoding it as latin-1,
        # which removes NBSP, NEL and \x1c-\x1f too: "\xa0rot7\xa0" became the client
        # "rot7", and the detector wanted an ASCII delimiter around it.
        (("rot7", 0), b"x-forwarded-for", "\xa0rot7\xa0".encode("latin-1")),
        (("rot7", 0), b"x-forwarded-for", "\x85rot7\x1f".encode("latin-1")),
        (("rot7", 0), b"forwarded", "for=\xa0rot7".encode("latin-1")),
        # A server that decodes the header as UTF-8 names the client in other characters
        # than its latin-1 reading.
        (("r\u00f6t7", 0), b"x-forwarded-for", "r\u00f6t7".encode()),
        # Round 20: a hop of quotes only is empty once its quotes are stripped.
        (('"""', 0), b"x-forwarded-for", b'"""'),
        (('""', 0), b"forwarded", b'for="""'),
    ],
)
def test_a_hop_set_off_by_any_whitespace_or_in_utf_8_is_found(
    client: tuple[str, int], name: bytes, raw: bytes
) -> None:
    scope = {"type": "http", "client": client, "headers": [(name, raw)]}
    assert ServerRewriteDetector().inspect_request(scope)
