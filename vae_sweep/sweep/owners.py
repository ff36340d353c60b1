"""Which process runs a trial, and whether that process still exists.

A worker records itself on every trial it claims: this machine's identity, its process id and
the process's start time (so a recycled pid is not mistaken for it), and the sweep launch it
belongs to. A RUNNING trial whose owner is on this machine and gone is stale at once; Optuna's
heartbeat only notices after its grace period, which is what covers other machines and paused
processes.

Linux only (it reads ``/proc``); elsewhere ``this_process()`` is None and only heartbeats apply.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OWNER_ATTR = "vae_sweep.worker"  # trial user attribute: the owner of a claim, as a dict


@dataclass(frozen=True)
class Owner:
    host: str  # hostname, boot id and pid namespace: one kernel's view of process ids
    pid: int
    started: int  # the process's start time, in clock ticks since boot
    launch: str  # the sweep command (one per process that started workers) it works for

    def as_attr(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "started": self.started, "launch": self.launch}

    @classmethod
    def from_attr(cls, value: Any) -> Owner | None:
        if not isinstance(value, dict):
            return None
        try:
            return cls(str(value["host"]), int(value["pid"]), int(value["started"]), str(value.get("launch", "")))
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        return f"{self.host.split('/', 1)[0]}, pid {self.pid}"


@functools.cache
def host_identity() -> str | None:
    """Processes with equal identities see the same pids: same host name, boot and pid namespace."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return f"{socket.gethostname()}/{boot}/{namespace}"


def start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat``; None for a process that is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name in parentheses may hold spaces
    if fields[0] in ("Z", "X"):  # exited, not yet reaped
        return None
    return int(fields[19])


def this_process(launch: str) -> Owner | None:
    host = host_identity()
    started = start_time(os.getpid())
    if host is None or started is None:
        return None
    return Owner(host, os.getpid(), started, launch)


def is_gone(owner: Owner) -> bool:
    """True only when the owner is provably gone: on this machine, and its process no longer exists."""
    if owner.host != host_identity():
        return False
    return start_time(owner.pid) != owner.started


def child_pids() -> list[int]:
    """This process's direct children (a joblib launcher's worker processes among them)."""
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return []
    pids: list[int] = []
    for task in tasks:
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids
