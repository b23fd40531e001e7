"""Private redis-server processes for tests: standalone and a 3-master Cluster.

Every server here is started by the test suite on a free loopback port in a temporary
directory, so tests may stop, restart or flush it. A Redis the suite did not start
(``HARDENKIT_TEST_REDIS_URL``) is only ever read and written under unique key prefixes.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

INSTALL_HINT = (
    "redis-server is not on PATH: install it (Debian/Ubuntu: apt-get install redis-server; "
    "macOS: brew install redis) or set HARDENKIT_TEST_REDIS_URL to a Redis the tests may use."
)


def require_redis_server() -> str:
    """Return the redis-server path; fail under CI=true, skip elsewhere, when it is missing."""
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    return path


def free_port(*, with_bus: bool = False) -> int:
    """Return a loopback TCP port that is free (and whose cluster bus port is free)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port > 55000 and with_bus:
            continue
        if not with_bus or _port_free(port + 10000):
            return port
    raise RuntimeError("no free port found")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ping(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One private redis-server process that can be stopped and started again."""

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        cluster: bool = False,
        extra_args: list[str] | None = None,
    ) -> None:
        self.executable = require_redis_server()
        self.directory = directory
        self.cluster = cluster
        self.extra_args = list(extra_args or [])
        self.port = port or free_port(with_bus=cluster)
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        args = [
            self.executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        args += self.extra_args
        if self.cluster:
            args += [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{self.port}.conf",
                "--cluster-node-timeout",
                "2000",
            ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _ping(self.port):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start:\n{log}")

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """Die at once (SIGKILL), as a crashed host would: no shutdown, no goodbye."""
        if self.process is None:
            return
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def one_node_cluster(directory: Path) -> RedisServer:
    """A started cluster-mode server holding every slot: what a sharding proxy looks
    like to a plain client (it refuses a script naming two hash slots, CROSSSLOT).

    ``stop()`` and ``start()`` keep its slots (its nodes file stays in ``directory``);
    :func:`await_cluster_ok` waits until it serves them again.
    """
    server = RedisServer(directory, cluster=True)
    server.start()
    import redis

    client: Any = redis.Redis(port=server.port, socket_timeout=2.0)  # untyped commands
    try:
        client.execute_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383)
        await_cluster_ok(client)
    finally:
        client.close()
    return server


def await_cluster_ok(client: Any) -> None:
    """Wait (bounded) until a cluster-mode node reports ``cluster_state:ok``."""
    for _ in range(100):  # bounded: the node takes its slots in a moment
        info: bytes = client.execute_command("CLUSTER", "INFO")
        if info.find(b"cluster_state:ok") >= 0:
            return
        time.sleep(0.05)
    raise AssertionError("the cluster-mode node never reported cluster_state:ok")


class RedisCluster:
    """Three private masters joined into a Redis Cluster with ``redis-cli --cluster create``."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(directory / f"node{index}", cluster=True) for index in range(masters)
        ]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.start()
        cli = shutil.which("redis-cli")
        if cli is None:
            self.stop()
            pytest.fail("redis-cli is not on PATH; it comes with redis-server (redis-tools).")
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(self._state_ok(cli, node.port) for node in self.nodes):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("Redis Cluster did not reach cluster_state:ok")

    @staticmethod
    def _state_ok(cli: str, port: int) -> bool:
        result = subprocess.run(
            [cli, "-p", str(port), "cluster", "info"], capture_output=True, timeout=5, check=False
        )
        return b"cluster_state:ok" in result.stdout

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
