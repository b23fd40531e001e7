"""Which URLs may serve JWKS keys: a rule the settings and the JWKS client both apply."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["check_jwks_url"]


def check_jwks_url(url: str, *, allow_http_loopback: bool = False) -> str:
    """Return ``url`` if it may serve keys, else raise ``ValueError`` saying why."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry credentials")
    if not parts.hostname:
        raise ValueError("is not an absolute URL")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http":
        if not _is_loopback(parts.hostname):
            raise ValueError("must use https (plain http only for loopback hosts)")
        if not allow_http_loopback:
            raise ValueError("uses plain http; allow it for loopback explicitly")
        return url
    raise ValueError("must use https")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
