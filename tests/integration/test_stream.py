"""Network cameras end to end: a real RTSP server (GStreamer) and a real HTTP MJPEG server
stream the bundled photos; the daemon (bundled model) classifies them and a subscriber on a
real mosquitto receives the events.  Outages, bad servers and secrets are checked here too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers.mjpeg import MjpegServer, jpeg_frames
from tests.servers.rtsp import RtspServer, require_rtsp
from tests.support import (
    Mosquitto,
    Subscriber,
    free_port,
    run_edged,
    start_edged,
    stop_process,
    write_config,
)

SAMPLES = Path(__file__).resolve().parents[2] / "edged" / "samples"
COFFEE = SAMPLES / "coffee.jpg"
CAT = SAMPLES / "chelsea_cat.jpg"
CAT_LABELS = {"tiger cat", "tabby", "Egyptian cat"}
PASSWORD = "Sup3r-s3cret pa$$:word"  # with characters that need quoting in a URL


def stream_config(
    tmp_path: Path, url: str, broker: str, capture: str = "", extra: str = ""
) -> Path:
    return write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "ipcam"
[capture]
type = "stream"
url = "{url}"
reconnect_min_s = 0.25
reconnect_max_s = 2.0
read_timeout_s = 3.0
connect_timeout_s = 3.0
{capture}
[mqtt]
url = "{broker}"
[health]
interval_s = 0.5
{extra}
""",
    )


def labels(sub: Subscriber) -> list[str]:
    return [e["label"] for e in sub.events()]


def health_states(sub: Subscriber) -> list[dict[str, Any]]:
    return [json.loads(p) for _, p, _ in sub.on("health")]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text
        assert "s3cret" not in text  # nor any quoted form of it


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "camera_password"
    path.write_text(PASSWORD + "\n")
    return path


def test_rtsp_stream_with_credentials_classified(
    tmp_path: Path, mosquitto: Mosquitto, password_file: Path
) -> None:
    require_rtsp()
    server = RtspServer([COFFEE], workdir=tmp_path, user="viewer", password=PASSWORD).start()
    sub = Subscriber(mosquitto.port)
    log = tmp_path / "edged.log"
    cfg = stream_config(
        tmp_path,
        server.url,
        mosquitto.url,
        f'username = "viewer"\npassword_file = "{password_file}"',
    )
    proc = start_edged("--log-level", "DEBUG", "run", "-c", str(cfg), log=log)
    try:
        assert sub.wait(lambda: labels(sub).count("espresso") >= 5, 60), log.read_text()
        assert sub.wait(
            lambda: any(h.get("source_state") == "streaming" for h in health_states(sub)), 10
        )
        health = [h for h in health_states(sub) if h.get("source_state") == "streaming"][-1]
        assert health["source_fps"] > 0 and health["source_reconnects"] == 0
        checked = run_edged("check-config", "-c", str(cfg))
        assert checked.returncode == 0, checked.stderr
    finally:
        assert stop_process(proc) == 0
        server.stop()
        sub.close()
    assert set(labels(sub)) == {"espresso"}
    assert_no_secret(log.read_text(), checked.stdout + checked.stderr)
    assert_no_secret(*(p.decode() for _, p, _ in sub.messages))


def test_mjpeg_stream_with_basic_auth_classified(
    tmp_path: Path, mosquitto: Mosquitto, password_file: Path
) -> None:
    frames = jpeg_frames([CAT], (450, 300))
    with MjpegServer(frames, fps=10, username="viewer", password=PASSWORD) as server:
        sub = Subscriber(mosquitto.port)
        log = tmp_path / "edged.log"
        cfg = stream_config(
            tmp_path,
            f"{server.url}/stream",
            mosquitto.url,
            f'username = "viewer"\npassword_file = "{password_file}"',
        )
        proc = start_edged("--log-level", "DEBUG", "run", "-c", str(cfg), log=log)
        try:
            assert sub.wait(lambda: len(labels(sub)) >= 5, 60), log.read_text()
        finally:
            assert stop_process(proc) == 0
            sub.close()
    assert set(labels(sub)) <= CAT_LABELS, labels(sub)
    # basic auth, sent from the first request on; the password never went into the URL
    assert all(auth.startswith("Basic ") for _, auth in server.requests)
    assert_no_secret(log.read_text(), *(p.decode() for _, p, _ in sub.messages))


def test_rtsp_server_killed_and_back_after_5s(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """Events resume within reconnect_max_s + 2 s of the server's return; health goes
    streaming -> reconnecting -> streaming with source_reconnects = 1; same process."""
    require_rtsp()
    reconnect_max_s = 2.0
    server = RtspServer([COFFEE], workdir=tmp_path).start()
    sub = Subscriber(mosquitto.port)
    log = tmp_path / "edged.log"
    cfg = stream_config(tmp_path, server.url, mosquitto.url)
    proc = start_edged("run", "-c", str(cfg), log=log)
    try:
        assert sub.wait(lambda: len(labels(sub)) >= 3, 60), log.read_text()
        assert sub.wait(lambda: (sub.last_health() or {}).get("source_state") == "streaming")
        pid = health_states(sub)[-1]["pid"]
        server.kill()
        killed_at = time.monotonic()
        assert sub.wait(
            lambda: any(h.get("source_state") == "reconnecting" for h in health_states(sub)), 15
        ), log.read_text()
        time.sleep(max(0.0, 5.0 - (time.monotonic() - killed_at)))
        before = len(sub.events())
        server.start()
        back_at = server.ready_at
        assert back_at is not None
        assert sub.wait(lambda: len(sub.events()) > before, reconnect_max_s + 10), log.read_text()
        resumed_at = next(t for t, _ in sub.timed_events()[before:])
        assert sub.wait(
            lambda: (h := sub.last_health()) is not None and h.get("source_state") == "streaming"
        )
        assert proc.poll() is None
    finally:
        assert stop_process(proc) == 0
        server.stop()
        sub.close()
    resume_s = resumed_at - back_at
    print(f"events resumed {resume_s:.2f} s after the RTSP server returned")
    assert resume_s <= reconnect_max_s + 2.0, resume_s
    states = [h.get("source_state") for h in health_states(sub)]
    first_reconnecting = states.index("reconnecting")
    assert "streaming" in states[:first_reconnecting]
    assert "streaming" in states[first_reconnecting:]
    final = health_states(sub)[-1]
    assert final["source_reconnects"] == 1
    assert final["pid"] == pid  # the service was not restarted
    assert "lost" in log.read_text() and "reconnecting" in log.read_text()


def _notify_socket(tmp_path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.settimeout(0.2)
    return sock


def test_watchdog_fed_while_reconnecting_until_stall_s(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The systemd side of an outage, through the real notify protocol: WATCHDOG=1 keeps
    coming while the stream reconnects for less than capture.stall_s, and stops after it
    (then systemd's WatchdogSec= restarts the service)."""
    frames = jpeg_frames([COFFEE], (384, 256))
    server = MjpegServer(frames, fps=10).start()
    port = server.port
    sock = _notify_socket(tmp_path)
    stall_s = 4.0
    cfg = stream_config(
        tmp_path,
        f"{server.url}/stream",
        mosquitto.url,
        f"stall_s = {stall_s}",
        extra="stall_s = 1.0",
    )
    log = tmp_path / "edged.log"
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
    proc = start_edged("run", "-c", str(cfg), log=log, env=env)
    pings: list[float] = []

    def drain(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = sock.recv(4096).decode()
            except TimeoutError:
                continue
            if "WATCHDOG=1" in data:
                pings.append(time.monotonic())

    try:
        drain(6.0)
        assert pings, log.read_text()
        server.stop()
        lost_at = time.monotonic()
        drain(stall_s + 4.0)
        during = [t - lost_at for t in pings if t > lost_at]
        # fed for about stall_s after the last frame, then not at all
        assert during and max(during) >= stall_s - 1.5, during
        assert max(during) <= stall_s + 1.5, during
        assert proc.poll() is None
        server = MjpegServer(frames, fps=10, port=port).start()
        back_at = time.monotonic()
        drain(8.0)
        assert any(t > back_at for t in pings), "watchdog pings did not resume"
    finally:
        assert stop_process(proc) == 0
        server.stop()
        sock.close()


@pytest.mark.parametrize(
    ("case", "state", "text"),
    [
        ("unreachable", "reconnecting", "Connection refused"),
        ("unauthorized", "failed", "refused the credentials"),
        ("html", "failed", "does not serve a video stream"),
    ],
)
def test_bad_server_is_a_clear_error_and_no_crash(
    tmp_path: Path, mosquitto: Mosquitto, password_file: Path, case: str, state: str, text: str
) -> None:
    frames = jpeg_frames([COFFEE], (384, 256))
    server = MjpegServer(frames, username="viewer", password="another password").start()
    url = {
        "unreachable": f"rtsp://127.0.0.1:{free_port()}/cam",
        "unauthorized": f"{server.url}/stream",
        "html": f"{server.url}/page",
    }[case]
    if case == "html":
        server.stop()
        server = MjpegServer(frames, port=server.port).start()
    sub = Subscriber(mosquitto.port)
    log = tmp_path / "edged.log"
    cfg = stream_config(
        tmp_path, url, mosquitto.url, f'username = "viewer"\npassword_file = "{password_file}"'
    )
    proc = start_edged("run", "-c", str(cfg), log=log)
    try:
        assert sub.wait(
            lambda: (h := sub.last_health()) is not None and h.get("source_state") == state, 30
        ), log.read_text()
        time.sleep(1.5)  # it keeps running, and retrying
        assert proc.poll() is None
        health = sub.last_health()
        assert health is not None and text in str(health["source_error"]), health
    finally:
        assert stop_process(proc) == 0
        server.stop()
        sub.close()
    out = log.read_text()
    assert text in out and "Traceback" not in out
    assert not sub.events()
    assert_no_secret(out, *(p.decode() for _, p, _ in sub.messages))


def test_resolution_change_mid_stream(tmp_path: Path, mosquitto: Mosquitto) -> None:
    frames = jpeg_frames([COFFEE] * 5, (384, 256)) + jpeg_frames([COFFEE] * 5, (768, 512))
    with MjpegServer(frames, fps=10) as server:
        sub = Subscriber(mosquitto.port)
        log = tmp_path / "edged.log"
        cfg = stream_config(tmp_path, f"{server.url}/stream", mosquitto.url)
        proc = start_edged("run", "-c", str(cfg), log=log)
        try:
            assert sub.wait(lambda: "resolution changed" in log.read_text(), 60), log.read_text()
            count = len(labels(sub))
            assert sub.wait(lambda: len(labels(sub)) >= count + 5, 30)
        finally:
            assert stop_process(proc) == 0
            sub.close()
    assert set(labels(sub)) == {"espresso"}
    assert "from 384x256 to 768x512" in log.read_text()


def _h264(tmp_path: Path, image: Path, frames: int) -> bytes:
    out = tmp_path / "clip.h264"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-loop", "1", "-i", str(image),
            "-frames:v", str(frames), "-r", "10", "-vf", "scale=384:256",
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-bf", "0",
            "-pix_fmt", "yuv420p", "-f", "h264", str(out),
        ],
        check=True,
    )  # fmt: skip
    return out.read_bytes()


def test_corrupt_h264_packets_are_skipped(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """An H.264 stream over HTTP with garbage written over slices in its middle: frames
    after the damage are still classified, and the daemon keeps running."""
    if os.system("command -v ffmpeg >/dev/null") != 0:
        pytest.skip("needs ffmpeg (Debian package ffmpeg) to encode the H.264 clip")
    data = bytearray(_h264(tmp_path, COFFEE, 200))
    # damage the slices of a stretch of frames (not the first parameter sets)
    start = len(data) // 3
    for offset in range(start, start + len(data) // 6, 997):
        data[offset : offset + 64] = os.urandom(64)
    with MjpegServer([], raw=bytes(data)) as server:
        sub = Subscriber(mosquitto.port)
        log = tmp_path / "edged.log"
        cfg = stream_config(tmp_path, f"{server.url}/raw", mosquitto.url)
        proc = start_edged("run", "-c", str(cfg), log=log)
        try:
            assert sub.wait(lambda: len(labels(sub)) >= 40, 90), log.read_text()
            # health comes every 0.5 s; the first may still be on its way
            assert sub.wait(lambda: (sub.last_health() or {}).get("source_corrupt", 0) > 0)
            assert proc.poll() is None
        finally:
            stop_process(proc)
            sub.close()
    assert "Traceback" not in log.read_text()
    assert "corrupt frame skipped" in log.read_text()
    assert labels(sub).count("espresso") >= 30


def test_check_config_redacts_credentials_in_url(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "edged.toml",
        f'[capture]\ntype = "stream"\nurl = "rtsp://admin:{PASSWORD}@10.0.0.5:554/live"\n',
    )
    result = run_edged("check-config", "-c", str(cfg))
    assert result.returncode == 2
    assert "credentials do not belong in the URL" in result.stderr
    assert "rtsp://***@10.0.0.5:554/live" in result.stderr
    assert_no_secret(result.stdout + result.stderr)


class HungCamera:
    """A camera that accepts a connection and then goes quiet: it never answers the
    request (``frames=0``), or it answers and sends ``frames`` MJPEG parts, then nothing,
    keeping the connection open."""

    def __init__(self, frames: int) -> None:
        self.jpeg = jpeg_frames([COFFEE], (384, 256))[0]
        self.frames = frames
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.requested = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        self.conns.append(conn)
        request = b""
        while b"\r\n\r\n" not in request:
            request += conn.recv(4096)
        self.requested.set()
        if self.frames:
            conn.sendall(
                b"HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=hung\r\n\r\n"
            )
            for _ in range(self.frames):
                conn.sendall(
                    b"--hung\r\nContent-Type: image/jpeg\r\n"
                    + f"Content-Length: {len(self.jpeg)}\r\n\r\n".encode()
                    + self.jpeg
                    + b"\r\n"
                )

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.listener.close()


@pytest.mark.parametrize("frames", [0, 5], ids=["no-answer", "stalled-mid-stream"])
def test_stop_returns_promptly_while_the_camera_is_hung(frames: int) -> None:
    """A read blocked in FFmpeg (the camera accepted the connection and went quiet, read
    timeout 30 s) does not hold up a stop: the reader thread has ended within 1 s."""
    from edged.capture.live import STREAMING
    from edged.capture.stream import StreamSource
    from edged.config import StreamCaptureConfig

    camera = HungCamera(frames)
    cfg = StreamCaptureConfig(
        type="stream",
        url=f"http://127.0.0.1:{camera.port}/stream",
        connect_timeout_s=30,
        read_timeout_s=30,
        reconnect_max_s=5,
        stall_s=60,
    )
    source = StreamSource(cfg, (224, 224))
    try:
        source.start()
        assert camera.requested.wait(10), "FFmpeg did not connect"
        if frames:
            deadline = time.monotonic() + 10
            while source.state != STREAMING and time.monotonic() < deadline:
                time.sleep(0.05)
            assert source.state == STREAMING, source.status()
        time.sleep(1.0)  # blocked in FFmpeg by now: nothing more comes
        thread = source._thread
        assert thread is not None and thread.is_alive()
        started = time.monotonic()
        source.close()
        stop_s = time.monotonic() - started
        assert not thread.is_alive()
    finally:
        source.close()
        camera.close()
    print(f"stop took {stop_s * 1000:.0f} ms with the camera hung")
    assert stop_s < 1.0, stop_s
