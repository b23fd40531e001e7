"""A pre-fork server in miniature: the app built once, then forked into workers.

``python -m tests.support.prefork PORT,PORT,...`` builds the reference app in this
process (as gunicorn ``--preload`` does, and any server that imports the app before it
forks), then forks one worker per port, each serving that same app object with
uvicorn on its own loopback port (so a test can address each worker). SIGTERM stops the
workers gracefully; the parent exits when they have, or after 30 s kills them.
"""

from __future__ import annotations

import os
import signal
import sys
import time

import uvicorn

from examples.reference_app.app import create_app


def main() -> None:
    ports = [int(port) for port in sys.argv[1].split(",")]
    app = create_app()  # before the fork: every worker inherits this one object
    workers = []
    for port in ports:
        pid = os.fork()
        if pid == 0:
            config = uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                proxy_headers=False,
                server_header=False,
                log_level="warning",
                lifespan="on",
                timeout_graceful_shutdown=5,
            )
            uvicorn.Server(config).run()
            os._exit(0)
        workers.append(pid)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    deadline = time.monotonic() + 600  # never outlives a forgotten test
    while not stopping and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in workers:
        os.kill(pid, signal.SIGTERM)
    give_up = time.monotonic() + 30
    for pid in workers:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > give_up:
                os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)


if __name__ == "__main__":
    main()
