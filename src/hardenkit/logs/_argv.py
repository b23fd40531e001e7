"""Command lines logged as lists: ``['mysql', '-phunter2']``, ``('x', '--password', 'y')``.

``subprocess`` takes a command as a list, and so it is logged: as a list in an event, or
as the list's repr inside a message (``CalledProcessError``: "Command '['mysql', ...]'
returned non-zero exit status 1."). A flag and its value sit in separate items, so
scanning the items one at a time would never see ``--password`` next to its value. Such
a list is scanned as the command line it stands for, with the same text scanner, and
split back into its items.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Sequence

__all__ = ["looks_like_argv", "redact_argv", "redact_argv_reprs"]

# The repr of a list or tuple of at least two plain strings.
_ITEM = r"(?:'[^'\\\n]*'|\"[^\"\\\n]*\")"
_ARGV_REPR = re.compile(rf"[\[(]{_ITEM}(?:,[ ]{_ITEM})+,?[\])]")


# Commands whose password is a positional word: no option marks them as commands.
_POSITIONAL_COMMANDS = frozenset({"AUTH", "auth"})


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


def redact_argv_reprs(text: str, scan: Callable[[str], str]) -> str:
    """Return ``text`` with every list or tuple repr that is a command line redacted."""
    return _ARGV_REPR.sub(lambda match: _redact_repr(match, scan), text)


def _redact_repr(match: re.Match[str], scan: Callable[[str], str]) -> str:
    whole = match.group(0)
    try:
        items = ast.literal_eval(whole)
    except (ValueError, SyntaxError):
        return whole
    if not isinstance(items, list | tuple) or not looks_like_argv(items):
        return whole
    redacted = redact_argv(items, scan)
    if isinstance(redacted, str):
        return repr(redacted)
    return repr(redacted if isinstance(items, list) else tuple(redacted))
