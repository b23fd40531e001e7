"""The forwarding-header parsers: never raise, and read back what a proxy wrote."""

from __future__ import annotations

import ipaddress
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardenkit._forwarding import MAX_HOPS, parse_forwarded, parse_hop, parse_ip
from tests.support.work import python_calls

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


@given(
    st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(lambda ip: f"[{ip}]")),
    st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=7),
)
def test_any_latin1_port_text_is_a_port_or_nothing(host: str, port: str) -> None:
    """Header bytes decode as latin-1: "²" (0xB2) passed ``isdigit()`` and ``int()``
    raised (round 18)."""
    parsed = parse_hop(f"{host}:{port}")
    if parsed is not None:
        port = f"{host}:{port}".strip().strip('"')[len(host) + 1 :]  # what the parser reads
        assert port.isascii()
        if port.startswith("_"):  # RFC 7239's obfuscated port: no number
            assert parsed[1] == 0
        else:
            assert port == "" or port.isdigit()
            assert parsed[1] == int(port or "0")


def test_a_port_of_other_digits_is_not_a_hop() -> None:
    for port in ("\xb2", "\xb9\xb2\xb3", "\u0663", "\uff18"):
        assert parse_hop(f"192.0.2.1:{port}") is None
        assert parse_hop(f"[2001:db8::1]:{port}") is None


@pytest.mark.parametrize("quoted", [False, True])
def test_only_the_last_hops_of_a_forwarded_value_are_read(quoted: bool) -> None:
    """A longer chain is no real proxy path; reading it all cost a client's header size
    (round 18). The last MAX_HOPS elements come back, the same as from the whole."""
    element = 'for="[2001:db8::1]:4711";proto=https' if quoted else "for=192.0.2.1;proto=https"
    value = ", ".join([element] * 1000 + [f"for=198.51.100.{n}" for n in range(40)])
    with python_calls() as calls:
        parsed = parse_forwarded(value)
    assert parsed == [(f"198.51.100.{n}", "") for n in range(40 - MAX_HOPS, 40)]
    assert calls[0] < 2_000


def test_a_quote_left_open_before_the_last_hops_still_splits_them() -> None:
    """The quote state of the last hops depends on every quote before them."""
    value = 'for="x, ' + ", ".join(["for=192.0.2.1"] * 100) + ", for=198.51.100.7"
    assert parse_forwarded(value)[-1] == ("198.51.100.7", "")
    closed = 'for="a, b", ' + ", ".join(["for=192.0.2.1"] * 100) + ", for=198.51.100.7"
    assert parse_forwarded(closed)[-1] == ("198.51.100.7", "")
    inside = 'for="a, ' + ", ".join(["for=192.0.2.1"] * 100) + '", for=198.51.100.7'
    assert parse_forwarded(inside) == [
        ("a, " + ", ".join(["for=192.0.2.1"] * 100), ""),
        ("198.51.100.7", ""),
    ]


def test_an_element_of_more_pairs_than_any_proxy_writes_is_no_address() -> None:
    """One element of a megabyte of ``a=b;`` cost 80 ms, pair by pair (round 18)."""
    value = "for=192.0.2.1;" + "a=b;" * 250_000 + ", for=198.51.100.7;proto=https"
    with python_calls() as calls:
        parsed = parse_forwarded(value)
    assert parsed == [("", ""), ("198.51.100.7", "https")]
    assert calls[0] < 1_000
    four = "for=192.0.2.1;proto=https;by=_edge;host=example.com"
    assert parse_forwarded(four) == [("192.0.2.1", "https")]


def test_an_element_naming_a_parameter_twice_is_no_address() -> None:
    """RFC 7239: a parameter occurs once per element. A proxy that writes a client's Host
    unescaped into a quoted ``host=`` lets ``Host: x";for=6.6.6.6;a="`` add a second
    ``for`` after its own, and the last one won (round 19)."""
    assert parse_forwarded('for=198.51.100.7;host="x";for=6.6.6.6;a=""') == [("", "")]
    assert parse_forwarded("for=198.51.100.7;proto=http;proto=https") == [("", "")]
    assert parse_forwarded("for=198.51.100.7;;proto=https;") == [("198.51.100.7", "https")]


def test_a_long_line_cut_inside_a_quoted_string_gives_no_address() -> None:
    """Round 19: past 2 KB a line is split on every comma; a quoted ``host="a,for=..."``
    of the proxy's own element then gave a hop of the client's choosing. An element
    whose quotes do not pair up was cut inside a quoted string: it is no address."""
    padding = ", ".join(["for=192.0.2.1"] * 200)
    proxy = 'for=198.51.100.7;host="app.example,for=6.6.6.6";proto=https'
    parsed = parse_forwarded(f"{padding}, {proxy}")
    assert ("6.6.6.6", "https") not in parsed
    assert parsed[-2:] == [("", ""), ("", "")]
    assert parse_forwarded(proxy) == [("198.51.100.7", "https")]  # a short line: quoted


@pytest.mark.parametrize(
    "element",
    [
        'for=6.6.6.6;a=\\"";proto=https',  # a backslash outside a quoted string
        'for=6.6.6.6";proto=https',  # a quote no pair closes
        'for=6.6.6.6;host=a"b',  # a quote inside a token
        "for=6.6.6.6;host=a b",  # a space inside a token
        "for",  # a pair without a value
    ],
)
def test_an_element_outside_rfc_7239_grammar_is_no_address(element: str) -> None:
    """Every value is a token or a quoted string: anything else means the element's
    bounds are not where its writer put them (round 20)."""
    assert parse_forwarded(element) == [("", "")]


def test_what_proxies_write_is_within_the_grammar() -> None:
    assert parse_forwarded(
        'for=192.0.2.1 ; proto=https, for="[2001:db8::1]:4711";by=_edge;host="a.b"'
    ) == [("192.0.2.1", "https"), ("[2001:db8::1]:4711", "")]
    # An unquoted IPv6 node (against RFC 7239, written by hand-made nginx configs).
    assert parse_forwarded("for=2001:db8::1;proto=http, for=[2001:db8::2]:80") == [
        ("2001:db8::1", "http"),
        ("[2001:db8::2]:80", ""),
    ]
    assert parse_forwarded('for="\\"x\\\\";proto=https') == [('"x\\', "https")]


def test_spaces_between_semicolons_cost_linear_time() -> None:
    """Round 21: the element grammar's space runs overlapped, and ``for=1.2.3.4 ; ; ; x``
    took time doubling with each ``" ;"``: 3.7 s for 61 bytes, the worker blocked. Forty
    of them would take days; the bound below is a thousand times what it takes now."""
    evil = "for=1.2.3.4" + " ;" * 40 + " x"
    started = time.perf_counter()
    assert parse_forwarded(f"{evil}, for=198.51.100.4") == [("", ""), ("198.51.100.4", "")]
    assert parse_forwarded(", ".join([f"for=1.2.3.4{' ;' * 600} x"] * 32)) == [("", "")] * 32
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Apache Traffic Server's connection=std / full (round 21: "/" is no token char).
        ("for=198.51.100.7;proto=https;connection=https/1.1", ("198.51.100.7", "https")),
        ("for=198.51.100.7;sig=ab+c/d==;proto=https", ("198.51.100.7", "https")),
        # RFC 7239 obfuscated ports (HAProxy for_port-expr).
        ('for="198.51.100.7:_p0rt"', ("198.51.100.7:_p0rt", "")),
    ],
)
def test_what_other_proxies_write_is_read(value: str, expected: tuple[str, str]) -> None:
    assert parse_forwarded(value) == [expected]
    assert parse_ip(expected[0]) == ipaddress.ip_address("198.51.100.7")
