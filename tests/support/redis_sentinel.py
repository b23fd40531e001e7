"""A private Redis Sentinel group: one master, one replica, three sentinels, loopback only.

With ``tls``, the master and the replica serve clients on a TLS port (client certificates
required) and replicate over TLS; the sentinels reach them, and each other, over TLS and
announce the TLS ports, so a client is sent to TLS only. Clients ask the sentinels on a
plain port (hardenkit speaks plain text to sentinels), and the data servers keep a plain
port for this harness's own start-up checks.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.support.redis_server import RedisServer, _ping, free_port, require_redis_server
from tests.support.tls import TlsFiles

MASTER_NAME = "hkmaster"


_RELAUNCHES = 6
"""Sentinels started again on new ports after losing a port race, in all."""


class SentinelGroup:
    """Started in ``directory``; :meth:`stop` ends every process it started."""

    def __init__(self, directory: Path, *, tls: TlsFiles | None = None) -> None:
        self.directory = directory
        self.tls = tls
        self.master_tls_port = free_port() if tls else None
        self.replica_tls_port = free_port() if tls else None
        self.master = RedisServer(
            directory / "master", extra_args=self._tls_args(self.master_tls_port)
        )
        master_port = self.master_tls_port or self.master.port
        self.replica = RedisServer(
            directory / "replica",
            extra_args=[
                "--replicaof",
                "127.0.0.1",
                str(master_port),
                *self._tls_args(self.replica_tls_port),
            ],
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._sentinels: list[subprocess.Popen[bytes]] = []

    def _tls_args(self, tls_port: int | None) -> list[str]:
        if self.tls is None or tls_port is None:
            return []
        return [
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(self.tls.server_cert),
            "--tls-key-file",
            str(self.tls.server_key),
            "--tls-client-cert-file",  # what the replica shows its master
            str(self.tls.client_cert),
            "--tls-client-key-file",
            str(self.tls.client_key),
            "--tls-ca-cert-file",
            str(self.tls.ca),
            "--tls-auth-clients",
            "yes",
            "--tls-replication",
            "yes",
        ]

    def _sentinel_tls_config(self) -> str:
        if self.tls is None:
            return ""
        # With tls-replication the sentinels talk TLS to each other too, on the port they
        # announce (their tls-port); clients ask them on the plain port.
        return (
            f"tls-port {free_port()}\n"
            f"tls-cert-file {self.tls.server_cert}\ntls-key-file {self.tls.server_key}\n"
            f"tls-client-cert-file {self.tls.client_cert}\n"
            f"tls-client-key-file {self.tls.client_key}\n"
            f"tls-ca-cert-file {self.tls.ca}\ntls-replication yes\n"
        )

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.sentinel_ports]

    def start(self, timeout: float = 20.0) -> None:
        self.master.start()
        self.replica.start()
        self._wait_for_replication(timeout)
        self._sentinels = [self._launch(index) for index in range(len(self.sentinel_ports))]
        relaunches = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(_ping(port) for port in self.sentinel_ports):
                return
            for index, process in enumerate(self._sentinels):
                # A port another test took between free_port() and the bind: the
                # sentinel exits ("Address already in use"); it gets new ports.
                if process.poll() is not None and relaunches < _RELAUNCHES:
                    relaunches += 1
                    self.sentinel_ports[index] = free_port()
                    self._sentinels[index] = self._launch(index)
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("sentinels did not start")

    def _launch(self, index: int) -> subprocess.Popen[bytes]:
        """Start sentinel ``index`` on its port (and a fresh TLS port)."""
        directory = self.directory / f"sentinel{index}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_ports[index]}\nbind 127.0.0.1\ndir {directory}\n"
            f"logfile {directory / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 "
            f"{self.master_tls_port or self.master.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 5000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n" + self._sentinel_tls_config()
        )
        return subprocess.Popen(
            [require_redis_server(), str(config), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _wait_for_replication(self, timeout: float) -> None:
        cli = shutil.which("redis-cli") or "redis-cli"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = subprocess.run(
                [cli, "-p", str(self.replica.port), "info", "replication"],
                capture_output=True,
                timeout=5,
                check=False,
            ).stdout
            if b"master_link_status:up" in info:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the replica never synced with the master")

    def stop(self) -> None:
        for process in self._sentinels:
            process.terminate()
        for process in self._sentinels:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        self._sentinels = []
        self.replica.stop()
        self.master.stop()
