from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardenkit._paths import PathPatterns, PathTable


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
