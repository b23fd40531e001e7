"""What a well-formed key id is: the settings, the verifiers and the audit events agree."""

from __future__ import annotations

import re

__all__ = ["safe_key_id"]

_SAFE_KEY_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def safe_key_id(value: object) -> str | None:
    """Return ``value`` when it is a well-formed key id, else ``None`` (safe to log)."""
    if isinstance(value, str) and _SAFE_KEY_ID.fullmatch(value):
        return value
    return None
