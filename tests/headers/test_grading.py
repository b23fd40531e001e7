"""The CSP script judgement shared by the production policy and `check-headers`."""

from __future__ import annotations

import pytest

from hardenkit.headers._grading import script_weaknesses

REFUSED = [
    ("default-src 'self'; script-src-elem *", "csp-script-anywhere", "script-src-elem"),
    ("default-src 'self'; script-src-elem 'unsafe-inline'", "csp-unsafe-inline", "script-src-elem"),
    ("default-src 'self'; script-src-attr 'unsafe-inline'", "csp-unsafe-inline", "script-src-attr"),
    (
        "default-src 'self'; script-src 'nonce-{nonce}'; script-src-elem 'self' https:",
        "csp-script-anywhere",
        "script-src-elem",
    ),
    # The script-src older browsers use is judged even when CSP3 directives override it.
    (
        "default-src 'self'; script-src *; script-src-elem 'self'; script-src-attr 'none'",
        "csp-script-anywhere",
        "script-src",
    ),
    ("default-src 'self'; script-src https://*", "csp-script-anywhere", "script-src"),
    ("default-src 'self'; script-src http://*", "csp-script-anywhere", "script-src"),
    ("default-src 'self'; script-src *:*", "csp-script-anywhere", "script-src"),
    ("default-src 'self'; script-src https://*:*", "csp-script-anywhere", "script-src"),
    ("default-src 'self'; script-src https://*:443/js/", "csp-script-anywhere", "script-src"),
    ("default-src https://*", "csp-script-anywhere", "default-src"),
    ("default-src 'self'; script-src HTTPS:", "csp-script-anywhere", "script-src"),
    ("default-src 'self'; script-src HTTP:", "csp-script-anywhere", "script-src"),
    ("default-src 'self'; script-src Data:", "csp-script-anywhere", "script-src"),
    ("default-src 'self'; script-src 'self' blob:", "csp-script-anywhere", "script-src"),
    ("default-src 'self'; SCRIPT-SRC 'self' 'Unsafe-Inline'", "csp-unsafe-inline", "script-src"),
    ("default-src 'self'; script-src 'self' 'UNSAFE-EVAL'", "csp-unsafe-eval", "script-src"),
]


@pytest.mark.parametrize(("policy", "risk", "directive"), REFUSED)
def test_every_directive_that_decides_script_is_judged_in_any_spelling(
    policy: str, risk: str, directive: str
) -> None:
    found = [w for w in script_weaknesses(policy) if w.risk == risk]
    assert found, policy
    assert any(w.message.startswith(directive + " ") for w in found)
    assert all(directive in w.fix for w in found)


@pytest.mark.parametrize(
    "policy",
    [
        "default-src 'self'; script-src 'self' 'nonce-{nonce}'",
        "default-src 'none'; frame-ancestors 'none'",
        # A nonce or hash makes CSP2+ browsers ignore 'unsafe-inline' (per directive).
        "default-src 'self'; script-src 'nonce-{nonce}' 'unsafe-inline'",
        "default-src 'self'; script-src-elem 'nonce-{nonce}' 'unsafe-inline'; "
        "script-src-attr 'sha256-AbC=' 'unsafe-hashes' 'unsafe-inline'",
        "default-src 'self'; script-src 'self' https://*.example.com https://cdn.example.com:*",
    ],
)
def test_policies_that_keep_injected_script_out_pass(policy: str) -> None:
    assert script_weaknesses(policy) == []


def test_a_nonce_in_script_src_does_not_excuse_unsafe_inline_in_script_src_attr() -> None:
    policy = "default-src 'self'; script-src 'nonce-{nonce}'; script-src-attr 'unsafe-inline'"
    assert [w.risk for w in script_weaknesses(policy)] == ["csp-unsafe-inline"]
