"""The forwarding-header parsers: never raise, and read back what a proxy wrote."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from hardenkit._forwarding import parse_forwarded, parse_hop, parse_ip

ports = st.one_of(st.none(), st.integers(min_value=1, max_value=65535))
protos = st.sampled_from(["", "http", "https", "HTTPS"])


def _rfc7239_node(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int | None) -> str:
    """Write a ``for=`` value as RFC 7239 section 6 says (v6 and ports are quoted)."""
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    if port is not None:
        return f'"{host}:{port}"'
    return f'"{host}"' if ip.version == 6 else host


@given(st.text(max_size=200))
def test_forwarded_parser_never_raises_on_any_text(value: str) -> None:
    for hop, proto in parse_forwarded(value):
        assert isinstance(hop, str)
        assert proto == proto.lower()
        parse_hop(hop)


@given(st.text(max_size=80))
def test_hop_parser_never_raises_and_any_address_it_returns_is_real(value: str) -> None:
    parsed = parse_hop(value)
    if parsed is not None:
        address, port = parsed
        assert ipaddress.ip_address(str(address)) == address
        assert 0 <= port <= 65535


@given(
    st.lists(
        st.tuples(st.ip_addresses(), ports, protos, st.sampled_from(["", "by=_edge", "host=a.b"])),
        min_size=1,
        max_size=8,
    )
)
def test_forwarded_elements_read_back_the_addresses_ports_and_protos_written(
    elements: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int | None, str, str]],
) -> None:
    written = []
    for ip, port, proto, extra in elements:
        pairs = [f"for={_rfc7239_node(ip, port)}"]
        if proto:
            pairs.append(f"proto={proto}")
        if extra:
            pairs.insert(0, extra)
        written.append(";".join(pairs))
    parsed = parse_forwarded(", ".join(written))
    assert len(parsed) == len(elements)
    for (hop, proto), (ip, port, written_proto, _) in zip(parsed, elements, strict=True):
        expected = ip.ipv4_mapped if ip.version == 6 and ip.ipv4_mapped else ip
        assert parse_hop(hop) == (expected, port or 0)
        assert proto == written_proto.lower()


def test_quoted_commas_and_semicolons_do_not_split_elements() -> None:
    assert parse_forwarded('for="_a,b;c";proto=https, for=192.0.2.1') == [
        ("_a,b;c", "https"),
        ("192.0.2.1", ""),
    ]


def test_an_element_without_for_keeps_its_place_in_the_chain() -> None:
    assert parse_forwarded("proto=https, for=192.0.2.1") == [("", "https"), ("192.0.2.1", "")]


def test_obfuscated_and_unknown_nodes_are_not_addresses() -> None:
    assert parse_ip("unknown") is None
    assert parse_ip("_hidden") is None
    assert parse_ip('"[2001:db8::1"') is None


def test_ipv4_mapped_ipv6_hop_is_the_ipv4_address() -> None:
    assert parse_hop("[::ffff:192.0.2.9]:80") == (ipaddress.ip_address("192.0.2.9"), 80)


def test_out_of_range_port_is_not_a_hop() -> None:
    assert parse_hop("192.0.2.1:70000") is None
    assert parse_hop("192.0.2.1:http") is None
