"""One TLS context for every test HTTP client: making a client loads the CA bundle again.

That load is what an httpx client costs (67 ms each on this 2-core host under load,
against 2-4 ms with a shared context): a 50-connection burst paid over 3 s before its
first request, inside its time limit, and a loop polling a starting server every 0.1 s
spent most of a core on it. The test traffic is plain http; nothing is weakened.
"""

from __future__ import annotations

import functools
import ssl

import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default context (certifi's CAs, verification on), made once."""
    return httpx.create_ssl_context()
