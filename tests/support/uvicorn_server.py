"""Run the reference app (or any app) under a real uvicorn in a subprocess on loopback.

When the test run measures coverage, the server runs under ``coverage run`` too, so what
the e2e tests exercise counts. The server is stopped with SIGTERM (uvicorn shuts down
gracefully, coverage writes its data) and killed if it does not stop in time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.http_clients import tls_context
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def _coverage_active() -> bool:
    try:
        import coverage
    except ImportError:  # pragma: no cover
        return False
    current = coverage.Coverage.current()
    # With ``patch = ["subprocess"]`` every Python subprocess measures itself.
    return current is not None and "subprocess" not in current.config.patch


class UvicornServer:
    """One uvicorn process serving ``app`` (``module:attribute``) on 127.0.0.1.

    With ``factory=True`` the attribute is a function uvicorn calls to build the app
    (``examples.reference_app.app:create_app``, as ``uvicorn --factory`` runs it).
    The server runs with ``--no-proxy-headers``, as the docs tell operators to, unless
    ``proxy_headers=True`` asks for uvicorn's default (it rewrites the client itself).
    """

    def __init__(
        self,
        app: str = "examples.reference_app.app:app",
        *,
        env: Mapping[str, str] | None = None,
        port: int | None = None,
        log_path: Path | None = None,
        factory: bool = False,
        args: Sequence[str] = (),
        proxy_headers: bool = False,
    ) -> None:
        self.app = app
        self.factory = factory
        self.args = tuple(args)  # more uvicorn options, e.g. ("--root-path", "/svc")
        self.proxy_headers = proxy_headers
        self.port = port or free_port()
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.upper().startswith("HARDENKIT_") or key.upper().startswith("HARDENKIT_TEST_")
        }
        self.env.update(env or {})
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.launch()
        self.wait_serving(timeout)

    def launch(self) -> None:
        """Start the process without waiting for it (see :func:`serving` for several)."""
        runner = [sys.executable]
        if _coverage_active():
            runner += [
                "-m",
                "coverage",
                "run",
                "--parallel-mode",
                f"--rcfile={ROOT / 'pyproject.toml'}",
            ]
        command = [
            *runner,
            "-m",
            "uvicorn",
            self.app,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--no-server-header",
            "--timeout-graceful-shutdown",
            "5",
        ]
        if self.factory:
            command.append("--factory")
        command += self.args
        if not self.proxy_headers:
            command.append("--no-proxy-headers")
        if self.log_path is None:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
            )
        else:
            with self.log_path.open("wb") as output:  # the child keeps its own descriptor
                self.process = subprocess.Popen(
                    command, cwd=ROOT, env=self.env, stdout=output, stderr=subprocess.STDOUT
                )

    def wait_serving(self, timeout: float = 20.0) -> None:
        """Return once ``/healthz`` answers 200; stop the server and raise if it does not."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        with httpx.Client(verify=tls_context(), timeout=0.5) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"uvicorn exited with {self.process.returncode}; log: {self.log_path}"
                    )
                try:
                    if client.get(f"{self.url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"uvicorn did not serve /healthz within {timeout} s")

    def signal_stop(self) -> None:
        """Ask for a graceful shutdown (SIGTERM) without waiting for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.process is None:
            return
        self.signal_stop()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> UvicornServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serving(servers: Sequence[UvicornServer], timeout: float = 30.0) -> Iterator[None]:
    """Start ``servers`` together and stop them together: a fleet starts in the time of
    its slowest member, not the sum (imports run in parallel on both cores, and each
    graceful shutdown's waiting overlaps the others')."""
    try:
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_serving(timeout)
        yield
    finally:
        for server in servers:
            server.signal_stop()
        for server in servers:
            server.stop()
