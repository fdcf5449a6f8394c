"""The Raspberry Pi AI Camera (IMX500) under the real picamera2 0.3.38: its ``IMX500`` class
reads the network package, hands the firmware to the (simulated) sensor, reads the upload
progress and parses the output tensors that the (simulated) libcamera requests carry.  The
tensors are the bundled model's own int8 scores on the sample photos."""

from __future__ import annotations

import io
import json
import os
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edged.capture import open_source
from edged.capture.base import Frame, FrameSource, PixelDemand
from edged.capture.imx500 import Imx500Source
from edged.config import ClassifyConfig, ModelConfig, parse_config
from edged.engine import Engine, open_engine
from edged.infer.imx500 import NetworkError, SensorNetwork, inspect_network, softmax
from tests.aicamera import (  # noqa: F401  (fixtures: aicamera, imx500_here, sensor_scores)
    PHOTOS,
    AiCamera,
    aicamera_fixture,
    imx500_here_fixture,
    imx500_sim,
    sensor_scores_fixture,
)
from tests.support import (
    SAMPLE_TOP1,
    Mosquitto,
    Operator,
    Subscriber,
    free_port,
    run_edged,
    start_edged,
    stop_process,
    wait_until,
    write_config,
)


def source_for(cam: AiCamera, **capture: Any) -> Imx500Source:
    cfg = parse_config(
        {
            "capture": {
                "type": "imx500",
                "network": str(cam.network),
                "retry_min_s": 0.5,
                **capture,
            }
        }
    ).capture
    source = open_source(cfg, (256, 256))
    assert isinstance(source, Imx500Source)
    return source


def take(source: FrameSource, n: int, timeout: float = 30.0) -> list[Frame]:
    """``n`` frames from the source (fewer if ``timeout`` passes first)."""
    stop = threading.Event()
    frames: list[Frame] = []
    deadline = time.monotonic() + timeout
    for frame in source.frames(stop):
        frames.append(frame)
        if len(frames) >= n or time.monotonic() > deadline:
            break
    return frames


@pytest.fixture(scope="module")
def engine() -> Any:
    e = open_engine(ModelConfig(num_threads=1), ClassifyConfig())
    yield e
    e.close()


def photo_of(frame: Frame) -> Path:
    """The photo the simulated camera showed for ``frame`` (it cycles through them)."""
    return sorted(PHOTOS)[(frame.number - 1) % len(PHOTOS)]


def test_each_frame_classified_as_the_cpu_model_classifies_its_photo(
    imx500_here: AiCamera, engine: Engine
) -> None:
    with source_for(imx500_here) as source:
        frames = take(source, 8)
        status = source.status()
        inference = source.inference_status()
    assert len(frames) == 8
    for frame in frames:
        assert frame.sensor is not None, "a frame of the running network came without a tensor"
        assert frame.sensor.model == imx500_here.network.name
        sensor = engine.classify(engine.sensor_inference(frame.sensor), frame.sensor)
        photo = photo_of(frame)
        cpu = engine.classify(engine.backend.infer(engine.load(photo)))
        # the same scores, through picamera2's parsing and edged's classification
        assert sensor.classification == cpu.classification, photo.name
        assert sensor.classification.top1 is not None
        assert sensor.classification.top1.label == SAMPLE_TOP1[photo.name]
        assert sensor.backend == "imx500"
        assert sensor.ms == pytest.approx(2.4)
    assert status["sensor"] == "running"
    assert status["sensor_dnn_ms"] == pytest.approx(2.4)
    assert status["sensor_dsp_ms"] == pytest.approx(0.6)
    assert inference["backend"] == "imx500" and inference["fallback_reason"] is None
    assert inference["model"] == imx500_here.network.name
    assert imx500_here.loads == 1


def test_softmax_applied_when_the_intrinsics_ask(imx500_here: AiCamera, engine: Engine) -> None:
    imx500_sim.write_rpk(imx500_here.network, labels=None, softmax=True)
    with source_for(imx500_here) as source:
        [frame] = take(source, 1)
    assert frame.sensor is not None and frame.sensor.labels is None  # the CPU model's labels
    with np.load(imx500_here.scores) as data:
        q = data[photo_of(frame).name].astype(np.float32)
        probs = (q - np.float32(data["_zero_point"])) * np.float32(data["_scale"])
    np.testing.assert_allclose(frame.sensor.scores, softmax(probs), rtol=1e-5)
    top = engine.classify(engine.sensor_inference(frame.sensor), frame.sensor).classification.top1
    assert top is not None and top.label == SAMPLE_TOP1[photo_of(frame).name]


def test_sensor_frames_leave_their_pixels_in_the_buffer_until_asked(
    imx500_here: AiCamera,
) -> None:
    """With a pixel demand set, a frame the sensor classified comes without its pixels (no
    copy of the ISP's frame) until someone asks; from then on each frame has them, the same
    pixels as a source that copies every frame gives for the same photo."""
    n = len(PHOTOS)
    frames: list[Frame] = []
    with source_for(imx500_here) as source:
        source.demand = demand = PixelDemand()
        stop = threading.Event()
        for frame in source.frames(stop):
            frames.append(frame)
            if len(frames) == n:
                demand.ask(600.0)  # a viewer comes
            elif len(frames) == 2 * n:
                source.demand = None  # every frame copied, as without a demand
            elif len(frames) == 3 * n:
                break
    assert all(f.sensor is not None for f in frames)
    assert all(f.image is None for f in frames[:n])
    copied = {photo_of(f): f.image for f in frames[n:]}
    assert set(copied) == set(PHOTOS)
    for f in frames[2 * n :]:
        asked = copied[photo_of(f)]
        assert asked is not None and f.image is not None and asked.shape == (256, 256, 3)
        np.testing.assert_array_equal(asked, f.image)


def test_tensor_info_parsed_again_only_when_it_changes(imx500_here: AiCamera) -> None:
    """The output shapes picamera2 parses from a frame's tensor info are kept while the info
    (but its frame counter) stays the same; another info is parsed again, and one with two
    output tensors is refused as before."""
    from picamera2 import Picamera2

    camera_id = str(Picamera2.global_camera_info()[0]["Id"])
    net = SensorNetwork(inspect_network(imx500_here.network), camera_id=camera_id)
    try:

        def metadata(scores: list[float], info: tuple[int, ...]) -> dict[str, Any]:
            return {
                "CnnOutputTensor": tuple(scores),
                "CnnOutputTensorInfo": info,
                "CnnKpiInfo": (2400, 600),
            }

        rng = np.random.default_rng(1)
        for frame in (1, 2, 3):
            scores = rng.random(1000).tolist()
            got = net.read(metadata(scores, imx500_sim._tensor_info("net", 1000, frame)))
            assert got is not None and got.dnn_ms == pytest.approx(2.4)
            np.testing.assert_array_equal(got.scores, np.asarray(scores, np.float32))
        got = net.read(metadata([0.5] * 10, imx500_sim._tensor_info("other", 10, 4)))
        assert got is not None and got.scores.shape == (10,)
        two = bytearray(imx500_sim._tensor_info("two", 10, 5))
        two[64] = 2  # num_tensors
        with pytest.raises(NetworkError, match="has 2 output tensors; a classifier has one"):
            net.read(metadata([0.5] * 20, tuple(two)))
        assert net.read({"CnnKpiInfo": (2400, 600)}) is None  # a frame without a tensor
    finally:
        net.close()


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("wrong camera", "is a 'imx708', not an IMX500"),
        ("missing file", "does not exist"),
        ("firmware refused", "Input/output error"),
        ("labels count", "has 5 labels but imx500_network_efficientnet_lite0.rpk outputs 1000"),
    ],
)
def test_network_that_will_not_load_leaves_frames_to_the_cpu(
    imx500_here: AiCamera, monkeypatch: pytest.MonkeyPatch, case: str, reason: str
) -> None:
    capture: dict[str, Any] = {"retry_min_s": 60.0}
    if case == "wrong camera":
        monkeypatch.setenv("FAKE_IMX500_CAMERAS", "imx708")
    elif case == "missing file":
        capture["network"] = str(imx500_here.network.with_name("gone.rpk"))
    elif case == "labels count":
        labels = imx500_here.root / "labels.txt"
        labels.write_text("a\nb\nc\nd\ne\n")
        capture["labels"] = str(labels)
    else:
        monkeypatch.setenv("FAKE_IMX500_FAIL_LOADS", "5")
    with source_for(imx500_here, **capture) as source:
        source.demand = PixelDemand()  # nobody asks for pixels: the CPU needs them anyway
        frames = take(source, 3)
        inference = source.inference_status()
        assert source.state == "fallback"
    assert len(frames) == 3 and all(f.sensor is None for f in frames)
    assert all(f.image is not None and f.image.shape == (256, 256, 3) for f in frames)
    assert reason in str(inference["fallback_reason"])
    assert "backend" not in inference  # the engine's (the CPU) speaks
    assert inference["fallbacks"] == 1


def test_refused_firmware_retried_until_the_sensor_runs(
    imx500_here: AiCamera, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_IMX500_FAIL_LOADS", "1")
    with source_for(imx500_here, retry_min_s=0.5) as source:
        frames = take(source, 40)
        assert source.state == "running"
    kinds = [f.sensor is not None for f in frames]
    assert not kinds[0] and kinds[-1], kinds
    first_sensor = kinds.index(True)
    assert all(kinds[first_sensor:]), kinds  # once running, every frame has its tensor
    assert imx500_here.loads == 2


def test_camera_that_stops_sending_tensors_is_a_fault(
    imx500_here: AiCamera, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_IMX500_TENSORS_FOR", "5")
    with source_for(imx500_here, tensor_timeout_s=0.5, retry_min_s=0.5) as source:
        frames = take(source, 45)
        fallbacks = source.fallbacks
    kinds = "".join("S" if f.sensor is not None else "c" for f in frames)
    # five frames on the sensor, the CPU while it is away, the sensor again after a retry
    assert kinds.startswith("SSSSSc"), kinds
    assert "cS" in kinds, kinds
    assert fallbacks >= 1
    assert imx500_here.loads >= 2


def test_upload_longer_than_its_bound_falls_back(
    imx500_here: AiCamera, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_IMX500_UPLOAD_S", "4")
    with source_for(imx500_here, upload_timeout_s=1.0, retry_min_s=60.0) as source:
        assert source.progressing()  # loading, within the bound
        [first] = take(source, 1)  # the bound passes; the camera comes back without it
        assert first.sensor is None
        assert source.sensor_status().startswith("fallback: the network upload took longer")
        assert "took longer than 1 s" in str(source.reason)
        assert not source.progressing()
        assert source.inference_status()["fallback_reason"] == source.reason


def test_check_config_names_a_missing_network_and_reads_a_present_one(tmp_path: Path) -> None:
    missing = tmp_path / "imx500_network_gone.rpk"
    cfg = write_config(
        tmp_path / "edged.toml", f'[capture]\ntype = "imx500"\nnetwork = "{missing}"\n'
    )
    bad = run_edged("check-config", "-c", str(cfg))
    assert bad.returncode == 2
    assert "capture.network: no such file" in bad.stderr and str(missing) in bad.stderr
    detector = imx500_sim.write_rpk(tmp_path / "ssd.rpk", task="object detection")
    cfg.write_text(f'[capture]\ntype = "imx500"\nnetwork = "{detector}"\n')
    bad = run_edged("check-config", "-c", str(cfg))
    assert bad.returncode == 2 and "edged needs a classifier" in bad.stderr
    good = imx500_sim.write_rpk(tmp_path / "cls.rpk", labels=["a", "b"])
    cfg.write_text(f'[capture]\ntype = "imx500"\nnetwork = "{good}"\n')
    ok = run_edged("check-config", "-c", str(cfg))
    assert ok.returncode == 0, ok.stderr


def test_models_lists_the_installed_networks(tmp_path: Path) -> None:
    imx500_sim.write_rpk(tmp_path / "imx500_network_a.rpk", width=260, height=260, labels=["x"])
    imx500_sim.write_rpk(tmp_path / "imx500_network_ssd.rpk", task="object detection")
    cfg = write_config(tmp_path / "edged.toml", f'[model]\nmodels_dir = "{tmp_path}"\n')
    out = run_edged("models", "-c", str(cfg), "--json")
    assert out.returncode == 0, out.stderr
    rows = {r["file"]: r for r in json.loads(out.stdout)["networks"]}
    assert rows["imx500_network_a.rpk"]["input"] == "260x260"
    assert rows["imx500_network_a.rpk"]["labels"] == 1
    assert "edged needs a classifier" in rows["imx500_network_ssd.rpk"]["error"]


def test_upload_progress_reported_while_loading(
    imx500_here: AiCamera, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_IMX500_UPLOAD_S", "3")
    with source_for(imx500_here) as source:
        stop = threading.Event()
        statuses: list[str] = []
        percents: list[float] = []

        def watch() -> None:
            while not stop.is_set():
                st = source.status()
                statuses.append(st["sensor"])
                if st["sensor_upload_percent"] is not None:
                    percents.append(st["sensor_upload_percent"])
                stop.wait(0.1)

        t = threading.Thread(target=watch)
        t.start()
        try:
            assert source.progressing()
            [frame] = take(source, 1)
            assert source.sensor_status() == "running"
        finally:
            stop.set()
            t.join()
    assert frame.sensor is not None
    loading = [s for s in statuses if s.startswith("loading network ")]
    assert len({*loading}) >= 3, statuses  # the percentage moves
    assert percents == sorted(percents) and 0 < percents[-1] <= 100, percents


def test_one_region_is_the_sensors_roi(imx500_here: AiCamera) -> None:
    region = {"name": "door", "x": 0.5, "y": 0.0, "width": 0.5, "height": 1.0}
    with source_for(imx500_here, regions=[region]) as source:
        frames = take(source, 2)
        assert source.cropped_region == "door"
    assert imx500_here.roi == (2028, 0, 2028, 3040)
    assert all(f.sensor is not None for f in frames)


def test_several_regions_are_cropped_on_the_cpu(imx500_here: AiCamera) -> None:
    regions = [
        {"name": "left", "x": 0.0, "y": 0.0, "width": 0.5, "height": 1.0},
        {"name": "right", "x": 0.5, "y": 0.0, "width": 0.5, "height": 1.0},
    ]
    with source_for(imx500_here, regions=regions) as source:
        frames = take(source, 2)
        assert source.cropped_region is None
        assert "2 regions" in str(source.reason)
    assert all(f.sensor is None for f in frames)
    assert imx500_here.loads == 0  # the network is never handed to the sensor


# -- the daemon ------------------------------------------------------------------------------
def aicamera_config(
    tmp_path: Path, cam: AiCamera, broker: str, capture: str = "", extra: str = ""
) -> Path:
    return write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "aicam"
[capture]
type = "imx500"
network = "{cam.network}"
fps = 30
retry_min_s = 1.0
{capture}
[publish]
policy = "every_frame"
[mqtt]
url = "{broker}"
[health]
interval_s = 0.5
{extra}
""",
    )


def healths(sub: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(p) for _, p, _ in sub.on("health")]


def test_daemon_publishes_the_sensors_classifications(
    tmp_path: Path, mosquitto: Mosquitto, aicamera: AiCamera
) -> None:
    cfg = aicamera_config(tmp_path, aicamera, mosquitto.url)
    sub = Subscriber(mosquitto.port)
    try:
        done = run_edged("run", "-c", str(cfg), "--frames", "12", env=aicamera.env(), timeout=90)
        assert done.returncode == 0, done.stderr
        assert sub.wait(lambda: len(sub.events()) >= 12)
        assert sub.wait(lambda: bool(healths(sub)))
    finally:
        sub.close()
    events = sub.events()
    assert {e["backend"] for e in events} == {"imx500"}
    assert {e["model"] for e in events} == {aicamera.network.name}
    for e in events:
        photo = PHOTOS[(e["frame"] - 1) % len(PHOTOS)].name
        assert e["label"] == SAMPLE_TOP1[photo], (e["frame"], photo)
    assert {e["label"] for e in events} == set(SAMPLE_TOP1.values())
    last = healths(sub)[-1]
    assert last["backend"] == "imx500" and last["fallback_reason"] is None
    assert last["sensor"] == "running"
    assert last["sensor_dnn_ms"] == pytest.approx(2.4)
    assert last["sensor_dsp_ms"] == pytest.approx(0.6)
    assert last["model"] == aicamera.network.name


def test_snapshot_and_status_page_get_a_current_frame_from_the_sensor_way(
    tmp_path: Path, mosquitto: Mosquitto, aicamera: AiCamera
) -> None:
    """The sensor classifies and nothing else needs the frames' pixels (no collect, no
    skip_static), so none is copied until asked: a snapshot and the status page still get
    a frame, the current one, as the sensor's classifications go on."""
    port = free_port()
    cfg = aicamera_config(
        tmp_path, aicamera, mosquitto.url, extra=f'[web]\nlisten = "127.0.0.1:{port}"'
    )
    # commands answered on the response topic the operator names (MQTT 5)
    cfg.write_text(cfg.read_text().replace("[mqtt]\n", '[mqtt]\nprotocol = "5"\n'))
    cfg.write_text(cfg.read_text().replace('id = "aicam"', 'id = "cam-1"'))
    op = Operator(mosquitto.port)
    log = tmp_path / "edged.log"
    proc = start_edged("run", "-c", str(cfg), log=log, env=aicamera.env())
    try:
        assert wait_until(lambda: len(op.events()) >= 30, 60), log.read_text()
        reply = op.request({"cmd": "snapshot"})
        assert reply["ok"], reply
        assert wait_until(lambda: bool(op.on("snapshot")), 10)
        jpeg = op.on("snapshot")[-1].payload
        with Image.open(io.BytesIO(jpeg)) as img:
            assert img.size == (256, 256)  # the capture size (the model input and its crop)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/frame.jpg", timeout=10) as r:
            assert r.status == 200 and r.read()[:3] == b"\xff\xd8\xff"
        seen = len(op.events())
        assert wait_until(lambda: len(op.events()) >= seen + 10, 30)
    finally:
        assert stop_process(proc) == 0, log.read_text()
        op.close()
    assert {e["backend"] for e in op.events()} == {"imx500"}


def test_daemon_falls_back_to_the_cpu_twin_then_returns_to_the_sensor(
    tmp_path: Path, mosquitto: Mosquitto, aicamera: AiCamera
) -> None:
    cfg = aicamera_config(tmp_path, aicamera, mosquitto.url)
    sub = Subscriber(mosquitto.port)
    log = tmp_path / "edged.log"
    proc = start_edged("run", "-c", str(cfg), log=log, env=aicamera.env(fail_loads="1"))
    try:
        assert sub.wait(lambda: any(e["backend"] == "imx500" for e in sub.events()), 60), (
            log.read_text()
        )
        assert sub.wait(lambda: healths(sub)[-1]["backend"] == "imx500", 10)
    finally:
        assert stop_process(proc) == 0, log.read_text()
        sub.close()
    events = sub.events()
    backends = [e["backend"] for e in events]
    first = backends.index("imx500")
    assert first > 0 and set(backends[:first]) == {"cpu"}, backends
    assert {e["model"] for e in events[:first]} == {"efficientnet_lite0_int8.tflite"}
    assert set(backends[first:]) == {"imx500"}
    fallback = [h for h in healths(sub) if h["fallback_reason"]]
    assert fallback and fallback[0]["backend"] == "cpu", healths(sub)
    assert "Input/output error" in fallback[0]["fallback_reason"]
    assert fallback[0]["sensor"].startswith("fallback: ")
    assert healths(sub)[-1]["fallback_reason"] is None
    assert aicamera.loads == 2


def _notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    return sock


def test_slow_upload_shows_in_health_and_keeps_the_watchdog_fed(
    tmp_path: Path, mosquitto: Mosquitto, aicamera: AiCamera
) -> None:
    """An 8 s upload against a 1 s watchdog and health.stall_s = 1: READY comes during the
    upload, saying so, WATCHDOG=1 keeps coming, health shows the percentage climbing."""
    upload_s = 8.0
    cfg = aicamera_config(tmp_path, aicamera, mosquitto.url, extra="stall_s = 1.0")
    sock = _notify_socket(tmp_path / "notify.sock")
    env = {
        **aicamera.env(upload_s=str(upload_s)),
        "NOTIFY_SOCKET": str(tmp_path / "notify.sock"),
        "WATCHDOG_USEC": "1000000",
    }
    sub = Subscriber(mosquitto.port)
    log = tmp_path / "edged.log"
    proc = start_edged("run", "-c", str(cfg), log=log, env=env)
    messages: list[tuple[float, str]] = []
    try:
        end = time.monotonic() + upload_s + 20
        while time.monotonic() < end and not sub.events():
            try:
                messages.append((time.monotonic(), sock.recv(4096).decode()))
            except TimeoutError:
                continue
        assert sub.events(), log.read_text()
        first_event = time.monotonic()
    finally:
        assert stop_process(proc) == 0, log.read_text()
        sub.close()
        sock.close()
    ready = [(t, m) for t, m in messages if "READY=1" in m]
    assert ready and "sensor=loading network" in ready[0][1], messages[:5]
    pings = [t for t, m in messages if "WATCHDOG=1" in m]
    # fed from READY to the first event: no gap a 1 s watchdog would notice
    assert pings and pings[0] - ready[0][0] < 1.0
    gaps = np.diff([ready[0][0], *pings, first_event])
    assert gaps.max() < 1.0, gaps
    assert first_event - ready[0][0] > upload_s * 0.6  # the upload really was under way
    loading = [h for h in healths(sub) if (h.get("sensor") or "").startswith("loading network")]
    percents = [h["sensor_upload_percent"] for h in loading]
    assert len(set(percents)) >= 3 and percents == sorted(percents), percents
    assert all(h["state"] == "starting" for h in loading)
    assert os.path.exists(aicamera.root / "loads")
