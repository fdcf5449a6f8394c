"""Test helpers: a real mosquitto on a free port, a recording subscriber, the daemon as a
subprocess, and small model surgery for bad-model tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edged.capture.base import Frame
from edged.publish import Publisher

ROOT = Path(__file__).resolve().parents[1]
# The shared fixtures (other models, Edge TPU twins, the calibration set); point
# EDGED_TEST_FIXTURES at an empty directory to run the tests as a fresh clone does.
FIXTURES = Path(os.environ.get("EDGED_TEST_FIXTURES") or ROOT.parent / "shared" / "fixtures")
MODELS = FIXTURES / "models"
IMAGES = FIXTURES / "images"
V2 = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
V1_025 = MODELS / "mobilenet_v1_0.25_128_quant.tflite"
# The fixture photos and the ImageNet classes (any of them) an ImageNet model must give them,
# as ../shared/fixtures/README.md lists them.
PHOTO_CLASSES = {
    "parrot.jpg": {"macaw"},
    "bird.bmp": {"chickadee"},
    "dragonfly.bmp": {"dragonfly"},
    "hot_dog.jpg": {"hotdog"},
    "cat.bmp": {"Egyptian cat", "tabby", "tiger cat"},
}

# What the project ships: the bundled model and the sample photos
BUNDLED = ROOT / "models" / "efficientnet_lite0_int8.tflite"
SAMPLES = ROOT / "edged" / "samples"
# the bundled model's confident top-1 on a sample, and the samples' top-1 labels
CONFIDENT = SAMPLES / "coffee.jpg"
CONFIDENT_LABEL = "espresso"
SAMPLE_TOP1 = {
    "astronaut.jpg": "football helmet",
    "chelsea_cat.jpg": "tiger cat",
    "coffee.jpg": "espresso",
    "rocket.jpg": "missile",
}


def need(path: Path) -> Path:
    """A shared fixture file, or skip the test naming the one that is missing."""
    if not path.exists():
        pytest.skip(f"needs the shared fixture {path.name} (not in {path.parent})")
    return path


def sample_bmp(dest: Path, sample: str = "chelsea_cat.jpg") -> Path:
    """A sample photo saved as BMP: a second, non-JPEG decoding path."""
    from PIL import Image

    out = dest / (Path(sample).stem + ".bmp")
    with Image.open(SAMPLES / sample) as im:
        im.convert("RGB").save(out)
    return out


def pixels(frame: Frame) -> Any:
    """A frame's image, which a source that copies every frame always gives."""
    assert frame.image is not None, f"frame {frame.number} came without its pixels"
    return frame.image


def slowdown() -> float:
    """How much slower than an idle machine this one runs now: its load average per core (at
    least 1), or ``EDGED_TEST_SLOWDOWN`` where set (a Pi, a busy CI host).  Deadlines and
    time budgets are multiplied by it: a test waits longer on a loaded machine, never less."""
    forced = os.environ.get("EDGED_TEST_SLOWDOWN")
    if forced:
        return max(1.0, float(forced))
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


def scaled(seconds: float) -> float:
    """``seconds`` on an idle machine, stretched by :func:`slowdown`."""
    return seconds * slowdown()


def wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``pred`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


class Mosquitto:
    """A real mosquitto broker on 127.0.0.1, configured by the test."""

    def __init__(
        self, workdir: Path, port: int | None = None, extra: str = "", persistent: bool = False
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.extra = extra
        # persistent: sessions and queued QoS 1 messages survive a restart of the broker
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"mosquitto-{self.port}.log"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.workdir / f"mosquitto-{self.port}.conf"
        listener = self.extra or f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        persistence = (
            f"persistence true\npersistence_location {self.workdir}/\n"
            if self.persistent
            else "persistence false\n"
        )
        # stderr is not buffered: the log file shows each line as it happens
        conf.write_text(f"user root\nlog_dest stderr\n{persistence}{listener}")
        self.proc = subprocess.Popen(
            [exe, "-c", str(conf), "-v"], stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        wait_port(self.port)
        return self

    def stop(self) -> None:
        """SIGTERM (mosquitto saves its persistence file first), then SIGKILL if it has not
        ended within a deadline scaled to the machine's load."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(scaled(5))
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Subscriber:
    """Records every message on a topic filter; ``wait`` polls a predicate."""

    def __init__(
        self,
        port: int,
        topic: str = "edged/#",
        ca_file: str = "",
        username: str = "",
        password: str = "",
        client_id: str = "",
    ) -> None:
        """With ``client_id``, a persistent session (clean_session false): the broker keeps
        the subscription and queues QoS 1 messages while this subscriber is away."""
        self.messages: list[tuple[str, bytes, bool]] = []
        self.arrivals: list[float] = []  # monotonic receive time of each message
        self.dups: list[bool] = []  # each message's dup flag: the broker sent it again
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=not client_id
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        if ca_file:
            self.client.tls_set(ca_certs=ca_file)
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda c, u, m, r, p: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError(f"could not subscribe to {topic} on port {port}")

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.arrivals.append(time.monotonic())
            self.dups.append(bool(msg.dup))

    def on(self, suffix: str) -> list[tuple[str, bytes, bool]]:
        with self._lock:
            return [m for m in self.messages if m[0].endswith("/" + suffix)]

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(p) for _, p, _ in self.on("events")]

    def flagged_events(self) -> list[tuple[dict[str, Any], bool]]:
        """Each event with its dup flag (set when the broker sends it again, e.g. after its
        restart, what it had sent without seeing the acknowledgement)."""
        with self._lock:
            pairs = list(zip(self.messages, self.dups, strict=True))
        return [(json.loads(m[1]), dup) for m, dup in pairs if m[0].endswith("/events")]

    def timed_events(self) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            pairs = list(zip(self.arrivals, self.messages, strict=True))
        return [(t, json.loads(m[1])) for t, m in pairs if m[0].endswith("/events")]

    def last_health(self) -> dict[str, Any] | None:
        health = self.on("health")
        return json.loads(health[-1][1]) if health else None

    def wait(self, pred: Callable[[], bool], timeout: float = 20.0) -> bool:
        return wait_until(pred, timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained(port: int, topic: str, timeout: float = 5.0) -> bytes | None:
    """The retained message on ``topic`` as a fresh subscriber sees it."""
    sub = Subscriber(port, topic)
    try:
        sub.wait(lambda: bool(sub.messages), timeout)
        return sub.messages[-1][1] if sub.messages else None
    finally:
        sub.close()


def write_config(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def edged_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edged", *args]


def run_edged(
    *args: str, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        edged_cmd(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def start_edged(
    *args: str, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        edged_cmd(*args),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 10
) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout)


def freeze_child(pid: int) -> None:
    """SIGSTOP the child process ``pid`` and return once the kernel reports it stopped: from
    then on it runs nothing (it reads no command, answers no frame) until it is continued or
    killed.  A blocking ``waitid`` on the stop, not a sleep; WNOWAIT leaves the status for
    the process's owner."""
    os.kill(pid, signal.SIGSTOP)
    info = os.waitid(os.P_PID, pid, os.WSTOPPED | os.WEXITED | os.WNOWAIT)
    assert info is not None and info.si_code == os.CLD_STOPPED, f"{pid} did not stop: {info}"


def rewire_outputs(src: Path, dst: Path, outputs: Callable[[Any], list[int]]) -> Path:
    """Copy a TFLite model with its subgraph outputs replaced (a feature map instead of a
    class vector, or several outputs like a detection model)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(src.read_bytes(), 0)
    sg = model.subgraphs[0]
    sg.outputs = outputs(sg)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(bytes(builder.Output()))
    return dst


def publish_fleet(port: int, devices: int, version: str, prefix: str = "edged") -> None:
    """Retained ``online`` and a health report for ``devices`` simulated devices (``sim-00001``
    …), as their daemons would leave them on the broker; returns when the broker has them."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-sim-{time.monotonic_ns()}")
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    ts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    infos = []
    try:
        for i in range(1, devices + 1):
            device = f"sim-{i:05d}"
            health = {
                "schema": "edged.health/1", "device": device, "version": version,
                "run_id": f"00000000-0000-4000-8000-{i:012d}", "ts": ts, "uptime_s": 60.0,
                "state": "ok", "source_live": True, "backend": "cpu",
                "model": "efficientnet_lite0_int8.tflite", "model_sha256": None, "fps": 15.0,
                "inference_ms": {"p50": 30.0, "p95": 35.0}, "frames_captured": 900,
                "frames_processed": 900, "frames_dropped": 0, "events_published": 900,
                "mqtt_reconnects": 0, "cpu_percent": 80.0, "rss_mb": 120.0,
                "cpu_temp_c": 55.0, "throttled": None, "pid": 1000 + i,
            }  # fmt: skip
            infos.append(client.publish(f"{prefix}/{device}/status", b"online", 1, retain=True))
            infos.append(
                client.publish(f"{prefix}/{device}/health", json.dumps(health), 1, retain=True)
            )
        for info in infos:
            info.wait_for_publish(60)
    finally:
        client.disconnect()
        client.loop_stop()


ACL_FILE = ROOT / "deploy" / "mosquitto" / "edged.acl"
ACL_USERS = ("cam-1", "cam-2", "operator", "homeassistant")


def acl_mosquitto(workdir: Path) -> Mosquitto:
    """A mosquitto with the fleet's ACL (deploy/mosquitto/edged.acl) and one user per name in
    ACL_USERS, each with the password ``pw-<name>``; not started."""
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    passwd = workdir / "acl-passwd"
    passwd.write_text("".join(f"{u}:pw-{u}\n" for u in ACL_USERS))
    subprocess.run([tool, "-U", str(passwd)], check=True, capture_output=True)
    for user in ACL_USERS:
        (workdir / f"pw-{user}").write_text(f"pw-{user}\n")
    port = free_port()
    return Mosquitto(
        workdir,
        port,
        extra=(
            f"listener {port} 127.0.0.1\nallow_anonymous false\nper_listener_settings false\n"
            f"password_file {passwd}\nacl_file {ACL_FILE}\n"
        ),
    )


class Operator:
    """An MQTT client sending commands and collecting replies: MQTT 5 with a response topic
    and correlation data, or 3.1.1 with an ``id`` and replies on cmd/result."""

    def __init__(
        self,
        port: int,
        device: str = "cam-1",
        protocol: str = "5",
        username: str = "",
        password: str = "",
        prefix: str = "edged",
    ) -> None:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        self._props = (Properties, PacketTypes)
        self.v5 = protocol == "5"
        self.base = f"{prefix}/{device}"
        self.response_topic = f"{self.base}/cmd/result/op-{os.getpid()}-{id(self)}"
        self.replies: list[tuple[str, dict[str, Any], bytes | None]] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self._lock = threading.Lock()
        self._n = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"op-{username or 'anon'}-{os.getpid()}-{id(self)}",
            protocol=mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
        )
        if username:
            self.client.username_pw_set(username, password)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(
            [
                (f"{self.base}/cmd/result/#", 1),
                (f"{self.base}/snapshot", 1),
                (f"{self.base}/events", 1),
            ]
        )
        if not subscribed.wait(10):
            raise TimeoutError("operator could not subscribe")

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)
            if "/cmd/result" in msg.topic:
                corr = getattr(getattr(msg, "properties", None), "CorrelationData", None)
                self.replies.append((msg.topic, json.loads(msg.payload), corr))

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(m.payload) for m in self.messages if m.topic.endswith("/events")]

    def on(self, suffix: str) -> list[mqtt.MQTTMessage]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith("/" + suffix)]

    def send(self, payload: bytes, topic: str = "") -> bytes:
        """Publish ``payload`` on the cmd topic; the correlation data used (MQTT 5)."""
        self._n += 1
        corr = f"corr-{self._n}".encode()
        props = None
        if self.v5:
            Properties, PacketTypes = self._props
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = self.response_topic
            props.CorrelationData = corr
        self.client.publish(topic or f"{self.base}/cmd", payload, qos=1, properties=props)
        return corr

    def request(self, body: dict[str, Any] | bytes, timeout: float = 20.0) -> dict[str, Any]:
        """Send a command and wait for its reply (matched by correlation data under MQTT 5,
        by ``id`` under 3.1.1; a payload without a readable id matches the next reply)."""
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        rid = body.get("id") if isinstance(body, dict) else None
        with self._lock:
            seen = len(self.replies)
        corr = self.send(payload)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                fresh = self.replies[seen:]
            for topic, reply, reply_corr in fresh:
                if self.v5:
                    if reply_corr == corr:
                        assert topic == self.response_topic
                        return reply
                elif rid is None or reply.get("id") == str(rid):
                    assert topic == f"{self.base}/cmd/result"
                    return reply
            time.sleep(0.02)
        raise TimeoutError(f"no reply to {payload[:80]!r}")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def replay_config(
    tmp_path: Path,
    url: str,
    *,
    fps: float = 10,
    paths: tuple[str, ...] = (),
    username: str = "",
    mqtt: str = "",
    sections: str = "",
    device: str = "cam-1",
) -> Path:
    """A daemon config replaying ``paths`` (default: the bundled photos) in a loop at ``fps``
    to the broker ``url`` (as ``username``, password from ``tmp_path/pw-<username>`` as
    acl_mosquitto writes it), ``mqtt`` (TOML lines) added to [mqtt] and ``sections`` (TOML)
    appended."""
    login = (
        f'username = "{username}"\npassword_file = "{tmp_path / f"pw-{username}"}"\n'
        if username
        else ""
    )
    return write_config(
        tmp_path / "edged.toml",
        f'[device]\nid = "{device}"\n'
        f'[capture]\ntype = "replay"\nloop = true\nfps = {fps}\npaths = {json.dumps(list(paths))}\n'
        f'[mqtt]\nurl = "{url}"\n{login}{mqtt}\n'
        f"[health]\ninterval_s = 1\n{sections}",
    )


class FakePublisher(Publisher):
    """An always-connected in-memory publisher recording what it is given."""

    def __init__(self) -> None:
        self.published_messages: list[tuple[str, bytes, int, bool]] = []
        self.sent: list[tuple[str, bytes, bytes | None]] = []

    def start(self) -> None: ...

    def publish(
        self, topic: str, payload: bytes, qos: int | None = None, retain: bool = False
    ) -> None:
        self.published_messages.append((topic, payload, qos or 0, retain))

    def stop(self, timeout: float = 5.0) -> None: ...

    @property
    def connected(self) -> bool:
        return True

    def send(self, topic: str, payload: bytes, **kw: Any) -> None:
        self.sent.append((topic, payload, kw.get("correlation_data")))
