"""``JWKSServer``: a JWKS endpoint on loopback, served from a thread, for tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hardenkit.testing._tokens import TokenIssuer

__all__ = ["JWKSServer"]

_PATH = "/.well-known/jwks.json"


class JWKSServer:
    """Serves the public keys of ``issuers`` at ``url`` on 127.0.0.1 (a free port).

    Use it as a context manager (or :meth:`start` / :meth:`close`). Assign
    :attr:`issuers` to rotate keys; :attr:`requests` counts the fetches, and
    :attr:`status` makes the next fetches fail (``503`` for an outage).

    Args:
        issuers: Asymmetric :class:`~hardenkit.testing.TokenIssuer` s whose keys are served.

    Raises:
        TypeError: An HS256 issuer (its secret is never published).
    """

    def __init__(self, *issuers: TokenIssuer) -> None:
        for issuer in issuers:
            issuer.jwk()  # raises TypeError for a shared secret
        self.issuers: list[TokenIssuer] = list(issuers)
        self.requests = 0
        self.status = 200
        self._count_lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The JWKS URL (``http://127.0.0.1:<port>/.well-known/jwks.json``)."""
        if self._server is None:
            raise RuntimeError("the JWKS server is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}{_PATH}"

    def document(self) -> dict[str, Any]:
        """The JWKS document served now."""
        return {"keys": [issuer.jwk() for issuer in self.issuers]}

    def settings(self) -> dict[str, Any]:
        """``HardenSettings`` values that fetch keys here and accept the first issuer's tokens.

        Plain http is allowed for this loopback URL only
        (``jwt_jwks_allow_http_loopback``); algorithms are every served issuer's.
        """
        first = self.issuers[0].settings() if self.issuers else {}
        first.pop("jwt_public_key", None)
        return {
            **first,
            "jwt_jwks_url": self.url,
            "jwt_jwks_allow_http_loopback": True,
            "jwt_algorithms": sorted({issuer.algorithm for issuer in self.issuers}),
        }

    def start(self) -> JWKSServer:
        """Start serving (idempotent) and return the server."""
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
            server = self._server
            self._thread = threading.Thread(  # a short poll: close() returns at once
                target=lambda: server.serve_forever(poll_interval=0.02),
                name="hardenkit-test-jwks",
                daemon=True,
            )
            self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def __enter__(self) -> JWKSServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _handler(server: JWKSServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with server._count_lock:
                server.requests += 1
            if self.path != _PATH or server.status != 200:
                self.send_error(404 if self.path != _PATH else server.status)
                return
            body = json.dumps(server.document()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            """Keep test output quiet."""

    return Handler
