"""The reference service: a Starlette app hardened with ``hardenkit.install``.

Run it with ``make demo`` (in-memory stores) or ``make demo-redis``. Each piece of
hardenkit contributes its routes from its own module here.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute

from examples.reference_app import api, home, logging_demo, slow, token, upstream, webhooks
from examples.reference_app.settings import demo_settings
from hardenkit import HardenSettings, configure_logging, install


def create_app(settings: HardenSettings | None = None) -> Starlette:
    """Build the reference app with ``settings`` (demo settings from the environment if omitted)."""
    settings = settings or demo_settings()
    configure_logging(settings)
    routes: list[BaseRoute] = [
        *home.routes,
        *slow.routes,
        *webhooks.routes,
        *token.routes,
        *api.routes,
        *logging_demo.routes,
        *upstream.routes,
    ]
    app = Starlette(routes=routes)
    install(app, settings)
    return app


def __getattr__(name: str) -> Starlette:
    # `uvicorn examples.reference_app.app:app` builds the app on first access, so importing
    # create_app (as the tests do) neither reads the environment nor configures logging.
    if name == "app":
        application = create_app()
        globals()["app"] = application
        return application
    raise AttributeError(name)
