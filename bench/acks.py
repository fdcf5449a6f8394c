#!/usr/bin/env python3
"""How long the broker takes to acknowledge an event: the figure ``mqtt.spill_after_s`` is
chosen from.  An event is written to the spool only if it is still unacknowledged that long
after ``publish()``, so the window must sit far above what a healthy broker takes, and short
enough to bound what a ``kill -9`` can lose.

The daemon's own publisher (``edged.publish.mqtt.MqttPublisher``, spill mode with a window of
60 s so that nothing is spilled) sends real-sized events at QoS 1 to a real mosquitto on
loopback (persistence on, as a broker that keeps sessions), paced at each rate for
``--seconds``; the age of each event at its acknowledgement (publish() to PUBACK, the spool
thread's hand-over included) is read from the publisher's ``ack_ages``.  ``--rtt-ms`` adds
the round trip of a remote broker to every figure (loopback has none to speak of).

    python bench/acks.py [--seconds 60] [--rates 2,15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.spool import sample_event  # noqa: E402
from edged.config import MqttConfig  # noqa: E402
from edged.publish.mqtt import MqttPublisher  # noqa: E402
from tests.support import Mosquitto  # noqa: E402


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(rate: float, seconds: float, broker: Mosquitto, spool: Path) -> list[float]:
    cfg = MqttConfig.model_validate({"url": broker.url, "spill_after_s": 60.0})
    pub = MqttPublisher(cfg, f"acks-{rate:g}", spool_path=spool)
    pub.ack_ages = type(pub.ack_ages)(maxlen=int(rate * seconds) + 10)
    pub.start()
    if not pub.wait_connected(10):
        raise SystemExit(f"cannot connect to {broker.url}")
    n = int(rate * seconds)
    start = time.monotonic()
    for seq in range(1, n + 1):
        time.sleep(max(0.0, start + seq / rate - time.monotonic()))
        pub.publish("events", sample_event(seq), qos=1)
    deadline = time.monotonic() + 10
    while pub.published < n and time.monotonic() < deadline:
        time.sleep(0.05)
    spilled = pub.spool.spilled
    pub.stop(2.0)
    ages = list(pub.ack_ages)
    if len(ages) != n or spilled:
        raise SystemExit(f"{rate} fps: {len(ages)} of {n} acknowledged, {spilled} spilled")
    return ages


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rates", default="2,15")
    ap.add_argument("--rtt-ms", type=float, default=0.0)
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs)")
    print("rate   events   p50 ms   p90 ms   p99 ms  p99.9 ms   max ms  >0.25 s  >1 s")
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp, persistent=True).start()
        try:
            for rate in (float(r) for r in args.rates.split(",")):
                ages = [
                    a + args.rtt_ms / 1000
                    for a in run(rate, args.seconds, broker, tmp / f"{rate}.db")
                ]
                ms = [a * 1000 for a in ages]
                print(
                    f"{rate:4g}  {len(ms):7d}  {statistics.median(ms):7.2f}  "
                    f"{quantile(ms, 0.9):7.2f}  {quantile(ms, 0.99):7.2f}  "
                    f"{quantile(ms, 0.999):8.2f}  {max(ms):7.2f}  "
                    f"{sum(a > 0.25 for a in ages):7d}  {sum(a > 1 for a in ages):4d}"
                )
        finally:
            broker.stop()
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
