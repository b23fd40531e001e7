r"""Named values inside free text: ``name=value`` in every notation a log line carries.

A value is secret here because of the name in front of it, judged by the same
:class:`KeyClassifier` as field names. The notations:

* assignments and pairs: ``password=x``, ``password = x`` (INI), ``password: x`` (YAML),
  ``"password": "x"`` (JSON), ``password='x'`` (reprs, keyword arguments, libpq), and
  the same with quotes escaped one or more levels deep (``\"password\": \"x\"``, JSON
  inside a JSON string);
* tuple pairs in reprs: ``('password', 'x')`` (``dict_items``, header lists);
* XML elements: ``<password>x</password>``, CDATA included;
* command lines: ``--password=x``, ``--password x``, the short flags of the clients
  that take a password inline (``mysql -px``, ``redis-cli -a x``, ``sshpass -p x``,
  ``curl -u user:x``) and Oracle's ``sqlplus user/password@db``.

An unquoted value under a secret name runs past spaces to the next ``name=`` pair or the
end of the line (``password=horse battery staple user=bob``); an ``Authorization`` value
runs to the end of the line whatever its scheme; an ODBC ``PWD={...}`` runs to its
closing brace; a YAML key with nothing after its colon owns the indented block below.

Names are found first and values read after them with quote-aware rules, so a name
that is not secret consumes nothing and the pairs nested in its value (an SNS envelope's
``Message``) are still found. A quoted value that never closes is redacted to the end of
its line: the scanner fails closed.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import unquote

from hardenkit.logs._keys import KeyClassifier
from hardenkit.logs._positional import PositionalScanner, bracketed_items, replace_group

__all__ = ["AssignmentScanner"]

REDACTED = "[REDACTED]"

# A name, optionally quoted (escaped quotes included), then ':' or '='. Not preceded by a
# name character, so "x-api-key=" is one name and "--password=" is a flag (below); an
# escaped line break ("\npassword=" in a repr) separates like a real one.
# Names may be percent-encoded ("user%5Bpassword%5D=", "%70assword="), \u-escaped
# ("pass\u0077ord", "\u0070assword") or spelled with lookalike letters.
_ASSIGNMENT = re.compile(
    r"(?:(?<![\w.\-\[\]\\%])|(?<=\\[nrt]))(?:b(?=\\{0,7}[\"']))?(?P<q>\\{0,7}[\"']|)"
    r"(?P<name>(?:[^\W\d]|%[0-9A-Fa-f]{2}|\\u[0-9A-Fa-f]{4})[\w.\-\[\]%\\]{0,63})(?P=q)"
    r"(?P<sep>[ \t]*(?:=>|[:=])[ \t]*)"
)
# ('password', 'x'): a pair in a repr (dict_items, header lists, a tuple of settings).
_PAIR = re.compile(
    r"\(b?(?P<q>\\{0,7}[\"'])(?P<name>[^\W\d][\w.\-]{0,63})(?P=q)(?P<sep>,[ \t]*)(?=b?\\{0,7}[\"'])"
)
# A quote opens a value; a bytes repr (b'...') too, and a wrapper's call around it
# (password=SecretStr('...'), token=Token("...")).
_OPENING_QUOTE = re.compile(r"b?(\\{0,7}[\"'])")
_WRAPPED_QUOTE = re.compile(r"[A-Za-z_][\w.]{0,63}\([ \t]*b?(\\{0,7}[\"'])")
# Unquoted values: a query parameter stops at '&', a JSON or YAML value at ',' or '}'.
_BARE_AFTER_EQUALS = re.compile(r"[^\s,;\"'<>]+")
# Inside a bare value, '&' ends it only when another pair follows ("token=x&page=2"); a
# random key may hold '&' and '#' ("k#3@x!v8(z^m_2q$w0e+r&t*y5...").
_NEXT_PAIR = re.compile(r"&+(?=(?:[^\W\d]|%[0-9A-Fa-f]{2})[\w.\-\[\]%]*=)|&+\Z")
# A word that starts the next pair or option: where a spaced value stops.
_NEXT_WORD = re.compile(r"[ \t]+(?P<word>[^\s\"'<>]+)")
_STARTS_PAIR = re.compile(r"(?:[^\W\d]|%[0-9A-Fa-f]{2})[\w.\-\[\]%]*[=:]|-|\[REDACTED|\|")
# ODBC escapes a brace inside a braced value by doubling it; fail closed on a stray one.
_BRACED = re.compile(r"\{.*?\}(?=[;\s\"']|\Z)")
_BLOCK_INDICATOR = re.compile(r"[|>][+-]?[ \t]*(?=\r?\n)")
_BARE_AFTER_COLON = re.compile(r"[^\s,;}\]\"'\\]+")
_LIST_SEPARATORS = re.compile(r"[&;,=]")
# Characters of one text walked in Python to find where the brackets after its secret
# names close: a text of many unclosed or late-closing brackets was walked once per name
# (60 KB took 20 s, round 22), while a list over many lines must be found whole (round
# 23). Past the budget, a bracket that has not closed redacts the rest of the text.
_BRACKET_BUDGET = 16_384
_QUERY_PARAMETER = re.compile(r"[A-Za-z_][\w.-]{0,63}=")
_OPENERS = {")": "(", "]": "[", "}": "{"}
_KEY_RUN_END = re.compile(r"[\s,;'\"]")
# An item of a tuple or list as Python prints it: a string or bytes literal, a number,
# None, True or False, with the spaces around it (empty: "()", a trailing comma).
# The spaces after the literal belong to it, so no two space runs overlap (an item of
# spaces only would otherwise be matched in quadratic time).
_LITERAL_ITEM = re.compile(
    r"""\s*(?:(?:[bBrRuU]{0,2}(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
    r"|[-+]?\d[\d_.eE+-]*|None|True|False)\s*)?"
)
# Bind parameters and format placeholders stand for a value; they are not one
# ("SET password_hash = %(password_hash)s", "password = $1", "password=%s").
# A braced name is a str.format field, unless a ';' follows (ODBC: "PWD={hunter2};").
_PLACEHOLDER = re.compile(
    r"(?:%(?:\(\w+\))?[sdr]|\$\d+|\?|:\w+)(?![^\s,;)&])|\{(?:[A-Za-z_]\w*|\d*)\}(?![^\s,)&])"
)
_XML_ELEMENT = re.compile(
    r"<(?P<name>[A-Za-z_][\w.:-]{0,63})(?:\s[^<>]*)?>"
    r"(?P<value>(?:<!\[CDATA\[.*?\]\]>|[^<])*)</(?P=name)\s*>",
    re.DOTALL,
)
_LONG_FLAG = re.compile(r"(?<![\w-])--(?P<name>[A-Za-z][A-Za-z0-9_-]{0,63})(?P<sep>=|[ \t]+)")
# After "--password ", another option rather than a value: "--host", "-v". Anything
# else, "-x9Tq..." included, may be the password.
_NEXT_FLAG = re.compile(r"--[A-Za-z][\w-]*(?:=\S*)?|-[A-Za-z]")
_FLAG_VALUE = re.compile(r"\"[^\"\n]*\"?|'[^'\n]*'?|[^\s\"']+")
# Clients whose short flags carry a password inline.
# A client is a word of its own: at the start, after a space, a quote, a path or a shell
# separator, and followed by a space ("!7z." inside a password is not 7z).
_CLIENT = (
    r"(?<![^\s\"'|;&(/=,\[])(?:mysql(?:dump|admin|import|show|check|pump|sh|binlog)?|mariadb"
    r"(?:-dump|-admin)?|redis-cli|sshpass|curl|7za?|unzip|zip|docker[ \t]+login)(?=[\s\"']|\Z)"
)
# A client's arguments run to the end of its command: a line end, a pipe or a list
# separator, or the next client named on the same line.
_CLIENTS = re.compile(rf"(?P<client>{_CLIENT})(?P<arguments>(?:(?!{_CLIENT})[^\r\n|;&])*)")
_CLIENT_NAMES = ("mysql", "mariadb", "redis-cli", "sshpass", "curl", "7z", "zip", "docker")
# mysql's -p takes its value glued only: "mysql -p db" prompts, and db is a database.
_MYSQL_PASSWORD = re.compile(r"(?<=\s)-p(?P<value>\"[^\"]*\"|'[^']*'|\S+)")


def _spaced_flag(flag: str) -> re.Pattern[str]:
    return re.compile(rf"(?<=\s){flag}[ \t]*(?P<value>\"[^\"]*\"|'[^']*'|\S+)")


_SPACED_PASSWORD = {
    "redis-cli": _spaced_flag("-a"),
    "sshpass": _spaced_flag("-p"),
    "unzip": _spaced_flag("-P"),
    "zip": _spaced_flag("-P"),
    "docker login": _spaced_flag("-p"),
}
_CURL_USER = re.compile(
    r"(?:(?<=\s)-u[ \t]*|(?<=\s)--user(?:=|[ \t]+))(?P<user>[^\s:]*):(?P<value>\S+)"
)
_STRONG_BARE_NAMES = frozenset(
    {"password", "passwd", "pwd", "passphrase", "passcode", "secret", "authorization", "cookie"}
    | {"pw", "psw", "pword", "userpass", "creds", "salt"}
)
# Oracle clients log in with "user/password@db" as their first argument.
_ORACLE_LOGIN = re.compile(
    r"(?<![\w-])(?:sqlplus|sqlldr|expdp|impdp|rman)(?:[ \t]+-[A-Za-z]+)*[ \t]+[\"']?"
    r"[\w$#.]+/(?P<value>[^\s\"']+)"
)
_END_OF_STRING = re.compile(r"(?<!\\)[\"']|\n|\Z")
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
# Commands that take a password as a positional word: Redis "AUTH [user] password" at
# the end of a line, .netrc "login bob password x", "aws configure set <name> <value>",
# "htpasswd -b file user password", PowerShell "ConvertTo-SecureString 'x' -AsPlainText".
_POSITIONAL = re.compile(
    r"(?m)(?<![\w-])AUTH[ \t]+(?:\S+[ \t]+)?(?P<auth>\S+)[ \t]*$"
    r"|\blogin[ \t]+[^\s:=]+[ \t]+password[ \t]+(?P<netrc>[^\s:=]\S*)"
    r"|\baws[ \t]+configure[ \t]+set[ \t]+(?P<name>\S+)[ \t]+(?P<setting>\S+)"
    r"|\bhtpasswd(?=[^\n]*[ \t]-[A-Za-z]*b)(?:[ \t]+-[A-Za-z]+)*"
    r"[ \t]+\S+[ \t]+\S+[ \t]+(?P<htpasswd>\S+)"
    r"|ConvertTo-SecureString[ \t]+(?:-String[ \t]+)?(?P<quote>[\"'])(?P<pwsh>[^\"'\n]*)(?P=quote)"
)
# OpenSSL's password arguments: "-passin pass:secret", "-passout pass:secret".
_OPENSSL_PASS = re.compile(r"(?<![\w-])-pass(?:in|out|word)?[ \t\"',]+pass:(?P<value>[^\s\"']+)")
_NOT_SECRET = (-1, -1)  # a value that a rule of its own says is not a secret
_FIRST_WORD = re.compile(r"[^\s\"'<>&;,)\]}]+")
_NUMBER = re.compile(r"[0-9]+")
_CLOSING_QUOTES: dict[str, re.Pattern[str]] = {}


def _closing(quote: str) -> re.Pattern[str]:
    pattern = _CLOSING_QUOTES.get(quote)
    if pattern is None:
        # The same quote, not itself escaped one level deeper.
        pattern = re.compile(r"(?<!\\)" + re.escape(quote) + r"|\n")
        _CLOSING_QUOTES[quote] = pattern
    return pattern


def _at_line_start(text: str, position: int) -> bool:
    # Walks back over indentation only: linear however many names a long line holds.
    while position > 0 and text[position - 1] in " \t":
        position -= 1
    return position == 0 or text[position - 1] == "\n"


def _ends_the_value(text: str, after: int, name_start: int) -> bool:
    """Whether what follows a bracketed value at ``after`` ends it.

    The text's end, a space, ``,``, ``;`` or a quote; ``&`` only before another query
    parameter; a closing bracket only when it closes one opened before the name
    (``f(auth=('a', 'b'))``). A Django key's alphabet holds ``)``, ``&`` and digits, so
    ``(3)&b2...`` and ``(4))b2...`` are keys, not a tuple and what follows (round 22).
    """
    if after >= len(text):
        return True
    char = text[after]
    if char.isspace() or char in ",;'\"":
        return True
    if char == "&":
        return _QUERY_PARAMETER.match(text, after + 1) is not None
    opener = _OPENERS.get(char)
    if opener is None:
        return False
    line = text[max(text.rfind("\n", 0, name_start) + 1, name_start - 256) : name_start]
    return line.count(opener) > line.count(char)


def _line_end(text: str, position: int) -> int:
    end = text.find("\n", position)
    end = len(text) if end < 0 else end
    return end - 1 if end > position and text[end - 1] == "\r" else end


class AssignmentScanner:
    """Replaces the values of secret names inside text, whatever the notation.

    Args:
        keys: Decides which names hold secrets.
    """

    def __init__(self, keys: KeyClassifier) -> None:
        self._keys = keys
        self._positional = PositionalScanner(keys.is_sensitive)
        # Per thread, the text being scanned and what is left of its budget for walking
        # brackets after secret names (_bracketed_span).
        self._brackets = threading.local()

    def scan(self, text: str) -> str:
        """Return ``text`` with the value of every secret name replaced."""
        self._brackets.text = None  # the same text logged again gets a budget anew
        # Values told by their place first: "key='x-api-key', value='...'" needs the
        # name before the query-parameter rule for "key=" replaces it.
        text = self._positional.scan(text)
        # Command lines next: a name's value that runs past spaces must not swallow
        # the client or flag that says what follows ("password=x mysql -pSECRET").
        if "--" in text:
            text = self._long_flags(text)
        if " -" in text and any(client in text for client in _CLIENT_NAMES):
            text = _CLIENTS.sub(_client_replacement, text)
        if "pass:" in text:
            text = _OPENSSL_PASS.sub(replace_group, text)
        if (
            "AUTH " in text
            or "login " in text
            or "configure set" in text
            or "SecureStr" in text
            or "htpasswd" in text
        ):
            text = _POSITIONAL.sub(self._positional_replacement, text)
        if "/" in text and (
            "sqlplus" in text or "dp " in text or "sqlldr" in text or "rman " in text
        ):
            text = _ORACLE_LOGIN.sub(_oracle_replacement, text)
        if (
            "=" in text
            or ": " in text
            or '":' in text
            or "':" in text
            or ":\n" in text
            # Go's %+v ("&{User:app Password:x}") and a bare "Password:x"
            or (":" in text and ("{" in text or "ssword:" in text))
        ):
            text = self._assignments(text, _ASSIGNMENT)
        if "', " in text or '", ' in text:
            text = self._assignments(text, _PAIR)
        if "</" in text:
            text = _XML_ELEMENT.sub(self._xml_replacement, text)
        return text

    def _assignments(self, text: str, pattern: re.Pattern[str]) -> str:
        pieces: list[str] = []
        done = 0
        for found in pattern.finditer(text):
            match = _after_escaped_break(pattern, text, found) if "\\" in found["name"] else found
            if match.start() < done or not self._secret_name(match):
                continue
            span = self._value_span(text, match)
            if span is None:
                continue
            start, end = span
            if text.endswith(":", start, end) and text.startswith("\n", end):
                # The value ran to the end of a line that opens a YAML block ("...
                # password:"): the block under it goes too, or its items would be left.
                block = _yaml_block(text, start, end)
                end = end if block is None else block[1]
            pieces.append(text[done:start])
            pieces.append(REDACTED)
            done = end
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)

    def _secret_name(self, match: re.Match[str]) -> bool:
        name = match["name"]
        if "%" in name:
            name = unquote(name)
        if "\\u" in name:  # a JSON name with escaped letters ("pass\u0077ord")
            name = _UNICODE_ESCAPE.sub(lambda escape: chr(int(escape[1], 16)), name)
        # An unquoted "name: value" is English as often as it is data ("token: expired"):
        # only identifier-like names (x-api-key, access_token) or unmistakable ones count.
        if (
            not match["q"]
            and ":" in match["sep"]
            and "-" not in name
            and "_" not in name
            and name.lower() not in _STRONG_BARE_NAMES
        ):
            return False
        return self._keys.is_sensitive_parameter(name)

    def _value_span(self, text: str, match: re.Match[str]) -> tuple[int, int] | None:
        position = match.end()
        quote = _OPENING_QUOTE.match(text, position)
        if quote is None and text.find("(", position, position + 65) >= 0:
            quote = _WRAPPED_QUOTE.match(text, position)
        if quote is not None:
            start = quote.end()
            closing = _closing(quote.group(1)).search(text, start)
            if closing is None or closing.group(0) == "\n":
                # Never closed on its line: everything after the quote may be the secret.
                return start, _line_end(text, start)
            return start, closing.start()
        if (
            text.startswith("[REDACTED", position)
            # "password == expected": a comparison, not a value
            or (text.startswith("=", position) and not match["sep"].endswith((" ", "\t")))
            or _PLACEHOLDER.match(text, position) is not None
        ):
            return None
        special = self._special_span(text, match)
        if special is not None:
            return None if special == _NOT_SECRET else special
        return self._unquoted_span(text, match)

    def _special_span(  # noqa: PLR0911 - one rule per notation
        self, text: str, match: re.Match[str]
    ) -> tuple[int, int] | None:
        """The value's span for the notations with rules of their own, else None."""
        position, name = match.end(), match["name"]
        is_colon = ":" in match["sep"]
        if text[position : position + 1] in ("(", "[") and self._keys.is_sensitive(name):
            return self._bracketed_span(text, match)
        if text.startswith("{", position) and not is_colon:
            braced = _BRACED.match(text, position)
            return (position, _line_end(text, position)) if braced is None else braced.span()
        if "uthoriz" in name or "UTHORIZ" in name:
            # "Authorization: Digest username=..., response=...": every scheme's
            # credential is the rest of the line.
            end = _line_end(text, position)
            return (position, end) if end > position else _NOT_SECRET
        if is_colon:
            block = _yaml_block(text, match.start(), position)
            if block is not None:
                return block
        first = (
            _FIRST_WORD.match(text, position)
            if "0" <= text[position : position + 1] <= "9"
            else None
        )
        if first is not None and _NUMBER.fullmatch(first.group(0)):
            if self._keys.names_a_count(name):
                return _NOT_SECRET  # "tokens=123": a count
            if len(first.group(0)) <= 3 and not self._keys.is_sensitive(name):
                return _NOT_SECRET  # "code=404": a status, under a name secret in URLs
        return None

    def _bracketed_span(self, text: str, match: re.Match[str]) -> tuple[int, int]:
        """The span of a secret-named value that opens with a bracket.

        ``auth=('bob', '...')``: a tuple or list of literals that ends there goes whole,
        its brackets kept. Anything else is a key of symbols that opens with a bracket
        (``SECRET_KEY = (a1)&b2...``, ``())b...``, ``(3)&b...``): from the bracket to its
        close at least, and on as any unquoted value runs, or up to the next space,
        separator or quote.
        """
        position = match.end()
        state = self._brackets
        if getattr(state, "text", None) is not text:  # a new text: a new budget
            state.text = text
            state.budget = _BRACKET_BUDGET
            state.last_close = max(text.rfind(")"), text.rfind("]"), text.rfind("}"))
        if position > state.last_close:  # it never closes: the rest of its line
            return position + 1, _line_end(text, position)
        if state.budget <= 0:  # past the budget: fail closed, the rest of the text
            return position + 1, len(text)
        limit = position + state.budget
        items = bracketed_items(text, position, limit)
        state.budget -= (min(len(text), limit) if items is None else items[1]) - position
        if items is None:
            # Never closed (the closers after it closed inner brackets), or the budget
            # ran out before it did (fail closed).
            return position + 1, _line_end(text, position) if limit >= len(text) else len(text)
        spans, after = items
        literals = any(text[start:end].strip() for start, end in spans) and all(
            _LITERAL_ITEM.fullmatch(text, start, end) for start, end in spans
        )
        if literals and _ends_the_value(text, after, match.start()):
            return position + 1, after - 1
        end = after
        unquoted = self._unquoted_span(text, match)
        if unquoted is not None:
            end = max(end, unquoted[1])
        stop = _KEY_RUN_END.search(text, after)
        return position, max(end, _line_end(text, after) if stop is None else stop.start())

    def _unquoted_span(self, text: str, match: re.Match[str]) -> tuple[int, int] | None:
        position, separator = match.end(), match["sep"]
        is_colon = ":" in separator
        spaced = separator != separator.strip()
        if not match["q"] and ((spaced and not is_colon) or _at_line_start(text, match.start())):
            # INI and YAML lines ("password = a b c"): the value runs to the end of the
            # line, spaces included, unless it is a list of parameters ("token=x&page=2").
            end = _line_end(text, position)
            if end > position and (
                is_colon or spaced or _LIST_SEPARATORS.search(text, position, end) is None
            ):
                return position, end
        bare = (_BARE_AFTER_COLON if is_colon else _BARE_AFTER_EQUALS).match(text, position)
        if bare is None:
            return None
        end = bare.end()
        if not is_colon and text.find("&", position, end) >= 0:
            cut = _NEXT_PAIR.search(text, position, end)
            if cut is not None:
                end = cut.start()
                if end == position:
                    return None
        name = match["name"]
        if not self._keys.is_sensitive(unquote(name) if "%" in name else name):
            return position, end  # a query parameter ("key", "sig"): one word
        return position, _spaced_value_end(text, end)

    def _positional_replacement(self, match: re.Match[str]) -> str:
        group = next(
            name
            for name in ("auth", "netrc", "setting", "htpasswd", "pwsh")
            if match[name] is not None
        )
        if group == "setting" and not self._keys.is_sensitive(match["name"]):
            return match.group(0)
        return replace_group(match, group)

    def _xml_replacement(self, match: re.Match[str]) -> str:
        if not match["value"] or not self._keys.is_sensitive(match["name"]):
            return match.group(0)
        return replace_group(match)

    def _long_flags(self, text: str) -> str:
        pieces: list[str] = []
        done = 0
        for match in _LONG_FLAG.finditer(text):
            name = match["name"]
            if match.start() < done or name.startswith("no-"):
                continue
            if not self._keys.is_sensitive(name):
                continue
            value = _FLAG_VALUE.match(text, match.end())
            if value is None or (match["sep"] != "=" and _NEXT_FLAG.fullmatch(value.group(0))):
                continue
            if value.group(0).startswith("[REDACTED"):
                continue
            pieces.append(text[done : value.start()])
            pieces.append(REDACTED)
            done = value.end()
        if not pieces:
            return text
        pieces.append(text[done:])
        return "".join(pieces)


def _after_escaped_break(
    pattern: re.Pattern[str], text: str, match: re.Match[str]
) -> re.Match[str]:
    r"""The pair whose name follows an escaped line break inside ``match``'s name.

    In a repr, ``x\\r\\nCookie: ...`` reads as one name; the name is ``Cookie``.
    """
    name = match["name"]
    cut = max(name.rfind("\\n"), name.rfind("\\r"), name.rfind("\\t"))
    if cut < 0:
        return match
    again = pattern.match(text, match.start("name") + cut + 2)
    return match if again is None else again


def _yaml_block(text: str, key_start: int, position: int) -> tuple[int, int] | None:
    """The block under "password:" (a list, a "|" scalar) when that is the value."""
    if text.startswith(("\\n", "\\r\\n"), position):
        # A YAML document inside a repr or JSON string, its line breaks escaped: the
        # block is the rest of that string.
        string_end = _END_OF_STRING.search(text, position)
        return position, len(text) if string_end is None else string_end.start()
    line_end = _line_end(text, position)
    if _BLOCK_INDICATOR.match(text, position) is None and text[position:line_end].strip():
        return None
    start = text.find("\n", position) + 1
    if start == 0:
        return None
    line_start = text.rfind("\n", 0, key_start) + 1
    key_line = text[line_start:key_start]
    indent = len(key_line) - len(key_line.lstrip(" \t"))
    end = start
    while end < len(text):
        next_end = _line_end(text, end)
        line = text[end:next_end]
        depth = len(line) - len(line.lstrip(" \t"))
        # More indented than the key, or a list item at the key's own indentation.
        if line.strip() and depth <= indent and not line.startswith("- ", indent):
            break
        end = min(next_end + 1, len(text))
        if next_end >= len(text):
            break
    block = text[start:end].rstrip("\r\n")
    body_start = start + len(block) - len(block.lstrip(" \t\r\n"))
    body_end = start + len(block)
    return (body_start, body_end) if body_end > body_start else None


def _spaced_value_end(text: str, end: int) -> int:
    """Where an unquoted value that stopped at a space ends: at the next pair or option.

    ``password=horse battery staple user=bob``: the value is ``horse battery staple``.
    """
    while True:
        word = _NEXT_WORD.match(text, end)
        if word is None or _STARTS_PAIR.match(word["word"]) is not None:
            return end
        cut = _NEXT_PAIR.search(text, word.start("word"), word.end())
        if cut is not None:
            return cut.start()
        end = word.end()


def _client_replacement(match: re.Match[str]) -> str:
    client, arguments = match["client"], match["arguments"]
    if client.startswith("docker"):  # "docker  login", however many spaces
        return client + _SPACED_PASSWORD["docker login"].sub(replace_group, arguments)
    if client == "curl":
        arguments = _CURL_USER.sub(replace_group, arguments)
    elif client in _SPACED_PASSWORD:
        arguments = _SPACED_PASSWORD[client].sub(replace_group, arguments)
    else:
        arguments = _MYSQL_PASSWORD.sub(replace_group, arguments)
    return client + arguments


def _oracle_replacement(match: re.Match[str]) -> str:
    # "user/password@db": the connect identifier follows the last '@'.
    value = match["value"]
    at = value.rfind("@")
    start = match.start("value") - match.start()
    kept = value[at:] if at > 0 else ""
    return match.group(0)[:start] + REDACTED + kept
