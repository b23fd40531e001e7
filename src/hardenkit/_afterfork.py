"""Identities that belong to one process: drawn again in a child after ``os.fork()``.

An app built before its server forks workers (gunicorn ``--preload``, any pre-fork
server) hands every worker a copy of the same objects. Whatever identifies a process to
the others through Redis (the heartbeat's instance id, the rate-limit store's
reservation member) would then be one id for N processes: the instance count reads 1
and every worker's outage share is the whole limit. Objects registered here renew
themselves in the child, before it runs anything else.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["PerProcess", "renew_after_fork"]


class PerProcess(Protocol):
    """An object holding per-process identity or state."""

    def renew_after_fork(self) -> None:
        """Start afresh in a forked child: new ids, no state of the parent's."""


_registered: weakref.WeakSet[PerProcess] = weakref.WeakSet()


def renew_after_fork(obj: PerProcess) -> None:
    """Call ``obj.renew_after_fork()`` in every child this process forks from now on."""
    _registered.add(obj)


def _renew_all() -> None:
    for obj in list(_registered):
        obj.renew_after_fork()


os.register_at_fork(after_in_child=_renew_all)
