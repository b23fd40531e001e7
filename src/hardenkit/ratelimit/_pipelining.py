"""Automatic pipelining: decisions that wait for the same connection share one round trip.

While one call to Redis is in flight, further decisions queue; when it returns, the
queue goes out as one pipeline (``transaction=False``: each script still runs on its
own, atomically). A lone caller therefore pays a plain ``EVALSHA``; 64 concurrent callers
pay one network round trip and one pass through redis-py per batch instead of one each,
which is where an asyncio client spends its time. Each decision is still exactly one
``EVALSHA``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

_MAX_BATCH: Final = 256  # bounds one pipeline's size and the time its last caller waits

Reply = Sequence[int]


class ScriptRunner:
    """Runs one Lua script by SHA, direct when idle, pipelined under concurrency.

    Args:
        client: The redis-py asyncio client.
        script: The script source (sent with ``EVAL`` when a node answers ``NOSCRIPT``).
        sha: Its SHA1.
        batch_timeout: Seconds a queued batch may take; its callers see ``TimeoutError``.
    """

    def __init__(
        self, client: Redis | RedisCluster, script: str, sha: str, *, batch_timeout: float
    ) -> None:
        self.client = client
        self.script = script
        self.sha = sha
        self.batch_timeout = batch_timeout
        self._queue: list[tuple[str, tuple[int, ...], asyncio.Future[Reply]]] = []
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drainer: asyncio.Task[None] | None = None
        # redis-py refuses scripts in Cluster pipelines; there every decision goes alone.
        self.pipelining = not _is_cluster(client)
        self._pool, self._pool_arguments = _direct_pool(client)

    async def run(self, key: str, args: tuple[int, ...]) -> Reply:
        """Run the script on ``key`` with ``args``; return its reply."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # first use, or a new event loop (tests, workers)
            self._loop, self._busy, self._queue = loop, False, []
        if self._busy and self.pipelining:
            future: asyncio.Future[Reply] = loop.create_future()
            self._queue.append((key, args, future))
            return await future
        self._busy = True
        try:
            return await self.run_one(key, args)
        finally:
            self._release()

    async def run_one(self, key: str, args: tuple[int, ...]) -> Reply:
        """Run the script once, on its own (``EVALSHA``, ``EVAL`` after ``NOSCRIPT``)."""
        try:
            return await self._command("EVALSHA", self.sha, 1, key, *args)
        except Exception as error:
            if not _is_noscript(error):
                raise
            return await self._command("EVAL", self.script, 1, key, *args)

    async def _command(self, *command: str | int) -> Reply:
        """Send one command on a pooled connection and read its reply.

        Standalone clients skip redis-py's retry loop and per-command instrumentation:
        the guard is the retry policy here (a failure goes to the fallback at once), and
        a decision is in every request's path. A connection that failed or was
        cancelled mid-reply is closed, never reused.
        """
        pool = self._pool
        if pool is None:
            reply: Reply = await self.client.execute_command(*command)
            return reply
        connection = await pool.get_connection(*self._pool_arguments)
        try:
            await connection.send_command(*command)
            reply = await connection.read_response()
        except Exception as error:
            if not _is_reply_error(error):
                await connection.disconnect(nowait=True)
            raise
        except BaseException:  # cancelled (the guard's timeout) with a reply in flight
            await connection.disconnect(nowait=True)
            raise
        finally:
            await pool.release(connection)
        return reply

    def _release(self) -> None:
        if self._queue:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        else:
            self._busy = False

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = [entry for entry in self._queue[:_MAX_BATCH] if not entry[2].done()]
                del self._queue[:_MAX_BATCH]
                if batch:
                    await self._send(batch)
        finally:
            self._busy = False
            self._drainer = None

    async def _send(self, batch: list[tuple[str, tuple[int, ...], asyncio.Future[Reply]]]) -> None:
        try:
            async with asyncio.timeout(self.batch_timeout):
                if len(batch) == 1:
                    replies: list[Any] = [await self.run_one(batch[0][0], batch[0][1])]
                else:
                    replies = await self._pipeline(batch)
        except Exception as error:  # noqa: BLE001 - handed to every caller, not swallowed
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(
        self, batch: list[tuple[str, tuple[int, ...], asyncio.Future[Reply]]]
    ) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for key, args, _ in batch:
            pipe.evalsha(self.sha, 1, key, *args)
        replies: list[Any] = await pipe.execute(raise_on_error=False)
        for index, reply in enumerate(replies):
            if isinstance(reply, Exception) and _is_noscript(reply):
                key, args, _ = batch[index]
                replies[index] = await self.client.eval(self.script, 1, key, *args)
        return replies


def _direct_pool(client: object) -> tuple[Any, tuple[str, ...]]:
    """Return the pool to take connections from directly, or ``None`` to use the client."""
    from redis.asyncio import Redis  # noqa: PLC0415 - redis is imported lazily

    if (
        not isinstance(client, Redis)
        or client.single_connection_client
        or client.connection is not None
    ):
        return None, ()
    pool = client.connection_pool
    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    # redis-py < 5.3 requires the command name; later versions deprecate passing it.
    needs_name = parameter is not None and parameter.default is inspect.Parameter.empty
    return pool, ("EVALSHA",) if needs_name else ()


def _is_reply_error(error: BaseException) -> bool:
    from redis.exceptions import ResponseError  # noqa: PLC0415 - redis is imported lazily

    return isinstance(error, ResponseError)


def _is_cluster(client: object) -> bool:
    from redis.asyncio.cluster import RedisCluster  # noqa: PLC0415 - redis is imported lazily

    return isinstance(client, RedisCluster)


def _is_noscript(error: BaseException) -> bool:
    from redis.exceptions import NoScriptError  # noqa: PLC0415 - redis is imported lazily

    return isinstance(error, NoScriptError)
