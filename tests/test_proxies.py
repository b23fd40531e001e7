from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardenkit.context import client_ip_var
from hardenkit.proxies import TrustedProxies, TrustedProxyMiddleware


def scope(peer: str, *headers: tuple[str, str], scheme: str = "http") -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": scheme,
        "client": (peer, 5000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers],
    }


PROXIES = TrustedProxies(["10.0.0.0/8", "fd00::/8"])


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
    assert PROXIES.resolve(scope("10.1.2.3", ("Forwarded", header))) == (
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
    st.text(alphabet='0123456789abcdef.:[]"; =', max_size=20),
)


@given(
    peer=st.ip_addresses(v=4).filter(lambda a: not a.is_private).map(str),
    hops=st.lists(hop, max_size=40),
)
def test_untrusted_peer_is_always_the_client_whatever_it_sends(peer: str, hops: list[str]) -> None:
    header = ", ".join(hops)
    assert PROXIES.resolve(scope(peer, ("X-Forwarded-For", header), ("Forwarded", header))) == (
        peer,
        "http",
    )


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
