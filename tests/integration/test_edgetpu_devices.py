"""One worker process per Edge TPU device, hosting every model on that device.

The fake Edge TPU is opened with ``device_lock``: like a real Coral, a second process that
opens the same device fails.  Two models on one device run in the one worker (each with its
own slots and socket), a fault of that worker takes both to the CPU and the re-probe brings
both back; a model on another device has a worker of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edged.config import ModelConfig, parse_config
from edged.engine import open_engine
from edged.infer.model import ModelError, inspect_model
from edged.infer.worker import DEVICES, WorkerBackend, WorkerFault
from tests.fakes.delegate import build_fake_delegate
from tests.support import (
    BUNDLED,
    CONFIDENT,
    SAMPLES,
    Mosquitto,
    Operator,
    Subscriber,
    freeze_child,
    scaled,
    start_edged,
    stop_process,
    write_config,
)

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="gcc is needed to build the fake delegate"
)

CAT = SAMPLES / "chelsea_cat.jpg"
COFFEE = SAMPLES / "coffee.jpg"


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_delegate(tmp_path_factory.mktemp("delegate"))


def tpu_cfg(lib: Path, lock: Path, device: str = "usb:0", **extra: str) -> ModelConfig:
    return parse_config(
        {
            "model": {
                "path": str(BUNDLED),
                "backend": "edgetpu",
                "edgetpu_library": str(lib),
                "edgetpu_device": device,
                "edgetpu_options": {"device_lock": str(lock), "latency_ms": "1", **extra},
                "num_threads": 1,
            }
        }
    ).model


def copy_model(tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copyfile(BUNDLED, dest)
    return dest


def workers_of(pid: int) -> list[int]:
    """The worker processes (multiprocessing spawns) among ``pid``'s children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


def tensor() -> Any:
    cfg = parse_config({"model": {"path": str(BUNDLED), "num_threads": 1}})
    engine = open_engine(cfg.model, cfg.classify)
    try:
        return engine.load(CONFIDENT)
    finally:
        engine.close()


def test_two_models_on_one_device_share_one_worker(fake_lib: Path, tmp_path: Path) -> None:
    lock = tmp_path / "usb0.lock"
    cfg = tpu_cfg(fake_lib, lock)
    doors = copy_model(tmp_path, "doors.tflite")
    frame = tensor()
    a = WorkerBackend(inspect_model(BUNDLED), cfg)
    b = WorkerBackend(inspect_model(doors), cfg.model_copy(update={"path": str(doors)}))
    try:
        assert a.pid == b.pid and workers_of(os.getpid()) == [a.pid]
        # each model has its own slots: frames of both in flight at once, answered in turn
        a.submit(frame)
        b.submit(frame)
        a.submit(frame)
        b.submit(frame)
        got = [a.collect(), b.collect(), a.collect(), b.collect()]
        assert all(g.backend == "edgetpu" and g.raw.shape == (1000,) for g in got)
        # the device's invoke count runs across both models: four different classes
        assert len({int(np.argmax(g.raw)) for g in got}) == 4
        # dropping one model leaves the other running in the same worker
        pid = a.pid
        a.close()
        assert b.infer(frame).backend == "edgetpu" and b.pid == pid
        assert workers_of(os.getpid()) == [pid]
    finally:
        a.close()
        b.close()
    assert workers_of(os.getpid()) == []  # the last model out ends the worker
    assert DEVICES.processes() == []


def test_a_kill_faults_every_model_of_the_device_only(fake_lib: Path, tmp_path: Path) -> None:
    cfg0 = tpu_cfg(fake_lib, tmp_path / "usb0.lock")
    cfg1 = tpu_cfg(fake_lib, tmp_path / "usb1.lock", device="usb:1")
    doors = copy_model(tmp_path, "doors.tflite")
    frame = tensor()
    a = WorkerBackend(inspect_model(BUNDLED), cfg0)
    b = WorkerBackend(inspect_model(doors), cfg0.model_copy(update={"path": str(doors)}))
    c = WorkerBackend(inspect_model(BUNDLED), cfg1)
    try:
        assert a.pid is not None and c.pid is not None
        assert a.pid == b.pid != c.pid
        assert workers_of(os.getpid()) == sorted({a.pid, c.pid})
        os.kill(a.pid, signal.SIGKILL)
        for backend in (a, b):
            with pytest.raises(WorkerFault, match="killed by SIGKILL"):
                backend.infer(frame)
        assert c.infer(frame).backend == "edgetpu"
        # the device is free again: a new worker opens it, for both models
        a2 = WorkerBackend(inspect_model(BUNDLED), cfg0)
        b2 = WorkerBackend(inspect_model(doors), cfg0.model_copy(update={"path": str(doors)}))
        try:
            assert a2.pid == b2.pid and a2.pid not in (a.pid, c.pid)
            assert a2.infer(frame).backend == b2.infer(frame).backend == "edgetpu"
        finally:
            a2.close()
            b2.close()
    finally:
        for backend in (a, b, c):
            backend.close()
    assert workers_of(os.getpid()) == []


def test_a_hung_device_worker_times_out_for_every_model(fake_lib: Path, tmp_path: Path) -> None:
    timeout = scaled(0.3)
    cfg = tpu_cfg(fake_lib, tmp_path / "usb0.lock").model_copy(
        update={"inference_timeout_s": timeout}
    )
    doors = copy_model(tmp_path, "doors.tflite")
    frame = tensor()
    a = WorkerBackend(inspect_model(BUNDLED), cfg)
    b = WorkerBackend(inspect_model(doors), cfg.model_copy(update={"path": str(doors)}))
    try:
        assert a.pid is not None and a.pid == b.pid
        b.submit(frame)
        b.collect()
        freeze_child(a.pid)
        b.submit(frame)  # waiting in the frozen worker
        with pytest.raises(WorkerFault, match="inference took longer than"):
            a.infer(frame)
        # the worker was killed for it: the other model's frame fails at once
        with pytest.raises(WorkerFault, match="killed by SIGKILL"):
            b.collect()
        assert not a.process.is_alive() and workers_of(os.getpid()) == []
    finally:
        a.close()
        b.close()


def test_frames_of_one_model_wait_out_the_load_of_another(fake_lib: Path, tmp_path: Path) -> None:
    """While the worker loads a model it serves no frame: another model's frame waits for
    the load, and that wait is not taken for a hung device."""
    timeout = scaled(0.5)
    doors = copy_model(tmp_path, "doors.tflite")
    cfg = tpu_cfg(fake_lib, tmp_path / "usb0.lock", prepare_ms=f"{3000 * timeout:.0f}")
    cfg = cfg.model_copy(update={"inference_timeout_s": timeout})
    frame = tensor()
    a = WorkerBackend(inspect_model(BUNDLED), cfg)
    attached: list[WorkerBackend] = []
    loader = threading.Thread(
        target=lambda: attached.append(
            WorkerBackend(inspect_model(doors), cfg.model_copy(update={"path": str(doors)}))
        )
    )
    waits = []
    try:
        loader.start()
        while loader.is_alive():
            t0 = time.monotonic()
            assert a.infer(frame).backend == "edgetpu"  # no WorkerFault
            waits.append(time.monotonic() - t0)
        loader.join()
        (b,) = attached
        assert b.pid == a.pid and b.infer(frame).backend == "edgetpu"
        # a frame did wait out the load, longer than the inference timeout
        assert max(waits) > 2 * timeout, waits
    finally:
        a.close()
        for b in attached:
            b.close()


def test_another_process_cannot_open_the_device(fake_lib: Path, tmp_path: Path) -> None:
    """What the device lock stands for: a second daemon (or `edged classify`) beside a
    running one finds the device busy, and says so."""
    from ai_edge_litert.interpreter import load_delegate

    lock = tmp_path / "usb0.lock"
    a = WorkerBackend(inspect_model(BUNDLED), tpu_cfg(fake_lib, lock))
    try:
        with pytest.raises(ValueError, match="device busy"):
            load_delegate(str(fake_lib), {"device_lock": str(lock)})
    finally:
        a.close()


def test_one_device_with_two_sets_of_options_is_refused(fake_lib: Path, tmp_path: Path) -> None:
    lock = tmp_path / "usb0.lock"
    doors = copy_model(tmp_path, "doors.tflite")
    a = WorkerBackend(inspect_model(BUNDLED), tpu_cfg(fake_lib, lock))
    try:
        other = tpu_cfg(fake_lib, lock, latency_ms="3").model_copy(update={"path": str(doors)})
        with pytest.raises(ModelError) as excinfo:
            WorkerBackend(inspect_model(doors), other)
        message = str(excinfo.value)
        assert "doors.tflite and " + BUNDLED.name in message and "'usb:0'" in message
        assert "different edgetpu_options" in message
    finally:
        a.close()
    assert workers_of(os.getpid()) == []


def events_of(sub: Subscriber, camera: str) -> list[dict[str, Any]]:
    return [json.loads(p) for t, p, _ in sub.messages if t == f"edged/home/{camera}/events"]


def test_daemon_two_models_one_tpu_worker_kill_and_back(
    fake_lib: Path, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """Two cameras with two Edge TPU models on usb:0 and a third on usb:1: both usb:0
    models classify on the (fake) Edge TPU in one worker process, the usb:1 model in its
    own; a kill -9 of the usb:0 worker moves both of its models to the CPU and back, and
    leaves the usb:1 camera on its Edge TPU."""
    doors = copy_model(tmp_path, "doors.tflite")
    gate = copy_model(tmp_path, "gate.tflite")
    lock0, lock1 = tmp_path / "usb0.lock", tmp_path / "usb1.lock"

    def model(name: str, path: Path, device: str, lock: Path) -> str:
        return f"""
[models.{name}]
path = "{path}"
backend = "edgetpu"
edgetpu_library = "{fake_lib}"
edgetpu_device = "{device}"
edgetpu_options = {{device_lock = "{lock}", latency_ms = "2"}}
num_threads = 1
"""

    def camera(name: str, photo: Path, model_name: str) -> str:
        return f"""
[[cameras]]
name = "{name}"
type = "replay"
paths = ["{photo}"]
loop = true
fps = 10
model = "{model_name}"
"""

    cfg = write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "home"
[mqtt]
url = "{mosquitto.url}"
[health]
interval_s = 0.5
{model("birds", BUNDLED, "usb:0", lock0)}
{model("doors", doors, "usb:0", lock0)}
{model("gate", gate, "usb:1", lock1)}
{camera("hall", CAT, "birds")}
{camera("door", COFFEE, "doors")}
{camera("yard", CAT, "gate")}
""",
    )
    sub = Subscriber(mosquitto.port, "#")
    log = tmp_path / "edged.log"
    proc = start_edged("run", "-c", str(cfg), log=log)
    cameras = ("hall", "door", "yard")
    models = {"hall": BUNDLED.name, "door": doors.name, "yard": gate.name}

    def backends(camera: str) -> list[str]:
        return [e["backend"] for e in events_of(sub, camera)]

    def cams() -> dict[str, Any]:
        cams: dict[str, Any] = (sub.last_health() or {}).get("cameras", {})
        return cams

    try:
        assert sub.wait(lambda: all(len(events_of(sub, c)) >= 5 for c in cameras), 60), (
            log.read_text()
        )
        assert sub.wait(lambda: all(cams().get(c, {}).get("backend") for c in cameras), 10)
        for c in cameras:
            assert set(backends(c)) == {"edgetpu"}, (c, backends(c), log.read_text())
            assert {e["model"] for e in events_of(sub, c)} == {models[c]}
            assert cams()[c]["backend"] == "edgetpu" and cams()[c]["model"] == models[c]
        workers = workers_of(proc.pid)
        assert len(workers) == 2, workers  # one per device
        usb0 = int((sub.last_health() or {})["worker_pid"])  # [models.birds]: the first stage
        assert usb0 in workers
        (usb1,) = set(workers) - {usb0}
        seen = {c: len(events_of(sub, c)) for c in cameras}
        os.kill(usb0, signal.SIGKILL)
        assert sub.wait(lambda: all("cpu" in backends(c) for c in ("hall", "door")), 20), (
            log.read_text()
        )
        assert sub.wait(
            lambda: (
                all(backends(c)[-1] == "edgetpu" for c in ("hall", "door"))
                and len(events_of(sub, "yard")) >= seen["yard"] + 10
            ),
            30,
        ), log.read_text()
        assert set(backends("yard")) == {"edgetpu"}  # the other device was not disturbed
        back = workers_of(proc.pid)
        assert len(back) == 2 and usb1 in back and usb0 not in back, back
    finally:
        assert stop_process(proc) == 0, log.read_text()
        sub.close()
    for c in cameras:
        seqs = [e["seq"] for e in events_of(sub, c)]
        assert seqs == list(range(1, len(seqs) + 1)), c
    final = json.loads(sub.on("health")[-1][1])
    assert final["frames_lost"] == 0  # the frames in flight at the kill ran on the CPU


def test_daemon_reload_of_one_model_leaves_the_other_on_the_tpu(
    fake_lib: Path, tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """[model] and [models.doors] share usb:0; a reload of [model] to another Edge TPU
    model on usb:0 attaches it to the same worker: the door camera never leaves the Edge
    TPU, and no second worker process is started."""
    birds = copy_model(tmp_path, "birds.tflite")
    doors = copy_model(tmp_path, "doors.tflite")
    lock = tmp_path / "usb0.lock"
    tpu = f"""backend = "edgetpu"
edgetpu_library = "{fake_lib}"
edgetpu_device = "usb:0"
edgetpu_options = {{device_lock = "{lock}", latency_ms = "2"}}
num_threads = 1"""
    cfg = write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "home"
[mqtt]
url = "{mosquitto.url}"
protocol = "5"
[health]
interval_s = 0.5
[model]
path = "{BUNDLED}"
{tpu}
[models.doors]
path = "{doors}"
{tpu}
[[cameras]]
name = "hall"
type = "replay"
paths = ["{CAT}"]
loop = true
fps = 10
[[cameras]]
name = "door"
type = "replay"
paths = ["{COFFEE}"]
loop = true
fps = 10
model = "doors"
""",
    )
    sub = Subscriber(mosquitto.port, "#")
    op = Operator(mosquitto.port, device="home")
    log = tmp_path / "edged.log"
    proc = start_edged("run", "-c", str(cfg), log=log)
    try:
        assert sub.wait(lambda: all(len(events_of(sub, c)) >= 5 for c in ("hall", "door")), 60), (
            log.read_text()
        )
        (worker,) = workers_of(proc.pid)
        reply = op.request(
            {
                "cmd": "reload",
                "model": {
                    "path": str(birds),
                    "sha256": hashlib.sha256(birds.read_bytes()).hexdigest(),
                },
            },
            timeout=60,
        )
        assert reply["ok"] and reply["result"]["backend"] == "edgetpu", reply
        assert sub.wait(lambda: events_of(sub, "hall")[-1]["model"] == birds.name, 30), (
            log.read_text()
        )
        door = len(events_of(sub, "door"))
        assert sub.wait(lambda: len(events_of(sub, "door")) >= door + 10, 30)
        assert workers_of(proc.pid) == [worker]
        health = sub.last_health() or {}
        assert health.get("worker_pid") == worker and health.get("fallbacks") == 0, health
    finally:
        assert stop_process(proc) == 0, log.read_text()
        op.close()
        sub.close()
    assert {e["backend"] for c in ("hall", "door") for e in events_of(sub, c)} == {"edgetpu"}
    assert {e["model"] for e in events_of(sub, "door")} == {doors.name}
