"""Leak probes: open file descriptors, Trio tasks and resident memory of this process.

Everything the soak runs (supervisor, fakes, consumer) lives in one process and one
Trio run, so these counts cover both sides of every socket.
"""

from __future__ import annotations

import collections
import ctypes
import os
from typing import Final

import trio

__all__ = ["open_fds", "pin_mmap_threshold", "rss_bytes", "task_count", "task_names"]

#: ``mallopt`` parameter number of ``M_MMAP_THRESHOLD`` (glibc ``malloc.h``).
_M_MMAP_THRESHOLD: Final = -3

_PAGE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def open_fds() -> int:
    """Open file descriptors of this process (Linux ``/proc/self/fd``; -1 elsewhere)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def rss_bytes() -> int:
    """Resident set size of this process in bytes (Linux ``/proc/self/statm``; -1 elsewhere)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return -1


def task_count() -> int:
    """Every task of the current Trio run: the root task and all its descendants."""
    root = trio.lowlevel.current_root_task()
    assert root is not None, "task_count() runs inside trio.run"
    count = 0
    pending = [root]
    while pending:
        task = pending.pop()
        count += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return count


def task_names() -> collections.Counter[str]:
    """The names of every task of the current Trio run, counted (for a leak's report)."""
    root = trio.lowlevel.current_root_task()
    assert root is not None, "task_names() runs inside trio.run"
    names: collections.Counter[str] = collections.Counter()
    pending = [root]
    while pending:
        task = pending.pop()
        names[task.name.rpartition(".")[2]] += 1
        for nursery in task.child_nurseries:
            pending.extend(nursery.child_tasks)
    return names


def pin_mmap_threshold(size: int = 2**20) -> bool:
    """Serve every allocation of ``size`` bytes or more with its own ``mmap`` (glibc).

    glibc raises its mmap threshold after the first large block is freed, so that later
    blocks of that size (the soak's 4 MiB oversized frames, decoded) come from the heap
    and stay resident after they are freed: a one-time step of several MiB in RSS that
    is not a leak. Pinning the threshold (which also turns the adjustment off) returns
    such blocks to the system, so that RSS growth means retained objects.

    Returns:
        Whether the threshold was set (False off glibc).
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, size))
