"""Readings of the machine: CPU temperature and the Raspberry Pi's throttling state."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

THERMAL = Path("/sys/class/thermal")
# The Pi firmware exposes get_throttled here on Raspberry Pi OS kernels (hex bit field).
THROTTLED_PATHS = (
    Path("/sys/devices/platform/soc/soc:firmware/get_throttled"),
    Path("/sys/devices/platform/soc/soc:firmware/raspberrypi-hwmon/get_throttled"),
)


def cpu_temp_c(thermal: Path = THERMAL) -> float | None:
    """The CPU thermal zone in degrees C (first zone of type cpu/soc/x86_pkg, else zone 0)."""
    try:
        zones = sorted(thermal.glob("thermal_zone*"))
    except OSError:
        return None
    best: Path | None = None
    for zone in zones:
        try:
            kind = (zone / "type").read_text().strip().lower()
        except OSError:
            continue
        if any(k in kind for k in ("cpu", "soc", "x86_pkg", "bcm2835")):
            best = zone
            break
        if best is None:
            best = zone
    if best is None:
        return None
    try:
        return round(int((best / "temp").read_text().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


def throttled(paths: tuple[Path, ...] = THROTTLED_PATHS) -> dict[str, object] | None:
    """The Pi's throttling bits (under-voltage, frequency capped, throttled, soft temp limit),
    now and since boot; None where the machine has no such state."""
    for path in paths:
        try:
            raw = int(path.read_text().strip(), 16)
        except (OSError, ValueError):
            continue
        return {
            "raw": hex(raw),
            "under_voltage": bool(raw & 0x1),
            "freq_capped": bool(raw & 0x2),
            "throttled": bool(raw & 0x4),
            "soft_temp_limit": bool(raw & 0x8),
            "under_voltage_occurred": bool(raw & 0x10000),
            "throttling_occurred": bool(raw & 0x40000),
        }
    return None


DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


def machine_model(path: Path = DEVICE_TREE_MODEL) -> str:
    """The board's name from the device tree (``Raspberry Pi 4 Model B Rev 1.4``), else the
    CPU architecture."""
    try:
        return path.read_bytes().rstrip(b"\0").decode("utf-8", "replace").strip() or "unknown"
    except OSError:
        import platform

        return platform.machine() or "unknown"


class ProcessMeter:
    """This process's CPU use since the last reading (percent of one core) and its resident
    memory, from ``os.times()`` and ``/proc/self/statm`` (no psutil in the daemon)."""

    def __init__(
        self, statm: Path = Path("/proc/self/statm"), io: Path = Path("/proc/self/io")
    ) -> None:
        self.statm = statm
        self.io = io
        self._last = (time.monotonic(), self._cpu_s())

    @staticmethod
    def _cpu_s() -> float:
        t = os.times()
        return t.user + t.system

    def cpu_percent(self) -> float:
        now, cpu = time.monotonic(), self._cpu_s()
        then, before = self._last
        self._last = (now, cpu)
        return 100.0 * (cpu - before) / (now - then) if now > then else 0.0

    def rss_mb(self) -> float | None:
        try:
            pages = int(self.statm.read_text().split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20

    def disk_write_bytes(self) -> int | None:
        """Bytes this process sent (or caused to be sent) to the block layer since it started,
        as the kernel counts them (``write_bytes`` of ``/proc/self/io``)."""
        try:
            for line in self.io.read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "write_bytes":
                    return int(value)
        except (OSError, ValueError):
            return None
        return None
