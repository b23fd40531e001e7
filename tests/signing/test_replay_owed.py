"""Replay ``closed`` through a Redis pause: a write Redis did not take is owed, not lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from hardenkit import ReplayStore, ReplayStoreUnavailableError, sign_webhook
from hardenkit._timer import LOOP_LAG_ALLOWANCE
from hardenkit.signing.replay import _CLAIM, ClaimOutcome
from hardenkit.stores import RedisGuard
from tests.signing.test_middleware import BODY, SECRET, Handler, make_app
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.redis

WITHIN_SECONDS = 10.0  # bounded waits; generous for a loaded 2-core host


def closed_store(client: Redis) -> ReplayStore:
    guard = RedisGuard("replay", timeout=0.2, retry_interval=0.2, ping=client.ping)
    return ReplayStore(client, guard=guard, when_down="closed")


@pytest.fixture
async def server_client(
    redis_server_factory: Callable[[], RedisServer],
) -> AsyncIterator[tuple[RedisServer, Redis]]:
    server = redis_server_factory()
    client = Redis.from_url(server.url, socket_timeout=5.0)
    try:
        yield server, client
    finally:
        await client.aclose()


async def eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WITHIN_SECONDS
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert condition()


async def test_a_processed_mark_lost_in_a_pause_is_written_after_it_and_never_lapses(
    server_client: tuple[RedisServer, Redis],
) -> None:
    server, admin = server_client
    first, second = (closed_store(Redis.from_url(server.url)) for _ in range(2))
    assert await first.claim("webhook:k", processing_ttl=2) is ClaimOutcome.NEW
    await admin.execute_command("CLIENT", "PAUSE", "2500", "ALL")
    await first.complete("webhook:k", ttl=600)  # times out: Redis is paused
    assert first.owed_writes == 1
    # Redelivered here meanwhile: processed already, whatever Redis says.
    assert await first.claim("webhook:k", processing_ttl=2) is ClaimOutcome.DUPLICATE
    await eventually(lambda: first.owed_writes == 0)
    assert await admin.get("hardenkit:replay:webhook:k") == b"d"
    await asyncio.sleep(2.5)  # past processing_ttl: the claim would have lapsed
    assert await second.claim("webhook:k", processing_ttl=2) is ClaimOutcome.DUPLICATE
    assert (await first.health_check()).detail == {"when_down": "closed", "backend": "redis"}


class LateReplies:
    """A real client whose next ``eval`` runs in Redis but whose reply never arrives."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self.lose_next_reply = False

    async def eval(self, *args: Any) -> Any:
        result = await self.client.eval(*args)
        if self.lose_next_reply:
            self.lose_next_reply = False
            await asyncio.sleep(60)  # the guard gives up long before
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def late_and_prompt(
    server_client: tuple[RedisServer, Redis],
) -> tuple[Redis, ReplayStore, ReplayStore]:
    """An admin client, a ``closed`` store whose next reply never arrives, and one whose do."""
    server, admin = server_client
    late = LateReplies(Redis.from_url(server.url))
    late.lose_next_reply = True
    return admin, closed_store(late), closed_store(Redis.from_url(server.url))  # type: ignore[arg-type]


async def test_a_nonce_answered_503_but_run_by_redis_is_withdrawn_so_the_retry_is_accepted(
    server_client: tuple[RedisServer, Redis],
) -> None:
    """A signed message's nonce, remembered by a command Redis ran after the guard gave
    up on it: the sender got 503 and retries the same message, which is no replay."""
    admin, first, second = late_and_prompt(server_client)
    with pytest.raises(ReplayStoreUnavailableError):
        await first.remember("message:n1", ttl=300)
    assert await admin.get("hardenkit:replay:message:n1") is not None  # it landed
    await eventually(lambda: first.owed_writes == 0)
    assert await second.remember("message:n1", ttl=300)  # the retry: first time seen
    assert not await first.remember("message:n1", ttl=300)  # and now it is a replay
    assert not await second.remember("message:n1", ttl=300)


async def test_a_claim_answered_503_but_run_by_redis_is_withdrawn_so_the_retry_is_processed(
    server_client: tuple[RedisServer, Redis],
) -> None:
    admin, first, second = late_and_prompt(server_client)
    with pytest.raises(ReplayStoreUnavailableError):
        await first.claim("webhook:late", processing_ttl=60)
    assert (await admin.get("hardenkit:replay:webhook:late") or b"").startswith(b"p:")
    await eventually(lambda: first.owed_writes == 0)
    # The sender's retry, at any instance, is processed: not 409 for processing_ttl.
    assert await second.claim("webhook:late", processing_ttl=60) is ClaimOutcome.NEW
    await second.complete("webhook:late", ttl=600)
    assert await first.claim("webhook:late", processing_ttl=60) is ClaimOutcome.DUPLICATE


async def test_a_withdrawn_claim_that_lands_late_does_not_take_the_id(
    server_client: tuple[RedisServer, Redis],
) -> None:
    _, admin = server_client
    store = closed_store(admin)
    assert await store.claim("webhook:w", processing_ttl=60) is ClaimOutcome.NEW
    token, _ = store._held.get("hardenkit:replay:webhook:w") or ("", 0.0)
    await store.release("webhook:w")
    assert await admin.get("hardenkit:replay:webhook:w") == f"x:{token}".encode()
    late = await admin.eval(_CLAIM, 1, "hardenkit:replay:webhook:w", token, 60_000)  # as it lands
    assert late == f"x:{token}".encode()  # refused: the id stays free
    assert await store.claim("webhook:w", processing_ttl=60) is ClaimOutcome.NEW
    # Releasing a claim that is not this holder's leaves it alone.
    other = closed_store(admin)
    other._held.put("hardenkit:replay:webhook:w", ("not-the-token", 60.0), 60.0)
    await other.release("webhook:w")
    assert await store.claim("webhook:w", processing_ttl=60) is ClaimOutcome.IN_PROGRESS


async def test_two_closed_instances_through_a_pause_process_every_delivery_exactly_once(
    server_client: tuple[RedisServer, Redis],
) -> None:
    server, admin = server_client
    handler = Handler()
    instances = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(
                app=make_app(
                    handler,
                    replay_store=closed_store(Redis.from_url(server.url)),
                    processing_ttl=2,
                )
            ),
            base_url="http://instance",
        )
        for _ in range(2)
    ]

    async def deliver(webhook_id: str, instance: httpx.AsyncClient) -> httpx.Response:
        headers = sign_webhook(BODY, SECRET, webhook_id=webhook_id)
        return await instance.post("/webhooks/in", content=BODY, headers=headers)

    async def pause_midway() -> None:
        await asyncio.sleep(0.05)
        await admin.execute_command("CLIENT", "PAUSE", "1500", "ALL")

    ids = [f"msg_{index}" for index in range(80)]
    answers = await asyncio.gather(
        pause_midway(), *(deliver(i, instances[n % 2]) for n, i in enumerate(ids))
    )
    statuses = {answer.status_code for answer in answers[1:]}
    assert statuses <= {200, 409, 503}
    await asyncio.sleep(2.5)  # past the pause and past processing_ttl
    # The sender redelivers everything to the other instance until it is settled.
    pending = {i: instances[(n + 1) % 2] for n, i in enumerate(ids)}
    deadline = time.monotonic() + WITHIN_SECONDS
    while pending and time.monotonic() < deadline:
        for webhook_id, instance in list(pending.items()):
            answer = await deliver(webhook_id, instance)
            assert answer.status_code in {200, 409, 503}
            if answer.status_code == 200:
                del pending[webhook_id]
        await asyncio.sleep(0.2)
    for instance in instances:
        await instance.aclose()
    assert not pending
    processed = [webhook_id for webhook_id, _ in handler.processed]
    assert sorted(processed) == sorted(ids)  # each once: none twice, none lost


async def test_a_claim_refused_as_in_progress_does_not_take_over_the_holders_release(
    server_client: tuple[RedisServer, Redis],
) -> None:
    _, admin = server_client
    store, other = closed_store(admin), closed_store(admin)
    assert await store.claim("webhook:h", processing_ttl=60) is ClaimOutcome.NEW
    assert await store.claim("webhook:h", processing_ttl=60) is ClaimOutcome.IN_PROGRESS
    await store.release("webhook:h")  # the first claim's holder fails: its claim goes
    assert await other.claim("webhook:h", processing_ttl=60) is ClaimOutcome.NEW


class LateCommands:
    """A real client cut off from Redis for ``delay`` seconds, while the one command it
    sent first reaches Redis at the end of them, whether or not its caller still waits
    (a stopped Redis or a stalled network: the command was in flight). Meanwhile its
    other commands fail at once, so a withdrawal lands only after the late command."""

    def __init__(self, client: Redis, delay: float) -> None:
        self.client = client
        self.delay = delay
        self.delay_next = False
        self.cut_until = 0.0
        self.landed: list[asyncio.Task[Any]] = []

    async def eval(self, *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self.delay_next:
            self.delay_next = False
            self.cut_until = loop.time() + self.delay

            async def later() -> Any:
                await asyncio.sleep(self.delay)
                return await self.client.eval(*args)

            task = loop.create_task(later())
            self.landed.append(task)
            return await asyncio.shield(task)
        if loop.time() < self.cut_until:
            raise RedisConnectionError("cut off")
        return await self.client.eval(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


async def test_a_nonce_that_lands_after_its_503_is_never_refused_as_replayed_on_retry(
    server_client: tuple[RedisServer, Redis],
) -> None:
    """Its command ran after the sender was answered 503: until the withdrawal lands, the
    sender's retry is asked to come back (503), never refused for good as a replay."""
    server, admin = server_client
    # Longer than its guard waits at most (its timeout, more while Redis answered others
    # lately, never beyond the loop-lag allowance): the caller has given up by then.
    late = LateCommands(Redis.from_url(server.url), delay=0.2 + LOOP_LAG_ALLOWANCE + 0.3)
    first = closed_store(late)  # type: ignore[arg-type]
    second = closed_store(Redis.from_url(server.url))
    assert await first.remember("message:warm", ttl=300)  # the offset to Redis's clock
    late.delay_next = True
    with pytest.raises(ReplayStoreUnavailableError):
        await first.remember("message:n2", ttl=300)  # answered 503
    await asyncio.gather(*late.landed)  # the command ran in Redis, 1.5 s late
    state = await admin.get("hardenkit:replay:message:n2")
    assert state is not None
    assert state.endswith(b":l") or state.startswith(b"x:")  # marked late, or withdrawn
    retried = [False]

    async def retry() -> bool:
        try:
            retried[0] = await second.remember("message:n2", ttl=300)
        except ReplayStoreUnavailableError:
            return False  # "retry later": the withdrawal has not landed yet
        return True

    await eventually_async(retry)
    assert retried[0]  # accepted: the first time this message is processed
    assert not await second.remember("message:n2", ttl=300)  # and now it is a replay
    assert not await first.remember("message:n2", ttl=300)


async def test_a_nonce_taken_in_time_answers_replayed_at_once(
    server_client: tuple[RedisServer, Redis],
) -> None:
    _, admin = server_client
    store = closed_store(admin)
    for _ in range(3):  # with and without a measured clock offset
        key = f"message:{_}"
        assert await store.remember(key, ttl=300)
        assert not await store.remember(key, ttl=300)
        assert not (await admin.get(f"hardenkit:replay:{key}") or b"").endswith(b":l")


async def eventually_async(attempt: Callable[[], Any]) -> None:
    deadline = time.monotonic() + WITHIN_SECONDS
    while not await attempt():
        assert time.monotonic() < deadline, "never accepted"
        await asyncio.sleep(0.05)
