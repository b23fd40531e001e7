from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardenkit._paths import PathPatterns, PathTable, normalized_path, path_spellings


def test_prefix_pattern_matches_below_and_the_bare_prefix_but_not_lookalikes() -> None:
    patterns = PathPatterns(["/auth/*"])
    assert patterns.matches("/auth/token")
    assert patterns.matches("/auth")
    assert not patterns.matches("/authority")


def test_star_alone_matches_every_path() -> None:
    assert PathPatterns(["*"]).matches("/anything/at/all")


@pytest.mark.parametrize("bad", ["auth/*", "/a*b", "", "/*/x"])
def test_malformed_patterns_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="path pattern"):
        PathPatterns([bad])
    with pytest.raises(ValueError, match="path pattern"):
        PathTable({bad: 1})


def test_table_prefers_exact_then_the_longest_prefix() -> None:
    table = PathTable({"/api/*": "api", "/api/reports/*": "reports", "/api/reports/x": "x"})
    assert table.get("/api/reports/x", "none") == "x"
    assert table.get("/api/reports/y", "none") == "reports"
    assert table.get("/api/items", "none") == "api"
    assert table.get("/other", "none") == "none"


@given(
    st.lists(st.from_regex(r"/[a-z]{1,5}(/[a-z]{1,5})?/?\*?", fullmatch=True), max_size=5),
    st.from_regex(r"/[a-z/]{0,15}", fullmatch=True),
)
def test_set_and_table_agree_on_which_paths_match(patterns: list[str], path: str) -> None:
    table = PathTable(dict.fromkeys(patterns, True))
    assert PathPatterns(patterns).matches(path) == table.get(path, False)


# --- the route path: what every path setting matches -------------------------------------

from starlette._utils import get_route_path  # noqa: E402 - the rule this one must equal

from hardenkit._paths import route_path  # noqa: E402

_segments = st.lists(st.sampled_from(["", "v1", "v10", "svc", "a", "healthz"]), max_size=4)


@given(_segments, _segments)
def test_route_path_is_the_path_starlette_routes_on(root: list[str], rest: list[str]) -> None:
    root_path = "/".join(["", *root]) if root else ""
    path = root_path + "/" + "/".join(rest)
    for candidate in (path, "/" + "/".join(rest)):
        scope = {"type": "http", "path": candidate, "root_path": root_path}
        assert route_path(dict(scope)) == get_route_path(scope)


def test_route_path_strips_the_root_path_only_at_a_segment_boundary() -> None:
    assert route_path({"path": "/svc/healthz", "root_path": "/svc"}) == "/healthz"
    assert route_path({"path": "/svc10/healthz", "root_path": "/svc"}) == "/svc10/healthz"
    assert route_path({"path": "/healthz", "root_path": ""}) == "/healthz"


def test_route_path_is_derived_again_when_a_router_changes_the_root_path() -> None:
    scope = {"path": "/v1/inner/items", "root_path": "/v1"}
    assert route_path(scope) == "/inner/items"
    scope["root_path"] = "/v1/inner"  # a Mount below the first app
    assert route_path(scope) == "/items"


@given(st.sampled_from(["/webhooks/pay", "/WEBHOOKS/pay", "/Webhooks/Pay", "/internal/x"]))
def test_patterns_that_add_a_check_match_any_case_and_the_others_only_their_own(
    path: str,
) -> None:
    # A router that matches any case (a route_class, a lowercasing middleware) serves
    # /WEBHOOKS/pay as /webhooks/pay: the signature check must apply to it too.
    checked = PathPatterns(["/webhooks/*", "/Internal/x"], any_case=True)
    assert checked.matches(path) == path.lower().startswith(("/webhooks/", "/internal/x"))
    exact = PathPatterns(["/webhooks/*"])
    assert exact.matches(path) == path.startswith("/webhooks/")


def test_patterns_that_add_a_check_fold_case_as_a_folding_router_does() -> None:
    # A router comparing casefold()ed paths serves /webhook\u017f/pay as /webhooks/pay.
    checked = PathPatterns(["/webhooks/*"], any_case=True)
    assert checked.matches("/webhook\u017f/pay")
    assert "/webhook\u017f/pay".casefold() == "/webhooks/pay"


@pytest.mark.parametrize(
    "path",
    [
        "/public/../auth/token",  # a dot-segment normalizer routes it to /auth/token
        "/auth/./token",
        "/auth//token",
        "//auth/token",
        "/auth/token/",  # a trailing-slash stripper
        "/auth/token/.",
        "/docs/../WEBHOOKS/pay",
        "/api/x/../../webhooks/pay",
        "/a/b/../../../webhooks/pay",  # ".." never climbs above the root
        "/hooks/stripe",  # the pattern's own trailing slash dropped, as a router may
    ],
)
def test_patterns_that_add_a_check_match_what_a_path_normalizer_routes(path: str) -> None:
    checked = PathPatterns(["/auth/token", "/webhooks/*", "/hooks/stripe/"], any_case=True)
    assert checked.matches(path)
    # The ones that remove a check match only the path as sent.
    assert not PathPatterns(["/auth/token", "/webhooks/*", "/hooks/stripe/"]).matches(path)


@pytest.mark.parametrize("path", ["/auth/tokens", "/auth/token/../x", "/authority", "/x/.."])
def test_a_normalized_path_outside_the_patterns_is_not_matched(path: str) -> None:
    assert not PathPatterns(["/auth/token", "/webhooks/*"], any_case=True).matches(path)


_SEGMENT = st.sampled_from(["", ".", "..", "auth", "token", "Token", "x", "webhooks", "pay"])


@given(st.lists(_SEGMENT, max_size=8), st.booleans())
def test_a_pattern_that_adds_a_check_matches_whenever_the_normalized_path_does(
    segments: list[str], trailing: bool
) -> None:
    path = "/" + "/".join(segments) + ("/" if trailing else "")
    normal = normalized_path(path)
    assert normal.startswith("/")
    assert normal == "/" or not {"", ".", ".."} & set(normal.split("/")[1:])
    assert normalized_path(normal) == normal
    checked = PathPatterns(["/auth/token", "/webhooks/*"], any_case=True)
    if PathPatterns(["/auth/token", "/webhooks/*"]).matches(normal.casefold()):
        assert checked.matches(path)
    if checked.matches(path):  # never more than the path as sent or one of its spellings
        assert any(
            PathPatterns(["/auth/token", "/webhooks/*"]).matches(candidate.casefold())
            for candidate in (path, *path_spellings(path.casefold()))
        )
        if ".." not in segments:  # what may climb over a root path is matched by its tails
            assert PathPatterns(["/auth/token", "/webhooks/*"]).matches(
                normal.casefold()
            ) or PathPatterns(["/auth/token", "/webhooks/*"]).matches(path.casefold())


@pytest.mark.parametrize(
    "path",
    [
        "/webhooks/g\u0131thub",  # re.IGNORECASE matches the dotless i to "i"
        "/WEBHOOKS/G\u0130THUB",  # and the dotted capital I
        "/webhooks/%64emo",  # a middleware that decodes the path again
        "/webhooks/%2564emo",  # twice
        "/docs/%252e%252e/webhooks/demo",
        "/webhooks/../../svc/webhooks/demo",  # normalized with the root path /svc in front
        "/a/../../../v1/api/webhooks/demo",
        "/docs\\..\\webhooks\\demo",  # backslashes taken for slashes
        "/\uff57ebhooks/demo",  # a fullwidth letter, NFKC
    ],
)
def test_patterns_that_add_a_check_match_what_a_lenient_router_would_serve(path: str) -> None:
    checked = PathPatterns(["/webhooks/github", "/webhooks/demo"], any_case=True)
    assert checked.matches(path)
    assert not PathPatterns(["/webhooks/github", "/webhooks/demo"]).matches(path)


@pytest.mark.parametrize(
    "path", ["/webhooks/../other", "/svc/other/demo", "/webhooks/%2e%2e/demo", "/docs/demo"]
)
def test_another_spelling_of_another_path_is_not_matched(path: str) -> None:
    assert not PathPatterns(["/webhooks/github", "/webhooks/demo"], any_case=True).matches(path)


@given(st.text(alphabet="/.%2Ee\\\u0131\u0130Iiwebhoksdm", max_size=40))
def test_path_spellings_never_fail_and_always_start_at_the_root(path: str) -> None:
    for spelling in path_spellings("/" + path):
        assert spelling.startswith("/")


def test_a_long_path_with_other_spellings_costs_one_pass_and_is_taken_to_match() -> None:
    # An attacker round: every tail of a climbing path, per form, was quadratic (a 24 KB
    # path held the event loop for 5.7 s). Spellings stay linear; beyond 4096 characters
    # a path that has another spelling is taken to match the checks (fail closed).
    checked = PathPatterns(["/webhooks/pay"], any_case=True)
    long = "/../%252561\\\u00e9" + "/a" * 20_000
    assert checked.matches(long)
    assert not checked.matches("/a" * 20_000)  # no other spelling: matched as sent
    # A long path whose only other spellings are cheap (case, NFKC, a trailing slash) is
    # spelled out, not refused: an attacker round saw /docs/<4100 x e-acute> answered 429.
    assert not checked.matches("/docs/" + "\u00e9" * 4100)
    assert not checked.matches("/docs/" + "a" * 4100 + "/")
    just_under = "/../%252561\\\u00e9" + "/a" * 2_000
    assert len(path_spellings(just_under)) <= 12 * 9  # forms x (itself + 8 tails)
    assert not checked.matches(just_under)
