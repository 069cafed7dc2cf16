"""Who holds a run's lease, and whether that holder is a process on this machine that has died.

A lease owner is ``host:pid:nonce:machine``, where ``machine`` names this
kernel boot and PID namespace. A holder with the same host and machine whose
pid no longer runs (or is a zombie) was killed: its runs can be taken over at
once instead of after its lease expires. Anything else (another machine, an
owner written by an older losslab, a platform without ``/proc``) keeps the
lease rule: wait for expiry.
"""

from __future__ import annotations

import functools
import hashlib
import os
import socket
import uuid
from pathlib import Path


@functools.cache
def machine_key() -> str | None:
    """A short digest of this boot's id and this process's PID namespace, or None where /proc lacks them."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
    return hashlib.sha1(f"{boot}|{namespace}".encode()).hexdigest()[:12]


def new_owner() -> str:
    """A lease owner id for this process: ``host:pid:nonce[:machine]``."""
    parts = [socket.gethostname(), str(os.getpid()), uuid.uuid4().hex[:8]]
    key = machine_key()
    return ":".join(parts + ([key] if key else []))


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live (non-zombie) process here; a killed, unreaped driver is a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # unreadable: assume it runs
        return True
    return stat[stat.rindex(")") + 2] not in "ZX"


def dead_local_owner(owner: str) -> bool:
    """True only when ``owner`` names a process of this host, boot and PID namespace that no longer runs."""
    parts = owner.split(":")
    key = machine_key()
    if key is None or len(parts) != 4 or parts[3] != key or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    return pid != os.getpid() and not _running(pid)
