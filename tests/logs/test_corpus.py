"""Not one secret of the corpus survives, wherever it is placed, in the rendered JSON."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import structlog

from hardenkit.logs import Redactor
from tests.logs._corpus import CORPUS, ORDINARY_VALUES, Sample


def _nested(depth: int, leaf: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = leaf
    for level in range(depth, 0, -1):
        value = {f"level_{level}": value}
    return value


def _placements(sample: Sample) -> dict[str, dict[str, Any]]:
    text = sample.text
    placements: dict[str, dict[str, Any]] = {
        "value": {"note": text},
        "sensitive_key": {"client_secret": text},
        "sentence": {"detail": f"the upstream call with {text} was refused, retrying later"},
        "list": {"attempts": ["first", text, ("tuple", text)]},
        "nested_10_levels": _nested(10, {"note": text, "kept": "ordinary sibling"}),
        "headers_pairs": {"headers": [("x-request-id", "abc12345"), ("x-forwarded", text)]},
    }
    if sample.url_safe:
        placements["url_query"] = {"url": f"https://api.example.com/v1/items?next=2&ref={text}"}
        placements["url_path"] = {"url": f"https://api.example.com/v1/hooks/{text}/deliver"}
    return placements


def _log_everything(stream: io.StringIO) -> str:
    log = structlog.get_logger("tests.corpus")
    for sample in CORPUS:
        for placement, fields in _placements(sample).items():
            log.info("corpus", sample=sample.kind, placement=placement, **fields)
        try:
            raise RuntimeError(f"request to billing failed with credentials {sample.text}")
        except RuntimeError as exc:
            log.exception("corpus_exception", sample=sample.kind)
            log.warning("corpus_exception_value", sample=sample.kind, error=exc)
            log.warning("corpus_exception_args", sample=sample.kind, args=exc.args)
    return stream.getvalue()


def test_the_corpus_has_at_least_forty_secret_samples_of_distinct_kinds() -> None:
    kinds = {sample.kind for sample in CORPUS}
    assert len(CORPUS) >= 40
    assert len(kinds) == len(CORPUS)


def test_no_corpus_secret_survives_in_the_rendered_json_log(json_log: io.StringIO) -> None:
    output = _log_everything(json_log)
    lines = [json.loads(line) for line in output.splitlines()]
    expected_lines = sum(len(_placements(sample)) + 3 for sample in CORPUS)
    assert len(lines) == expected_lines
    leaks = [
        (sample.kind, secret[:24])
        for sample in CORPUS
        for secret in sample.secrets
        if secret in output
    ]
    assert leaks == []
    # The redaction did not throw away what surrounds the secrets.
    assert output.count("ordinary sibling") == len(CORPUS)
    assert "[REDACTED:card:1111]" in output
    assert "[REDACTED:card:4444]" in output


def test_secrets_nested_ten_levels_deep_are_found_by_the_detectors_not_the_depth_cap() -> None:
    redactor = Redactor()
    for sample in CORPUS:
        event = redactor.redact_event(_nested(10, {"note": sample.text, "kept": "sibling"}))
        leaf = event
        for level in range(1, 11):
            leaf = leaf[f"level_{level}"]
        assert leaf["kept"] == "sibling"
        assert all(secret not in leaf["note"] for secret in sample.secrets), sample.kind
        assert "[REDACTED" in leaf["note"]


@pytest.mark.parametrize("sample", CORPUS, ids=lambda sample: sample.kind)
def test_each_sample_alone_is_redacted_by_the_value_detectors(sample: Sample) -> None:
    redacted = Redactor().redact_text(sample.text)
    assert all(secret not in redacted for secret in sample.secrets)


def test_ordinary_log_values_are_left_intact() -> None:
    redactor = Redactor(allow_patterns=[r"[0-9a-f]{32}"])
    event = {**ORDINARY_VALUES, "md5": "9e107d9d372bb6826bd81d3542a419d6"}
    assert redactor.redact_event(event) == event


def test_ordinary_values_stay_intact_inside_sentences_and_lists() -> None:
    redactor = Redactor()
    # A request id is passed through under its own name; 32 hex characters elsewhere
    # are redacted unless allowed (test below).
    texts = [
        value
        for name, value in ORDINARY_VALUES.items()
        if isinstance(value, str) and name != "request_id"
    ]
    assert redactor.redact({"messages": texts}) == {"messages": texts}
    sentence = " | ".join(texts)
    assert redactor.redact_text(sentence) == sentence


def test_a_32_hex_hash_is_redacted_unless_allowed_by_configuration() -> None:
    digest = "9e107d9d372bb6826bd81d3542a419d6"
    assert digest not in Redactor().redact_text(f"content md5 {digest}")
    allowed = Redactor(allow_patterns=[r"[0-9a-f]{32}"])
    assert allowed.redact_text(f"content md5 {digest}") == f"content md5 {digest}"


CLEAN_LINES = (Path(__file__).parent / "clean_lines.txt").read_text().splitlines()


def test_the_clean_corpus_holds_two_hundred_realistic_lines() -> None:
    assert len(CLEAN_LINES) == 200
    assert len(set(CLEAN_LINES)) == 200


def test_realistic_clean_log_lines_come_out_unchanged() -> None:
    # Access lines, SQL without literals, ids, UUIDs, ULIDs, ISO dates, versions, digests
    # named as such, and sentences about tokens and passwords that hold none.
    redactor = Redactor()
    changed = [(line, redactor.redact_text(line)) for line in CLEAN_LINES]
    assert [(before, after) for before, after in changed if before != after] == []


def test_realistic_clean_log_lines_come_out_unchanged_through_the_json_log(
    json_log: io.StringIO,
) -> None:
    log, stdlib = structlog.get_logger("tests.clean"), logging.getLogger("tests.clean")
    for line in CLEAN_LINES:
        log.info(line, line=line)
        stdlib.info("%s", line)
    events = [json.loads(row) for row in json_log.getvalue().splitlines()]
    assert [event["event"] for event in events[::2]] == CLEAN_LINES
    assert [event["line"] for event in events[::2]] == CLEAN_LINES
    assert [event["event"] for event in events[1::2]] == CLEAN_LINES
