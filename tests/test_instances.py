"""How many instances share Redis: one count for readiness, the fallback and the doctor."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator

import pytest
import structlog.testing
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from hardenkit import HardenSettings, install, instances
from hardenkit.cli import main
from hardenkit.instances import InstanceRegistry, count_live_instances, instances_key
from hardenkit.stores import RedisGuard
from tests.signing.test_middleware import SECRET
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

READY_WITHIN_SECONDS = 10.0  # a heartbeat every ttl / 3 = 1.7 s; slack for a loaded host


def doctor_findings(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, str]]:
    capsys.readouterr()  # what the running apps logged is not the doctor's report
    main(["doctor", "--json"])
    return {finding["check"]: finding for finding in json.loads(capsys.readouterr().out)}


def other_instances(redis_url: str, key_prefix: str, count: int, *, ttl: float = 60.0) -> None:
    """``count`` instances of other processes, each with one live heartbeat of ``ttl`` s."""

    async def beat() -> None:
        client = Redis.from_url(redis_url)
        try:
            for _ in range(count):
                registry = InstanceRegistry(
                    client, RedisGuard("other", timeout=1.0), key=instances_key(key_prefix), ttl=ttl
                )
                await registry.beat()
        finally:
            await client.aclose()

    asyncio.run(beat())


def remove_instances(redis_url: str, key_prefix: str) -> None:
    async def delete() -> None:
        client = Redis.from_url(redis_url)
        try:
            await client.delete(instances_key(key_prefix))
        finally:
            await client.aclose()

    asyncio.run(delete())


@pytest.fixture
def shared_redis_env(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, key_prefix: str
) -> Iterator[None]:
    monkeypatch.setenv("HARDENKIT_REDIS_URL", redis_url)
    monkeypatch.setenv("HARDENKIT_RATE_LIMIT_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("HARDENKIT_REDIS_SOCKET_TIMEOUT", "1")
    yield
    remove_instances(redis_url, key_prefix)


async def test_an_expired_heartbeat_is_not_counted_and_counting_adds_none(
    redis_client: Redis, key_prefix: str
) -> None:
    key = instances_key(key_prefix)
    registry = InstanceRegistry(redis_client, RedisGuard("t", timeout=1.0), key=key, ttl=30)
    assert await registry.beat() == 1
    seconds, micros = await redis_client.time()
    now_ms = seconds * 1000 + micros // 1000
    await redis_client.zadd(key, {"gone": now_ms - 1, "alive": now_ms + 30_000})
    assert await count_live_instances(redis_client, key) == 2
    assert await count_live_instances(redis_client, key) == 2  # the doctor is no instance
    assert await registry.beat() == 2  # the heartbeat counts by the same rule
    await registry.aclose()
    assert await count_live_instances(redis_client, key) == 1


async def test_an_instance_is_counted_only_when_redis_shows_every_other_beat_since_it_joined(
    redis_client: Redis, key_prefix: str
) -> None:
    """The ``auto`` fallback admits only once every other live instance divides by a count
    that includes this one, and this one's count has had time to include them all. Time
    alone never makes it so: an outage, or another instance that could not beat, keeps
    it as it was."""
    now = [100.0]
    key = instances_key(key_prefix)

    def registry() -> InstanceRegistry:
        guard = RedisGuard("t", timeout=1.0, retry_interval=0.5)
        return InstanceRegistry(redis_client, guard, key=key, ttl=3, clock=lambda: now[0])

    first, second, third = registry(), registry(), registry()
    # Time for one that Redis lost to be back: the guard's probe, then a late beat.
    assert first.counted_after == 0.5 + 1.5
    assert not first.counted  # no answer yet: the count is unknown
    assert await beat(first) == 1
    assert not first.counted  # alone now; one Redis lost may be back within a beat
    now[0] += 60.0
    assert not first.counted  # by time alone, never (an outage keeps it as it was)
    assert await beat(first) == 1
    assert first.counted  # a beat 2 s or more later, and still nobody else
    assert await beat(second) == 2
    now[0] += 2.0
    assert await beat(second) == 2
    assert not second.counted  # the first has not beat since the second joined
    await beat(first)
    await beat(second)
    assert second.counted  # now it has: the first's count includes the second
    assert await beat(third) == 3
    now[0] += 2.0
    await beat(first)  # the second is late (a busy loop, its guard on the fallback)
    await beat(third)
    assert not third.counted
    await beat(second)
    await beat(third)
    assert third.counted
    for instance in (first, second, third):
        await instance.aclose()
    with pytest.raises(ValueError, match="counted_after"):
        InstanceRegistry(redis_client, RedisGuard("t"), key=key, counted_after=-1)


async def beat(instance: InstanceRegistry) -> int:
    count = await instance.beat()
    await asyncio.sleep(0.002)  # the next beat a millisecond later by Redis's clock
    return count


async def test_an_instance_away_until_its_heartbeat_expired_joins_afresh(
    redis_client: Redis, key_prefix: str
) -> None:
    """Paused or cut off for as long as the others keep a count in their window, they
    may have stopped counting it: it is counted again only once they have beat since it
    came back. Its entry lost with Redis's data while it beat on time, or expired in an
    outage shorter than that, is no such absence."""
    now = [100.0]
    key = instances_key(key_prefix)
    here = InstanceRegistry(
        redis_client, RedisGuard("t"), key=key, ttl=3, counted_after=1.0, clock=lambda: now[0]
    )
    other = InstanceRegistry(redis_client, RedisGuard("t"), key=key, ttl=3, counted_after=0)
    await beat(here)
    await beat(other)
    await beat(other)
    now[0] += 1.0
    await beat(here)
    assert here.counted
    await redis_client.delete(key)  # Redis lost its data; this one beat 1 s ago
    now[0] += 1.0
    await beat(here)
    assert here.counted
    await beat(other)  # back in the set too
    await redis_client.zrem(key, here.instance_id)  # expired: Redis away from everyone
    now[0] += 5.0  # longer than the ttl, shorter than the others keep their counts
    await beat(here)
    assert here.counted  # their windows (3 x ttl, aged only by answers) still hold it
    await redis_client.zrem(key, here.instance_id)  # expired again: away on its own
    now[0] += 3 * 3 - 1  # the others' window, less a beat: they may have dropped it
    await beat(here)
    assert not here.counted  # the other has not beat since it came back
    now[0] += 1.0
    await beat(here)
    assert not here.counted
    await beat(other)
    await beat(here)
    assert here.counted
    for instance in (here, other):
        await instance.aclose()


async def test_a_newcomer_on_a_redis_that_lost_the_heartbeats_does_not_trust_its_first_count(
    redis_client: Redis, key_prefix: str
) -> None:
    """After Redis restarts empty, the first heartbeat finds only itself: the others are
    back within their guard's retry interval and a beat, and the newcomer is not counted
    until it has seen them."""
    now = [100.0]
    key = instances_key(key_prefix)
    old = InstanceRegistry(redis_client, RedisGuard("t"), key=key, ttl=3, counted_after=0)
    await beat(old)
    await beat(old)
    assert old.counted
    await redis_client.delete(key)  # what an empty restart leaves
    newcomer = InstanceRegistry(
        redis_client, RedisGuard("t", retry_interval=10.0), key=key, ttl=3, clock=lambda: now[0]
    )
    assert newcomer.counted_after == 10.0 + 1.5
    assert await beat(newcomer) == 1
    now[0] += 5.0
    assert await beat(newcomer) == 1
    assert not newcomer.counted  # the old one may still be waiting to retry Redis
    await beat(old)  # back in the set: its count includes the newcomer
    now[0] += 6.5
    assert await beat(newcomer) == 2
    assert newcomer.counted
    assert newcomer.live_instances == 2
    for instance in (old, newcomer):
        await instance.aclose()


async def test_a_newcomer_waits_until_the_others_count_one_that_appeared_after_it(
    redis_client: Redis, key_prefix: str
) -> None:
    """After Redis restarted empty, one old instance back before another may count one
    fewer: a newcomer counted then, and Redis gone again, would give shares over the
    limit (1/2 + 1/3 + 1/3). It waits until every other has beat since the last one
    appeared."""
    now = [100.0]
    key = instances_key(key_prefix)
    first = InstanceRegistry(redis_client, RedisGuard("t"), key=key, ttl=3, counted_after=0)
    second = InstanceRegistry(redis_client, RedisGuard("t"), key=key, ttl=3, counted_after=0)
    for instance in (first, second, first, second):
        await beat(instance)
    await redis_client.delete(key)  # an empty restart
    await beat(first)  # back first: its new count is 1 (its window holds 2)
    newcomer = InstanceRegistry(
        redis_client, RedisGuard("t"), key=key, ttl=3, counted_after=1.0, clock=lambda: now[0]
    )
    await beat(newcomer)
    await beat(first)  # counts the newcomer: 2
    await beat(second)  # back now: 3
    now[0] += 1.0
    assert await beat(newcomer) == 3
    assert not newcomer.counted  # the first beat after the newcomer, not after the second
    await beat(newcomer)
    assert not newcomer.counted
    await beat(first)  # now it counts all three
    await beat(newcomer)
    assert newcomer.counted
    for instance in (first, second, newcomer):
        await instance.aclose()


@pytest.mark.usefixtures("shared_redis_env")
def test_doctor_and_readiness_report_the_same_live_instances(
    capsys: pytest.CaptureFixture[str], redis_url: str, key_prefix: str
) -> None:
    first, second = Starlette(), Starlette()
    install(first, HardenSettings())
    install(second, HardenSettings())
    with TestClient(first) as client, TestClient(second):
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        ready = client.get("/readyz").json()["checks"]["redis"]
        while ready["instances"] != 2 and time.monotonic() < deadline:
            time.sleep(0.2)  # until the first instance's next heartbeat saw the second
            ready = client.get("/readyz").json()["checks"]["redis"]
        assert ready["instances"] == 2
        assert ready["instances_for_fallback_share"] == 2
        instances = doctor_findings(capsys)["instances"]
    assert instances["status"] == "pass"
    assert instances["detail"].startswith("2 live instances share this Redis")
    assert instances_key(key_prefix) in instances["detail"]
    # Both left the set on shutdown: the doctor counts none, at once.
    assert doctor_findings(capsys)["instances"]["detail"].startswith("0 live instances")


@pytest.fixture
def webhooks_in_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDENKIT_ENV", "production")  # the advice is for production
    monkeypatch.setenv("HARDENKIT_WEBHOOK_PATHS", '["/webhooks/*"]')
    monkeypatch.setenv("HARDENKIT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("HARDENKIT_REPLAY_REDIS_DOWN", "fallback")


@pytest.mark.usefixtures("shared_redis_env", "webhooks_in_fallback")
def test_doctor_recommends_closed_replay_only_when_more_than_one_instance_is_live(
    capsys: pytest.CaptureFixture[str], redis_url: str, key_prefix: str
) -> None:
    none_yet = doctor_findings(capsys)  # e.g. checked before the first deploy
    assert none_yet["instances"]["detail"].startswith("0 live instances share this Redis")
    assert none_yet["HARDENKIT_REPLAY_REDIS_DOWN"]["status"] == "pass"

    other_instances(redis_url, key_prefix, 1)
    alone = doctor_findings(capsys)
    assert alone["instances"]["detail"].startswith("1 live instance shares this Redis")
    assert alone["HARDENKIT_REPLAY_REDIS_DOWN"] == {
        "check": "HARDENKIT_REPLAY_REDIS_DOWN",
        "status": "pass",
        "detail": "`fallback` with 1 live instance: no other instance can process a "
        "redelivery; set `closed` before a second instance shares this Redis",
    }

    other_instances(redis_url, key_prefix, 2)
    fleet = doctor_findings(capsys)
    assert fleet["instances"]["detail"].startswith("3 live instances share this Redis")
    advice = fleet["HARDENKIT_REPLAY_REDIS_DOWN"]
    assert advice["status"] == "warn"
    assert advice["detail"].startswith("3 live instances: ")
    assert "set `closed`" in advice["detail"]


@pytest.mark.usefixtures("webhooks_in_fallback")
def test_doctor_recommends_closed_replay_when_the_live_instances_are_unknown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARDENKIT_REDIS_URL", "redis://127.0.0.1:1/0")
    findings = doctor_findings(capsys)
    assert findings["redis"]["status"] == "fail"
    assert findings["instances"] == {
        "check": "instances",
        "status": "warn",
        "detail": "live instances unknown: Redis did not answer",
    }
    advice = findings["HARDENKIT_REPLAY_REDIS_DOWN"]
    assert advice["status"] == "warn"
    assert advice["detail"].endswith("(live instances unknown: assuming more than one)")


def test_readiness_shows_the_count_unknown_until_redis_answers_a_heartbeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Started during an outage: no count to divide the limits by, and none is shown."""
    monkeypatch.setenv("HARDENKIT_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("HARDENKIT_REDIS_SOCKET_TIMEOUT", "0.2")
    app = Starlette()
    install(app, HardenSettings())
    with TestClient(app) as client:
        ready = client.get("/readyz")
    redis = ready.json()["checks"]["redis"]
    assert redis["instances"] is None
    assert redis["instances_for_fallback_share"] is None
    # Never reached Redis (a wrong URL, CA or sentinel master): its fallback refuses every
    # limited request, so it is not ready (new-user review: it said 200 "degraded").
    assert ready.status_code == 503
    assert redis["status"] == "unhealthy"
    assert redis["never_answered"] is True


@pytest.mark.parametrize(
    ("share", "when_down", "refusing"),
    [("auto", "fallback", True), ("0.5", "fallback", False), ("auto", "open", False)],
)
def test_readiness_says_when_an_uncounted_instance_refuses_every_limited_request(
    monkeypatch: pytest.MonkeyPatch,
    redis_server_factory: Callable[[], RedisServer],
    share: str,
    when_down: str,
    refusing: bool,
) -> None:
    """Redis lost moments after startup: the fallback refuses, and readiness says so.

    A new-user review stopped Redis a second after a production instance started: every
    limited request (the per-ip rule covers every route) answered 503 for the whole
    outage, while /readyz said only "degraded". It stays 200 (a whole fleet can be
    uncounted at once after Redis restarted empty: an attacker round), and says it.
    """
    server = redis_server_factory()
    monkeypatch.setenv("HARDENKIT_REDIS_URL", server.url)
    monkeypatch.setenv("HARDENKIT_REDIS_SOCKET_TIMEOUT", "0.2")
    monkeypatch.setenv("HARDENKIT_RATE_LIMIT_FALLBACK_SHARE", share)
    monkeypatch.setenv("HARDENKIT_RATE_LIMIT_REDIS_DOWN", when_down)

    async def hello(request: object) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/hello", hello)])
    install(app, HardenSettings(public_paths=["/hello"]))
    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200  # Redis answered its heartbeat
        server.stop()
        limited = client.get("/hello")
        answer = client.get("/readyz")
    redis = answer.json()["checks"]["redis"]
    assert redis["counted_by_others"] is False
    assert limited.status_code == (503 if refusing else 200)
    assert answer.status_code == 200
    assert redis["status"] == "degraded"
    assert redis.get("refusing_limited_requests", False) is refusing


async def test_the_share_count_survives_a_redis_restarted_empty_until_the_window_passes(
    redis_server_factory: Callable[[], RedisServer],
) -> None:
    server = redis_server_factory()
    client = Redis.from_url(server.url)
    now = [0.0]
    registries = [
        InstanceRegistry(
            client,
            RedisGuard(f"i{index}", timeout=1.0, retry_interval=0.05),
            key="t:instances",
            ttl=5.0,
            clock=lambda: now[0],
        )
        for index in range(4)
    ]
    first = registries[0]
    try:
        for registry in registries:
            await registry.beat()
        assert await first.beat() == 4
        server.stop()  # restarted empty: the heartbeats are gone
        server.start()
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        while first.measured_instances != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.06)  # past retry_interval: the next beat is the probe
            await first.beat()
        assert first.measured_instances == 1  # what Redis says now...
        assert first.live_instances == 4  # ...is not what the shares divide by
        server.kill()  # the next outage, seconds later: the share is still a quarter
        assert await first.beat() == 4
        assert first.guard.using_fallback
        now[0] += 60.0  # an outage ages nothing
        assert first.live_instances == 4
        server.start()
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        while first.guard.using_fallback and time.monotonic() < deadline:
            await asyncio.sleep(0.06)
            await first.beat()
        assert (first.measured_instances, first.live_instances) == (1, 4)
        now[0] += first.window - 0.1
        assert await first.beat() == 4  # still within 3 × ttl of the last answer of 4
        now[0] += 0.2
        assert await first.beat() == 1  # one instance for longer than the window: believed
        await registries[1].beat()
        assert await first.beat() == 2  # a higher count counts at once
    finally:
        await client.aclose()


def test_a_forked_child_beats_and_reserves_under_ids_of_its_own() -> None:
    """An app built before a pre-fork server forks (gunicorn --preload): each worker must
    be its own instance, or N workers count as one and each takes the whole limit."""
    from hardenkit.ratelimit.redis_store import RedisStore

    redis = Redis.from_url("redis://127.0.0.1:1")  # never connected
    registry = InstanceRegistry(redis, RedisGuard("instances"))
    store = RedisStore(redis, instances=registry)
    store.fallback.set_tat("someone", store.fallback.now_us() + 10**9)
    registry.answered = registry.counted = True
    registry.live_instances = 4
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        state = [
            registry.instance_id,
            store.member,
            store._outage.member,
            registry.answered,
            registry.counted,
            registry.live_instances,
            len(store.fallback),
        ]
        os.write(write, json.dumps(state).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as child:
        instance_id, member, outage_member, answered, counted, live, kept = json.load(child)
    os.waitpid(pid, 0)
    assert instance_id != registry.instance_id
    assert member == outage_member != store.member
    # It joins as a newcomer: no count, not counted, nothing the parent decided.
    assert (answered, counted, live, kept) == (False, False, 1, 0)
    assert (registry.answered, registry.counted, len(store.fallback)) == (True, True, 1)


async def test_closing_stops_a_heartbeat_whose_call_swallowed_the_cancellation(
    redis_client: Redis, key_prefix: str
) -> None:
    # A client library that catches CancelledError while it reconnects (seen once as a
    # hang of TestClient's shutdown with the heartbeat still beating): one cancel is lost.
    key = instances_key(key_prefix)
    registry = InstanceRegistry(redis_client, RedisGuard("t", timeout=1.0), key=key, ttl=3)
    real_beat = registry.beat
    beats = 0

    async def beat_losing_a_cancel() -> int:
        nonlocal beats
        beats += 1
        live = await real_beat()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        return live

    registry.beat = beat_losing_a_cancel  # type: ignore[method-assign]
    registry.start()
    while beats == 0:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # in the call that loses the cancel
    assert await count_live_instances(redis_client, key) == 1
    closing = asyncio.ensure_future(registry.aclose())
    await asyncio.wait({closing}, timeout=5)
    stopped = closing.done()
    if not stopped:  # leave no task beating behind the test
        registry.beat = real_beat  # type: ignore[method-assign]
        closing.cancel()
    assert stopped
    assert await count_live_instances(redis_client, key) == 0
    assert beats == 1


async def test_closing_gives_up_on_a_heartbeat_that_never_ends_and_says_so(
    redis_client: Redis, key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(instances, "_STOP_SECONDS", 0.5)
    key = instances_key(key_prefix)
    registry = InstanceRegistry(redis_client, RedisGuard("t", timeout=1.0), key=key, ttl=3)
    stop = False

    async def beat_ignoring_cancels() -> int:
        while not stop:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.05)
        return 1

    registry.beat = beat_ignoring_cancels  # type: ignore[method-assign]
    registry.start()
    beating = registry._task
    assert beating is not None
    await asyncio.sleep(0.05)
    started = time.monotonic()
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(registry.aclose(), timeout=5)
    assert time.monotonic() - started < 2
    assert [log["event"] for log in logs if log["log_level"] == "error"] == [
        "instance_heartbeat_did_not_stop"
    ]
    stop = True  # now it ends at the next cancel
    await instances._stop(beating)
    assert beating.done()
