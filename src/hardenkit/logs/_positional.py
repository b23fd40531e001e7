r"""Secrets told by their place rather than a name right before them.

A value is secret here because of where it sits, read with the same
:class:`KeyClassifier` as field names:

* a column: a CSV row under a ``password`` header, ``INSERT INTO users (name, password)
  VALUES ('bob', '...')``, and SQLAlchemy's errors, whose ``[parameters: (...)]`` line
  follows the ``[SQL: ...]`` statement placeholder by placeholder;
* a pair of fields: ``{"name": "DB_PASSWORD", "value": "..."}`` (Kubernetes env, AWS
  SSM, gRPC metadata ``key='x-api-key', value='...'``), pydantic's ``input_value=``
  under the field the error names, a JSON Web Key's private members (``d``, ``k``, ...);
* a column of a traceback: better-exceptions and loguru print each variable's value
  under its name (``└ 'hunter2'``);
* an argument: ``smtp.login('bob', '...')`` and the other login calls whose second
  argument is a password, ``echo '...' | sudo -S`` (and ``--password-stdin``,
  ``chpasswd``), a ``.pgpass`` line ``host:port:db:user:password``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["JWK_PRIVATE_MEMBERS", "PositionalScanner", "bracketed_items", "replace_group"]

REDACTED = "[REDACTED]"

# echo/printf piped into a command that reads a password on stdin. "$PW" is a variable.
_STDIN_PASSWORD = re.compile(
    r"(?<![\w-])(?:echo(?:[ \t]+-[neE]+)*|printf(?:[ \t]+(?:'%s[^']*'|\"%s[^\"]*\"))?)[ \t]+"
    r"(?:(?P<q>['\"])(?P<quoted>[^'\"\n]*)(?P=q)|(?P<bare>(?!\$)[^\s|'\"]+))[ \t]*\|[ \t]*"
    r"(?=sudo[^\n|;&]*?[ \t](?:-[A-Za-z]*S|--stdin)(?![\w-])|[^\n|;&]*--password-stdin"
    r"|chpasswd|passwd[ \t]+--stdin)"
)
# Calls whose second positional argument is a password.
_LOGIN_CALL = re.compile(
    r"(?:\.(?:login|simple_bind_s|simple_bind|bind_s)|\b(?:HTTPBasicAuth|HTTPDigestAuth"
    r"|HTTPProxyAuth|BasicAuth|DigestAuth))\([ \t]*(?:b?(?P<q1>['\"])[^'\"\n]*(?P=q1)|[\w.]+)"
    r"[ \t]*,[ \t]*b?(?P<q>['\"])(?P<value>[^'\"\n]*)(?P=q)"
)
_PGPASS = re.compile(
    r"(?m)(?:^|(?<=[\s'\"])|(?<=\\n))(?:[\w.*-]*[A-Za-z*][\w.*-]*|[0-9]{1,3}(?:\.[0-9]{1,3}){3}):(?:[0-9]{1,5}|\*):[\w.*-]+:[\w.*@-]+:"
    r"(?P<value>[^\s:'\"][^\n'\"]*)"
)
# {"name": "DB_PASSWORD", "value": "..."}, key='x-api-key', value='...', YAML
# "- name: X\n  value: y": the value under a name that another field gives.
_NAME_VALUE = re.compile(
    r"(?P<q1>\\{0,3}[\"']?)(?:name|key|Name|Key|ParameterKey|ParameterName)(?P=q1)[ \t]*[:=][ \t]*"
    r"(?P<q2>\\{0,3}[\"']?)(?P<name>[^\"'\s,}\\]{1,128})(?P=q2)"
    r"[ \t]*(?:,[ \t]*|(?:\r?\n|\\n)[ \t]*)"
    # one field between them at most ("Name": ..., "Type": "SecureString", "Value": ...)
    r"(?:\\{0,3}[\"']?\w{1,32}\\{0,3}[\"']?[ \t]*[:=][ \t]*[^,{}\n]{0,80},[ \t]*)?"
    r"(?P<q3>\\{0,3}[\"']?)(?:value|Value|ParameterValue)(?P=q3)[ \t]*[:=][ \t]*"
    r"(?:(?P<q4>\\{0,3}[\"'])(?P<quoted>.*?)(?P=q4)|(?P<bare>[^\s,})\]\\]+))"
)
# A JSON Web Key's private members, in a text that holds a "kty".
_JWK_PRIVATE = re.compile(
    r"(?P<q>\\{0,3}[\"'])(?:d|p|q|dp|dq|qi|k)(?P=q)[ \t]*:[ \t]*(?P=q)(?P<value>[^\"'\\]*)(?P=q)"
)
JWK_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "k", "oth"})
# pydantic: the location line, then "  message [type=..., input_value=..., input_type=...]".
_PYDANTIC = re.compile(
    r"(?m)(?:^|(?<=\\n))(?P<loc>[^\s\[\\][^\n\\]{0,200})(?:\r?\n|\\n)"
    r"[ \t]+[^\n]*?\[type=[^\n]*?input_value="
    r"(?P<value>[^\n]*?), input_type="
)
_INSERT = re.compile(
    r"(?i)\bINSERT\s+(?:INTO\s+)?[\w.\"`\[\]]+\s*\((?P<columns>[^()]{1,2000})\)"
    r"\s*VALUES[ \t\r\n]*(?=\()"
)
_COLUMN_BEFORE = re.compile(r"[\"`\[]?(?P<name>[A-Za-z_][\w-]*)[\"`\]]?[ \t]*(?:=|<>|!=)[ \t]*\Z")
_SQL_PLACEHOLDER = re.compile(r"\?|%s|\$(?P<number>[0-9]+)|%\(\w+\)s|(?<![:\w]):\w+")
_SQL_AND_PARAMETERS = re.compile(
    r"\[SQL: (?P<sql>.*?)\](?:\r?\n|\\n)\[parameters: (?=[(\[])", re.DOTALL
)
_PLACEHOLDER_VALUE = re.compile(r"\?|%s|\$[0-9]+|:\w+|%\(\w+\)s|NULL|null|None|DEFAULT")
# A line of better-exceptions' variable annotations: bars, then "└ value".
_ANNOTATION = re.compile(r"[ \t\u2502]*(?P<mark>\u2514) (?P<value>.*)")
_NAME_AT = re.compile(r"[A-Za-z_][\w.]*")
_CSV_DELIMITERS = (",", ";", "\t", "\\t")
_HEADER_PREFIX = re.compile(r"[:=(\s'\"]*[:=(\s'\"]")
_LINE_BREAK = re.compile(r"(\r?\n|(?:\\r)?\\n)")
_CSV_NAME = re.compile(r"[\"']?[A-Za-z_][\w .-]{0,63}[\"']?")
_CLOSING = re.compile(r"[)\]}]")


def bracketed_items(
    text: str, start: int, limit: int | None = None
) -> tuple[list[tuple[int, int]], int] | None:
    r"""The spans of a bracketed list's top-level items, and the end of the list.

    ``text[start]`` is the opening bracket. Quotes (with ``\\`` or doubled escapes) and
    nested brackets are skipped. None when the list never closes, or not before
    ``limit``: a caller that asks at every secret name bounds each look, or a text of
    brackets that never close is scanned once per name (round 22: 60 KB took 20 s).
    """
    length = len(text) if limit is None else min(len(text), limit)
    if _CLOSING.search(text, start, length) is None:
        return None  # no closing bracket at all: found in C, without the walk below
    items: list[tuple[int, int]] = []
    depth = 0
    item_start = start + 1
    position = start
    while position < length:
        char = text[position]
        if char in "'\"":
            position = _quote_end(text, position, length)
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                items.append((item_start, position))
                return [span for span in items if text[span[0] : span[1]].strip()], position + 1
        elif char == "," and depth == 1:
            items.append((item_start, position))
            item_start = position + 1
        position += 1
    return None


def _quote_end(text: str, start: int, length: int | None = None) -> int:
    quote = text[start]
    position = start + 1
    end = len(text) if length is None else length
    while position < end:
        char = text[position]
        if char == "\\":
            position += 2
            continue
        if char == quote:
            if text.startswith(quote, position + 1):  # SQL's doubled quote
                position += 2
                continue
            return position + 1
        position += 1
    return position


def _replace_item(text: str, span: tuple[int, int], pieces: list[tuple[int, int]]) -> None:
    start, end = span
    value = text[start:end].strip()
    if not value or _PLACEHOLDER_VALUE.fullmatch(value):
        return
    offset = start + len(text[start:end]) - len(text[start:end].lstrip())
    if value[0] in "bB" and value[1:2] in ("'", '"'):
        offset += 1
        value = value[1:]
    if value[0] in "'\"" and len(value) >= 2 and value.endswith(value[0]):
        pieces.append((offset + 1, offset + len(value) - 1))
    else:
        pieces.append((offset, offset + len(value)))


def _apply(text: str, spans: list[tuple[int, int]]) -> str:
    if not spans:
        return text
    result: list[str] = []
    done = 0
    for start, end in sorted(spans):
        if start < done:
            continue
        result.append(text[done:start])
        result.append(REDACTED)
        done = end
    result.append(text[done:])
    return "".join(result)


class PositionalScanner:
    """Replaces the secrets that a column, a sibling field or an argument position marks.

    Args:
        is_sensitive: Decides whether a name holds a secret.
    """

    def __init__(self, is_sensitive: Callable[[str], bool]) -> None:
        self._sensitive = is_sensitive

    def scan(self, text: str) -> str:
        """Return ``text`` with every positional secret replaced."""
        if "|" in text and ("echo" in text or "printf" in text):
            text = _STDIN_PASSWORD.sub(_stdin_replacement, text)
        if "(" in text and ("login(" in text or "bind" in text or "Auth(" in text):
            text = _LOGIN_CALL.sub(replace_group, text)
        if "alue" in text and ("ame" in text or "ey" in text):
            text = _NAME_VALUE.sub(self._namereplace_group, text)
        if "kty" in text:
            text = _JWK_PRIVATE.sub(replace_group, text)
        if "input_value=" in text:
            text = _PYDANTIC.sub(self._pydantic_replacement, text)
        if "[parameters: " in text:
            text = self._sqlalchemy(text)
        if "VALUES" in text or "values" in text:
            text = self._inserts(text)
        if "\u2514 " in text:
            text = self._variable_annotations(text)
        if text.count(":") >= 4:
            text = _PGPASS.sub(replace_group, text)
        if ("\n" in text or "\\n" in text) and (
            "," in text or ";" in text or "\t" in text or "\\t" in text
        ):
            text = self._csv(text)
        return text

    def _namereplace_group(self, match: re.Match[str]) -> str:
        if not self._sensitive(match["name"]):
            return match.group(0)
        group = "quoted" if match["quoted"] is not None else "bare"
        if group == "bare" and match[group].startswith("[REDACTED"):
            return match.group(0)
        return replace_group(match, group)

    def _pydantic_replacement(self, match: re.Match[str]) -> str:
        if not any(self._sensitive(part) for part in re.split(r"[.\s]", match["loc"]) if part):
            return match.group(0)
        return replace_group(match)

    def _variable_annotations(self, text: str) -> str:
        """better-exceptions and loguru's ``diagnose``: a value under its name's column.

        ::

            connect(user, password)
            │       │     └ 'hunter2'
        """
        lines = text.split("\n")
        source = ""
        block: list[int] = []
        for index, line in enumerate([*lines, ""]):
            if _ANNOTATION.match(line) is not None:
                block.append(index)
                continue
            if block:
                self._annotated_block(source, lines, block)
                block = []
            source = line
        return "\n".join(lines)

    def _annotated_block(self, source: str, lines: list[str], block: list[int]) -> None:
        marks = [_ANNOTATION.match(lines[index]) for index in block]
        names = [
            _NAME_AT.match(source, mark.start("mark"))
            if mark is not None
            and not source[mark.start("mark") - 1 : mark.start("mark")].isalnum()
            else None
            for mark in marks
        ]
        # Columns that do not fall on names: the source line was shifted (a message in
        # front of it); any secret name in it redacts every value of the block.
        aligned = all(name is not None for name in names)
        anywhere = not aligned and any(
            self._sensitive(word) for token in _NAME_AT.findall(source) for word in token.split(".")
        )
        for index, mark, name in zip(block, marks, names, strict=True):
            secret = anywhere or (
                name is not None and self._sensitive(name.group(0).rpartition(".")[2])
            )
            if secret and mark is not None:
                lines[index] = lines[index][: mark.start("value")] + REDACTED

    def _columns_secret(self, names: list[str]) -> list[bool]:
        return [self._sensitive(name.strip().strip("\"`[]'")) for name in names]

    def _inserts(self, text: str) -> str:
        spans: list[tuple[int, int]] = []
        for match in _INSERT.finditer(text):
            secret = self._columns_secret(match["columns"].split(","))
            if any(secret):
                spans.extend(self._rows(text, match.end(), secret))
        return _apply(text, spans)

    def _rows(self, text: str, position: int, secret: list[bool]) -> list[tuple[int, int]]:
        """Redacted spans of the tuples from ``position`` on ("(...), (...)")."""
        spans: list[tuple[int, int]] = []
        while position < len(text) and text[position] in "([":
            parsed = bracketed_items(text, position)
            if parsed is None:
                # Never closed: everything after it may be a secret.
                spans.append((position + 1, len(text)))
                return spans
            items, position = parsed
            if text[items[0][0] : items[0][1]].lstrip().startswith(("(", "[")) if items else False:
                # executemany: a list of tuples.
                for start, _ in items:
                    inner = start + len(text[start:]) - len(text[start:].lstrip())
                    spans.extend(self._rows(text, inner, secret))
                return spans
            for index, span in enumerate(items):
                if index < len(secret) and secret[index]:
                    _replace_item(text, span, spans)
            while text.startswith((",", " ", "\n", "\t"), position):
                position += 1
        return spans

    def _sqlalchemy(self, text: str) -> str:
        spans: list[tuple[int, int]] = []
        for match in _SQL_AND_PARAMETERS.finditer(text):
            secret = self._placeholder_columns(match["sql"])
            if any(secret):
                spans.extend(self._rows(text, match.end(), secret))
        return _apply(text, spans)

    def _placeholder_columns(self, sql: str) -> list[bool]:
        """For each positional placeholder of ``sql``, whether its column is secret."""
        insert = _INSERT.search(sql)
        columns = self._columns_secret(insert["columns"].split(",")) if insert else []
        values_start = insert.end() if insert else len(sql)
        verdicts: list[bool] = []
        numbered: dict[int, bool] = {}
        in_values = 0
        for match in _SQL_PLACEHOLDER.finditer(sql):
            if match.start() >= values_start and in_values < len(columns):
                verdict = columns[in_values]
                in_values += 1
            else:
                before = _COLUMN_BEFORE.search(sql, max(0, match.start() - 70), match.start())
                verdict = before is not None and self._sensitive(before["name"])
            if match["number"] is not None:
                numbered[int(match["number"])] = verdict or numbered.get(
                    int(match["number"]), False
                )
            else:
                verdicts.append(verdict)
        if numbered:
            return [numbered.get(index, False) for index in range(1, max(numbered) + 1)]
        return verdicts

    def _csv(self, text: str) -> str:
        # Lines, also in a repr where line breaks are escaped ("'a,b\\nc,d'").
        lines = _LINE_BREAK.split(text)
        secret: list[bool] = []
        delimiter = ""
        changed = False
        for index in range(0, len(lines), 2):  # the line breaks sit between
            line = lines[index]
            if secret:
                row = _split_row(line.rstrip("\r"), delimiter)
                # More fields than the header: text follows the row; fewer: the table ended.
                if len(row) >= len(secret):
                    spans: list[tuple[int, int]] = []
                    for column, span in enumerate(row[: len(secret)]):
                        if secret[column]:
                            _replace_item(line, span, spans)
                    lines[index] = _apply(line, spans)
                    changed = changed or bool(spans)
                    continue
                secret = []
            header = _csv_header(line.rstrip("\r"))
            if header is not None:
                delimiter, names = header
                verdicts = self._columns_secret(names)
                secret = verdicts if any(verdicts) else []
        return "".join(lines) if changed else text


def _csv_header(line: str) -> tuple[str, list[str]] | None:
    header = _csv_names(line)
    quote = max(line.rfind("'"), line.rfind('"'))
    if header is None and quote >= 0:
        # In a repr or JSON, the header starts after the quote that opens the string.
        header = _csv_names(line[quote + 1 :])
    return header


def _csv_names(line: str) -> tuple[str, list[str]] | None:
    for delimiter in _CSV_DELIMITERS:
        if delimiter in line:
            names = line.split(delimiter)
            # "upstream said: name,password": a message in front of the header.
            names[0] = _HEADER_PREFIX.split(names[0].rstrip("'\""))[-1]
            if len(names) >= 2 and all(_CSV_NAME.fullmatch(name.strip()) for name in names):
                return delimiter, names
    return None


def _split_row(line: str, delimiter: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    start = position = 0
    while position < len(line):
        char = line[position]
        if char in "'\"":
            if line[start:position].strip() == "":
                position = _quote_end(line, position)
                continue
            if line[position + 1 : position + 2] in ("", "}", "]", ")", ",", ";", " "):
                # The quote closes the string the rows were logged in ("...,x'}").
                break

        if line.startswith(delimiter, position):
            spans.append((start, position))
            position += len(delimiter)
            start = position
            continue
        position += 1
    spans.append((start, position))
    return spans


def _stdin_replacement(match: re.Match[str]) -> str:
    return replace_group(match, "quoted" if match["quoted"] is not None else "bare")


def replace_group(match: re.Match[str], group: str = "value") -> str:
    """Return ``match``'s text with ``group`` replaced by the marker."""
    start, end = match.span(group)
    whole, offset = match.group(0), match.start()
    return whole[: start - offset] + REDACTED + whole[end - offset :]
