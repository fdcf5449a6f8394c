"""USB webcams.  No machine here has a /dev/video device, so the camera is
tests/fakes/v4l2.py: the kernel's V4L2 enumeration ioctls with their real struct layouts,
and PyAV's v4l2 input answered by PyAV itself decoding a real MJPEG or YUYV stream."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edged.app import Daemon
from edged.capture import open_source
from edged.capture.cameras import V4l2Mode, list_cameras, pick_mode, v4l2_modes
from edged.capture.live import LiveSource
from edged.config import parse_config
from tests.fakes.v4l2 import FakeCamera, FakeV4l2
from tests.support import Mosquitto, Subscriber, pixels

SAMPLES = Path(__file__).resolve().parents[2] / "edged" / "samples"
WEBCAM_MODES = {
    "mjpeg": [(1920, 1080), (1280, 720), (640, 480), (320, 240), (160, 120)],
    "yuyv422": [(640, 480), (320, 240)],
}


@pytest.fixture
def v4l2(monkeypatch: pytest.MonkeyPatch) -> FakeV4l2:
    return FakeV4l2(monkeypatch)


@pytest.fixture
def webcam(v4l2: FakeV4l2, tmp_path: Path) -> FakeCamera:
    (tmp_path / "dev").mkdir()
    return v4l2.add(FakeCamera(tmp_path / "dev" / "video0", SAMPLES / "coffee.jpg", WEBCAM_MODES))


def capture_cfg(**capture: object) -> object:
    return parse_config({"capture": {"type": "v4l2", **capture}}).capture


def wait_for(pred: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_modes_listed_like_the_driver_reports_them(webcam: FakeCamera, tmp_path: Path) -> None:
    modes = v4l2_modes(webcam.path)
    assert V4l2Mode("mjpeg", 160, 120, (30.0, 15.0)) == modes[0]
    assert [(m.width, m.height) for m in modes if m.format == "mjpeg"] == [
        (160, 120),
        (320, 240),
        (640, 480),
        (1280, 720),
        (1920, 1080),
    ]
    assert {m.format for m in modes} == {"mjpeg", "yuyv422"}
    by_id = tmp_path / "dev" / "v4l" / "by-id"
    by_id.mkdir(parents=True)
    (by_id / "usb-Fake_Webcam-video-index0").symlink_to(webcam.path)
    (tmp_path / "sys").mkdir()
    [camera] = list_cameras(tmp_path / "dev", tmp_path / "sys")
    assert camera.kind == "v4l2" and camera.path == str(webcam.path)
    assert camera.by_id.endswith("usb-Fake_Webcam-video-index0")
    assert camera.modes == tuple(modes)


def test_not_a_camera_has_no_modes(tmp_path: Path) -> None:
    plain = tmp_path / "video7"
    plain.write_text("")
    assert v4l2_modes(plain) == []  # the real ioctl on a plain file: ENOTTY
    assert v4l2_modes(tmp_path / "missing") == []


def test_pick_mode_smallest_covering() -> None:
    modes = [V4l2Mode("mjpeg", w, h) for w, h in WEBCAM_MODES["mjpeg"]]
    assert pick_mode(modes, "mjpeg", (224, 224)) == V4l2Mode("mjpeg", 320, 240)
    assert pick_mode(modes, "mjpeg", (256, 256)) == V4l2Mode("mjpeg", 640, 480)
    assert pick_mode(modes, "mjpeg", (4000, 3000)) == V4l2Mode("mjpeg", 1920, 1080)
    assert pick_mode(modes, "yuyv422", (224, 224)) is None


@pytest.mark.parametrize(("fmt", "ffmpeg"), [("mjpeg", "mjpeg"), ("yuyv", "yuyv422")])
def test_webcam_asked_for_the_smallest_covering_mode(
    webcam: FakeCamera, fmt: str, ffmpeg: str
) -> None:
    cfg = capture_cfg(device=str(webcam.path), input_format=fmt, fps=15)
    source = open_source(cfg, (224, 224))
    assert isinstance(source, LiveSource)
    import threading

    stop = threading.Event()
    with source:
        frames = source.frames(stop)
        first = next(frames)
        stop.set()
    assert webcam.opened[-1] == {
        "input_format": ffmpeg,
        "video_size": "320x240",
        "framerate": "15",
    }
    # 320x240 is delivered scaled to cover the model input and no more
    assert pixels(first).shape == (224, 299, 3)
    assert pixels(first).dtype.name == "uint8"


def test_explicit_size_and_by_id_name(webcam: FakeCamera, tmp_path: Path) -> None:
    link = tmp_path / "by-id-cam"
    link.symlink_to(webcam.path)
    cfg = capture_cfg(device=str(link), width=640, height=480, fps=30)
    import threading

    with open_source(cfg, (224, 224)) as source:
        next(source.frames(threading.Event()))
    assert webcam.opened[-1]["video_size"] == "640x480"


def test_format_the_camera_lacks_is_a_clear_error(v4l2: FakeV4l2, tmp_path: Path) -> None:
    cam = v4l2.add(
        FakeCamera(tmp_path / "video1", SAMPLES / "coffee.jpg", {"yuyv422": [(640, 480)]})
    )
    source = open_source(capture_cfg(device=str(cam.path), input_format="mjpeg"), (224, 224))
    assert isinstance(source, LiveSource)
    with source:
        source.start()
        assert wait_for(lambda: source.state == "failed")
        assert "does not offer input_format 'mjpeg'" in str(source.error)
        assert "yuyv422" in str(source.error)


def test_unplugged_and_plugged_back(webcam: FakeCamera, v4l2: FakeV4l2) -> None:
    import threading

    source = open_source(capture_cfg(device=str(webcam.path), stall_s=4.0), (224, 224))
    assert isinstance(source, LiveSource)
    stop = threading.Event()
    got: list[int] = []

    def consume() -> None:
        for frame in source.frames(stop):
            got.append(frame.number)

    with source:
        reader = threading.Thread(target=consume)
        reader.start()
        try:
            assert wait_for(lambda: source.state == "streaming" and len(got) > 3)
            v4l2.unplug(webcam)
            assert wait_for(lambda: source.state == "reconnecting")
            assert "unplugged" in str(source.error)
            v4l2.replug(webcam)
            assert wait_for(lambda: source.state == "streaming")
            count = len(got)
            assert wait_for(lambda: len(got) > count + 3)
            assert source.status()["source_reconnects"] == 1
        finally:
            stop.set()
            reader.join(5)


def test_daemon_classifies_a_webcam(
    webcam: FakeCamera, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    cfg = parse_config(
        {
            "device": {"id": "usbcam"},
            "capture": {"type": "v4l2", "device": str(webcam.path)},
            "mqtt": {"url": mosquitto.url},
            "health": {"interval_s": 0.5},
        }
    )
    sub = Subscriber(mosquitto.port)
    try:
        assert Daemon(cfg, max_frames=8).run() == 0
        assert sub.wait(lambda: len(sub.events()) >= 8)
    finally:
        sub.close()
    assert {e["label"] for e in sub.events()} == {"espresso"}
    assert all(e["source"] == str(webcam.path) for e in sub.events())
    health = json.loads(sub.on("health")[-1][1])
    assert health["source_state"] == "streaming"
    # the bundled model center-crops 87.5 %: 224 px wants 256, which 320x240 does not cover
    assert webcam.opened[0]["video_size"] == "640x480"


def test_edged_devices_lists_webcam_modes(
    webcam: FakeCamera,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import edged.capture.cameras as cameras
    from edged.cli import main

    (tmp_path / "sys").mkdir()
    monkeypatch.setenv("COLUMNS", "200")
    real = cameras.list_cameras
    monkeypatch.setattr(cameras, "list_cameras", lambda: real(tmp_path / "dev", tmp_path / "sys"))
    assert main(["devices", "--json"]) == 0
    [camera] = json.loads(capsys.readouterr().out)["cameras"]
    assert camera["path"] == str(webcam.path)
    assert {"format": "mjpeg", "width": 320, "height": 240, "fps": [30.0, 15.0]} in camera["modes"]
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    assert "yuyv422: 320x240 640x480 @ 30/15 fps" in " ".join(out.split())
