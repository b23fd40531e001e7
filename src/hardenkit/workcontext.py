"""Context follows work: request id, principal, tenant and deadline, carried into jobs.

Work started for a request often runs somewhere the request's context variables do not
reach: a Celery or arq job in another process, a worker task that was started at
startup and reads an ``asyncio.Queue``, a function sent to ``loop.run_in_executor``.
:class:`WorkContext` is the request's facts as a value: :meth:`WorkContext.capture` takes
them where the work is created, :meth:`WorkContext.headers` turns them into string
headers any publisher can carry (a Celery ``headers`` dict, an arq job argument, a Kafka
header list), :meth:`WorkContext.from_headers` reads them back strictly on the consuming
side, and :meth:`WorkContext.applied` sets them for the duration of the job, so log lines
carry the request id, :func:`~hardenkit.context.get_principal` answers and outbound calls
stay inside the request's deadline. :func:`bind` does all of it for a callable handed to
another task or thread in the same process.

The principal travels without its token claims (they may hold personal data): subject,
tenant(s), roles, scopes and how it was authenticated. Whoever can publish to the queue
can write these headers, as they can write the job's arguments: the broker must be as
trusted as the job's payload (sign messages that cross a trust boundary with
:func:`hardenkit.sign_message`).
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, TypeVar, overload

from hardenkit.auth.principal import Principal
from hardenkit.context import (
    deadline_var,
    get_principal,
    get_request_id,
    get_trace_id,
    principal_var,
    remaining_time,
    request_id_var,
    set_deadline,
    trace_id_var,
)
from hardenkit.requestid import is_valid_request_id

__all__ = [
    "DEADLINE_HEADER",
    "PRINCIPAL_HEADER",
    "REQUEST_ID_HEADER",
    "TRACE_ID_HEADER",
    "WorkContext",
    "WorkContextError",
    "bind",
    "inject",
]

P = ParamSpec("P")
R = TypeVar("R")

REQUEST_ID_HEADER: Final = "hardenkit-request-id"
"""The request id the work was created under."""
TRACE_ID_HEADER: Final = "hardenkit-trace-id"
"""The W3C trace id of the request, when one arrived."""
PRINCIPAL_HEADER: Final = "hardenkit-principal"
"""The verified caller as JSON: subject, tenant, tenants, roles, scopes, credential."""
DEADLINE_HEADER: Final = "hardenkit-deadline"
"""When the work must be finished, in Unix seconds (clocks of hosts differ; monotonic ones
are not comparable across processes at all)."""

_MAX_PRINCIPAL_BYTES: Final = 8192
_TRACE_ID_LENGTH: Final = 32


class WorkContextError(ValueError):
    """A header of a received job does not parse; names the header, never its value."""

    def __init__(self, header: str, problem: str) -> None:
        self.header = header
        super().__init__(f"{header}: {problem}")


@dataclass(frozen=True, slots=True)
class WorkContext:
    """The facts of the request a piece of work was created for.

    Attributes:
        request_id: The request id (log lines of the job carry it).
        trace_id: The W3C trace id of the request, if it had one.
        principal: The verified caller, without its token claims.
        deadline_at: When the work must be done, in Unix seconds; ``None``: no deadline.
    """

    request_id: str | None = None
    trace_id: str | None = None
    principal: Principal | None = None
    deadline_at: float | None = None

    @property
    def tenant(self) -> str | None:
        """The verified tenant the work is done for."""
        return self.principal.tenant if self.principal is not None else None

    @classmethod
    def capture(cls) -> WorkContext:
        """Take the current request's facts (all ``None`` outside a request)."""
        remaining = remaining_time()
        return cls(
            request_id=get_request_id(),
            trace_id=get_trace_id(),
            principal=get_principal(),
            deadline_at=None if remaining is None else time.time() + remaining,
        )

    def headers(self) -> dict[str, str]:
        """The facts as string headers; a fact that is ``None`` is left out."""
        headers: dict[str, str] = {}
        if self.request_id is not None:
            headers[REQUEST_ID_HEADER] = self.request_id
        if self.trace_id is not None:
            headers[TRACE_ID_HEADER] = self.trace_id
        if self.principal is not None:
            headers[PRINCIPAL_HEADER] = _principal_json(self.principal)
        if self.deadline_at is not None:
            headers[DEADLINE_HEADER] = repr(self.deadline_at)
        return headers

    @classmethod
    def from_headers(cls, headers: Mapping[str, object]) -> WorkContext:
        """Read the facts :meth:`headers` wrote; other headers are ignored.

        Header names match case-insensitively; values may be ``str`` or ``bytes``.

        Raises:
            WorkContextError: A hardenkit header is present but malformed (a request id
                the request-id middleware would refuse, a principal that is not the
                JSON :meth:`headers` writes, a deadline that is not a finite number).
        """
        found = _hardenkit_headers(headers)
        request_id = found.get(REQUEST_ID_HEADER)
        if request_id is not None and not is_valid_request_id(request_id):
            raise WorkContextError(REQUEST_ID_HEADER, "not a valid request id")
        trace_id = found.get(TRACE_ID_HEADER)
        if trace_id is not None and not _is_trace_id(trace_id):
            raise WorkContextError(TRACE_ID_HEADER, "not 32 lower-case hex digits")
        principal = found.get(PRINCIPAL_HEADER)
        deadline = found.get(DEADLINE_HEADER)
        return cls(
            request_id=request_id,
            trace_id=trace_id,
            principal=None if principal is None else _principal_from_json(principal),
            deadline_at=None if deadline is None else _deadline(deadline),
        )

    @contextmanager
    def applied(self) -> Iterator[WorkContext]:
        """Set these facts for the block (sync or async code), and restore what was there.

        The deadline can only shrink a deadline already in force; one that has passed
        leaves no time (:func:`~hardenkit.context.remaining_time` is 0).
        """
        tokens = (
            request_id_var.set(self.request_id),
            trace_id_var.set(self.trace_id),
            principal_var.set(self.principal),
        )
        deadline_token = (
            None
            if self.deadline_at is None
            else set_deadline(max(0.0, self.deadline_at - time.time()))
        )
        try:
            yield self
        finally:
            if deadline_token is not None:
                deadline_var.reset(deadline_token)
            principal_var.reset(tokens[2])
            trace_id_var.reset(tokens[1])
            request_id_var.reset(tokens[0])


def inject(headers: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Add the current request's facts to a publisher's ``headers`` dict and return it.

    Made for hooks such as Celery's ``before_task_publish`` signal, which hands over the
    message's headers to fill in; headers already there are not replaced.
    """
    for name, value in WorkContext.capture().headers().items():
        headers.setdefault(name, value)
    return headers


@overload
def bind(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...
@overload
def bind(function: Callable[P, R]) -> Callable[P, R]: ...
def bind(function: Callable[P, Any]) -> Callable[P, Any]:
    """Capture the current request's facts now; run ``function`` inside them when called.

    For work handed to code that does not copy the context: a queue read by a worker
    task started at startup, ``loop.run_in_executor``, a thread pool. A coroutine
    function stays one. (``asyncio.create_task`` and ``asyncio.to_thread`` copy the
    context themselves.)
    """
    captured = WorkContext.capture()
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
            with captured.applied():
                return await function(*args, **kwargs)

        return run_async

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> Any:
        with captured.applied():
            return function(*args, **kwargs)

    return run


def _hardenkit_headers(headers: Mapping[str, object]) -> dict[str, str]:
    names = (REQUEST_ID_HEADER, TRACE_ID_HEADER, PRINCIPAL_HEADER, DEADLINE_HEADER)
    found: dict[str, str] = {}
    for raw_name, value in headers.items():
        name = raw_name.lower() if isinstance(raw_name, str) else raw_name
        if name not in names:
            continue
        text = value
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError:
                raise WorkContextError(name, "not UTF-8") from None
        if not isinstance(text, str):
            raise WorkContextError(name, "not a string")
        found[name] = text
    return found


def _is_trace_id(value: str) -> bool:
    return len(value) == _TRACE_ID_LENGTH and all(c in "0123456789abcdef" for c in value)


def _principal_json(principal: Principal) -> str:
    return json.dumps(
        {
            "subject": principal.subject,
            "tenant": principal.tenant,
            "tenants": sorted(principal.tenants),
            "roles": sorted(principal.roles),
            "scopes": sorted(principal.scopes),
            "credential": principal.credential,
        },
        separators=(",", ":"),
    )


def _principal_from_json(text: str) -> Principal:
    if len(text.encode("utf-8")) > _MAX_PRINCIPAL_BYTES:
        raise WorkContextError(PRINCIPAL_HEADER, f"longer than {_MAX_PRINCIPAL_BYTES} bytes")
    try:
        data = json.loads(text)
    except ValueError:
        raise WorkContextError(PRINCIPAL_HEADER, "not JSON") from None
    if not isinstance(data, dict):
        raise WorkContextError(PRINCIPAL_HEADER, "not a JSON object")
    subject, tenant, credential = data.get("subject"), data.get("tenant"), data.get("credential")
    if not isinstance(subject, str) or not subject:
        raise WorkContextError(PRINCIPAL_HEADER, "subject must be a non-empty string")
    if tenant is not None and not isinstance(tenant, str):
        raise WorkContextError(PRINCIPAL_HEADER, "tenant must be a string or null")
    if not isinstance(credential, str):
        raise WorkContextError(PRINCIPAL_HEADER, "credential must be a string")
    sets = {name: data.get(name, []) for name in ("tenants", "roles", "scopes")}
    for name, values in sets.items():
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise WorkContextError(PRINCIPAL_HEADER, f"{name} must be a list of strings")
    return Principal(
        subject=subject,
        tenant=tenant,
        roles=frozenset(sets["roles"]),
        scopes=frozenset(sets["scopes"]),
        credential=credential,
        tenants=frozenset(sets["tenants"]),
    )


def _deadline(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise WorkContextError(DEADLINE_HEADER, "not a number") from None
    if not math.isfinite(value):
        raise WorkContextError(DEADLINE_HEADER, "not a finite number")
    return value
