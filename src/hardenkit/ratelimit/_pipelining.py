"""Automatic pipelining: decisions that wait for the same connection share one round trip.

While one call to Redis is in flight, further decisions queue; when it returns, the
queue goes out as one pipeline (``transaction=False``: each script still runs on its
own, atomically). A lone caller therefore pays a plain ``EVALSHA``; 64 concurrent callers
pay one network round trip and one pass through redis-py per batch instead of one each,
which is where an asyncio client spends its time. Each decision is still exactly one
``EVALSHA``.

The lone caller's command, and each batch, go over one connection the runner keeps
checked out of the client's pool, with the connection's own timeouts and retries
replaced by none: the guard's timeout bounds every call and the guard is the retry
policy. redis-py's
per-command timeouts cost a task per write on Python 3.11 (``asyncio.wait_for``) and a
timer per read, and its pool checkout a lock and counters: together about 50 µs of a
redis-py ``PING``'s 130-180 µs on the 2-core bench machine. Closing the client closes
that connection too (it is the pool's).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from hardenkit import _timer
from hardenkit._afterfork import keep_inherited, renew_after_fork
from hardenkit.stores import is_cluster

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

_TAKEN_OVER: Final = ("socket_timeout", "socket_connect_timeout", "retry")
"""Settings of the held connection that the runner replaces while it holds it."""

_CLUSTER_IN_FLIGHT: Final = 8
"""Decisions a runner has in flight at once to each primary of a Cluster, and the
connections it opens to every primary before the first one (:meth:`ScriptRunner.prepare`).
Further decisions for that node wait for one of those rather than open a connection
inside their own timeout (a node that hangs holds up its own keys only): a burst
of 16 new connections to a node took 30-45 ms on an idle 2-core host, most of the 50 ms
a decision may take, so a fresh worker's first burst fell back on a busy one. Eight
round trips of about 0.3 ms each carry far more decisions than a process serves."""
_MAX_BATCH: Final = 256  # bounds one pipeline's size and the time its last caller waits
_MAX_ENCODED_ARGS: Final = 1024  # distinct argument tuples kept encoded

Reply = Any
"""What the script answers (``gcra.lua``: three integers)."""

Args = tuple[int | str, ...]
"""The script's ARGV."""

Orphan = Callable[[Reply | None], None]
"""Told what became of a call its caller stopped waiting for (timed out): the reply, or
``None`` when it is unknown whether Redis ran it (the connection was closed with the
call in flight, or the call was never sent)."""

Queued = tuple[tuple[str, ...], Args, "asyncio.Future[Reply]", Orphan | None]
"""A decision waiting for the next batch: its keys, its script arguments, its caller, and
whom to tell what became of it if the caller stops waiting."""


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
        self._queue: list[Queued] = []
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drainer: asyncio.Task[None] | None = None
        # redis-py refuses scripts in Cluster pipelines; there every decision goes alone.
        self.pipelining = not is_cluster(client)
        self._cluster_slots: dict[str, asyncio.Semaphore] = {}  # by node
        self._pool, self._pool_arguments = _direct_pool(client)
        self._connection: Any = None  # held out of the pool for lone commands
        self._connection_settings: dict[str, Any] = {}  # its own, given back with it
        self._connection_busy = False
        self._evalsha_head = _bulk("EVALSHA") + _bulk(sha)
        self._encoded_args: dict[Args, bytes] = {}
        self._encoding = "utf-8"  # the held connection's, read when it is taken
        renew_after_fork(self)

    def renew_after_fork(self) -> None:
        """In a forked child: the parent's held connection (its socket) and queue are not ours.

        Dropped, never closed or given back (the pool forgets the parent's connections
        too, :func:`hardenkit.stores.create_redis`), and kept from the collector
        (:func:`~hardenkit._afterfork.keep_inherited`); the child connects afresh.
        """
        keep_inherited(self._connection, self._drainer, self._queue)
        self._loop, self._busy, self._queue, self._drainer = None, False, [], None
        self._cluster_slots = {}
        self._connection, self._connection_busy = None, False

    async def aclose(self) -> None:
        """Give the held connection back to the client's pool (the client stays open)."""
        connection, self._connection = self._connection, None
        if connection is not None and self._pool is not None:
            for name, value in self._connection_settings.items():
                setattr(connection, name, value)
            await self._pool.release(connection)

    async def run(self, keys: tuple[str, ...], args: Args, orphan: Orphan | None = None) -> Reply:
        """Run the script on ``keys`` with ``args``; return its reply.

        If the caller stops waiting (its timeout cancels it), ``orphan`` is told later
        what became of the call: a queued call still goes out with its batch and
        ``orphan`` gets its reply; a call whose connection had to be closed, or that was
        never sent, gets ``None`` (Redis may or may not have run it).
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            await self._enter_loop(loop)
        if not self.pipelining:
            return await self._run_on_cluster(keys, args, orphan)
        if self._busy:
            future: asyncio.Future[Reply] = loop.create_future()
            self._queue.append((keys, args, future, orphan))
            try:
                return await future
            except asyncio.CancelledError:
                # Cancelled in the very turn its reply came: the batch found the future
                # done, not cancelled, and told no one. The reply is here; pass it on.
                if orphan is not None and future.done() and not future.cancelled():
                    orphan(None if future.exception() is not None else future.result())
                raise
        self._busy = True
        try:
            return await self.run_one(keys, args)
        except asyncio.CancelledError:
            if orphan is not None:  # its connection was closed with the call in flight
                orphan(None)
            raise
        finally:
            self._release()

    async def prepare(self) -> None:
        """Connect and load the script, so that the next decision is one plain ``EVALSHA``.

        The guard's probe after an outage: reconnecting (with redis-py's handshake) and
        reloading the script into a restarted Redis take several round trips, which no
        single decision's timeout should have to cover.
        """
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            await self._enter_loop(loop)
        if is_cluster(self.client):
            await self.client.script_load(self.script)  # every primary
            await self._open_cluster_connections()
        else:
            await self._command("SCRIPT", "LOAD", self.script)

    async def _run_on_cluster(
        self, keys: tuple[str, ...], args: Args, orphan: Orphan | None
    ) -> Reply:
        """One decision alone, on a connection :meth:`prepare` opened.

        redis-py refuses scripts in Cluster pipelines; at most ``_CLUSTER_IN_FLIGHT``
        decisions are in flight to the node of ``keys``, the others wait for one of them
        to finish.
        """
        slots = self._node_slots(keys[0])
        acquired = False
        try:
            await slots.acquire()
            acquired = True
            return await self.run_one(keys, args)
        except asyncio.CancelledError:
            if orphan is not None:  # never sent, or its connection closed in flight
                orphan(None)
            raise
        finally:
            if acquired:
                slots.release()

    def _node_slots(self, key: str) -> asyncio.Semaphore:
        """The in-flight bound of the primary serving ``key`` (one slot map lookup)."""
        try:
            node = self.client.get_node_from_key(key)  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - no node serves it: execute_command says why
            node = None
        name = "" if node is None else node.name
        slots = self._cluster_slots.get(name)
        if slots is None:
            slots = self._cluster_slots[name] = asyncio.Semaphore(_CLUSTER_IN_FLIGHT)
        return slots

    async def _open_cluster_connections(self) -> None:
        """Open ``_CLUSTER_IN_FLIGHT`` connections to every primary, kept by its node.

        Concurrent ``PING`` commands take a connection each; redis-py keeps them for the next
        commands to that node, so a burst of decisions finds them connected.
        """
        await asyncio.gather(
            *(
                self.client.execute_command("PING", target_nodes=node)
                for node in self.client.get_primaries()  # type: ignore[union-attr]
                for _ in range(_CLUSTER_IN_FLIGHT)
            )
        )

    async def _enter_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """First use, or a new event loop (tests, workers): start from a clean state."""
        self._loop, self._busy, self._queue = loop, False, []
        self._cluster_slots = {}
        await self.aclose()  # a connection belongs to the loop it was opened on

    async def run_one(self, keys: tuple[str, ...], args: Args) -> Reply:
        """Run the script once, on its own (``EVALSHA``, ``EVAL`` after ``NOSCRIPT``)."""
        try:
            return await self._command(
                "EVALSHA", self.sha, len(keys), *keys, *args, evalsha=(keys, args)
            )
        except Exception as error:
            if not _is_noscript(error):
                raise
            return await self._command("EVAL", self.script, len(keys), *keys, *args)

    async def _command(
        self, *command: str | int, evalsha: tuple[tuple[str, ...], Args] | None = None
    ) -> Reply:
        """Send one command and read its reply.

        On a standalone client this goes over the held connection, skipping redis-py's
        retry loop, per-command instrumentation and socket timeout: the guard is the
        retry policy (a failure goes to the fallback at once) and its timeout bounds the
        call, and a decision is in every request's path. A connection that failed or was
        cancelled mid-reply is closed, never read again; it reconnects on its next use.
        ``evalsha``: the command is this script's ``EVALSHA`` of these keys and
        arguments, which the runner encodes itself (:meth:`_packed_evalsha`).
        """
        if self._pool is None or self._connection_busy:  # Cluster, or already in use
            return await self.client.execute_command(*command)
        # A held connection that Redis closed while it sat idle (a restart, a CLIENT KILL)
        # fails on its next use without Redis being down: tried once more, at once, on a
        # fresh one, as redis-py retries its pooled connections. A Redis that is down
        # refuses that one too, and the guard falls back.
        stale = self._connection is not None
        try:
            return await self._held_command(command, evalsha)
        except Exception as error:
            if not stale or not _is_connection_error(error):
                raise
        return await self._held_command(command, evalsha)

    async def _held_command(
        self, command: tuple[str | int, ...], evalsha: tuple[tuple[str, ...], Args] | None
    ) -> Reply:
        self._connection_busy = True
        connection = None
        try:
            connection = await self._held()
            packed = (
                connection.pack_command(*command)
                if evalsha is None
                else self._packed_evalsha(*evalsha)
            )
            await connection.send_packed_command(packed, check_health=False)
            return await connection.read_response()
        except Exception as error:
            if connection is not None and not _is_reply_error(error):
                await self._drop(connection)
            raise
        except BaseException:  # cancelled (the guard's timeout) with a reply in flight
            if connection is not None:
                await self._drop(connection)
            raise
        finally:
            self._connection_busy = False

    def _take_encoding(self, connection: Any) -> None:
        """Encode as ``connection`` does (the client's encoding, UTF-8 by default)."""
        if connection.encoder.encoding != self._encoding:
            self._encoding = connection.encoder.encoding
            self._encoded_args.clear()

    def _packed_evalsha(self, keys: tuple[str, ...], args: Args) -> bytes:
        """This script's ``EVALSHA`` in the Redis protocol, as redis-py would encode it.

        A decision's arguments repeat (one tuple per rate, cost and instance count), so
        their encoding is kept: 1 µs a decision instead of redis-py's 10 µs for eleven
        arguments, on the 2-core bench machine.
        """
        tail = self._encoded_args.get(args)
        if tail is None:
            if len(self._encoded_args) >= _MAX_ENCODED_ARGS:
                self._encoded_args.clear()
            tail = b"".join(_bulk(arg, self._encoding) for arg in args)
            self._encoded_args[args] = tail
        head = b"*%d\r\n%s%s" % (3 + len(keys) + len(args), self._evalsha_head, _bulk(len(keys)))
        return b"".join([head, *(_bulk(key, self._encoding) for key in keys), tail])

    async def _drop(self, connection: Any) -> None:
        """Close a connection that failed and give it back to the pool.

        The next use takes one from the pool, connected afresh: to the current master,
        behind Sentinel, where reconnecting the same object would go to the old one.
        """
        await connection.disconnect(nowait=True)
        if connection is self._connection:
            await self.aclose()

    async def _held(self) -> Any:
        """The held connection; taken afresh from the pool when it is not connected.

        One closed under it (behind Sentinel, the master moved:
        :func:`hardenkit.stores.follow_sentinel_master` closes every connection) would
        reconnect to its old address when written to; one the pool hands out connects
        to the master the sentinels name now.
        """
        connection = self._connection
        if connection is not None and not connection.is_connected:
            await self.aclose()
            connection = None
        if connection is None:
            connection = await self._hold_connection()
        return connection

    async def _hold_connection(self) -> Any:
        from redis.asyncio.retry import Retry  # noqa: PLC0415 - redis is imported lazily
        from redis.backoff import NoBackoff  # noqa: PLC0415

        connection = await self._pool.get_connection(*self._pool_arguments)
        self._take_encoding(connection)
        # Its time limits and retries are its callers': the guard's timeout per call, the
        # guard's probe budget when reconnecting after an outage. Its own would cost a
        # task per write on Python 3.11 and cut a reconnect short on a busy event loop.
        self._connection_settings = {name: getattr(connection, name) for name in _TAKEN_OVER}
        connection.socket_timeout = None
        connection.socket_connect_timeout = None
        connection.retry = Retry(NoBackoff(), 0)
        self._connection = connection
        return connection

    def _release(self) -> None:
        if self._queue:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        else:
            self._busy = False

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = []
                for entry in self._queue[:_MAX_BATCH]:
                    if not entry[2].done():
                        batch.append(entry)
                    elif entry[3] is not None:  # given up on before it was sent
                        entry[3](None)
                del self._queue[:_MAX_BATCH]
                if batch:
                    await self._send(batch)
        finally:
            self._busy = False
            self._drainer = None

    async def _send(self, batch: list[Queued]) -> None:
        # Only a backstop, as long as redis-py's own socket timeout (see create_redis): each
        # caller's guard bounds its own wait. Cancelling a batch that is merely slow would
        # close its connection and make the next batch reconnect, slower still.
        attempt = _timer.watch(self.batch_timeout + _timer.LOOP_LAG_ALLOWANCE, patient=True)
        try:
            if len(batch) == 1:
                replies: list[Any] = [await self.run_one(batch[0][0], batch[0][1])]
            else:
                replies = await self._pipeline(batch)
        except asyncio.CancelledError:
            if not attempt.timed_out():
                raise
            _fail(batch, TimeoutError())
            return
        except Exception as error:  # noqa: BLE001 - handed to every caller, not swallowed
            _fail(batch, error)
            return
        finally:
            attempt.done()
        for (_, _, future, orphan), reply in zip(batch, replies, strict=True):
            if future.done():
                if orphan is not None and future.cancelled():
                    orphan(None if isinstance(reply, Exception) else reply)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(self, batch: list[Queued]) -> list[Any]:
        if self._pool is None:
            pipe = self.client.pipeline(transaction=False)
            for keys, args, _, _ in batch:
                pipe.evalsha(self.sha, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        else:
            replies = await self._pipeline_direct(batch)
        for index, reply in enumerate(replies):
            if isinstance(reply, Exception) and _is_noscript(reply):
                keys, args, _, _ = batch[index]
                replies[index] = await self.client.eval(self.script, len(keys), *keys, *args)
        return replies

    async def _pipeline_direct(self, batch: list[Queued]) -> list[Any]:
        """Send ``batch`` as one write; read a reply each, in order.

        What ``pipeline(transaction=False).execute(raise_on_error=False)`` does, with the
        commands encoded by :meth:`_packed_evalsha` (redis-py's encoding cost 10 µs a
        decision, most of a pipelined decision's own time), over the held connection as
        a lone command goes (no pool checkout, no timer per reply: the drainer's watch is
        the backstop, each caller's guard its own bound); over a connection of the pool
        while the held one is busy (a probe). A connection that fails or is cancelled
        mid-batch is closed, never read again.
        """
        if self._connection_busy:
            connection = await self._pool.get_connection(*self._pool_arguments)
            try:
                return await self._write_batch(connection, batch)
            except BaseException:
                await connection.disconnect(nowait=True)
                raise
            finally:
                await self._pool.release(connection)
        self._connection_busy = True
        connection = None
        try:
            connection = await self._held()
            return await self._write_batch(connection, batch)
        except BaseException:  # failed, or cancelled with replies in flight
            if connection is not None:
                await self._drop(connection)
            raise
        finally:
            self._connection_busy = False

    async def _write_batch(self, connection: Any, batch: list[Queued]) -> list[Any]:
        """One write of every command, then every reply; an error reply is its command's."""
        self._take_encoding(connection)
        await connection.send_packed_command(
            b"".join([self._packed_evalsha(keys, args) for keys, args, _, _ in batch]),
            check_health=False,
        )
        replies: list[Any] = []
        for _ in batch:
            try:
                replies.append(await connection.read_response())
            except Exception as error:
                if not _is_reply_error(error):
                    raise
                replies.append(error)  # read whole: the next reply follows it
        return replies


def _bulk(value: str | int, encoding: str = "utf-8") -> bytes:
    """One argument as a Redis protocol bulk string, text encoded as the client's."""
    data = value.encode(encoding) if isinstance(value, str) else b"%d" % value
    return b"$%d\r\n%s\r\n" % (len(data), data)


def _fail(batch: list[Queued], error: Exception) -> None:
    for _, _, future, orphan in batch:
        if not future.done():
            future.set_exception(error)
        elif orphan is not None and future.cancelled():
            orphan(None)


def _direct_pool(client: object) -> tuple[Any, tuple[str, ...]]:
    """Return the pool to hold a connection of, or ``None`` to send through the client.

    Never the only connection of a pool: holding it would starve every other caller.
    """
    from redis.asyncio import Redis  # noqa: PLC0415 - redis is imported lazily

    if (
        not isinstance(client, Redis)
        or client.single_connection_client
        or client.connection is not None
        or getattr(client.connection_pool, "max_connections", 0) < 2
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


def _is_connection_error(error: BaseException) -> bool:
    from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415

    return isinstance(error, RedisConnectionError)


def _is_noscript(error: BaseException) -> bool:
    from redis.exceptions import NoScriptError  # noqa: PLC0415 - redis is imported lazily

    return isinstance(error, NoScriptError)
