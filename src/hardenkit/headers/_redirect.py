r"""safe_redirect: follow a ``?next=`` parameter without becoming an open redirect.

Browsers are generous parsers: they treat ``\`` as ``/``, drop tabs and newlines
anywhere in a URL, read ``//evil.example`` as another host and ``https:evil.example`` as
one too when the page was served over http. Rather than guess every reading, a target is
accepted only in forms whose meaning is unambiguous:

- a path on this site: ``/account``, ``/a/b?x=1#top`` (not ``//...``);
- a relative reference: ``settings``, ``../up``, ``?page=2``, with no ``:`` in its first
  segment;
- an absolute ``http(s)://`` URL whose host is in the allow-list (``app.example``,
  ``app.example:8443``, or ``*.app.example`` for any subdomain), without user info.

Everything else is refused: other schemes (``javascript:``, ``data:``), scheme-relative
``//host``, missing slashes (``https:host``, ``https:/host``), backslashes, whitespace,
control and non-ASCII characters (percent-encode them), percent-encoded hosts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import SplitResult, urlsplit

import structlog
from starlette.responses import RedirectResponse

from hardenkit.errors import ErrorCode, HardenError

__all__ = ["is_safe_redirect", "safe_redirect"]

_logger = structlog.get_logger("hardenkit.headers.redirect")

_MAX_LENGTH: Final = 2048
_VISIBLE_ASCII: Final = re.compile(r"[\x21-\x7e]+")
_SCHEMES: Final = ("http", "https")
_HOST: Final = re.compile(
    r"(?:\*\.)?[a-z0-9](?:[a-z0-9\-.]*[a-z0-9])?(?::\d{1,5})?|\[[0-9a-f:.]+\](?::\d{1,5})?"
)
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})


def _normalised_hosts(allowed_hosts: Iterable[str]) -> frozenset[str]:
    if isinstance(allowed_hosts, str):
        raise TypeError("allowed_hosts must be a list of hosts, not one string")
    hosts = frozenset(host.strip().lower() for host in allowed_hosts)
    for host in hosts:
        if not _HOST.fullmatch(host):
            raise ValueError(
                f"allowed host {host!r} must be a host name, host:port or *.domain "
                "(no scheme, path or spaces)"
            )
    return hosts


def _refusal(url: object, hosts: frozenset[str], *, require_https: bool) -> str | None:
    """Return why ``url`` is refused, or ``None`` when it is safe."""
    if not isinstance(url, str):
        return "not text"
    problem = _text_refusal(url)
    if problem is not None or url.startswith("/"):
        return problem
    if ":" not in re.split(r"[/?#]", url, maxsplit=1)[0]:
        return None  # a relative reference: it stays on this site
    try:
        parts = urlsplit(url)
    except ValueError:
        return "unparsable"
    return _scheme_refusal(url, parts, require_https=require_https) or _authority_refusal(
        parts, hosts
    )


def _text_refusal(url: str) -> str | None:
    if not url or len(url) > _MAX_LENGTH:
        return "empty or too long"
    if not _VISIBLE_ASCII.fullmatch(url):
        return "whitespace, control or non-ASCII character"
    if "\\" in url:
        return "backslash"
    if url.startswith("//"):
        return "scheme-relative"
    return None


def _scheme_refusal(url: str, parts: SplitResult, *, require_https: bool) -> str | None:
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES or (require_https and scheme != "https"):
        return "scheme not allowed"
    if not url[len(scheme) + 1 :].startswith("//"):
        return "scheme without //"
    return None


def _authority_refusal(parts: SplitResult, hosts: frozenset[str]) -> str | None:
    if "@" in parts.netloc or "%" in parts.netloc:
        return "user info or percent-encoded host"
    try:
        port = parts.port
    except ValueError:
        return "bad port"
    host = (parts.hostname or "").lower()
    if parts.netloc.startswith("["):
        host = f"[{host}]"
    if not host or not _host_allowed(host, port, hosts):
        return "host not allowed"
    return None


def _host_allowed(host: str, port: int | None, hosts: frozenset[str]) -> bool:
    authority = host if port is None else f"{host}:{port}"
    if authority in hosts:
        return True
    for allowed in hosts:
        if not allowed.startswith("*."):
            continue
        domain, _, allowed_port = allowed[2:].partition(":")
        if allowed_port and str(port) != allowed_port:
            continue
        if not allowed_port and port is not None:
            continue
        if host.endswith("." + domain):
            return True
    return False


def is_safe_redirect(
    url: str, allowed_hosts: Iterable[str] = (), *, require_https: bool = False
) -> bool:
    """Return whether ``url`` stays on this site or goes to an allowed host.

    Args:
        url: The untrusted target (a ``next`` parameter, a form field).
        allowed_hosts: Hosts absolute URLs may point to: ``app.example``,
            ``app.example:8443``, ``*.app.example`` (subdomains, not the apex).
        require_https: Refuse absolute ``http://`` targets.
    """
    hosts = _normalised_hosts(allowed_hosts)
    return _refusal(url, hosts, require_https=require_https) is None


def safe_redirect(
    url: str,
    allowed_hosts: Iterable[str] = (),
    *,
    status_code: int = 303,
    fallback: str | None = None,
    require_https: bool = False,
) -> RedirectResponse:
    """Return a redirect to ``url`` if it is safe (see :func:`is_safe_redirect`).

    ::

        return safe_redirect(request.query_params.get("next", "/"), ["app.example"],
                             fallback="/")

    Args:
        url: The untrusted target.
        allowed_hosts: Hosts absolute URLs may point to.
        status_code: 301, 302, 303 (default: the browser follows with GET), 307 or 308.
        fallback: Where to go instead of refusing; it must itself be safe.
        require_https: Refuse absolute ``http://`` targets.

    Raises:
        HardenError: ``400 BAD_REQUEST`` when ``url`` is refused and there is no
            fallback. The log line says why, without the URL (it may carry a token).
        ValueError: A bad ``status_code``, allowed host or fallback (a programming error).
    """
    if status_code not in _REDIRECT_STATUSES:
        raise ValueError(f"status_code must be one of {sorted(_REDIRECT_STATUSES)}")
    hosts = _normalised_hosts(allowed_hosts)
    if fallback is not None and _refusal(fallback, hosts, require_https=require_https):
        raise ValueError("fallback must itself be a safe redirect target")
    reason = _refusal(url, hosts, require_https=require_https)
    if reason is None:
        return RedirectResponse(url, status_code=status_code)
    _logger.info("redirect_refused", reason=reason, fallback=fallback is not None)
    if fallback is not None:
        return RedirectResponse(fallback, status_code=status_code)
    raise HardenError(
        ErrorCode.BAD_REQUEST, status=400, detail="The redirect target is not allowed."
    )
