"""What training may take from a device that keeps classifying: memory, threads, priority.

Pure functions over ``/proc/meminfo``'s text and the core count, so that they are tested
without a device; :func:`lower_priority` is the one call with an effect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

MEMINFO = Path("/proc/meminfo")
# the niceness training runs at: below the daemon, which stays at 0
TRAIN_NICE = 10
THREADS_ENV = "EDGED_TRAIN_THREADS"
MB = 1_000_000


class MemoryShortError(Exception):
    """Not enough memory to start; the message says how much is needed and what to do."""


def mem_available(text: str) -> int | None:
    """MemAvailable in bytes from the text of ``/proc/meminfo``; None when it is not there."""
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                scale = 1024 if len(parts) < 3 or parts[2].lower() == "kb" else 1
                return int(parts[1]) * scale
    return None


def read_mem_available(meminfo: Path = MEMINFO) -> int | None:
    try:
        return mem_available(meminfo.read_text(encoding="ascii", errors="replace"))
    except OSError:
        return None


@dataclass(frozen=True)
class MemoryCheck:
    needed: int  # bytes
    available: int | None  # bytes; None: unknown (no /proc/meminfo)

    @property
    def ok(self) -> bool:
        return self.available is None or self.available >= self.needed

    def message(self, recipe: str, fallback: str = "head") -> str:
        avail = "unknown" if self.available is None else f"{self.available / MB:.0f} MB"
        return (
            f"the {recipe!r} recipe needs about {self.needed / MB:.0f} MB of free memory and "
            f"MemAvailable is {avail}: stop other programs, train on fewer photos, or use "
            f"--recipe {fallback} (a new last layer, about a tenth of the memory)"
        )


def check_memory(needed: int, available: int | None) -> MemoryCheck:
    return MemoryCheck(needed, available)


def training_threads(cores: int | None = None, env: dict[str, str] | None = None) -> int:
    """Threads for training: ``EDGED_TRAIN_THREADS`` when set, else one fewer than the cores
    (at least one), so that the daemon keeps a core to classify on."""
    env = dict(os.environ) if env is None else env
    raw = env.get(THREADS_ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{THREADS_ENV}={raw!r}: give a whole number of threads, 1 or more")
        return int(raw)
    n = cores if cores is not None else (os.cpu_count() or 1)
    return max(1, n - 1)


def lower_priority(nice: int = TRAIN_NICE) -> int:
    """Raise this process's niceness to at least ``nice`` (never lower it: an unprivileged
    process cannot undo it); returns the niceness now.  On Linux it applies to the calling
    thread and to the threads it starts from now on: call it before any worker pool exists."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if current < nice:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        except OSError:
            return current
    return os.getpriority(os.PRIO_PROCESS, 0)
