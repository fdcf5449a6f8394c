"""The daemon end to end: the bundled model on the sample photos, a real mosquitto."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema

from edged.publish.spool import Spool
from tests.support import (
    BUNDLED,
    CONFIDENT,
    CONFIDENT_LABEL,
    ROOT,
    SAMPLE_TOP1,
    SAMPLES,
    Mosquitto,
    Subscriber,
    free_port,
    retained,
    run_edged,
    sample_bmp,
    start_edged,
    stop_process,
    wait_until,
    write_config,
)

CATS = {"Egyptian cat", "tabby", "tiger cat"}
EXPECTED = {**{name: {label} for name, label in SAMPLE_TOP1.items()}, "chelsea_cat.bmp": CATS}
EXPECTED["chelsea_cat.jpg"] = CATS


def footage(tmp_path: Path) -> Path:
    """The sample photos, one of them as BMP, and a file that is no image."""
    d = tmp_path / "footage"
    d.mkdir()
    for photo in SAMPLES.glob("*.jpg"):
        (d / photo.name).write_bytes(photo.read_bytes())
    sample_bmp(d)
    (d / "COPYRIGHT").write_text((SAMPLES / "LICENSES.md").read_text())
    return d


EVENT_FIELDS = {
    "schema",
    "device",
    "seq",
    "ts",
    "frame",
    "label",
    "label_id",
    "score",
    "top_k",
    "ambiguous",
    "model",
    "backend",
    "inference_ms",
}
HEALTH_FIELDS = {
    "schema",
    "device",
    "version",
    "ts",
    "uptime_s",
    "backend",
    "model",
    "fps",
    "inference_ms",
    "frames_captured",
    "frames_processed",
    "frames_dropped",
    "events_published",
    "mqtt_reconnects",
    "cpu_percent",
    "rss_mb",
    "cpu_temp_c",
    "throttled",
}


def config(tmp_path: Path, url: str, capture: str = "", extra: str = "") -> Path:
    capture = capture or f'paths = ["{footage(tmp_path)}"]'
    return write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "cam-1"
[capture]
type = "replay"
{capture}
[model]
num_threads = 2
[mqtt]
url = "{url}"
reconnect_min_s = 1
reconnect_max_s = 2
[health]
interval_s = 1
{extra}
""",
    )


def published_schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((ROOT / "docs" / "schema" / name).read_text())
    return schema


def test_one_valid_event_per_image_with_expected_top1(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sub = Subscriber(mosquitto.port)
    cfg = config(tmp_path, mosquitto.url)
    images = sorted(p.name for p in (tmp_path / "footage").iterdir() if p.suffix != "")
    try:
        result = run_edged("run", "-c", str(cfg))
        assert result.returncode == 0, result.stderr
        assert sub.wait(lambda: len(sub.events()) >= len(images) and bool(sub.on("status")))
        time.sleep(0.3)
        events = sub.events()
    finally:
        sub.close()
    assert sorted(e["source"] for e in events) == images  # one per image, none twice
    assert [e["seq"] for e in events] == list(range(1, len(images) + 1))
    for e in events:
        assert e.keys() >= EVENT_FIELDS
        assert e["schema"] == "edged.event/1" and e["device"] == "cam-1"
        assert e["backend"] == "cpu" and e["model"] == BUNDLED.name
        assert e["ts"].endswith("Z") and e["inference_ms"] > 0
        assert e["top_k"][0] == {
            "label": e["label"],
            "label_id": e["label_id"],
            "score": e["score"],
        }
        assert all(
            a["score"] >= b["score"] for a, b in zip(e["top_k"], e["top_k"][1:], strict=False)
        )
    by_source = {e["source"]: e for e in events}
    for name, allowed in EXPECTED.items():
        short = by_source[name]["label"].split(",")[0]
        assert short in allowed, (name, by_source[name]["label"])
    assert not by_source[CONFIDENT.name]["ambiguous"]
    # the non-image COPYRIGHT file was skipped with a warning, not a crash
    assert "skipping" in result.stderr and "COPYRIGHT" in result.stderr

    for e in events:  # the published JSON Schema accepts what the daemon sends
        jsonschema.validate(e, published_schema("event.json"))
    health = json.loads(retained(mosquitto.port, "edged/cam-1/health") or b"{}")
    jsonschema.validate(health, published_schema("health.json"))
    assert health.keys() >= HEALTH_FIELDS
    assert health["schema"] == "edged.health/1"
    assert health["frames_processed"] == len(images)
    assert health["events_published"] == len(images)
    assert health["frames_skipped"] == 1
    assert (
        health["inference_ms"]["p50"] > 0
        and health["inference_ms"]["p95"] >= health["inference_ms"]["p50"]
    )
    assert retained(mosquitto.port, "edged/cam-1/status") == b"offline"


def _start_looping(tmp_path: Path, url: str, name: str = "edged.log") -> subprocess.Popen[bytes]:
    cfg = config(tmp_path, url, capture=f'paths = ["{CONFIDENT}"]\nloop = true\nfps = 20')
    return start_edged("run", "-c", str(cfg), log=tmp_path / name)


def test_kill9_leaves_offline_through_last_will(tmp_path: Path, mosquitto: Mosquitto) -> None:
    sub = Subscriber(mosquitto.port)
    proc = _start_looping(tmp_path, mosquitto.url)
    try:
        assert sub.wait(lambda: len(sub.events()) >= 3), (tmp_path / "edged.log").read_text()
        assert retained(mosquitto.port, "edged/cam-1/status") == b"online"
        stop_process(proc, signal.SIGKILL)
        assert sub.wait(lambda: any(p == b"offline" for _, p, _ in sub.on("status")), 10)
        assert retained(mosquitto.port, "edged/cam-1/status") == b"offline"
    finally:
        sub.close()
        if proc.poll() is None:
            proc.kill()


def test_sigterm_stops_within_2s_and_publishes_offline(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    sub = Subscriber(mosquitto.port)
    proc = _start_looping(tmp_path, mosquitto.url)
    try:
        assert sub.wait(lambda: len(sub.events()) >= 3)
        t0 = time.monotonic()
        code = stop_process(proc, signal.SIGTERM, timeout=10)
        elapsed = time.monotonic() - t0
        assert code == 0
        assert elapsed < 2.0, f"took {elapsed:.2f} s to stop"
        assert retained(mosquitto.port, "edged/cam-1/status") == b"offline"
        seqs = [e["seq"] for e in sub.events()]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        sub.close()
        if proc.poll() is None:
            proc.kill()


def test_unreachable_broker_at_start_then_publishes_everything(tmp_path: Path) -> None:
    port = free_port()
    cfg = config(
        tmp_path,
        f"mqtt://127.0.0.1:{port}",
        capture=f'paths = ["{CONFIDENT}", "{sample_bmp(tmp_path)}"]\nloop = true\nfps = 5',
    )
    proc = start_edged("run", "-c", str(cfg), "--frames", "25", log=tmp_path / "edged.log")
    broker = Mosquitto(tmp_path, port=port)
    sub = None
    try:
        # the daemon classifies with no broker, and says so (however slow its start)
        log_file = tmp_path / "edged.log"
        assert wait_until(lambda: "unreachable" in log_file.read_text(), 30), log_file.read_text()
        assert proc.poll() is None, log_file.read_text()
        broker.start()
        sub = Subscriber(port)
        assert proc.wait(30) == 0
        assert sub.wait(lambda: len(sub.events()) >= 25, 10)
        log = (tmp_path / "edged.log").read_text()
        assert "unreachable" in log
        seqs = [e["seq"] for e in sub.events()]
        # events classified while the broker was away were queued and delivered in order
        assert seqs == list(range(1, 26))
        assert sub.events()[0]["label"] == CONFIDENT_LABEL
    finally:
        if sub:
            sub.close()
        if proc.poll() is None:
            proc.kill()
        broker.stop()


def test_broker_restart_mid_run_loses_nothing_and_keeps_order(tmp_path: Path) -> None:
    """The broker goes away while frames flow and comes back: the daemon keeps classifying,
    and the subscriber (a persistent session on a persistent broker) gets every event once,
    in order: the ones that were in flight, the ones held meanwhile, then the new ones."""
    broker = Mosquitto(tmp_path, persistent=True).start()
    cfg = config(
        tmp_path,
        broker.url,
        capture=f'paths = ["{CONFIDENT}", "{sample_bmp(tmp_path)}"]\nloop = true\nfps = 20',
    )
    sub = Subscriber(broker.port, client_id="test-restart")
    proc = start_edged("run", "-c", str(cfg), "--frames", "120", log=tmp_path / "edged.log")
    try:
        assert sub.wait(lambda: len(sub.events()) >= 20)
        broker.stop()
        time.sleep(2.0)  # about 40 frames classified with no broker
        broker.start()
        assert proc.wait(60) == 0, (tmp_path / "edged.log").read_text()
        assert sub.wait(lambda: len(sub.events()) >= 120, 20), len(sub.events())
        seqs = [e["seq"] for e in sub.events()]
        # QoS 1 is at least once: a message in flight when the broker died may come twice
        # (its ack was lost).  Seen about once in five runs: right after the restart, one
        # event reaches the subscriber one place late (99 after 100).  Anything more than
        # that single adjacent swap fails.
        first = list(dict.fromkeys(seqs))
        swaps = [(a, b) for a, b in itertools.pairwise(first) if a > b]
        assert len(swaps) <= 1 and all(a == b + 1 for a, b in swaps), seqs
        assert set(seqs) == set(range(1, 121)), seqs
        assert len(seqs) - 120 <= 2, seqs
        log = (tmp_path / "edged.log").read_text()
        assert "disconnected" in log and "queue full" not in log
    finally:
        sub.close()
        if proc.poll() is None:
            proc.kill()
        broker.stop()


def test_undelivered_events_survive_a_restart(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "state"
    state.mkdir()
    # paced, so that each event has a timestamp of its own (kept through the spool)
    cfg = config(
        tmp_path,
        f"mqtt://127.0.0.1:{port}",
        capture=f'paths = ["{CONFIDENT}"]\nloop = true\nfps = 50',
    )
    env = {"STATE_DIRECTORY": str(state)}
    first = run_edged("run", "-c", str(cfg), "--frames", "4", env=env)
    assert first.returncode == 0, first.stderr
    spool = state / "events.db"
    assert "4 event(s) not acknowledged before stop; kept in" in first.stderr
    assert Spool(spool, max_bytes=2**20, max_rows=10).backlog == 4
    broker = Mosquitto(tmp_path, port=port).start()
    sub = Subscriber(port)
    try:
        second = run_edged("run", "-c", str(cfg), "--frames", "2", env=env)
        assert second.returncode == 0, second.stderr
        assert sub.wait(lambda: len(sub.events()) >= 6)
        events = sub.events()
    finally:
        sub.close()
        broker.stop()
    # the four kept from the first run, in order, then the second run's own
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 1, 2]
    assert len({e["ts"] for e in events[:4]}) == 4
    assert Spool(spool, max_bytes=2**20, max_rows=10).backlog == 0


def test_readme_allow_example_reports_only_cats_above_min_score(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """EDGED_CLASSIFY__ALLOW='["tabby", "tiger cat", "Egyptian cat"]' with a min_score: the
    cat photo gives an event, the espresso, the rocket and the astronaut none."""
    sub = Subscriber(mosquitto.port)
    env = {
        "EDGED_CLASSIFY__ALLOW": '["tabby", "tiger cat", "Egyptian cat"]',
        "EDGED_CLASSIFY__MIN_SCORE": "0.1",
    }
    try:
        cfg = config(tmp_path, mosquitto.url, capture=f'paths = ["{SAMPLES}"]')
        r = run_edged("run", "-c", str(cfg), env=env)
        assert r.returncode == 0, r.stderr
        assert sub.wait(lambda: bool(sub.on("status")) and len(sub.on("health")) >= 1)
        time.sleep(0.3)
        events = sub.events()
    finally:
        sub.close()
    assert [e["source"] for e in events] == ["chelsea_cat.jpg"]
    assert events[0]["label"].split(",")[0] in CATS
    assert all(c["score"] >= 0.1 for e in events for c in e["top_k"])
    assert {c["label"].split(",")[0] for c in events[0]["top_k"]} <= CATS
