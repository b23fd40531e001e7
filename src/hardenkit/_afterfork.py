"""Identities that belong to one process: drawn again in a child after ``os.fork()``.

An app built before its server forks workers (gunicorn ``--preload``, any pre-fork
server) hands every worker a copy of the same objects. Whatever identifies a process to
the others through Redis (the heartbeat's instance id, the rate-limit store's
reservation member) would then be one id for N processes: the instance count reads 1
and every worker's outage share is the whole limit. Objects registered here renew
themselves in the child, before it runs anything else. So do the connections: a child
of a process that already talked to Redis (a fork after startup, after traffic) would
otherwise share its parent's sockets, and replies would reach the wrong process.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["PerProcess", "keep_inherited", "renew_after_fork"]

_inherited: list[object] = []


class PerProcess(Protocol):
    """An object holding per-process identity or state."""

    def renew_after_fork(self) -> None:
        """Start afresh in a forked child: new ids, no state of the parent's."""


_registered: weakref.WeakKeyDictionary[object, Callable[[Any], None]] = weakref.WeakKeyDictionary()


def renew_after_fork(obj: object, renew: Callable[[Any], None] | None = None) -> None:
    """Call ``renew(obj)`` (``obj.renew_after_fork()`` by default) in every forked child.

    Held weakly: an object gone before the fork is forgotten. ``renew`` must not hold
    ``obj`` itself (it would keep it alive).
    """
    _registered[obj] = _renew_itself if renew is None else renew


def keep_inherited(*objects: object) -> None:
    """Keep what a child drops of its parent's (connections, tasks) for the life of the child.

    Dropped, they would be finalized here at the collector's whim: a redis-py connection
    closes its transport once a loop runs, which unregisters the socket from the epoll
    instance parent and child share (the parent then never hears its reply: measured, a
    timeout on its next command), and a task's coroutine would run its ``finally`` blocks
    in the wrong process. Kept, they are never used: a few objects per fork.
    """
    _inherited.extend(obj for obj in objects if obj is not None)


def _renew_itself(obj: PerProcess) -> None:
    obj.renew_after_fork()


def _renew_all() -> None:
    for obj, renew in list(_registered.items()):
        renew(obj)


os.register_at_fork(after_in_child=_renew_all)
