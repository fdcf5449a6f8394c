"""Start and stop tests/servers/rtsp_server.py (GStreamer's RTSP server) from the tests.

It needs the system python3 with python3-gi and gir1.2-gst-rtsp-server-1.0 (the project's
venv has no gi); tests that use it skip, naming the packages, when they are missing.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.support import free_port

SCRIPT = Path(__file__).with_name("rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"
PACKAGES = "python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly"


def rtsp_available() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); "
            "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
            "assert Gst.ElementFactory.find('x264enc')",
        ],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def require_rtsp() -> None:
    if not rtsp_available():
        pytest.skip(f"the RTSP test server needs the Debian packages {PACKAGES}")


class RtspServer:
    def __init__(
        self,
        images: Sequence[Path],
        *,
        workdir: Path,
        port: int | None = None,
        fps: int = 10,
        size: str = "384x256",
        frames_per_image: int = 1,
        user: str = "",
        password: str = "",
    ) -> None:
        self.images = list(images)
        self.port = port or free_port()
        self.fps = fps
        self.size = size
        self.frames_per_image = frames_per_image
        self.user = user
        self.password_file = workdir / f"rtsp-{self.port}.pw"
        if user:
            self.password_file.write_text(password)
        self.log = workdir / f"rtsp-{self.port}.log"
        self.proc: subprocess.Popen[str] | None = None
        self.ready_at: float | None = None  # monotonic time it last became ready

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def start(self) -> RtspServer:
        cmd = [
            SYSTEM_PYTHON,
            str(SCRIPT),
            "--port",
            str(self.port),
            "--fps",
            str(self.fps),
            "--size",
            self.size,
            "--frames-per-image",
            str(self.frames_per_image),
        ]
        if self.user:
            cmd += ["--user", self.user, "--password-file", str(self.password_file)]
        self.proc = subprocess.Popen(
            [*cmd, *map(str, self.images)],
            stdout=subprocess.PIPE,
            stderr=self.log.open("a"),
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {self.log.read_text()[-2000:]}")
        self.ready_at = time.monotonic()
        return self

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing its sessions."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None
