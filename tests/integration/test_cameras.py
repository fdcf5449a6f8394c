"""Several cameras in one daemon, on a real mosquitto: a replay camera, an MJPEG camera over
HTTP and an RTSP camera (GStreamer) share the bundled model; each publishes on its own
topics with its own seq, and one camera's outage leaves the others classifying."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.fakes.delegate import build_fake_delegate
from tests.servers.mjpeg import MjpegServer, jpeg_frames
from tests.servers.rtsp import RtspServer, require_rtsp
from tests.support import (
    BUNDLED,
    ROOT,
    Mosquitto,
    Operator,
    Subscriber,
    free_port,
    start_edged,
    stop_process,
    wait_port,
    wait_until,
    write_config,
)

SAMPLES = ROOT / "edged" / "samples"
COFFEE = SAMPLES / "coffee.jpg"
CAT = SAMPLES / "chelsea_cat.jpg"
CAT_LABELS = {"tiger cat", "tabby", "Egyptian cat"}
FP32 = ROOT / "models" / "efficientnet_lite0_fp32.tflite"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "docs" / "schema" / name).read_text())
    return loaded


def events_of(sub: Subscriber, camera: str) -> list[dict[str, Any]]:
    return [json.loads(p) for t, p, _ in sub.messages if t == f"edged/home/{camera}/events"]


def config(tmp_path: Path, broker: str, mjpeg: str, rtsp: str) -> Path:
    stream = """reconnect_min_s = 0.25
reconnect_max_s = 2.0
read_timeout_s = 3.0
connect_timeout_s = 3.0"""
    return write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "home"
[mqtt]
url = "{broker}"
[health]
interval_s = 0.5
[homeassistant]
discovery = true

[[cameras]]
name = "hall"
type = "replay"
paths = ["{CAT}"]
loop = true
fps = 8

[[cameras]]
name = "garden"
type = "stream"
url = "{mjpeg}"
{stream}
[cameras.classify]
top_k = 2

[[cameras]]
name = "kitchen"
type = "stream"
url = "{rtsp}"
{stream}
""",
    )


def test_three_cameras_publish_on_their_own_topics(tmp_path: Path, mosquitto: Mosquitto) -> None:
    require_rtsp()
    rtsp = RtspServer([COFFEE], workdir=tmp_path).start()
    mjpeg = MjpegServer(jpeg_frames([COFFEE], (450, 300)), fps=8).start()
    sub = Subscriber(mosquitto.port, "#")
    log = tmp_path / "edged.log"
    cfg = config(tmp_path, mosquitto.url, f"{mjpeg.url}/stream", rtsp.url)
    proc = start_edged("run", "-c", str(cfg), log=log)
    cameras = ("hall", "garden", "kitchen")
    try:
        assert sub.wait(lambda: all(len(events_of(sub, c)) >= 5 for c in cameras), 90), (
            log.read_text()
        )
        assert sub.wait(
            lambda: all(
                (sub.last_health() or {}).get("cameras", {}).get(c, {}).get("state") == "ok"
                for c in cameras
            ),
            20,
        ), sub.last_health()
        health = sub.last_health()
        # one camera down: the MJPEG server goes away, the others go on
        mjpeg.stop()
        assert sub.wait(
            lambda: (
                (sub.last_health() or {}).get("cameras", {}).get("garden", {}).get("state")
                == "down"
            ),
            20,
        ), sub.last_health()
        down = sub.last_health()
        counts = {c: len(events_of(sub, c)) for c in ("hall", "kitchen")}
        assert sub.wait(lambda: all(len(events_of(sub, c)) >= counts[c] + 5 for c in counts), 30), (
            log.read_text()
        )
    finally:
        assert stop_process(proc) == 0, log.read_text()
        rtsp.stop()
        mjpeg.stop()
        sub.close()
    assert health is not None and down is not None
    for camera in cameras:
        events = events_of(sub, camera)
        assert events, camera
        # seq per camera from 1, without a gap, within the one run
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), camera
        assert {e["camera"] for e in events} == {camera}
        assert len({e["run_id"] for e in events}) == 1
        for e in events[:20]:
            jsonschema.validate(e, schema("event.json"))
    assert {e["label"] for e in events_of(sub, "hall")} <= CAT_LABELS
    assert {e["label"] for e in events_of(sub, "kitchen")} == {"espresso"}
    assert all(len(e["top_k"]) <= 2 for e in events_of(sub, "garden"))  # its own classify
    # no event on the device's own events topic: every camera has its own
    assert not [t for t, _, _ in sub.messages if t == "edged/home/events"]
    for report in (health, down):
        jsonschema.validate(report, schema("health.json"))
        assert set(report["cameras"]) == set(cameras)
    assert down["state"] == "ok"  # the device judges by its healthy cameras
    garden = down["cameras"]["garden"]
    assert garden["source_state"] in ("reconnecting", "failed") and garden["error"]
    # Home Assistant's state, one retained topic per camera
    states = {t for t, _, _ in sub.messages if t.endswith("/state")}
    assert {f"edged/home/{c}/state" for c in cameras} <= states


def test_commands_by_camera_through_the_fleets_acl(tmp_path: Path, acl_broker: Mosquitto) -> None:
    """`snapshot` of one camera and a `set` for one camera, sent by the operator over the
    fleet's ACL; Home Assistant's discovery gives a device per camera via the edged device."""
    cfg = write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "cam-1"
[mqtt]
url = "{acl_broker.url}"
username = "cam-1"
protocol = "5"
password_file = "{tmp_path / "pw-cam-1"}"
[health]
interval_s = 0.5
[homeassistant]
discovery = true
[[cameras]]
name = "front"
type = "replay"
paths = ["{CAT}"]
loop = true
fps = 10
[[cameras]]
name = "back"
type = "replay"
paths = ["{COFFEE}"]
loop = true
fps = 10
""",
    )
    op = Operator(acl_broker.port, username="operator", password="pw-operator")
    sub = Subscriber(acl_broker.port, "#", username="operator", password="pw-operator")
    ha = Subscriber(
        acl_broker.port, "homeassistant/#", username="homeassistant", password="pw-homeassistant"
    )
    log = tmp_path / "edged.log"
    proc = start_edged("run", "-c", str(cfg), log=log)

    def events(camera: str) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _ in sub.messages if t == f"edged/cam-1/{camera}/events"]

    try:
        assert sub.wait(lambda: len(events("front")) >= 3 and len(events("back")) >= 3, 60), (
            log.read_text()
        )
        reply = op.request({"cmd": "snapshot", "camera": "back"})
        assert reply["ok"], reply
        assert reply["result"]["topic"] == "edged/cam-1/back/snapshot"
        assert reply["result"]["state"]["camera"] == "back"
        assert reply["result"]["state"]["label"] == "espresso"
        assert sub.wait(lambda: bool(sub.on("back/snapshot")), 10)
        assert sub.on("back/snapshot")[-1][1][:3] == b"\xff\xd8\xff"
        reply = op.request({"cmd": "snapshot", "camera": "side"})
        assert not reply["ok"] and "cameras: front, back" in reply["error"], reply
        # set for one camera: its top_k only
        reply = op.request({"cmd": "set", "camera": "front", "classify": {"top_k": 1}})
        assert reply["ok"] and reply["result"]["camera"] == "front", reply
        n_front, n_back = len(events("front")), len(events("back"))
        assert sub.wait(
            lambda: len(events("front")) >= n_front + 4 and len(events("back")) >= n_back + 4, 30
        )
        # events classified before the reply (received after n_front was read) keep top 5;
        # from the first with top_k 1 on, every one has it
        after = [len(e["top_k"]) for e in events("front")[n_front:]]
        first = after.index(1)
        assert first <= 5 and set(after[first:]) == {1}, after
        assert max(len(e["top_k"]) for e in events("back")[n_back:]) > 1
        assert ha.wait(lambda: len(ha.messages) >= 14, 20)
    finally:
        assert stop_process(proc) == 0, log.read_text()
        op.close()
        sub.close()
        ha.close()
    for camera in ("front", "back"):
        seqs = [e["seq"] for e in events(camera)]
        assert seqs == list(range(1, len(seqs) + 1))
    configs = [json.loads(p) for t, p, _ in ha.messages if t.endswith("/config") and p]
    devices = {c["device"]["identifiers"][0]: c["device"] for c in configs}
    assert set(devices) == {"edged_cam-1", "edged_cam-1_front", "edged_cam-1_back"}
    assert devices["edged_cam-1_front"]["via_device"] == "edged_cam-1"
    labels = {c["state_topic"] for c in configs if c["unique_id"].endswith("_label")}
    assert labels == {"edged/cam-1/front/state", "edged/cam-1/back/state"}


def test_every_camera_survives_a_tpu_fault_and_follows_a_reload(
    tmp_path: Path, mosquitto: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two cameras on one (fake) Edge TPU, opened once: its worker killed mid-run, both
    cameras go on on the CPU and come back, with no seq gap; then a reload to another model
    reaches both cameras."""
    lib = build_fake_delegate(tmp_path_factory.mktemp("delegate"))
    cfg = write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "home"
[model]
path = "{BUNDLED}"
backend = "edgetpu"
edgetpu_library = "{lib}"
num_threads = 1
[mqtt]
url = "{mosquitto.url}"
protocol = "5"
[health]
interval_s = 0.5
[[cameras]]
name = "hall"
type = "replay"
paths = ["{CAT}"]
loop = true
fps = 15
[[cameras]]
name = "yard"
type = "replay"
paths = ["{COFFEE}"]
loop = true
fps = 15
""",
    )
    sub = Subscriber(mosquitto.port, "#")
    op = Operator(mosquitto.port, device="home")
    log = tmp_path / "edged.log"
    proc = start_edged("run", "-c", str(cfg), log=log)
    cameras = ("hall", "yard")

    def backends(camera: str) -> list[str]:
        return [e["backend"] for e in events_of(sub, camera)]

    try:
        assert sub.wait(lambda: all(len(events_of(sub, c)) >= 5 for c in cameras), 60), (
            log.read_text()
        )
        health = sub.last_health() or {}
        assert health.get("backend") == "edgetpu" and health.get("worker_pid"), health
        assert (
            len({h["worker_pid"] for h in map(json.loads, (p for _, p, _ in sub.on("health")))})
            == 1
        )  # one worker: the device is opened once for both cameras
        os.kill(int(health["worker_pid"]), signal.SIGKILL)
        assert sub.wait(lambda: all("cpu" in backends(c) for c in cameras), 20), log.read_text()
        assert sub.wait(
            lambda: all("cpu" in backends(c) and backends(c)[-1] == "edgetpu" for c in cameras),
            30,
        ), log.read_text()
        assert sub.wait(lambda: (sub.last_health() or {}).get("fallbacks", 0) >= 1, 10)
        # reload: both cameras classify with the new model
        reply = op.request(
            {
                "cmd": "reload",
                "model": {"path": str(FP32), "sha256": sha256(FP32), "backend": "cpu"},
            },
            timeout=60,
        )
        assert reply["ok"], reply
        assert sub.wait(
            lambda: all(events_of(sub, c)[-1]["model"] == FP32.name for c in cameras), 30
        ), log.read_text()
    finally:
        assert stop_process(proc) == 0, log.read_text()
        op.close()
        sub.close()
    for camera in cameras:
        seqs = [e["seq"] for e in events_of(sub, camera)]
        assert seqs == list(range(1, len(seqs) + 1)), camera
    final = json.loads(sub.on("health")[-1][1])
    assert final["frames_lost"] == 0  # the frames in flight at the kill ran on the CPU


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_status_page_shows_each_camera(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The status page's camera picker: each camera's frame and classification by name
    (over HTTP, and in Chromium where it is installed)."""
    port = free_port()
    cfg = write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "home"
[mqtt]
url = "{mosquitto.url}"
[web]
listen = "127.0.0.1:{port}"
refresh_s = 0.2
[[cameras]]
name = "hall"
type = "replay"
paths = ["{CAT}"]
loop = true
fps = 5
[[cameras]]
name = "yard"
type = "replay"
paths = ["{COFFEE}"]
loop = true
fps = 5
""",
    )
    log = tmp_path / "edged.log"
    proc = start_edged("run", "-c", str(cfg), log=log)
    base = f"http://127.0.0.1:{port}"

    def status(camera: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{base}/api/status?camera={camera}", timeout=10) as r:
            data: dict[str, Any] = json.loads(r.read())
        return data

    try:
        wait_port(port, 60)
        assert wait_until(lambda: all(status(c)["classification"] for c in ("hall", "yard")), 60), (
            log.read_text()
        )
        yard, hall = status("yard"), status("hall")
        assert yard["cameras"] == ["hall", "yard"] and yard["showing"] == "yard"
        assert yard["classification"]["label"] == "espresso"
        assert hall["classification"]["label"] in CAT_LABELS
        assert set(yard["health"]["cameras"]) == {"hall", "yard"}
        frames = {}
        for camera in ("hall", "yard"):
            with urllib.request.urlopen(f"{base}/frame.jpg?camera={camera}", timeout=10) as r:
                frames[camera] = r.read()
            assert frames[camera][:3] == b"\xff\xd8\xff"
        assert frames["hall"] != frames["yard"]
        if CHROMIUM is not None:
            for camera, labels in (("yard", {"espresso"}), ("hall", CAT_LABELS)):
                dom = subprocess.run(
                    [
                        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                        "--no-first-run", f"--user-data-dir={tmp_path / camera}",
                        "--virtual-time-budget=6000", "--dump-dom", f"{base}/?camera={camera}",
                    ],
                    capture_output=True, text=True, timeout=120, check=False,
                )  # fmt: skip
                label = re.search(r'<span id="label">([^<]*)</span>', dom.stdout)
                assert label and label.group(1) in labels, dom.stdout[:3000]
                assert f'<option value="{camera}" selected' in dom.stdout
    finally:
        assert stop_process(proc) == 0, log.read_text()


def test_a_region_classified_by_its_own_model() -> None:
    """A region naming [models.NAME] goes to that model's stage, the others to the camera's;
    each model is loaded once, and the camera's seq counts every region's events."""
    from edged.app import Daemon
    from edged.config import parse_config
    from tests.support import FakePublisher

    cfg = parse_config(
        {
            "models": {"big": {"path": str(FP32)}},
            "cameras": [
                {
                    "name": "porch",
                    "type": "replay",
                    "paths": [str(COFFEE)],
                    "loop": True,
                    "regions": [
                        {"name": "left", "width": 0.5, "model": "big"},
                        {"name": "right", "x": 0.5, "width": 0.5},
                    ],
                }
            ],
        }
    )
    publisher = FakePublisher()
    daemon = Daemon(cfg, publisher=publisher, max_frames=6)
    assert daemon.run() == 0
    events = [json.loads(p) for t, p, _, _ in publisher.published_messages if t == "porch/events"]
    assert len(events) == 12 and [e["seq"] for e in events] == list(range(1, 13))
    models = {(e["region"], e["model"]) for e in events}
    assert models == {("left", FP32.name), ("right", "efficientnet_lite0_int8.tflite")}
    assert set(daemon.stages) == {"", "big"}
