from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardenkit.context import client_ip_var
from hardenkit.proxies import TrustedProxies, TrustedProxyMiddleware
from tests.support.work import python_calls


def scope(peer: str, *headers: tuple[str, str], scheme: str = "http") -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": scheme,
        "client": (peer, 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


PROXIES = TrustedProxies(["10.0.0.0/8", "fd00::/8"])
FORWARDED_PROXIES = TrustedProxies(["10.0.0.0/8", "fd00::/8"], header="forwarded")


def test_spoofed_forwarded_for_from_untrusted_peer_is_ignored() -> None:
    assert PROXIES.resolve(scope("203.0.113.7", ("X-Forwarded-For", "1.2.3.4"))) == (
        "203.0.113.7",
        "http",
    )


def test_forwarded_for_from_trusted_proxy_gives_the_client() -> None:
    assert PROXIES.resolve(scope("10.0.0.2", ("X-Forwarded-For", "198.51.100.4"))) == (
        "198.51.100.4",
        "http",
    )


def test_client_forged_hops_left_of_the_real_client_are_ignored() -> None:
    # The client sent "X-Forwarded-For: 1.1.1.1"; the edge proxy appended the real peer.
    resolved = PROXIES.resolve(
        scope("10.0.0.2", ("X-Forwarded-For", "1.1.1.1, 198.51.100.4, 10.0.0.9"))
    )
    assert resolved[0] == "198.51.100.4"


def test_several_header_lines_are_one_list() -> None:
    resolved = PROXIES.resolve(
        scope("10.0.0.2", ("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "198.51.100.4"))
    )
    assert resolved[0] == "198.51.100.4"


def test_rfc7239_forwarded_header_with_ipv6_and_proto() -> None:
    header = 'for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711";proto=https'
    assert FORWARDED_PROXIES.resolve(scope("10.1.2.3", ("Forwarded", header))) == (
        "2001:db8:cafe::17",
        "https",
    )


def test_forwarded_proto_is_believed_only_from_a_trusted_proxy() -> None:
    assert PROXIES.resolve(scope("203.0.113.7", ("X-Forwarded-Proto", "https")))[1] == "http"
    trusted = scope("10.0.0.2", ("X-Forwarded-For", "198.51.100.4"), ("X-Forwarded-Proto", "https"))
    assert PROXIES.resolve(trusted)[1] == "https"


def test_unknown_scheme_value_is_ignored() -> None:
    trusted = scope(
        "10.0.0.2", ("X-Forwarded-For", "198.51.100.4"), ("X-Forwarded-Proto", "gopher")
    )
    assert PROXIES.resolve(trusted)[1] == "http"


def test_garbage_hop_keeps_the_last_address_a_proxy_vouched_for() -> None:
    resolved = PROXIES.resolve(scope("10.0.0.2", ("X-Forwarded-For", "not-an-ip, 10.0.0.5")))
    assert resolved[0] == "10.0.0.5"


def test_no_trusted_proxies_means_the_peer() -> None:
    assert TrustedProxies().resolve(scope("10.0.0.2", ("X-Forwarded-For", "1.2.3.4")))[0] == (
        "10.0.0.2"
    )


def test_invalid_cidr_fails_at_startup_naming_the_setting() -> None:
    with pytest.raises(ValueError, match=re.escape("HARDENKIT_TRUSTED_PROXIES: 'ten.0.0.0/8'")):
        TrustedProxies(["ten.0.0.0/8"])


hop = st.one_of(
    st.ip_addresses().map(str),
    # Latin-1 digits beyond ASCII (round 18: "²" passed isdigit() and int() raised).
    st.text(alphabet='0123456789abcdef.:[]"; =\xb2\xb3\xb9\xbc', max_size=20),
)


@given(
    peer=st.ip_addresses(v=4).filter(lambda a: not a.is_private).map(str),
    hops=st.lists(hop, max_size=40),
)
def test_untrusted_peer_is_always_the_client_whatever_it_sends(peer: str, hops: list[str]) -> None:
    header = ", ".join(hops)
    for proxies in (PROXIES, FORWARDED_PROXIES):
        both = scope(peer, ("X-Forwarded-For", header), ("Forwarded", header))
        assert proxies.resolve(both) == (peer, "http")


@given(hops=st.lists(hop, max_size=40))
def test_trusted_peer_never_crashes_and_yields_an_address(hops: list[str]) -> None:
    client_ip, scheme = PROXIES.resolve(scope("10.0.0.2", ("X-Forwarded-For", ", ".join(hops))))
    assert client_ip is not None
    assert scheme == "http"


async def test_middleware_rewrites_scope_and_sets_context() -> None:
    seen: dict[str, Any] = {}

    async def app(inner_scope: dict[str, Any], receive: object, send: object) -> None:
        seen["client"] = inner_scope["client"]
        seen["scheme"] = inner_scope["scheme"]
        seen["ctx"] = client_ip_var.get()

    middleware = TrustedProxyMiddleware(app, trusted_proxies=["10.0.0.0/8"])  # type: ignore[arg-type]
    request = scope("10.0.0.2", ("X-Forwarded-For", "198.51.100.4"), ("X-Forwarded-Proto", "https"))
    await middleware(request, None, None)  # type: ignore[arg-type]
    assert seen == {"client": ("198.51.100.4", 0), "scheme": "https", "ctx": "198.51.100.4"}
    assert request["client"] == ("10.0.0.2", 5000)  # the caller's scope is not mutated
    assert client_ip_var.get() is None


def test_client_sent_forwarded_header_is_ignored_when_proxies_write_x_forwarded_for() -> None:
    # The edge proxy appended the real peer to X-Forwarded-For and passed the client's own
    # Forwarded through untouched, as nginx, ALB, HAProxy and Envoy do.
    for n in range(1, 8):
        request = scope(
            "10.0.0.2",
            ("X-Forwarded-For", "203.0.113.50"),
            ("Forwarded", f"for=198.51.100.{n};proto=https"),
        )
        assert PROXIES.resolve(request) == ("203.0.113.50", "http")


def test_client_sent_x_forwarded_headers_are_ignored_when_proxies_write_forwarded() -> None:
    request = scope(
        "10.0.0.2",
        ("Forwarded", "for=203.0.113.50;proto=http"),
        ("X-Forwarded-For", "198.51.100.1"),
        ("X-Forwarded-Proto", "https"),
    )
    assert FORWARDED_PROXIES.resolve(request) == ("203.0.113.50", "http")


def test_x_forwarded_proto_is_the_scheme_only_with_x_forwarded_for() -> None:
    request = scope(
        "10.0.0.2",
        ("Forwarded", "for=203.0.113.50;proto=https"),
        ("X-Forwarded-For", "203.0.113.50"),
        ("X-Forwarded-Proto", "http"),
    )
    assert PROXIES.resolve(request)[1] == "http"
    assert FORWARDED_PROXIES.resolve(request)[1] == "https"


def test_forwarded_scheme_is_the_proto_of_the_hop_chosen_as_client() -> None:
    # The client forged "proto=https" for its own element; the edge proxy wrote http.
    header = "for=1.1.1.1;proto=https, for=203.0.113.50;proto=http"
    assert FORWARDED_PROXIES.resolve(scope("10.0.0.2", ("Forwarded", header))) == (
        "203.0.113.50",
        "http",
    )


def test_forwarded_scheme_of_a_websocket_is_ws_or_wss() -> None:
    request = {
        **scope("10.0.0.2", ("Forwarded", "for=203.0.113.5;proto=https")),
        "type": "websocket",
    }
    assert FORWARDED_PROXIES.resolve(request) == ("203.0.113.5", "wss")


def test_unknown_forwarded_header_fails_at_startup_naming_the_setting() -> None:
    with pytest.raises(ValueError, match="HARDENKIT_FORWARDED_HEADER: 'x-real-ip'"):
        TrustedProxies(["10.0.0.0/8"], header="x-real-ip")  # type: ignore[arg-type]


public_ips = st.ip_addresses(v=4).filter(lambda a: a.is_global).map(str)
proxy_ips = st.ip_addresses(network="10.0.0.0/8").map(str)


def _forwarded_element(ip: str) -> str:
    return f'for="[{ip}]"' if ":" in ip else f"for={ip}"


@given(
    forged=st.lists(st.one_of(public_ips, proxy_ips), max_size=5),
    client=public_ips,
    proxies=st.lists(proxy_ips, max_size=4),
    other=st.text(max_size=60),
)
def test_client_is_the_right_most_untrusted_hop_whatever_the_other_header_says(
    forged: list[str], client: str, proxies: list[str], other: str
) -> None:
    chain = [*forged, client, *proxies]
    xff = scope("10.0.0.2", ("X-Forwarded-For", ", ".join(chain)), ("Forwarded", other))
    assert PROXIES.resolve(xff)[0] == client
    forwarded = ", ".join(_forwarded_element(ip) for ip in chain)
    fwd = scope(
        "10.0.0.2",
        ("Forwarded", forwarded),
        ("X-Forwarded-For", other),
        ("X-Forwarded-Proto", other),
    )
    assert FORWARDED_PROXIES.resolve(fwd) == (client, "http")


async def test_middleware_under_forwarded_ignores_a_client_x_forwarded_for() -> None:
    seen: dict[str, Any] = {}

    async def app(inner_scope: dict[str, Any], receive: object, send: object) -> None:
        seen["client"] = inner_scope["client"]
        seen["ctx"] = client_ip_var.get()

    middleware = TrustedProxyMiddleware(
        app,  # type: ignore[arg-type]
        trusted_proxies=["10.0.0.0/8"],
        forwarded_header="forwarded",
    )
    request = scope("10.0.0.2", ("X-Forwarded-For", "1.2.3.4"), ("Forwarded", "for=198.51.100.4"))
    await middleware(request, None, None)  # type: ignore[arg-type]
    assert seen == {"client": ("198.51.100.4", 0), "ctx": "198.51.100.4"}


async def test_a_trusted_proxy_writing_the_other_header_is_reported_once() -> None:
    from structlog.testing import capture_logs

    async def app(inner_scope: dict[str, Any], receive: object, send: object) -> None:
        pass

    middleware = TrustedProxyMiddleware(app, trusted_proxies=["10.0.0.0/8"])  # type: ignore[arg-type]
    mismatched = scope("10.0.0.2", ("Forwarded", "for=198.51.100.4"))
    with capture_logs() as logs:
        await middleware(scope("203.0.113.9", ("Forwarded", "for=1.2.3.4")), None, None)  # type: ignore[arg-type]
        await middleware(scope("10.0.0.2", ("X-Forwarded-For", "198.51.100.4")), None, None)  # type: ignore[arg-type]
        assert logs == []  # an untrusted peer's header, or the chosen one: nothing to say
        await middleware(mismatched, None, None)  # type: ignore[arg-type]
        await middleware(mismatched, None, None)  # type: ignore[arg-type]
    assert [log["event"] for log in logs] == ["forwarded_header_mismatch"]
    assert logs[0]["setting"] == "HARDENKIT_FORWARDED_HEADER"
    assert logs[0]["log_level"] == "warning"


@pytest.mark.parametrize(
    "lines",
    [
        # The client's own value, with a quote it never closes, then the proxy's element:
        # on two header lines, and appended to the same line.
        [("Forwarded", 'for="198.51.100.7'), ("Forwarded", "for=203.0.113.50")],
        [("Forwarded", 'for="198.51.100.7, for=203.0.113.50')],
        [("Forwarded", 'for="198.51.100.7;proto=https, for=203.0.113.50;proto=http')],
    ],
)
def test_an_unterminated_quote_from_the_client_never_swallows_the_proxys_element(
    lines: list[tuple[str, str]],
) -> None:
    assert FORWARDED_PROXIES.resolve(scope("10.0.0.2", *lines)) == ("203.0.113.50", "http")


UNIX_SOCKET_CLIENTS = [
    pytest.param(None, id="uvicorn-hypercorn"),
    pytest.param(("", "0"), id="granian"),  # round 13: every client shared one bucket
    pytest.param(("", 0), id="empty-host"),
]


def unix_socket_scope(
    *headers: tuple[str, str], client: tuple[str, object] | None = None
) -> dict[str, Any]:
    """What a server on a unix socket gives: no client address (uvicorn --uds: None)."""
    return {**scope("192.0.2.1", *headers), "client": client}


@pytest.mark.parametrize("client", UNIX_SOCKET_CLIENTS)
def test_a_proxy_on_a_unix_socket_is_believed_only_when_unix_is_listed(
    client: tuple[str, object] | None,
) -> None:
    forwarded = unix_socket_scope(
        ("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"), client=client
    )
    assert TrustedProxies(["unix"]).resolve(forwarded) == ("203.0.113.7", "https")
    assert TrustedProxies(["UNIX", "10.0.0.0/8"]).resolve(forwarded) == ("203.0.113.7", "https")
    assert PROXIES.resolve(forwarded) == (None, "http")
    # A socket peer listed as trusted does not make TCP peers trusted.
    tcp = scope("198.51.100.9", ("X-Forwarded-For", "203.0.113.7"))
    assert TrustedProxies(["unix"]).resolve(tcp) == ("198.51.100.9", "http")
    assert TrustedProxies(["unix"]).trusts_client(client)
    assert not PROXIES.trusts_client(client)
    assert not TrustedProxies(["unix"]).trusts_client(("198.51.100.9", 1))


@pytest.mark.parametrize("proxies", [PROXIES, FORWARDED_PROXIES])
@pytest.mark.parametrize("port", ["\xb2", "\xb9\xb2\xb3", "\u0663"])
def test_a_hop_whose_port_is_not_ascii_digits_is_garbage_not_a_crash(
    proxies: TrustedProxies, port: str
) -> None:
    """Round 18: ``X-Forwarded-For: 1.2.3.4:², 10.0.0.9`` passed ``isdigit()``, then
    ``int()`` raised: a 500 for every such request, before any rate limit."""
    hops = f"1.2.3.4:{port}, 10.0.0.9"
    header = (
        ("Forwarded", f'for="1.2.3.4:{port}", for=10.0.0.9')
        if proxies.header == "forwarded"
        else ("X-Forwarded-For", hops)
    )
    raw = {
        **scope("10.0.0.2"),
        "headers": [(header[0].lower().encode(), header[1].encode("utf-8"))],
    }
    # The last address a proxy vouched for; the garbage hop is never the client.
    assert proxies.resolve(raw) == ("10.0.0.9", "http")
    assert not proxies.trusts_peer(f"10.0.0.2:{port}")


@pytest.mark.parametrize("proxies", [PROXIES, FORWARDED_PROXIES])
def test_resolving_costs_the_same_for_any_size_of_header(proxies: TrustedProxies) -> None:
    """Round 18: a trusted proxy passes the client's own header on; the whole of it was
    split and parsed (``Forwarded`` character by character in Python: 300 ms for 1 MB)
    before the last hops were kept."""
    name = "Forwarded" if proxies.header == "forwarded" else "X-Forwarded-For"
    element = 'for="[2001:db8::1]:4711";proto=https' if name == "Forwarded" else "1.2.3.4"
    client_part = ", ".join([element] * 20_000)
    appended = "for=198.51.100.4" if name == "Forwarded" else "198.51.100.4"
    raw = scope("10.0.0.2", (name, f"{client_part}, {appended}"))
    with python_calls() as calls:
        assert proxies.resolve(raw) == ("198.51.100.4", "http")
    assert calls[0] < 5_000


def test_a_client_value_cut_by_the_long_line_rule_never_becomes_the_client() -> None:
    """Round 19: a proxy writing ``host="$host"`` into its own element, a client's Host of
    ``app.example,for=6.6.6.6`` and its own Forwarded padded past 2 KB resolved to
    6.6.6.6. It now resolves to the proxy (a garbage hop ends the walk)."""
    padding = ", ".join(["for=192.0.2.1"] * 200)
    proxy = 'for=198.51.100.7;host="app.example,for=6.6.6.6";proto=https'
    raw = scope("10.0.0.2", ("Forwarded", f"{padding}, {proxy}"))
    assert FORWARDED_PROXIES.resolve(raw)[0] == "10.0.0.2"


def _escaped(host: str) -> str:
    return host.replace("\\", "\\\\").replace('"', '\\"')


@pytest.mark.parametrize(
    ("client_forwarded", "host"),
    [
        # Round 20: a proxy that quotes and escapes the client's Host in its own element,
        # appending it to the client's Forwarded. A quote the client left open shifted
        # where the proxy's quoted string began...
        ('x="', "a,for=6.6.6.6"),
        # ...and an escaped quote, outside a quoted string, is a backslash and a quote.
        ('x="', ',for=6.6.6.6;a="'),
        # Past 2 KB the line is split on every comma.
        (", ".join(["for=unknown"] * 200), ',for=6.6.6.6;x="'),
        (None, "a" * 2100 + ',for=6.6.6.6;x="'),
    ],
)
def test_a_quoted_host_never_gives_the_client_its_choice_of_address(
    client_forwarded: str | None, host: str
) -> None:
    proxy = f'for=198.51.100.7;host="{_escaped(host)}";proto=https'
    lines = [f"{client_forwarded}, {proxy}"] if client_forwarded else [proxy]
    raw = scope("10.0.0.2", *[("Forwarded", line) for line in lines])
    assert FORWARDED_PROXIES.resolve(raw)[0] in ("198.51.100.7", "10.0.0.2")


@pytest.mark.parametrize("header", ["forwarded", "x-forwarded-for"])
async def test_a_trusted_proxys_unreadable_last_hop_is_reported_once(header: str) -> None:
    """Every client it forwards then resolves to the proxy: one shared bucket, strict but
    worth saying (a proxy writing client text, such as the Host, into its element)."""
    from structlog.testing import capture_logs

    async def app(inner_scope: dict[str, Any], receive: object, send: object) -> None:
        pass

    middleware = TrustedProxyMiddleware(
        app,  # type: ignore[arg-type]
        trusted_proxies=["10.0.0.0/8"],
        forwarded_header=header,  # type: ignore[arg-type]
    )
    name = "Forwarded" if header == "forwarded" else "X-Forwarded-For"
    good = "for=198.51.100.4" if header == "forwarded" else "198.51.100.4"
    bad = 'for=198.51.100.4;host="a' if header == "forwarded" else "198.51.100.4, unknown"
    with capture_logs() as logs:
        await middleware(scope("10.0.0.2", (name, good)), None, None)  # type: ignore[arg-type]
        await middleware(scope("10.0.0.2"), None, None)  # type: ignore[arg-type]
        await middleware(scope("203.0.113.9", (name, bad)), None, None)  # type: ignore[arg-type]
        assert logs == []  # readable, no header, or an untrusted peer: nothing to say
        await middleware(scope("10.0.0.2", (name, bad)), None, None)  # type: ignore[arg-type]
        await middleware(scope("10.0.0.2", (name, bad)), None, None)  # type: ignore[arg-type]
    assert [log["event"] for log in logs] == ["forwarded_hop_unreadable"]
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["header"] == header
