"""Commands logged as lists: ``['mysql', '-phunter2']``, ``('HSET', 'u:1', 'password', 'x')``.

``subprocess`` takes a command as a list, and so it is logged: as a list in an event, or
as the list's repr inside a message (``CalledProcessError``: "Command '['mysql', ...]'
returned non-zero exit status 1."). A flag and its value sit in separate items, so
scanning the items one at a time would never see ``--password`` next to its value. Such
a list is scanned as the command line it stands for, with the same text scanner, and
split back into its items.

Lists also carry names and values side by side without any option: Redis commands
(``CONFIG SET requirepass ...``, ``HSET key password ...``, redis-py's ``HELLO 3 AUTH
user ...``), flat header lists (``[b"authorization", b"Bearer ...", b"host", ...]``).
:func:`named_values` finds the item a secret name right before it marks, as a
``{"name": value}`` field would be judged, and the items after ``AUTH``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence

__all__ = ["looks_like_argv", "named_values", "redact_argv", "redact_argv_reprs"]

REDACTED = "[REDACTED]"

# The repr of a list or tuple of at least two plain strings.
_ITEM = r"(?:'[^'\\\n]*'|\"[^\"\\\n]*\")"
_ARGV_REPR = re.compile(rf"[\[(]{_ITEM}(?:,[ ]{_ITEM})+,?[\])]")


# Commands whose password is a positional word: no option marks them as commands.
_POSITIONAL_COMMANDS = frozenset({"AUTH", "auth"})
# An item that may be a name: a word, not a sentence or a value with spaces.
_NAME = re.compile(r"[A-Za-z_][\w.-]{0,63}")
# Redis's AUTH inside a command: "HELLO 3 AUTH <user> <password>", "MIGRATE ... AUTH
# <password> [KEYS ...]", "AUTH2 <user> <password>". The password is the second item
# after it when a second one follows that is not the command's next keyword.
_AUTH_KEYWORDS = frozenset({"KEYS", "SETNAME", "COPY", "REPLACE", "AUTH", "AUTH2"})
_SCALARS = (str, bytes, int, float)


def named_values(
    items: Sequence[object], is_secret_name: Callable[[str], bool], *, argv: bool
) -> dict[int, str]:
    """The positions of the items a name before them marks as secret, with that name.

    ``['user', 'bob', 'password', 'x']`` gives ``{3: 'password'}``. Only a word is a
    name (not a command line's program), and only a plain value (text, bytes, a
    number) follows it as its value. Read left to right: an item taken as a value is
    never read as a name, however it looks (a password shaped like ``'pw_A1'`` would
    otherwise pass as a name and stay). A list of field names pays for that: the name
    after a secret one is hidden (``['token', '[REDACTED]']``).
    """
    found: dict[int, str] = {}
    # A command line's (``argv``: :func:`looks_like_argv`) first word is its program
    # (htpasswd, passwd), not a name.
    index = 1 if argv else 0
    last = len(items) - 1
    while index < last:
        name = _name_at(items, index)
        index += 1
        if name is None:
            continue
        keyword = name.upper()
        if keyword in ("AUTH", "AUTH2"):
            second = _name_at(items, index + 1) if index + 1 <= last else None
            takes_user = keyword == "AUTH2" or (
                index + 1 <= last and (second is None or second.upper() not in _AUTH_KEYWORDS)
            )
            position = index + 1 if takes_user else index
        elif is_secret_name(name):
            position = index
        else:
            continue
        value = items[position]
        if isinstance(value, _SCALARS) and not isinstance(value, bool):
            found[position] = name
            index = position + 1
    return found


def _name_at(items: Sequence[object], index: int) -> str | None:
    item = items[index]
    name = item.decode("latin-1") if isinstance(item, bytes) else item
    if type(name) is str and _NAME.fullmatch(name) is not None:
        return name
    return None


def looks_like_argv(items: Sequence[object]) -> bool:
    """Whether ``items`` is a command: strings only, an option after the program."""
    if len(items) < 2 or not all(type(item) is str for item in items):
        return False
    return items[0] in _POSITIONAL_COMMANDS or any(str(item).startswith("-") for item in items[1:])


def redact_argv(items: Sequence[str], scan: Callable[[str], str]) -> list[str] | str:
    """Return the items with what ``scan`` finds in the joined command line replaced.

    When a replacement spans items in a way that cannot be split back (a value that
    swallowed the rest of the line), the redacted line is returned instead: the shape
    is lost, the secret is not shown.
    """
    line = " ".join(items)
    scanned = scan(line)
    if scanned == line:
        return [scan(item) for item in items]
    words = scanned.split(" ")
    if len(words) != line.count(" ") + 1:
        return scanned
    result: list[str] = []
    index = 0
    for item in items:
        count = item.count(" ") + 1
        result.append(" ".join(words[index : index + count]))
        index += count
    return result


def redact_argv_reprs(
    text: str, scan: Callable[[str], str], is_secret_name: Callable[[str], bool]
) -> str:
    """Return ``text`` with every list or tuple repr that is a command line redacted."""
    return _ARGV_REPR.sub(lambda match: _redact_repr(match, scan, is_secret_name), text)


def _redact_repr(
    match: re.Match[str], scan: Callable[[str], str], is_secret_name: Callable[[str], bool]
) -> str:
    whole = match.group(0)
    try:
        items = ast.literal_eval(whole)
    except (ValueError, SyntaxError):
        return whole
    if not isinstance(items, list | tuple):
        return whole
    argv = looks_like_argv(items)
    named = named_values(items, is_secret_name, argv=argv)
    if argv:
        redacted = redact_argv(items, scan)
        if isinstance(redacted, str):
            return repr(redacted)
    elif named:
        redacted = list(items)
    else:
        return whole
    for index in named:
        redacted[index] = REDACTED
    return repr(redacted if isinstance(items, list) else tuple(redacted))
