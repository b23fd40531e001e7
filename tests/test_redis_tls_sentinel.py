"""Redis in its production shapes: TLS (``rediss://``) and Sentinel, on real servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from structlog.testing import capture_logs

from hardenkit import HardenSettings
from hardenkit.cli import main
from hardenkit.instances import InstanceRegistry
from hardenkit.ratelimit import RateLimiter, RedisStore
from hardenkit.stores import RedisGuard, create_redis, follow_sentinel_master
from tests.support.redis_sentinel import MASTER_NAME, SentinelGroup
from tests.support.redis_server import RedisServer, free_port
from tests.support.tls import make_tls_files

pytestmark = pytest.mark.redis

PLAIN_URL = "redis://sentinel/0"


@pytest.fixture
def tls_redis(tmp_path: Path):
    files = make_tls_files(tmp_path / "tls")
    tls_port = free_port()
    server = RedisServer(
        tmp_path / "redis",
        extra_args=[
            "--tls-port",
            str(tls_port),
            "--tls-cert-file",
            str(files.server_cert),
            "--tls-key-file",
            str(files.server_key),
            "--tls-ca-cert-file",
            str(files.ca),
            "--tls-auth-clients",
            "yes",  # a client certificate is required
        ],
    )
    server.start()
    try:
        yield tls_port, files
    finally:
        server.stop()


async def limited_twice(client: Redis) -> list[bool]:
    store = RedisStore(client, guard=RedisGuard("tls", timeout=1.0))
    limiter = RateLimiter("1/hour", store=store, name="tls")
    decisions = [await limiter.hit("k"), await limiter.hit("k")]
    assert {decision.backend for decision in decisions} == {"redis"}
    return [decision.allowed for decision in decisions]


async def test_rediss_with_the_ca_file_and_a_client_certificate_decides_in_redis(tls_redis) -> None:
    port, files = tls_redis
    settings = HardenSettings(
        redis_url=f"rediss://127.0.0.1:{port}/0",  # type: ignore[arg-type]
        redis_tls_ca_file=str(files.ca),
        redis_tls_cert_file=str(files.client_cert),
        redis_tls_key_file=str(files.client_key),
    )
    assert not [problem for problem in settings.problems() if "REDIS" in problem.setting]
    client = create_redis(settings)
    assert isinstance(client, Redis)
    try:
        assert await limited_twice(client) == [True, False]
    finally:
        await client.aclose()


async def answered_by(client: Redis | RedisCluster) -> tuple[str, bool]:
    """Who answered one call, and whether the guard then switched to the fallback."""
    guard = RedisGuard("tls", timeout=1.0)

    async def ping() -> str:
        await client.ping()
        return "redis"

    async def fallback() -> str:
        return "fallback"

    return await guard.call(ping, fallback), guard.using_fallback


async def refused_with_fix(settings: HardenSettings) -> str:
    """Never trusted, never a 500: refused at once, so the guard switches; the ``fix`` its
    log line gives (redis-py itself says only ``ConnectionError``)."""
    client = create_redis(settings)
    assert client is not None
    try:
        with capture_logs() as logs:
            assert await answered_by(client) == ("fallback", True)
    finally:
        await client.aclose()
    (switched,) = [entry for entry in logs if entry["event"] == "redis_unavailable_using_fallback"]
    return str(switched["fix"])


async def test_a_server_certificate_from_another_ca_is_refused(tls_redis, tmp_path: Path) -> None:
    port, files = tls_redis
    stranger = make_tls_files(tmp_path / "stranger")
    settings = HardenSettings(
        redis_url=f"rediss://127.0.0.1:{port}/0",  # type: ignore[arg-type]
        redis_tls_ca_file=str(stranger.ca),
        redis_tls_cert_file=str(files.client_cert),
        redis_tls_key_file=str(files.client_key),
    )
    assert "HARDENKIT_REDIS_TLS_CA_FILE" in await refused_with_fix(settings)


def test_tls_and_sentinel_settings_are_checked_at_startup(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    problems = {
        problem.setting
        for problem in HardenSettings(
            redis_url="redis://127.0.0.1:6390/0",  # type: ignore[arg-type]
            redis_tls_ca_file=missing,
            redis_tls_cert_file=missing,
            redis_sentinels=["127.0.0.1:26379"],
        ).problems()
    }
    assert problems >= {
        "HARDENKIT_REDIS_TLS_CA_FILE",
        "HARDENKIT_REDIS_TLS_CERT_FILE",
        "HARDENKIT_REDIS_TLS_KEY_FILE",
        "HARDENKIT_REDIS_SENTINEL_MASTER",
    }
    with pytest.raises(ValueError, match="host:port"):
        HardenSettings(redis_sentinels=["nohost"])


def test_tls_files_behind_sentinel_need_a_rediss_url(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "tls")

    def problems(url: str) -> set[str]:
        settings = HardenSettings(
            redis_url=url,  # type: ignore[arg-type]
            redis_sentinels=["127.0.0.1:26379"],
            redis_sentinel_master=MASTER_NAME,
            redis_tls_ca_file=str(files.ca),
        )
        return {problem.setting for problem in settings.startup_errors()}

    # A plain URL would pass the CA file to plain connections: every call would fail.
    assert "HARDENKIT_REDIS_URL" in problems(PLAIN_URL)
    assert "HARDENKIT_REDIS_URL" not in problems("rediss://sentinel/0")


@pytest.fixture
def sentinel_group(tmp_path: Path):
    group = SentinelGroup(tmp_path / "sentinel")
    group.start()
    try:
        yield group
    finally:
        group.stop()


async def limits_hold_across_a_failover(settings: HardenSettings, group: SentinelGroup) -> None:
    """Kill the master mid-load: no error, and exact again on the promoted replica."""
    client = create_redis(settings)
    assert isinstance(client, Redis)
    guard = RedisGuard("sentinel", timeout=0.2, retry_interval=0.3, ping=client.ping)
    store = RedisStore(client, guard=guard)
    limiter = RateLimiter("20/day", store=store, name="sentinel")
    loop = asyncio.get_running_loop()
    try:
        before = [await limiter.hit("before") for _ in range(8)]
        assert [(d.allowed, d.backend) for d in before] == [(True, "redis")] * 8
        await client.execute_command("WAIT", 1, 500)  # the replica has it
        group.master.stop()  # the master dies mid-load
        killed_at = loop.time()
        during = []
        while loop.time() - killed_at < 30:  # bounded: failover takes a few seconds
            during.append(await limiter.hit("during"))
            if during[-1].backend == "redis" and guard.fallback_activations:
                break
            await asyncio.sleep(0.02)
        back_after = loop.time() - killed_at
        assert during[-1].backend == "redis", "never back on Redis after the failover"
        assert guard.fallback_activations >= 1
        # Exact again on the promoted replica: what was replicated counts, a new key gets
        # exactly its limit.
        assert sum([(await limiter.hit("before")).allowed for _ in range(20)]) == 12
        assert sum([(await limiter.hit("after")).allowed for _ in range(25)]) == 20
        assert back_after < 15
    finally:
        await client.aclose()


async def test_through_sentinel_limits_hold_across_a_failover_with_no_error(sentinel_group) -> None:
    settings = HardenSettings(
        redis_url=PLAIN_URL,  # type: ignore[arg-type]
        redis_sentinels=sentinel_group.addresses,
        redis_sentinel_master=MASTER_NAME,
    )
    await limits_hold_across_a_failover(settings, sentinel_group)


async def test_through_sentinel_to_tls_servers_limits_hold_across_a_failover(
    tmp_path: Path,
) -> None:
    files = make_tls_files(tmp_path / "tls")
    group = SentinelGroup(tmp_path / "sentinel", tls=files)
    group.start()
    try:
        settings = HardenSettings(
            redis_url="rediss://sentinel/0",  # type: ignore[arg-type]
            redis_sentinels=group.addresses,
            redis_sentinel_master=MASTER_NAME,
            redis_tls_ca_file=str(files.ca),
            redis_tls_cert_file=str(files.client_cert),
            redis_tls_key_file=str(files.client_key),
        )
        assert not [problem for problem in settings.problems() if "REDIS" in problem.setting]
        # The sentinels name the TLS ports only: a client that does not speak TLS is sent
        # there too and never reaches Redis (the fallback answers, never a 500).
        plain = create_redis(
            settings.model_copy(
                update={
                    "redis_url": SecretStr(PLAIN_URL),
                    "redis_tls_ca_file": None,
                    "redis_tls_cert_file": None,
                    "redis_tls_key_file": None,
                }
            )
        )
        assert plain is not None
        try:
            assert await answered_by(plain) == ("fallback", True)
        finally:
            await plain.aclose()
        await limits_hold_across_a_failover(settings, group)
    finally:
        group.stop()


def sentinel_client(group: SentinelGroup) -> Redis:
    """The client ``install()`` builds for ``group``'s sentinels."""
    client = create_redis(
        HardenSettings(
            redis_url=PLAIN_URL,  # type: ignore[arg-type]
            redis_sentinels=group.addresses,
            redis_sentinel_master=MASTER_NAME,
        )
    )
    assert isinstance(client, Redis)
    return client


async def fail_over(sentinel: Redis, promoted_port: int) -> None:
    """``SENTINEL FAILOVER``, once the sentinels know the replica; until it is promoted."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:  # the sentinels learn of the replica from the master's INFO first
        try:
            await sentinel.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
            break
        except ResponseError as error:
            if "NOGOODSLAVE" not in str(error):
                raise
            assert loop.time() < deadline, "the sentinels never saw the replica"
            await asyncio.sleep(0.2)
    while (await sentinel.sentinel_get_master_addr_by_name(MASTER_NAME))[1] != promoted_port:
        assert loop.time() < deadline, "the sentinels never promoted the replica"
        await asyncio.sleep(0.05)


async def test_after_a_failover_that_leaves_the_old_master_up_writes_reach_the_new_one(
    sentinel_group: SentinelGroup,
) -> None:
    """SENTINEL FAILOVER promotes the replica and leaves the old master up and writable
    until the sentinels demote it (about 10 s), and the resync then discards what it took:
    a webhook id claimed there was processed again (measured). The heartbeat asks the
    sentinels and moves every connection to the new master within an interval."""
    client = sentinel_client(sentinel_group)
    guard = RedisGuard("sentinel", timeout=0.5, retry_interval=0.3, ping=client.ping)
    registry = InstanceRegistry(client, guard, key="hk:test:instances", ttl=1.5)  # 0.5 s beats
    sentinel = Redis(port=sentinel_group.sentinel_ports[0])
    old = Redis(port=sentinel_group.master.port)
    new = Redis(port=sentinel_group.replica.port)
    loop = asyncio.get_running_loop()
    try:
        await client.set("probe", "before")  # connected to the old master
        store = RedisStore(client, guard=guard, instances=registry)
        limiter = RateLimiter("20/day", store=store, name="moved")
        assert (await limiter.hit("before")).backend == "redis"  # its held connection too
        await registry.beat()
        registry.start()
        await fail_over(sentinel, sentinel_group.replica.port)
        promoted = loop.time()
        landed = None
        for attempt in range(200):  # bounded: 200 x 50 ms
            value = f"after-{attempt}"
            with contextlib.suppress(RedisConnectionError):  # moved mid-call: once
                await client.set("probe", value)
                if await new.get("probe") == value.encode():
                    landed = loop.time() - promoted
                    break
            await asyncio.sleep(0.05)
        old_role = (await old.execute_command("ROLE"))[0]
        decided = await limiter.hit("after")  # the decisions' held connection moved too
        stored = await new.exists(store.redis_key(limiter._storage_key("after")))
    finally:
        await registry.aclose()
        for connection in (client, sentinel, old, new):
            await connection.aclose()
    assert landed is not None, "writes never reached the promoted replica"
    print(f"writes on the new master {landed:.2f} s after the promotion; old: {old_role!r}")
    assert landed < 2.0  # an interval and a half; the sentinels demote the old one at ~10 s
    assert old_role == b"master"  # it was still up and writable: the case measured
    assert decided.backend == "redis"
    assert stored == 1


def test_doctor_names_the_master_the_sentinels_sent_it_to(
    sentinel_group: SentinelGroup,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HARDENKIT_REDIS_URL", PLAIN_URL)
    monkeypatch.setenv("HARDENKIT_REDIS_SENTINELS", ",".join(sentinel_group.addresses))
    monkeypatch.setenv("HARDENKIT_REDIS_SENTINEL_MASTER", MASTER_NAME)
    main(["doctor", "--json"])
    findings = {finding["check"]: finding for finding in json.loads(capsys.readouterr().out)}
    assert findings["redis"]["status"] == "pass"
    master = f"master 127.0.0.1:{sentinel_group.master.port}, named by the sentinels"
    assert master in findings["redis"]["detail"]


async def test_a_master_move_is_seen_after_new_connections_already_went_to_the_new_one(
    sentinel_group: SentinelGroup,
) -> None:
    """redis-py updates the pool's master address whenever it opens a connection, and
    closes only the idle ones then: after a burst the pool already names the new master
    while the decisions' held connection is still on the old one (measured: every
    decision there for as long as the old master stayed up). The heartbeat's check
    judges each connection by the server it is connected to."""
    client = sentinel_client(sentinel_group)
    store = RedisStore(client, guard=RedisGuard("burst", timeout=0.5), fallback_share=1)
    limiter = RateLimiter("20/day", store=store, name="burst")
    sentinel = Redis(port=sentinel_group.sentinel_ports[0])
    new = Redis(port=sentinel_group.replica.port)
    try:
        assert (await limiter.hit("before")).backend == "redis"  # held, on the old master
        assert not await follow_sentinel_master(client)  # a heartbeat before the failover
        await fail_over(sentinel, sentinel_group.replica.port)
        for port in sentinel_group.sentinel_ports:  # every sentinel names it, not only one
            other = Redis(port=port)
            try:
                for _ in range(200):  # bounded: 10 s
                    master = await other.sentinel_get_master_addr_by_name(MASTER_NAME)
                    if master[1] == sentinel_group.replica.port:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await other.aclose()
        # A burst opens connections, which ask the sentinels: the pool names the new master.
        await asyncio.gather(*(client.incr("burst") for _ in range(20)))
        assert client.connection_pool.master_address[1] == sentinel_group.replica.port
        assert await follow_sentinel_master(client)  # the next heartbeat still sees the move
        await limiter.hit("after")
        stored = await new.exists(store.redis_key(limiter._storage_key("after")))
    finally:
        for connection in (client, sentinel, new):
            await connection.aclose()
    assert stored == 1
