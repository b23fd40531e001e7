"""Problem answers of the app's own handlers, declared in FastAPI's ``responses=``."""

from __future__ import annotations

from typing import Any

from hardenkit._openapi import problem_response

__all__ = ["problem_responses"]


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Document statuses a handler answers with a :class:`~hardenkit.HardenError`.

    The stack's own answers (401, 403, 413, 422, 429, 503, 504) are documented by
    :func:`hardenkit.install`; a handler that raises, say, ``HardenError(status=409)``
    declares it here so the document stays true::

        @app.post("/items", responses=problem_responses(409))

    Every status refers to the one ``Problem`` schema, as ``application/problem+json``.

    Raises:
        ValueError: A status that is not an error (below 400 or above 599).
    """
    for status in statuses:
        if not 400 <= status <= 599:
            raise ValueError(f"{status} is not an error status")
    return {status: problem_response(status) for status in statuses}
