"""Webhook and message signing settings (issue: signed webhooks and messages)."""

from __future__ import annotations

from hardenkit._settings._base import Section


class SigningSettings(Section):
    """Secrets and trusted keys for signed webhooks and service messages."""
