"""A private Redis Sentinel group: one master, one replica, three sentinels, loopback only."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.support.redis_server import RedisServer, _ping, free_port, require_redis_server

MASTER_NAME = "hkmaster"


class SentinelGroup:
    """Started in ``directory``; :meth:`stop` ends every process it started."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.master = RedisServer(directory / "master")
        self.replica = RedisServer(
            directory / "replica",
            extra_args=["--replicaof", "127.0.0.1", str(self.master.port)],
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        self._sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.sentinel_ports]

    def start(self, timeout: float = 20.0) -> None:
        self.master.start()
        self.replica.start()
        self._wait_for_replication(timeout)
        executable = require_redis_server()
        for index, port in enumerate(self.sentinel_ports):
            directory = self.directory / f"sentinel{index}"
            directory.mkdir(parents=True, exist_ok=True)
            config = directory / "sentinel.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"logfile {directory / 'sentinel.log'}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 5000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self._sentinels.append(
                subprocess.Popen(
                    [executable, str(config), "--sentinel"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(_ping(port) for port in self.sentinel_ports):
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("sentinels did not start")

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
