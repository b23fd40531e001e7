"""Settings of the reference app: the environment, with demo defaults for what is unset.

The demo defaults make ``make demo`` work on a fresh machine; every one of them can be
overridden by its ``HARDENKIT_*`` variable, and production refuses the demo values.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from hardenkit import HardenSettings, load_settings

DEMO_DEFAULTS: dict[str, Any] = {
    # Bearer tokens (api.py, token.py): POST /auth/token signs with this secret. It is
    # printed in docs/auth.md, so production refuses it (it contains "demo").
    "jwt_secret": "hardenkit-demo-jwt-secret-Qm8vT2xL5nR9wK3pZ7cY1hB4",
    "jwt_issuer": "https://demo.hardenkit.invalid",
    "jwt_audience": ["hardenkit-reference-app"],
    # Routes reachable without a bearer token. Webhooks and agent messages carry their own
    # signatures; /auth/token is where a demo token is obtained.
    "public_paths": [
        "/healthz",
        "/readyz",
        "/",
        "/auth/*",
        "/webhooks/*",
        "/api/agents/messages",
        "/csp-report",  # browsers post CSP reports without credentials
        "/demo/logging",  # logging_demo.py: shows redaction; its "secrets" are fakes
    ],
    # Security headers and timeouts (home.py, slow.py): reports of CSP violations are
    # logged; a 10 s budget makes /api/slow?seconds=11 show the 504 without a long wait.
    "csp_report_path": "/csp-report",
    "request_timeout": 10.0,
    # Signed traffic (webhooks.py). These values are printed in docs/signing.md, so anyone
    # can sign with them: production refuses every one of them.
    "webhook_secret": "whsec_8MJkGsO1qMoONBXrFur4HiG+eUcJzELKpL74Bw8brYI=",
    "webhook_paths": ["/webhooks/demo"],
    "message_trusted_keys": {"demo-agent": "mUDGPHHbM75gGRQyV4L2AVh9cn/nwhb0ClsPMk+tTWQ="},
    "message_signing_key": "MoXTiTuyDlwNj3/WGTK96J+eekZx8qWbg36rR0J+P+w=",
    "message_key_id": "reference-app",
}


# The FastAPI variant (fastapi_app.py) also serves its API document without a token:
# listed for it alone, since a public path no route serves is a startup warning.
FASTAPI_DOCS_PATHS = ["/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"]
FASTAPI_DEMO_DEFAULTS: dict[str, Any] = {
    **DEMO_DEFAULTS,
    "public_paths": [*DEMO_DEFAULTS["public_paths"], *FASTAPI_DOCS_PATHS],
}


def demo_settings(*, defaults: dict[str, Any] = DEMO_DEFAULTS, **overrides: Any) -> HardenSettings:
    """Return settings from the environment, filling unset values with the demo defaults.

    The environment and the demo values are judged together, once: in production every
    demo secret and key is refused by name (``hardenkit doctor --settings`` lists them
    all), not only what the environment alone lacks.
    """
    try:
        base = HardenSettings()
    except ValidationError:
        return load_settings()  # raises SettingsError naming each unparsable variable
    values = {name: value for name, value in defaults.items() if name not in base.model_fields_set}
    if {"jwt_public_key", "jwt_jwks_url"} & base.model_fields_set:
        # A real key source in the environment replaces the demo secret: two key sources
        # refuse startup. POST /auth/token then answers 404 (it signs with the secret).
        values.pop("jwt_secret", None)
    values.update(overrides)
    return load_settings(**values)
