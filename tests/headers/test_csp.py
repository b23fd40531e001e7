"""CSP and HeaderPolicy: mistakes that weaken a policy are refused when it is built."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardenkit.headers import CSP, CSPError, HeaderPolicy
from hardenkit.headers._policy import DEFAULT_HTML_CSP


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("default-src self", "must be quoted as \"'self'\""),
        ("default-src 'self'; script-src none", "must be quoted as \"'none'\""),
        ("default-src 'self'; script-src unsafe-inline", "must be quoted"),
        ("default-src 'self'; script-src sha256-abc=", "must be single-quoted"),
        ("script-src 'self'", "default-src is missing"),
        ("img-src *", "default-src is missing"),
        ("default-src 'self'; scrpt-src 'self'", "unknown directive 'scrpt-src'"),
        ("default-src 'none' 'self'", "'none' next to other sources"),
        ("default-src 'self'; script-src 'nonce-abc123'", "a fixed nonce"),
        ("default-src 'self'; img-src 'nonce-{nonce}'", "a nonce has no effect here"),
        ("default-src 'self'; script-src 'self' 'unsafe-evil'", "not a CSP keyword"),
        ("default-src 'self'; script-src https://a.example,https://b.example", "not a valid"),
        ("default-src 'self'; upgrade-insecure-requests yes", "takes no sources"),
        ("default-src 'self'; script-src", "has no sources"),
        ("default-src 'self'; default-src 'none'", "given twice"),
    ],
)
def test_policies_that_would_not_protect_are_refused_with_the_reason(
    policy: str, message: str
) -> None:
    with pytest.raises(CSPError, match=message.replace("(", r"\(")):
        CSP.parse(policy)


def test_keyword_arguments_build_the_same_policy_as_the_header_text() -> None:
    built = CSP(
        default_src=["'self'"],
        script_src=["'self'", CSP.NONCE, "https://cdn.example"],
        img_src="'self' data:",
        upgrade_insecure_requests=True,
    )
    text = (
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' https://cdn.example; "
        "img-src 'self' data:; upgrade-insecure-requests"
    )
    assert str(built) == text
    assert CSP.parse(text) == built
    assert built.uses_nonce


def test_render_fills_the_nonce_and_drops_upgrade_insecure_requests_on_http() -> None:
    https = DEFAULT_HTML_CSP.render("n0nce", https=True)
    assert https.count("'nonce-n0nce'") == 2
    assert https.endswith("; upgrade-insecure-requests")
    assert "upgrade-insecure-requests" not in DEFAULT_HTML_CSP.render("n0nce", https=False)


def test_with_sources_adds_without_duplicates_and_replaces_none() -> None:
    base = CSP(default_src=["'self'"], connect_src=["'none'"])
    extended = base.with_sources(connect_src=["https://api.example", "'self'"], img_src=["data:"])
    assert extended.sources("connect-src") == ("https://api.example", "'self'")
    assert extended.sources("img-src") == ("data:",)
    assert extended.with_sources(img_src=["data:"]) == extended
    assert base.sources("connect-src") == ("'none'",)  # immutable


def test_replace_sets_and_removes_directives() -> None:
    changed = DEFAULT_HTML_CSP.replace(img_src=["'self'"], upgrade_insecure_requests=None)
    assert changed.sources("img-src") == ("'self'",)
    assert "upgrade-insecure-requests" not in str(changed)
    with pytest.raises(CSPError, match="default-src is missing"):
        DEFAULT_HTML_CSP.replace(default_src=None)


def test_default_src_comes_first_whatever_the_order_given() -> None:
    policy = CSP({"img-src": ["'self'"], "default-src": ["'none'"]})
    assert str(policy).startswith("default-src 'none'; img-src 'self'")


_KEYWORD = st.sampled_from(["'self'", "'none'", "'unsafe-inline'", "'strict-dynamic'"])
_HOST = st.from_regex(r"https://[a-z]{1,8}\.example(:[0-9]{2,4})?", fullmatch=True)
_SOURCES = st.lists(
    st.one_of(_HOST, st.sampled_from(["'self'", "data:", "https:", "blob:"])),
    min_size=1,
    max_size=4,
)


@settings(max_examples=60, deadline=None)
@given(
    default=st.one_of(st.just(["'none'"]), _SOURCES),
    script=st.one_of(st.none(), _SOURCES.map(lambda s: [*s, CSP.NONCE])),
    img=st.one_of(st.none(), _SOURCES),
    upgrade=st.booleans(),
)
def test_a_built_policy_parses_back_to_itself(
    default: list[str], script: list[str] | None, img: list[str] | None, upgrade: bool
) -> None:
    directives: dict[str, list[str] | bool] = {"default-src": default}
    if script:
        directives["script-src"] = script
    if img:
        directives["img-src"] = img
    directives["upgrade-insecure-requests"] = upgrade
    policy = CSP(directives)
    assert CSP.parse(str(policy)) == policy
    assert ";" not in "".join(policy.sources("default-src"))


@settings(max_examples=80, deadline=None)
@given(st.text(alphabet=" ;,'\"\t\n\x00abc-:/*.", min_size=1, max_size=20))
def test_arbitrary_text_either_parses_or_raises_a_csp_error(text: str) -> None:
    try:
        policy = CSP.parse("default-src 'self'; img-src " + text)
    except CSPError:
        return
    rendered = str(policy)
    assert "\n" not in rendered
    assert "\x00" not in rendered
    assert "," not in rendered


def test_hsts_preload_without_its_prerequisites_is_refused() -> None:
    with pytest.raises(ValueError, match="hsts_preload needs"):
        HeaderPolicy(hsts_preload=True, hsts_include_subdomains=False)
    with pytest.raises(ValueError, match="hsts_preload needs"):
        HeaderPolicy(hsts_preload=True, hsts_max_age=86400)
    assert HeaderPolicy(hsts_preload=True).hsts_preload


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("frame_options", "ALLOW-FROM https://a.example"),
        ("referrer_policy", "never"),
        ("cross_origin_opener_policy", "same-site"),
        ("cross_origin_embedder_policy", "require"),
        ("report_path", "//evil.example/r"),
        ("report_path", "/r; x"),
        ("hsts_max_age", -1),
        ("extra_headers", {"Bad Name": "x"}),
        ("extra_headers", {"X-Ok": "line\nbreak"}),
    ],
)
def test_header_policy_refuses_bad_values_at_construction(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field.split("_", maxsplit=1)[0]):
        dataclasses.replace(HeaderPolicy(), **{field: value})


def test_hashing_inline_scripts_needs_a_script_src() -> None:
    with pytest.raises(CSPError, match="script-src"):
        HeaderPolicy(html_csp=CSP(default_src=["'self'"]), hash_inline_scripts=True)
