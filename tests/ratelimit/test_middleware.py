from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient, WebSocketDenialResponse
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from structlog.testing import capture_logs

from hardenkit.auth.principal import Principal
from hardenkit.context import principal_var
from hardenkit.proxies import TrustedProxyMiddleware
from hardenkit.ratelimit import MemoryStore, RateLimitMiddleware, RateLimitRule, keys
from hardenkit.ratelimit.decision import RateLimitDecision
from hardenkit.ratelimit.limiter import key_digest


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/", hello),
            Route("/auth/token", hello, methods=["POST"]),
            Route("/healthz", hello),
            Route("/items", hello, methods=["GET", "POST"]),
        ]
    )


def client_for(app: Any, peer: str = "203.0.113.5") -> TestClient:
    return TestClient(app, client=(peer, 50000))


def limited(*rules: RateLimitRule, store: MemoryStore | None = None, **options: Any) -> Any:
    return RateLimitMiddleware(
        starlette_app(),
        rules=list(rules),
        store=store if store is not None else MemoryStore(),
        **options,
    )


def test_allowed_responses_report_the_limit_in_draft_ietf_ratelimit_fields() -> None:
    client = client_for(limited(RateLimitRule("ip", "10/minute")))
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["ratelimit-policy"] == '"ip";q=10;w=60'
    assert response.headers["ratelimit"] == '"ip";r=9;t=6'
    assert "x-ratelimit-limit" not in response.headers


def test_legacy_headers_are_sent_when_enabled() -> None:
    client = client_for(limited(RateLimitRule("ip", "10/minute"), legacy_headers=True))
    response = client.get("/")
    assert response.headers["x-ratelimit-limit"] == "10"
    assert response.headers["x-ratelimit-remaining"] == "9"
    assert response.headers["x-ratelimit-reset"] == "6"


def test_a_refusal_is_a_429_problem_with_retry_after_an_audit_event_and_a_metric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorded: list[tuple[int, dict[str, str]]] = []

    class Counter:
        def add(self, amount: int, attributes: dict[str, str]) -> None:
            recorded.append((amount, attributes))

    monkeypatch.setattr("hardenkit.ratelimit._observe.ratelimit_decisions", Counter())
    client = client_for(limited(RateLimitRule("ip", "2/minute")))
    assert [client.get("/").status_code for _ in range(2)] == [200, 200]
    with capture_logs() as logs:
        refused = client.get("/")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "30"
    assert refused.headers["ratelimit"] == '"ip";r=0;t=60'
    body = refused.json()
    assert body["code"] == "RATE_LIMITED"
    assert body["status"] == 429
    assert body["retry_after"] == 30
    audits = [entry for entry in logs if entry.get("audit")]
    assert len(audits) == 1
    assert audits[0]["event_type"] == "rate_limited"
    assert audits[0]["outcome"] == "denied"
    assert audits[0]["client_ip"] == "203.0.113.5"
    assert audits[0]["details"]["rule"] == "ip"
    outcomes = [attributes["outcome"] for _, attributes in recorded]
    assert outcomes == ["allowed", "allowed", "denied"]
    assert recorded[-1][1] == {"rule": "ip", "outcome": "denied", "backend": "memory"}


def test_health_paths_are_exempt_by_default() -> None:
    client = client_for(limited(RateLimitRule("ip", "1/hour")))
    assert [client.get("/healthz").status_code for _ in range(5)] == [200] * 5
    assert client.get("/").status_code == 200
    assert client.get("/").status_code == 429


def test_the_strict_rule_applies_only_to_its_paths_and_methods() -> None:
    app = limited(
        RateLimitRule("auth", "2/15m", paths=["/auth/*"], methods=["post"]),
        RateLimitRule("ip", "100/15m"),
    )
    client = client_for(app)
    assert [client.post("/auth/token").status_code for _ in range(3)] == [200, 200, 429]
    assert client.post("/items").status_code == 200


def test_a_get_rule_counts_head_which_the_same_handler_serves() -> None:
    """Round 13: a rule for GET let HEAD through after its 429, and Starlette answers
    HEAD with the GET handler (a guess told apart by the status alone)."""
    app = limited(RateLimitRule("search", "2/15m", paths=["/items"], methods=["get"]))
    client = client_for(app)
    assert [client.get("/items").status_code for _ in range(2)] == [200, 200]
    assert client.head("/items").status_code == 429
    assert client.post("/items").status_code == 200  # not a GET


def test_every_matching_rule_must_allow_and_every_one_is_listed() -> None:
    app = limited(RateLimitRule("auth", "3/15m", paths=["/auth/*"]), RateLimitRule("ip", "100/15m"))
    client = client_for(app)
    response = client.post("/auth/token")
    # draft-ietf-httpapi-ratelimit-headers: one list member per policy that applied.
    assert response.headers["ratelimit"] == '"auth";r=2;t=300, "ip";r=99;t=9'
    assert response.headers["ratelimit-policy"] == '"auth";q=3;w=900, "ip";q=100;w=900'
    assert client.get("/").headers["ratelimit"] == '"ip";r=98;t=18'


def test_a_refusal_by_an_earlier_rule_does_not_charge_later_rules() -> None:
    store = MemoryStore()
    app = limited(
        RateLimitRule("auth", "1/15m", paths=["/auth/*"]), RateLimitRule("ip", "5/15m"), store=store
    )
    client = client_for(app)
    assert [client.post("/auth/token").status_code for _ in range(4)] == [200, 429, 429, 429]
    assert client.get("/").headers["ratelimit"] == '"ip";r=3;t=360'


def test_spoofed_forwarded_for_from_an_untrusted_peer_does_not_change_the_key() -> None:
    app = limited(RateLimitRule("ip", "2/hour"), trusted_proxies=["10.0.0.0/8"])
    client = client_for(app, peer="203.0.113.5")
    statuses = [
        client.get("/", headers={"X-Forwarded-For": f"198.51.100.{index}"}).status_code
        for index in range(4)
    ]
    assert statuses == [200, 200, 429, 429]
    forwarded = client.get("/", headers={"Forwarded": "for=192.0.2.1"})
    assert forwarded.status_code == 429


def test_forwarded_for_from_a_trusted_proxy_keys_on_the_real_client() -> None:
    app = limited(RateLimitRule("ip", "2/hour"), trusted_proxies=["10.0.0.0/8"])
    client = client_for(app, peer="10.1.2.3")
    for client_ip in ("198.51.100.1", "198.51.100.2"):
        statuses = [
            client.get("/", headers={"X-Forwarded-For": f"192.0.2.99, {client_ip}"}).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]


def test_behind_trusted_proxy_middleware_the_resolved_client_ip_is_used() -> None:
    inner = RateLimitMiddleware(starlette_app(), rules=[RateLimitRule("ip", "1/hour")])
    app = TrustedProxyMiddleware(inner, trusted_proxies=["10.0.0.0/8"])
    client = client_for(app, peer="10.0.0.1")
    assert client.get("/", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 200
    assert client.get("/", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
    assert client.get("/", headers={"X-Forwarded-For": "198.51.100.2"}).status_code == 200


def test_ipv6_clients_are_counted_per_64_network() -> None:
    app = limited(RateLimitRule("ip", "2/hour"))
    first = client_for(app, peer="2001:db8:1:2::1")
    second = client_for(app, peer="2001:db8:1:2:ffff::9")
    other_network = client_for(app, peer="2001:db8:1:3::1")
    assert first.get("/").status_code == 200
    assert second.get("/").status_code == 200
    assert first.get("/").status_code == 429
    assert other_network.get("/").status_code == 200


def test_client_ip_key_groups_ipv6_and_unmaps_ipv4() -> None:
    assert keys.client_ip({"client": ("2001:db8::1", 1)}) == "2001:db8::/64"
    assert keys.ClientIpKey(48)({"client": ("2001:db8:0:ffff::1", 1)}) == "2001:db8::/48"
    assert keys.client_ip({"client": ("::ffff:192.0.2.1", 1)}) == "192.0.2.1"
    assert keys.client_ip({"client": ("192.0.2.1", 1)}) == "192.0.2.1"
    assert keys.client_ip({}) == keys.UNKNOWN_CLIENT  # no address: one shared bucket


def test_a_tenant_rule_counts_per_verified_tenant_and_skips_requests_without_one() -> None:
    store = MemoryStore()
    inner = RateLimitMiddleware(
        starlette_app(), rules=[RateLimitRule("tenant", "2/hour", key=keys.tenant)], store=store
    )

    def as_tenant(tenant: str | None) -> Any:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            token = principal_var.set(Principal("user", tenant=tenant) if tenant else None)
            try:
                await inner(scope, receive, send)
            finally:
                principal_var.reset(token)

        return app

    acme, globex, anonymous = (client_for(as_tenant(t)) for t in ("acme", "globex", None))
    assert [acme.get("/").status_code for _ in range(3)] == [200, 200, 429]
    assert globex.get("/").status_code == 200
    no_tenant = [anonymous.get("/") for _ in range(5)]
    assert [response.status_code for response in no_tenant] == [200] * 5
    assert "ratelimit" not in no_tenant[0].headers


def test_combined_keys_do_not_collide_through_separators() -> None:
    both = keys.combine(lambda scope: scope["a"], lambda scope: scope["b"])
    assert both({"a": "x:1", "b": "2"}) != both({"a": "x", "b": "1:2"})
    assert both({"a": None, "b": "2"}) is None


def test_no_client_input_reaches_a_storage_key_unhashed() -> None:
    store = MemoryStore()
    app = limited(RateLimitRule("route", "5/hour", key=keys.route), store=store)
    client_for(app).get("/" + "a" * 5000)
    stored = "route:" + key_digest("GET /" + "a" * 5000)
    assert len(store) == 1
    assert stored in store
    assert len(stored) < 64


@pytest.mark.parametrize("down", ["open", "closed"])
async def test_open_and_closed_rules_while_redis_is_down(down: str) -> None:
    class DownStore:
        async def decide(
            self, key: str, rate: Any, cost: int, when_down: str = "fallback"
        ) -> RateLimitDecision:
            assert when_down == down
            if down == "open":
                return RateLimitDecision(
                    True, rate.count, rate.burst, 0.0, 0.0, rate.period_seconds, "none"
                )
            return RateLimitDecision(
                False, rate.count, 0, 2.0, 2.0, rate.period_seconds, "none", unavailable=True
            )

    app = RateLimitMiddleware(
        starlette_app(), rules=[RateLimitRule("ip", "1/hour", when_down=down)], store=DownStore()
    )  # type: ignore[arg-type]
    response = client_for(app).get("/")
    if down == "open":
        assert response.status_code == 200
    else:
        assert response.status_code == 503
        assert response.json()["code"] == "SERVICE_UNAVAILABLE"
        assert response.headers["retry-after"] == "2"


async def test_non_http_scopes_pass_through_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    middleware = RateLimitMiddleware(app, rules=[RateLimitRule("ip", "1/hour")])
    for _ in range(3):
        await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"] * 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rules": []}, "at least one rule"),
        ({"rules": [RateLimitRule("ip", "1/s"), RateLimitRule("ip", "2/s")]}, "unique"),
        (
            {"rules": [RateLimitRule("ip", "1/s")], "trusted_proxies": ["not-a-cidr"]},
            "HARDENKIT_TRUSTED_PROXIES",
        ),
    ],
)
def test_bad_options_fail_at_construction(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimitMiddleware(starlette_app(), **options)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"name": "Bad Name", "rate": "1/s"}, "must match"),
        ({"name": "ok", "rate": "1/fortnight"}, "not a rate"),
        ({"name": "ok", "rate": "1/s", "cost": 2}, "cost"),
        ({"name": "ok", "rate": "1/s", "when_down": "maybe"}, "when_down"),
        ({"name": "ok", "rate": "1/s", "paths": ["/a*b"]}, "only allowed at the end"),
    ],
)
def test_bad_rules_fail_at_construction(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RateLimitRule(**arguments)


def test_problem_body_never_echoes_the_client_key() -> None:
    app = limited(RateLimitRule("ip", "1/hour"))
    client = client_for(app)
    client.get("/")
    refused = client.get("/")
    assert "203.0.113.5" not in json.dumps(refused.json())


async def greet_socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("connected")
    await websocket.close()


def with_socket(*rules: RateLimitRule) -> Any:
    app = starlette_app()
    app.router.routes.append(WebSocketRoute("/ws", greet_socket))
    return RateLimitMiddleware(app, rules=list(rules), store=MemoryStore())


def test_a_websocket_handshake_over_the_limit_is_refused_before_it_is_accepted() -> None:
    client = client_for(with_socket(RateLimitRule("ip", "2/minute")))
    for _ in range(2):
        with client.websocket_connect("/ws") as socket:
            assert socket.receive_text() == "connected"
    with (
        capture_logs() as logs,
        pytest.raises(WebSocketDenialResponse) as denied,
        client.websocket_connect("/ws"),
    ):
        pass
    assert denied.value.status_code == 429
    assert denied.value.headers["retry-after"] == "30"
    assert denied.value.headers["content-type"] == "application/problem+json"
    assert denied.value.json()["code"] == "RATE_LIMITED"
    assert [entry["event_type"] for entry in logs if entry.get("audit")] == ["rate_limited"]
    assert client.get("/").status_code == 429  # one budget per client, HTTP and WebSocket


def test_an_admitted_websocket_handshake_reports_the_limit_in_its_accept() -> None:
    client = client_for(with_socket(RateLimitRule("ip", "10/minute")))
    with client.websocket_connect("/ws") as socket:
        assert socket.receive_text() == "connected"
        headers = dict(socket.extra_headers or [])
    assert headers[b"ratelimit-policy"] == b'"ip";q=10;w=60'
    assert headers[b"ratelimit"] == b'"ip";r=9;t=6'


def test_a_websocket_handshake_is_a_get_to_method_restricted_rules() -> None:
    client = client_for(
        with_socket(
            RateLimitRule("login", "1/minute", methods=["POST"]), RateLimitRule("ip", "5/m")
        )
    )
    for _ in range(3):
        with client.websocket_connect("/ws") as socket:
            assert socket.receive_text() == "connected"
    # Counted by the rule for every method (three handshakes and this request)...
    assert client.get("/").headers["ratelimit"].startswith('"ip";r=1;')
    # ...and not by the POST rule, whose one unit is still there.
    assert client.post("/auth/token").status_code == 200


async def test_a_refused_handshake_on_a_server_without_denial_responses_is_closed() -> None:
    reached: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"])

    app = RateLimitMiddleware(inner, rules=[RateLimitRule("ip", "1/minute")], store=MemoryStore())
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "path": "/ws",
        "headers": [],
        "query_string": b"",
        "client": ("203.0.113.5", 50000),
    }
    await app(dict(scope), receive, send)
    await app(dict(scope), receive, send)
    assert reached == ["/ws"]
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]


@pytest.mark.parametrize("client", [None, ("", "0")], ids=["uvicorn", "granian"])
async def test_requests_without_a_client_address_share_one_bucket_and_say_so_once(
    client: tuple[str, str] | None,
) -> None:
    """uvicorn --uds behind a proxy that is not trusted: no address to count by. Skipping
    the rule turned every per-ip limit off, the login limit included (attacker review).
    granian on a unix socket gives an empty host: the same, and said (round 13)."""
    keys._warned_unknown = False
    sent: list[int] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse("ok")(scope, receive, send)

    limited = RateLimitMiddleware(
        app, rules=[RateLimitRule("ip", "2/hour", key=keys.client_ip)], store=MemoryStore()
    )

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent.append(message["status"])

    with capture_logs() as logs:
        for forwarded in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
            scope = {
                "type": "http",
                "method": "GET",
                "path": "/login",
                "root_path": "",
                "query_string": b"",
                "headers": [(b"x-forwarded-for", forwarded.encode())],
                "client": client,
            }
            await limited(scope, receive, send)
    assert sent == [200, 200, 429]
    warnings = [log for log in logs if log["event"] == "rate_limit_client_unknown"]
    assert len(warnings) == 1
    assert warnings[0]["setting"] == "HARDENKIT_TRUSTED_PROXIES"
