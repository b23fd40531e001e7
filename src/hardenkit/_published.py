"""Key material that is public knowledge, so production refuses it.

The reference app's demo values (printed in docs/signing.md, so anyone can sign with
them) and the example secret of the Standard Webhooks specification. They are compared
by key bytes, so a different spelling of the same key is caught too.
"""

from __future__ import annotations

import base64

__all__ = [
    "DEMO_AGENT_PRIVATE_KEY",
    "DEMO_AGENT_PUBLIC_KEY",
    "DEMO_SERVICE_PRIVATE_KEY",
    "DEMO_SERVICE_PUBLIC_KEY",
    "DEMO_WEBHOOK_SECRET",
    "PUBLISHED_PRIVATE_KEYS",
    "PUBLISHED_PUBLIC_KEYS",
    "PUBLISHED_WEBHOOK_KEYS",
    "PUBLISHED_WEBHOOK_SECRETS",
]

# base64 of sha256(b"hardenkit demo webhook secret")
DEMO_WEBHOOK_SECRET = "whsec_8MJkGsO1qMoONBXrFur4HiG+eUcJzELKpL74Bw8brYI="  # noqa: S105 - public
# Ed25519 seeds: sha256(b"hardenkit demo agent key") and sha256(b"hardenkit demo service key")
DEMO_AGENT_PRIVATE_KEY = "lv+xGQ8Ij01qGduChMMMd6+9bKRXo7WLPQ8SHjWK560="
DEMO_AGENT_PUBLIC_KEY = "mUDGPHHbM75gGRQyV4L2AVh9cn/nwhb0ClsPMk+tTWQ="
DEMO_SERVICE_PRIVATE_KEY = "MoXTiTuyDlwNj3/WGTK96J+eekZx8qWbg36rR0J+P+w="
DEMO_SERVICE_PUBLIC_KEY = "JzjIEPcFDqozJkoAiW4L2DhFcAnDXNYih5uONfBGDv4="
# The example secret of the Standard Webhooks specification and its libraries' tests.
_SPEC_EXAMPLE_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - public

PUBLISHED_WEBHOOK_SECRETS = (DEMO_WEBHOOK_SECRET, _SPEC_EXAMPLE_SECRET)
PUBLISHED_PRIVATE_KEYS = (DEMO_AGENT_PRIVATE_KEY, DEMO_SERVICE_PRIVATE_KEY)
PUBLISHED_PUBLIC_KEYS = (DEMO_AGENT_PUBLIC_KEY, DEMO_SERVICE_PUBLIC_KEY)
# Their HMAC keys as Standard Webhooks decodes them (the base64 after `whsec_`), so a key
# given as bytes is caught too; tests/test_secrets.py checks them against webhook_key().
PUBLISHED_WEBHOOK_KEYS = tuple(
    base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    for secret in PUBLISHED_WEBHOOK_SECRETS
)
