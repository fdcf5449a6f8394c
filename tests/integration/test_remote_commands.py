"""The command topic end to end: the daemon as a process, a real mosquitto with the fleet's
ACL (deploy/mosquitto/edged.acl), an operator client over MQTT 5 and over 3.1.1."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edged.infer.model import inspect_model
from edged.publish.mqtt import COMMIT_S
from tests.support import (
    ROOT,
    Mosquitto,
    Operator,
    replay_config,
    start_edged,
    stop_process,
)

FP32 = ROOT / "models" / "efficientnet_lite0_fp32.tflite"
INT8 = ROOT / "models" / "efficientnet_lite0_int8.tflite"


def daemon_config(tmp_path: Path, port: int, protocol: str) -> Path:
    return replay_config(
        tmp_path,
        f"mqtt://127.0.0.1:{port}",
        username="cam-1",
        mqtt=f'protocol = "{protocol}"',
    )


def wait_for(pred: Callable[[], object], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return bool(pred())


def assert_no_gap(events: list[dict]) -> None:  # type: ignore[type-arg]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), f"seq gap: {seqs}"


BAD_INPUTS = [
    # (payload, what the error must say, id expected in the reply)
    (b"{not json", "not JSON", None),
    (b"[1, 2]", "expected an object", None),
    (b"\xff\xfe", "not UTF-8", None),
    (json.dumps({"id": "b1"}).encode(), "cmd is missing; valid commands: set, snapshot", "b1"),
    (json.dumps({"id": "b2", "cmd": "reboot"}).encode(), "unknown command 'reboot'", "b2"),
    (json.dumps({"id": "b3", "cmd": 7}).encode(), "cmd is a JSON number", "b3"),
    (json.dumps({"id": ["x"], "cmd": "pause"}).encode(), "id must be a string", None),
    (
        json.dumps({"id": "b4", "cmd": "set", "classify": {"top_k": "two"}}).encode(),
        "classify.top_k: Input should be a valid integer",
        "b4",
    ),
    (
        json.dumps({"id": "b5", "cmd": "set", "classify": {"top_k": 500}}).encode(),
        "classify.top_k: Input should be less than or equal to 100 (got 500)",
        "b5",
    ),
    (
        json.dumps({"id": "b6", "cmd": "set", "publish": {"policy": "sometimes"}}).encode(),
        "publish.policy: invalid value; input should be 'every_frame', 'on_change' or "
        "'interval' (got 'sometimes')",
        "b6",
    ),
    (
        json.dumps({"id": "b7", "cmd": "set", "classify": {"topk": 2}}).encode(),
        "classify.topk: unknown key; valid keys: top_k, min_score",
        "b7",
    ),
    (
        json.dumps({"id": "b8", "cmd": "set", "mqtt": {"qos": 0}}).encode(),
        "set: unknown key(s) 'mqtt'; valid: classify, publish",
        "b8",
    ),
    (
        json.dumps({"id": "b9", "cmd": "set", "classify": 3}).encode(),
        "classify must be an object",
        "b9",
    ),
    (
        json.dumps({"id": "b10", "cmd": "reload", "model": {"path": "/x.tflite"}}).encode(),
        "model.sha256 required",
        "b10",
    ),
    (
        json.dumps({"id": "b11", "cmd": "pause", "extra": {}}).encode(),
        "pause: unknown key(s) 'extra'; it takes none",
        "b11",
    ),
    (b'{"id": "b12", "cmd": "snapshot", "pad": "' + b"x" * 70_000 + b'"}', "limit is 65536", None),
]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_commands_end_to_end(tmp_path: Path, acl_broker: Mosquitto, protocol: str) -> None:
    cfg = daemon_config(tmp_path, acl_broker.port, protocol)
    op = Operator(acl_broker.port, protocol=protocol, username="operator", password="pw-operator")
    proc = start_edged("run", "--config", str(cfg), log=tmp_path / "edged.log")
    try:
        assert wait_for(lambda: len(op.events()) >= 3), (tmp_path / "edged.log").read_text()

        # every bad input: an error reply naming the problem; nothing changes
        for payload, message, rid in BAD_INPUTS:
            reply = op.request(payload)
            assert reply["ok"] is False, reply
            assert message in reply["error"], (message, reply["error"])
            assert reply["id"] == rid
            assert reply["schema"] == "edged.cmd_result/1" and reply["device"] == "cam-1"
        assert proc.poll() is None
        n = len(op.events())
        assert wait_for(lambda: len(op.events()) >= n + 3)
        # top_k is still 5 (a photo with fewer non-zero scores reports fewer classes)
        assert max(len(e["top_k"]) for e in op.events()[n:]) == 5

        # set: validated by the config's models, effective from the next frames
        reply = op.request({"id": "s1", "cmd": "set", "classify": {"top_k": 2}})
        assert reply["ok"] and reply["result"]["classify"]["top_k"] == 2, reply
        n = len(op.events())
        assert wait_for(lambda: len(op.events()) >= n + 3)
        assert all(len(e["top_k"]) == 2 for e in op.events()[n + 1 :])

        # pause: no events; resume: events again, with no gap in seq
        reply = op.request({"id": 7, "cmd": "pause"})
        assert reply["ok"] and reply["id"] == "7" and reply["result"]["paused"] is True
        time.sleep(0.5)
        n = len(op.events())
        time.sleep(1.5)
        assert len(op.events()) == n, "events published while paused"
        reply = op.request({"id": "r1", "cmd": "resume"})
        assert reply["ok"] and reply["result"]["was_paused"] is True
        assert wait_for(lambda: len(op.events()) >= n + 3)
        assert_no_gap(op.events())

        # snapshot: the current frame as JPEG, with the last classification
        reply = op.request({"id": "p1", "cmd": "snapshot"})
        assert reply["ok"], reply
        assert reply["result"]["state"]["label"], reply
        assert wait_for(lambda: bool(op.on("snapshot")))
        shot = op.on("snapshot")[-1]
        assert shot.payload[:3] == b"\xff\xd8\xff" and len(shot.payload) == reply["result"]["bytes"]
        if protocol == "5":
            assert shot.properties is not None
            props = dict(shot.properties.UserProperty)  # type: ignore[attr-defined]  # set by paho at run time
            assert props["label"] == reply["result"]["state"]["label"]
            assert json.loads(props["state"])["schema"] == "edged.state/1"

        # reload to a corrupt model: refused, the old model keeps classifying, no seq gap
        corrupt = tmp_path / "corrupt.tflite"
        corrupt.write_bytes(INT8.read_bytes()[:50_000])
        digest = hashlib.sha256(corrupt.read_bytes()).hexdigest()
        reply = op.request(
            {"id": "m1", "cmd": "reload", "model": {"path": str(corrupt), "sha256": digest}}
        )
        assert reply["ok"] is False and "the running model stays" in reply["error"], reply
        reply = op.request(
            {"id": "m2", "cmd": "reload", "model": {"path": str(FP32), "sha256": "0" * 64}}
        )
        assert reply["ok"] is False and "sha256" in reply["error"], reply
        n = len(op.events())
        assert wait_for(lambda: len(op.events()) >= n + 3)
        assert {e["model"] for e in op.events()} == {INT8.name}
        assert_no_gap(op.events())

        # reload to a good model (with its own labels): labels switch within 2 frames
        labels = tmp_path / "fp32-labels.txt"
        names = inspect_model(INT8).embedded_labels
        assert names
        labels.write_text("".join(f"fp32 {name}\n" for name in names))
        digest = hashlib.sha256(FP32.read_bytes()).hexdigest()
        reply = op.request(
            {
                "id": "m3",
                "cmd": "reload",
                "model": {"path": str(FP32), "sha256": digest, "labels": str(labels)},
            },
            timeout=60,
        )
        assert reply["ok"], reply
        assert reply["result"]["model"] == FP32.name
        assert reply["result"]["test_label"].startswith("fp32 ")
        at_reply = len(op.events())
        assert wait_for(lambda: len(op.events()) >= at_reply + 4)
        after = op.events()[at_reply:]
        old = [e for e in after if e["model"] != FP32.name]
        # the reply is sent after the swap; events classified before it may still be in the
        # spool's commit window (at 10 fps, two frames in 200 ms) or in flight (two more)
        bound = 2 + math.ceil(10 * COMMIT_S)
        assert len(old) <= bound, f"{len(old)} frames on the old model after the reload"
        assert all(e["label"].startswith("fp32 ") for e in after[len(old) :])
        assert_no_gap(op.events())
        assert proc.poll() is None
    finally:
        code = stop_process(proc)
        op.close()
    log = (tmp_path / "edged.log").read_text()
    assert code == 0, log
    assert "Traceback" not in log
    assert "command set (id s1) from" in log


def test_acl_only_the_operator_commands(tmp_path: Path, acl_broker: Mosquitto) -> None:
    """Another device, or the device itself, publishing on a cmd topic is refused by the
    broker: the daemon never sees it.  A device cannot write on another device's topics."""
    cfg = daemon_config(tmp_path, acl_broker.port, "5")
    op = Operator(acl_broker.port, username="operator", password="pw-operator")
    other = Operator(acl_broker.port, username="cam-2", password="pw-cam-2")
    itself = Operator(acl_broker.port, username="cam-1", password="pw-cam-1")
    proc = start_edged("run", "--config", str(cfg), log=tmp_path / "edged.log")
    try:
        assert wait_for(lambda: len(op.events()) >= 2), (tmp_path / "edged.log").read_text()
        other.send(json.dumps({"id": "x1", "cmd": "pause"}).encode())
        itself.send(json.dumps({"id": "x2", "cmd": "pause"}).encode())
        forged = {"schema": "edged.event/1", "device": "cam-1", "seq": 999999}
        other.client.publish("edged/cam-1/events", json.dumps(forged), qos=1).wait_for_publish(5)
        time.sleep(1.5)
        n = len(op.events())
        assert wait_for(lambda: len(op.events()) >= n + 3), "paused by a device"
        assert all(e["seq"] != 999999 for e in op.events())
        assert not op.replies and not other.replies and not itself.replies
        assert op.request({"id": "ok", "cmd": "pause"})["ok"]
    finally:
        stop_process(proc)
        for c in (op, other, itself):
            c.close()
    log = (tmp_path / "edged.log").read_text()
    assert "id x1" not in log and "id x2" not in log
    assert "command pause (id ok)" in log


@pytest.mark.usefixtures("fixtures")
@pytest.mark.parametrize(
    ("model", "backend", "expected"),
    [
        ("mobilenet_v1_0.25_128_quant.tflite", "edgetpu", "edgetpu"),
        ("mobilenet_v1_0.25_128_quant_edgetpu.tflite", "auto", "cpu"),
    ],
)
def test_reload_to_an_edge_tpu_model(
    tmp_path: Path, mosquitto: Mosquitto, model: str, backend: str, expected: str
) -> None:
    """Through the Edge TPU backend as at start: a model the (fake, pass-through) Edge TPU
    delegate runs ends on "edgetpu"; an Edge TPU compiled model it cannot run falls back
    to its CPU twin."""
    import shutil

    from tests.fakes.delegate import build_fake_delegate
    from tests.support import IMAGES, MODELS

    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the fake Edge TPU delegate")
    lib = build_fake_delegate(tmp_path / "delegate")
    path = MODELS / model
    cfg = replay_config(
        tmp_path,
        mosquitto.url,
        paths=(str(IMAGES / "parrot.jpg"),),
        mqtt='protocol = "5"',
        sections=(
            f'[model]\nbackend = "auto"\nnum_threads = 1\nedgetpu_library = "{lib}"\n'
            'edgetpu_options = { mode = "passthrough" }\n'
        ),
    )
    op = Operator(mosquitto.port, protocol="5")
    proc = start_edged("run", "--config", str(cfg), log=tmp_path / "edged.log")
    try:
        assert wait_for(lambda: len(op.events()) >= 2), (tmp_path / "edged.log").read_text()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        body = {"path": str(path), "sha256": digest, "backend": backend}
        reply = op.request({"id": "t1", "cmd": "reload", "model": body}, timeout=60)
        assert reply["ok"], reply
        assert reply["result"]["backend"] == expected
        assert reply["result"]["test_label"] == "macaw"
        n = len(op.events())
        assert wait_for(lambda: len(op.events()) >= n + 4)
        last = op.events()[-1]
        assert (last["backend"], last["label"]) == (expected, "macaw")
        assert_no_gap(op.events())
    finally:
        assert stop_process(proc) == 0, (tmp_path / "edged.log").read_text()
        op.close()
