"""Griffe extension for the API reference: Sphinx roles in docstrings become code spans.

hardenkit's docstrings name other objects with Sphinx roles (:class:`Rate`,
:func:`~hardenkit.install`), which read well in the source and in ``help()``; the
Markdown the reference is rendered from would show them verbatim.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")


def _span(match: re.Match[str]) -> str:
    target = match.group(2)
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` as a code span (``~`` keeps the last name only)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_span, obj.docstring.value)
