#!/usr/bin/env python3
"""``edged fleet status --json`` against the retained status and health of a simulated fleet
of 1,000 / 5,000 / 10,000 devices on a default mosquitto (no broker tuning: its per-client
queue of 1,000 QoS 1 messages is in force).

For each size a fresh broker gets ``online`` and a health report (a real daemon's, with its
device id and a version) for every device, retained; then the command runs as an operator
would run it, and the time from start to exit is printed with how many devices it listed
with a version.  The baseline is ``mosquitto_sub -C`` reading the same retained messages.

    python bench/fleet.py [--sizes 1000 5000 10000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import Mosquitto, publish_fleet  # noqa: E402


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.monotonic()
    out = subprocess.run(
        cmd, capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    ).stdout
    return time.monotonic() - t0, out


def main() -> None:
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    args = parser.parse_args()
    head = ("devices", "fleet status s", "listed", "with version", "mosquitto_sub s")
    print("".join(f"{h:>{w}}" for h, w in zip(head, (8, 16, 8, 14, 17), strict=True)))
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="edged-fleet-") as tmp:
            broker = Mosquitto(Path(tmp)).start()
            try:
                publish_fleet(broker.port, n, version="0.1.0")
                status = ["fleet", "status", "--json", "--url", broker.url]
                took, out = timed([sys.executable, "-m", "edged", *status])
                rows = json.loads(out)
                versions = sum(1 for r in rows if r["version"] == "0.1.0")
                sub = shutil.which("mosquitto_sub") or "mosquitto_sub"
                base, _ = timed(
                    [sub, "-p", str(broker.port), "-t", "edged/+/health", "-t", "edged/+/status",
                     "-C", str(2 * n), "-W", "60"]
                )  # fmt: skip
            finally:
                broker.stop()
        print(f"{n:>8}{took:>16.2f}{len(rows):>8}{versions:>14}{base:>17.2f}")


if __name__ == "__main__":
    main()
