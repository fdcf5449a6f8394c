"""`edged fleet status|wait` against a real mosquitto (no containers needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support import Mosquitto, publish_fleet

REPO = Path(__file__).resolve().parents[2]


def publisher(url_port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sim-{time.monotonic_ns()}")
    client.connect("127.0.0.1", url_port)
    client.loop_start()
    return client


def health(device: str, version: str, ts: datetime, **extra: object) -> str:
    return json.dumps(
        {
            "schema": "edged.health/1",
            "device": device,
            "version": version,
            "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "uptime_s": 3.0,
            "backend": "cpu",
            "model": "m.tflite",
            "fps": 2.0,
            "cpu_temp_c": 47.5,
            "frames_processed": 6,
            # the rest of a complete report: the fleet view ignores one without them
            "model_sha256": None,
            "inference_ms": {"p50": 30.0, "p95": 35.0},
            "frames_captured": 6,
            "frames_dropped": 0,
            "events_published": 6,
            "mqtt_reconnects": 0,
            "cpu_percent": 40.0,
            "rss_mb": 90.0,
            "throttled": None,
            "pid": 4242,
            **extra,
        }
    )


def fleet_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("EDGED_MQTT_PASSWORD_FILE", None)
    return subprocess.run(
        [sys.executable, "-m", "edged.fleet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def broker(mosquitto: Mosquitto) -> Mosquitto:
    if not mosquitto:
        pytest.skip("mosquitto not available")
    return mosquitto


def test_status_lists_every_device(broker: Mosquitto) -> None:
    pub = publisher(broker.port)
    old = datetime.now(UTC) - timedelta(minutes=5)
    for dev, state, version in (("cam-a", "online", "0.1.1"), ("cam-b", "offline", "0.1.0")):
        pub.publish(f"edged/{dev}/status", state, qos=1, retain=True).wait_for_publish()
        pub.publish(
            f"edged/{dev}/health", health(dev, version, old), qos=1, retain=True
        ).wait_for_publish()
    pub.publish("edged/cam-a/events", "{}", qos=1).wait_for_publish()
    pub.disconnect()
    pub.loop_stop()

    proc = fleet_cli("status", "--url", broker.url, "--wait", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["device"]: r for r in json.loads(proc.stdout)}
    assert set(rows) == {"cam-a", "cam-b"}
    assert rows["cam-a"]["online"] is True and rows["cam-a"]["version"] == "0.1.1"
    assert rows["cam-b"]["online"] is False and rows["cam-b"]["cpu_temp_c"] == 47.5

    table = fleet_cli("status", "--url", broker.url, "--wait", "1")
    assert table.returncode == 0
    assert "cam-a" in table.stdout and "cam-b" in table.stdout and "5m ago" in table.stdout


def test_wait_needs_a_fresh_report_of_the_version(broker: Mosquitto) -> None:
    pub = publisher(broker.port)
    stale = datetime.now(UTC) - timedelta(seconds=30)
    pub.publish("edged/cam-a/status", "online", qos=1, retain=True).wait_for_publish()
    pub.publish(
        "edged/cam-a/health", health("cam-a", "0.2.0", stale), qos=1, retain=True
    ).wait_for_publish()

    # The retained report is older than the wait: not enough.
    proc = fleet_cli(
        "wait", "--url", broker.url, "--device", "cam-a", "--version", "0.2.0", "--timeout", "2"
    )
    assert proc.returncode == 1
    assert "timed out after 2 s" in proc.stderr and "cam-a" in proc.stderr
    assert "no health report since the wait began" in proc.stderr

    def wait_while_reporting(
        version: str, step: int, fps: float, *extra: str, timeout: str = "2"
    ) -> subprocess.CompletedProcess[str]:
        """`fleet wait` while the device reports every 0.25 s (a daemon with a short
        health.interval_s), frames growing by ``step``."""
        stop = threading.Event()

        def report() -> None:
            frames = 0
            while not stop.wait(0.25):
                frames += step
                payload = health(
                    "cam-a", version, datetime.now(UTC), frames_processed=frames, fps=fps,
                    run_id="run-1", source_live=True, state="ok",
                )  # fmt: skip
                pub.publish("edged/cam-a/health", payload, qos=1, retain=True).wait_for_publish()

        t = threading.Thread(target=report)
        t.start()
        try:
            return fleet_cli(
                "wait", "--url", broker.url, "--device", "cam-a", "--version", "0.2.0",
                "--timeout", timeout, *extra,
            )  # fmt: skip
        finally:
            stop.set()
            t.join()

    # Fresh reports of another version: still not.
    proc = wait_while_reporting("0.1.9", 6, 2.0)
    assert proc.returncode == 1
    assert "version 0.1.9" in proc.stderr

    # Fresh reports of the version, but no frame classified: "not classifying".
    proc = wait_while_reporting("0.2.0", 0, 0.0)
    assert proc.returncode == 1
    assert "not classifying: frames_processed stayed at 0 and fps is 0" in proc.stderr

    # Fresh reports of the version with frames growing, online: done.
    started = time.monotonic()
    proc = wait_while_reporting("0.2.0", 6, 2.0, timeout="20")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 15
    assert "cam-a: online, classifying on cpu at 2 fps, version 0.2.0" in proc.stdout

    # The same, but another backend was asked for: it names the backend.
    proc = wait_while_reporting("0.2.0", 6, 2.0, "--backend", "edgetpu")
    assert proc.returncode == 1
    assert "runs on backend cpu, expected edgetpu" in proc.stderr
    pub.disconnect()
    pub.loop_stop()


def test_wait_reports_an_unreachable_broker() -> None:
    proc = fleet_cli(
        "wait", "--url", "mqtt://127.0.0.1:1", "--device", "x", "--version", "1", "--timeout", "1"
    )
    assert proc.returncode == 1
    assert "cannot reach broker mqtt://127.0.0.1:1" in proc.stderr


def test_password_comes_from_a_file(broker: Mosquitto, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    proc = fleet_cli(
        "status",
        "--url",
        broker.url,
        "--username",
        "op",
        "--password-file",
        str(missing),
        "--wait",
        "0.5",
    )
    assert proc.returncode == 1
    assert f"cannot read password file {missing}" in proc.stderr


def test_fleet_acl_confines_each_device_to_its_topics(tmp_path: Path) -> None:
    """deploy/mosquitto/edged.acl: devices write only edged/<own id>/#, the operator reads."""
    import shutil

    from tests.support import free_port

    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd not installed")
    passwd = tmp_path / "passwd"
    passwd.write_text("dev1:pw-dev1\ndev2:pw-dev2\noperator:pw-op\n")
    subprocess.run([tool, "-U", str(passwd)], check=True, capture_output=True)
    port = free_port()
    broker = Mosquitto(
        tmp_path,
        port,
        extra=(
            f"listener {port} 127.0.0.1\nallow_anonymous false\nper_listener_settings false\n"
            f"password_file {passwd}\nacl_file {REPO / 'deploy' / 'mosquitto' / 'edged.acl'}\n"
        ),
    ).start()
    try:
        received: list[tuple[str, bytes]] = []
        subscribed = threading.Event()

        def client(user: str, password: str) -> mqtt.Client:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"acl-{user}")
            c.username_pw_set(user, password)
            return c

        op = client("operator", "pw-op")
        op.on_message = lambda _c, _u, msg: received.append((msg.topic, bytes(msg.payload)))
        op.on_subscribe = lambda *_a: subscribed.set()
        op.connect("127.0.0.1", port)
        op.loop_start()
        op.subscribe([("edged/+/status", 1), ("edged/+/health", 1)])
        assert subscribed.wait(5)

        dev1 = client("dev1", "pw-dev1")
        dev1.connect("127.0.0.1", port)
        dev1.loop_start()
        dev1.publish("edged/dev1/status", "online", qos=1).wait_for_publish(5)
        dev1.publish("edged/dev2/status", "forged", qos=1).wait_for_publish(5)
        op.publish("edged/dev1/status", "operator-write", qos=1).wait_for_publish(5)
        time.sleep(1.0)
        assert received == [("edged/dev1/status", b"online")]

        refused: list[str] = []
        anon = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="acl-anon")
        anon.on_connect = lambda _c, _u, _f, reason, _p: refused.append(str(reason))
        anon.connect("127.0.0.1", port)
        anon.loop_start()
        deadline = time.monotonic() + 5
        while not refused and time.monotonic() < deadline:
            time.sleep(0.05)
        anon.loop_stop()
        assert refused and refused[0] != "Success"
        for c in (dev1, op):
            c.disconnect()
            c.loop_stop()
    finally:
        broker.stop()


def test_status_lists_ten_thousand_devices_on_a_default_broker(broker: Mosquitto) -> None:
    """A default mosquitto queues at most 1,000 messages per client: the fleet view must not
    depend on that queue (bench/fleet.py prints the times for 1k / 5k / 10k)."""
    publish_fleet(broker.port, 10_000, version="0.3.1")
    started = time.monotonic()
    proc = fleet_cli("status", "--url", broker.url, "--json", timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert len(rows) == 10_000
    assert all(r["version"] == "0.3.1" and r["online"] and r["fps"] == 15.0 for r in rows)
    assert took < 30, f"{took:.1f} s"  # the acceptance figure (<= 10 s) comes from the bench
