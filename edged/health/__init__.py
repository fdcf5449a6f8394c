"""Health metrics, machine readings and the systemd readiness/watchdog protocol."""

from edged.health.notify import Notifier
from edged.health.stats import Stats
from edged.health.system import cpu_temp_c, throttled

__all__ = ["Notifier", "Stats", "cpu_temp_c", "throttled"]
