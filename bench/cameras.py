#!/usr/bin/env python3
"""Camera figures, each a ratio against a baseline measured in the same run.

``reconnect``: a real RTSP server (GStreamer, tests/servers/rtsp_server.py) and a real HTTP
MJPEG server are killed while edged's stream source reads them and brought back after
``--outage`` seconds; printed: seconds from the server's return to the first new frame
(median of ``--rounds``), as a ratio to reconnect_max_s (the longest backoff) and to the
cold start (source opened to first frame) of the same server.

``static``: the daemon (bundled model, in this process) classifies a still scene, the same
photo repeated at ``--fps``, once with ``capture.skip_static = false`` and once with it
true; printed: the process CPU seconds per second of each, their ratio and the share of
frames skipped, plus the cost of the thumbnail difference per frame.

    python bench/cameras.py reconnect [--rounds 3] [--outage 3]
    python bench/cameras.py static [--seconds 20] [--fps 10]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edged.capture import open_source  # noqa: E402
from edged.capture.live import LiveSource  # noqa: E402
from edged.config import parse_config  # noqa: E402
from tests.servers.mjpeg import MjpegServer, jpeg_frames  # noqa: E402
from tests.servers.rtsp import RtspServer, rtsp_available  # noqa: E402

SAMPLES = ROOT / "edged" / "samples"
PHOTO = SAMPLES / "coffee.jpg"


class Reader:
    """Consumes a stream source in a thread, noting when each frame arrived."""

    def __init__(self, url: str, reconnect_max_s: float) -> None:
        cfg = parse_config(
            {
                "capture": {
                    "type": "stream",
                    "url": url,
                    "reconnect_min_s": 0.25,
                    "reconnect_max_s": reconnect_max_s,
                    "read_timeout_s": 3.0,
                    "connect_timeout_s": 3.0,
                }
            }
        ).capture
        source = open_source(cfg, (256, 256))
        assert isinstance(source, LiveSource)
        self.source = source
        self.arrivals: list[float] = []
        self.stop = threading.Event()
        self.opened_at = time.monotonic()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        for _ in self.source.frames(self.stop):
            self.arrivals.append(time.monotonic())

    def first_after(self, t: float, timeout: float = 30.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            later = [a for a in self.arrivals if a > t]
            if later:
                return later[0]
            time.sleep(0.01)
        raise TimeoutError("no frame")

    def close(self) -> None:
        self.stop.set()
        self.source.close()
        self.thread.join(5)


def outage_rounds(
    name: str, start: object, kill: object, url: str, rounds: int, outage: float, rmax: float
) -> None:
    start()  # type: ignore[operator]
    ready = time.monotonic()
    reader = Reader(url, rmax)
    cold = reader.first_after(0.0) - ready
    resumes = []
    try:
        for _ in range(rounds):
            time.sleep(1.0)
            kill()  # type: ignore[operator]
            time.sleep(outage)
            start()  # type: ignore[operator]
            back = time.monotonic()
            resumes.append(reader.first_after(back) - back)
        reconnects = reader.source.reconnects
    finally:
        reader.close()
        kill()  # type: ignore[operator]
    med = statistics.median(resumes)
    print(
        f"{name}: cold start {cold:.2f} s; after a {outage:g} s outage, first frame "
        f"{med:.2f} s (median of {rounds}: {', '.join(f'{r:.2f}' for r in resumes)}) after "
        f"the server's return = {med / rmax:.2f}x reconnect_max_s ({rmax:g} s)"
        + (f", {med / cold:.2f}x the cold start" if cold >= 0.05 else "")
        + f"; source_reconnects {reconnects}"
    )


def cmd_reconnect(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if rtsp_available():
            server = RtspServer([PHOTO], workdir=Path(tmp))
            outage_rounds(
                "RTSP (GStreamer, H.264 over TCP)",
                server.start,
                server.kill,
                server.url,
                args.rounds,
                args.outage,
                args.reconnect_max_s,
            )
        else:
            print("RTSP: skipped (needs python3-gi and gir1.2-gst-rtsp-server-1.0)")
        frames = jpeg_frames([PHOTO], (384, 256))
        mjpeg = MjpegServer(frames, fps=10)
        mjpeg.start()
        port = mjpeg.port
        holder = [mjpeg]

        def start() -> None:
            if holder[0]._server is None:
                holder[0] = MjpegServer(frames, fps=10, port=port).start()

        outage_rounds(
            "HTTP MJPEG",
            start,
            lambda: holder[0].stop(),
            f"http://127.0.0.1:{port}/stream",
            args.rounds,
            args.outage,
            args.reconnect_max_s,
        )


def cmd_static(args: argparse.Namespace) -> None:
    import numpy as np

    from edged.app import Daemon
    from edged.capture.static import StaticScene
    from tests.support import Mosquitto

    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp)).start()
        try:
            results = {}
            for skip in (False, True):
                cfg = parse_config(
                    {
                        "device": {"id": "bench"},
                        "capture": {
                            "type": "replay",
                            "paths": [str(PHOTO)],
                            "loop": True,
                            "fps": args.fps,
                            "skip_static": skip,
                        },
                        "mqtt": {"url": broker.url},
                        "publish": {"policy": "on_change"},
                        "health": {"interval_s": 60.0},
                    }
                )
                stop = threading.Event()
                daemon = Daemon(cfg, stop=stop)
                timer = threading.Timer(args.seconds, stop.set)
                thread = threading.Thread(target=daemon.run)
                t0 = time.process_time()
                w0 = time.monotonic()
                thread.start()
                timer.start()
                thread.join()
                cpu = time.process_time() - t0
                wall = time.monotonic() - w0
                results[skip] = (cpu / wall, daemon.stats)
        finally:
            broker.stop()
    base, _ = results[False]
    skipping, stats = results[True]
    captured = stats.frames_captured
    static = getattr(stats, "frames_static", 0)
    print(
        f"still scene at {args.fps:g} fps for {args.seconds:g} s: skip_static=false "
        f"{base:.3f} CPU s/s, skip_static=true {skipping:.3f} CPU s/s = "
        f"{skipping / base:.2f}x ({(1 - skipping / base) * 100:.0f} % saved); "
        f"{static}/{captured} frames skipped ({static / max(captured, 1) * 100:.0f} %)"
    )
    frame = np.asarray(np.random.default_rng(0).integers(0, 255, (480, 640, 3)), dtype=np.uint8)
    scene = StaticScene(0.02, 60.0)
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        scene.changed(frame)
    print(f"thumbnail difference: {(time.perf_counter() - t) / n * 1e6:.0f} us per 640x480 frame")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reconnect")
    r.add_argument("--rounds", type=int, default=3)
    r.add_argument("--outage", type=float, default=3.0)
    r.add_argument("--reconnect-max-s", type=float, default=2.0)
    r.set_defaults(func=cmd_reconnect)
    s = sub.add_parser("static")
    s.add_argument("--seconds", type=float, default=20.0)
    s.add_argument("--fps", type=float, default=10.0)
    s.set_defaults(func=cmd_static)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the outages are on purpose
    args.func(args)


if __name__ == "__main__":
    main()
