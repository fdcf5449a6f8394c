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

``many``: several cameras in one daemon, each figure beside its goal (all ratios against a
baseline of the same run): 8 unpaced replay cameras on the fake 2 ms Edge TPU (total
against the fake device's own back-to-back rate, each camera's share of the total, p95
frame age at inference against the device's latency; the same 8 cameras on two models that
share the device, one worker process); 2 cameras of pre-sized frames on
the CPU, and one camera at 2 threads, against the bare 2-thread ``invoke()`` loop and
against the same loops publishing every result with paho; one of 3
cameras (its MJPEG server stopped for ``--outage`` s) against the other two's rates; the
resident memory of 4 cameras against 1.

    python bench/cameras.py reconnect [--rounds 3] [--outage 3]
    python bench/cameras.py static [--seconds 20] [--fps 10]
    python bench/cameras.py many [--seconds 10] [--outage 10] [--cpu-rounds 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

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


# -- many cameras ------------------------------------------------------------------------


class Run:
    """A daemon with ``cameras`` (each a [[cameras]] table) in this process, until closed."""

    def __init__(
        self,
        cameras: list[dict[str, Any]],
        broker_url: str,
        models: dict[str, dict[str, Any]] | None = None,
        **model: Any,
    ) -> None:
        from edged.app import Daemon

        cfg = parse_config(
            {
                "device": {"id": "bench"},
                "cameras": cameras,
                "model": model,
                "models": models or {},
                "mqtt": {"url": broker_url, "qos": 1},
                "health": {"interval_s": 5.0},
            }
        )
        self.daemon = Daemon(cfg)
        self.thread = threading.Thread(target=self.daemon.run, daemon=True)
        self.thread.start()

    def counts(self) -> list[int]:
        return [s.frames_processed for s in self.daemon.camera_stats]

    def wait(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while min(self.counts() or [0]) < n:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the daemon stopped or stalled ({self.counts()})")
            time.sleep(0.05)

    def rates(self, seconds: float) -> list[float]:
        """Frames/s of each camera over ``seconds``."""
        c0, t0 = self.counts(), time.perf_counter()
        time.sleep(seconds)
        c1, t1 = self.counts(), time.perf_counter()
        return [(b - a) / (t1 - t0) for a, b in zip(c0, c1, strict=True)]

    def close(self) -> None:
        self.daemon.stop.set()
        self.thread.join(30)


def _replays(n: int, images: Path, **extra: Any) -> list[dict[str, Any]]:
    return [
        {"name": f"cam{i}", "type": "replay", "paths": [str(images)], "loop": True, **extra}
        for i in range(n)
    ]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_rss(tmp: Path, n: int, images: Path, broker_url: str, seconds: float) -> float:
    """RSS (MB) of ``edged run`` with ``n`` replay cameras at 10 fps, after ``seconds``."""
    import subprocess

    cams = "".join(
        f'[[cameras]]\nname = "cam{i}"\ntype = "replay"\npaths = ["{images}"]\n'
        "loop = true\nfps = 10\n"
        for i in range(n)
    )
    config = tmp / f"rss{n}.toml"
    config.write_text(f'[device]\nid = "rss"\n[mqtt]\nurl = "{broker_url}"\n{cams}')
    proc = subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(seconds)
        if proc.poll() is not None:
            raise RuntimeError(f"edged run with {n} cameras exited with {proc.returncode}")
        return _rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def cmd_many(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    from pipeline import (  # type: ignore[import-not-found]
        _InvokeClock,
        bare_loop,
        parallel_loop,
        presized_frames,
    )

    from tests.fakes.delegate import build_fake_delegate
    from tests.support import Mosquitto

    rows: list[tuple[str, str, str, bool]] = []

    def row(what: str, value: str, goal: str, ok: bool) -> None:
        rows.append((what, value, goal, ok))
        print(f"  {what}: {value}  (goal {goal}) {'ok' if ok else 'MISSED'}", flush=True)

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frames = presized_frames(tmp / "frames")
        fake = build_fake_delegate(tmp / "delegate")
        broker = Mosquitto(tmp).start()
        try:
            parts = set(args.parts.split(","))
            if "tpu" in parts:
                tpu_rows(fake, frames, broker.url, args, row)
            if "cpu" in parts:
                cpu_rows(frames, broker.url, args, row, bare_loop, parallel_loop, _InvokeClock)
            if "outage" in parts:
                outage_rows(frames, broker.url, args, row)
            if "rss" in parts:
                one_mb = process_rss(tmp, 1, frames, broker.url, args.rss_seconds)
                four_mb = process_rss(tmp, 4, frames, broker.url, args.rss_seconds)
                row(
                    "RSS 4 cameras - RSS 1 camera",
                    f"{four_mb:.0f} - {one_mb:.0f} = {four_mb - one_mb:+.1f} MB",
                    "<= 40 MB",
                    four_mb - one_mb <= 40,
                )
        finally:
            broker.stop()
    load_after = os.getloadavg()
    print()
    print(
        f"{len(os.sched_getaffinity(0))} CPUs, load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (1 min)"
    )
    print("| figure | measured | goal | |")
    print("| --- | --- | --- | --- |")
    for what, value, goal, ok in rows:
        print(f"| {what} | {value} | {goal} | {'ok' if ok else 'missed'} |")


Row = Any  # row(what, value, goal, ok)


def tpu_rows(fake: Path, frames: Path, broker_url: str, args: argparse.Namespace, row: Row) -> None:
    """Fake 2 ms Edge TPU, 8 unpaced replay cameras."""
    from pipeline import device_ceiling

    ms = 2
    # the device alone before and after the cameras (this machine's load varies: the mean)
    before = device_ceiling(fake, ms, 2000)
    run = Run(
        _replays(8, frames),
        broker_url,
        backend="edgetpu",
        edgetpu_library=str(fake),
        edgetpu_options={"latency_ms": str(ms)},
    )
    try:
        run.wait(30)
        stage = next(iter(run.daemon.stages.values()))
        stage.ages.clear()
        rates = run.rates(args.seconds)
        ages = sorted(stage.ages)
    finally:
        run.close()
    ceiling = (before + device_ceiling(fake, ms, 2000)) / 2
    total = sum(rates)
    fair = total / len(rates)
    worst = max(abs(r - fair) / fair for r in rates)
    p95 = ages[int(0.95 * (len(ages) - 1))] * 1000 if ages else float("nan")
    p50 = ages[len(ages) // 2] * 1000 if ages else float("nan")
    row(
        "TPU 8 cameras: total / device back to back",
        f"{total:.0f}/{ceiling:.0f} = {total / ceiling:.3f}",
        ">= 0.95",
        total / ceiling >= 0.95,
    )
    row(
        "TPU 8 cameras: worst share against fair",
        f"{worst * 100:+.1f} % ({', '.join(f'{r:.0f}' for r in rates)} fps)",
        "within 10 %",
        worst <= 0.10,
    )
    row(
        "TPU 8 cameras: p95 frame age at inference / latency",
        f"{p95:.1f} ms / {ms} ms = {p95 / ms:.2f} (p50 {p50:.1f} ms)",
        "<= 4",
        p95 / ms <= 4,
    )
    two_models(fake, frames, broker_url, args, row, ms, ceiling)


def two_models(
    fake: Path,
    frames: Path,
    broker_url: str,
    args: argparse.Namespace,
    row: Row,
    ms: int,
    ceiling: float,
) -> None:
    """The same 8 cameras on two models (4 each) that share the one fake device: one
    worker process serves both, against the same device's back-to-back rate."""
    import shutil

    from edged.infer.bundled import default_model_path
    from edged.infer.worker import DEVICES

    second = frames.parent / "second.tflite"
    shutil.copyfile(default_model_path(), second)
    tpu = {
        "backend": "edgetpu",
        "edgetpu_library": str(fake),
        "edgetpu_options": {"latency_ms": str(ms)},
    }
    cameras = _replays(8, frames)
    for i, cam in enumerate(cameras):
        cam["model"] = "a" if i % 2 else "b"
    run = Run(
        cameras,
        broker_url,
        models={"a": tpu, "b": {**tpu, "path": str(second)}},
    )
    try:
        run.wait(30)
        workers = len(DEVICES.processes())
        rates = run.rates(args.seconds)
    finally:
        run.close()
    total = sum(rates)
    per_model = [sum(rates[1::2]), sum(rates[0::2])]
    row(
        "TPU 8 cameras on 2 models, one device: total / device back to back",
        f"{total:.0f}/{ceiling:.0f} = {total / ceiling:.3f} "
        f"(models {per_model[0]:.0f} + {per_model[1]:.0f} fps; {workers} worker process)",
        ">= 0.95, 1 worker",
        total / ceiling >= 0.95 and workers == 1,
    )


def publishing_loops(
    images: Path, broker_url: str, interpreters: int, threads: int, frames: int
) -> float:
    """Frames/s of ``interpreters`` interpreters at ``threads`` threads, each invoked back to
    back by a thread of its own that publishes an event's worth of bytes at QoS 1 after
    every ``invoke()``, through one paho client (its own network thread, ``loop_start()``):
    nothing of edged, but the least any daemon that sends an event per frame does."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from pipeline import parallel_loop

    from edged.wire import broker_address

    broker = broker_address(broker_url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    payload = b"x" * 450  # an event's size
    try:
        return float(
            parallel_loop(
                images,
                interpreters,
                frames,
                threads,
                after=lambda: client.publish("bench/paho/events", payload, qos=1),
            )
        )
    finally:
        client.loop_stop()
        client.disconnect()


def cpu_rows(
    frames: Path,
    broker_url: str,
    args: argparse.Namespace,
    row: Row,
    bare_loop: Any,
    parallel_loop: Any,
    invoke_clock: Any,
) -> None:
    """CPU: bare 2-thread invoke() loop, 2 cameras (auto pool), 1 camera at 2 threads; beside
    them what bounds the 2 cameras: two bare 1-thread loops in parallel (nothing but
    invoke), the same loops each publishing every result with paho at QoS 1 (what any daemon
    that sends an event per frame reaches at most; for 1 camera, the 2-thread loop doing
    so), and the daemon's CPU per frame outside invoke() in the same round.  How fast the
    2-thread loop runs against two 1-thread loops changes from minute to minute on a shared
    machine, so ``--cpu-rounds`` rounds each measure every figure against the bare loops
    run just before and after it; the rows give the median and the range."""
    cpus = len(os.sched_getaffinity(0))
    keys = ("ceiling", "paho", "two", "of_paho", "paho1", "one", "bound", "inside", "outside")
    per: dict[str, list[float]] = {k: [] for k in keys}
    shape = ""
    for r in range(args.cpu_rounds):
        bare0, _ = bare_loop(frames, 2, 600)
        ceiling = parallel_loop(frames, 2, 600)
        with_paho = publishing_loops(frames, broker_url, 2, 1, 600)
        run = Run(_replays(2, frames), broker_url)
        try:
            run.wait(20)
            pool = next(iter(run.daemon.stages.values()))
            shape = f"{len(pool.engines)}x{pool.engine.cfg.num_threads} threads"
            with invoke_clock() as clock:  # 1-thread interpreters: invoke's CPU is its thread's
                c0, n0, i0 = time.process_time(), sum(run.counts()), clock.cpu
                two = sum(run.rates(args.seconds))
                c1, n1, i1 = time.process_time(), sum(run.counts()), clock.cpu
        finally:
            run.close()
        bare1, _ = bare_loop(frames, 2, 600)
        run = Run(_replays(1, frames), broker_url, num_threads=2)
        try:
            run.wait(20)
            one = sum(run.rates(args.seconds))
        finally:
            run.close()
        bare2, _ = bare_loop(frames, 2, 600)
        one_paho = publishing_loops(frames, broker_url, 1, 2, 600)
        inside = (i1 - i0) / max(1, n1 - n0) * 1000
        outside = (c1 - c0) / max(1, n1 - n0) * 1000 - inside
        bare01, bare12 = (bare0 + bare1) / 2, (bare1 + bare2) / 2
        per["ceiling"].append(ceiling / bare01)
        per["paho"].append(with_paho / bare01)
        per["two"].append(two / bare01)
        per["of_paho"].append(two / with_paho)
        per["one"].append(one / bare12)
        per["paho1"].append(one_paho / bare12)
        per["bound"].append(cpus * 1000 / (inside + outside) / bare01)
        per["inside"].append(inside)
        per["outside"].append(outside)
        print(
            f"    round {r + 1}: bare 2-thread {bare0:.0f}, {bare1:.0f}, {bare2:.0f}/s; two "
            f"1-thread loops {ceiling:.0f}/s ({ceiling / bare01:.3f}), publishing with paho "
            f"{with_paho:.0f}/s ({with_paho / bare01:.3f}); 2 cameras ({shape}) "
            f"{two:.0f}/s ({two / bare01:.3f}), CPU {inside:.2f} + {outside:.2f} ms/frame; "
            f"1 camera at 2 threads {one:.0f}/s ({one / bare12:.3f}), the 2-thread loop "
            f"publishing with paho {one_paho:.0f}/s ({one_paho / bare12:.3f})",
            flush=True,
        )

    def spread(key: str) -> str:
        v = per[key]
        return f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"

    n = f"median of {args.cpu_rounds} rounds (range)"
    row(
        f"CPU 2 cameras: ceiling, two bare 1-thread loops in parallel / bare 2-thread invoke, {n}",
        spread("ceiling"),
        "(no goal: what nothing but invoke() reaches)",
        True,
    )
    row(
        "CPU 2 cameras: ceiling with an event per frame, the same two loops each publishing "
        f"every result with paho at QoS 1 / bare 2-thread invoke, {n}",
        spread("paho"),
        "(no goal: what any daemon sending an event per frame reaches at most)",
        True,
    )
    inside, outside = statistics.median(per["inside"]), statistics.median(per["outside"])
    row(
        "CPU 2 cameras: daemon CPU per frame inside + outside invoke(); the rate "
        f"{cpus} CPUs allow at that / bare 2-thread invoke, {n}",
        f"{inside:.2f} + {outside:.2f} ms; {spread('bound')}",
        "(no goal: the bound the CPUs set)",
        True,
    )
    two = statistics.median(per["two"])
    row(
        f"CPU 2 cameras ({shape}) / bare 2-thread invoke, {n}",
        spread("two"),
        ">= 1.10",
        two >= 1.10,
    )
    row(
        f"CPU 2 cameras ({shape}) / that ceiling with an event per frame, {n}",
        spread("of_paho"),
        "(no goal: what edged adds to invoke() and paho)",
        True,
    )
    row(
        "CPU 1 camera at 2 threads: ceiling with an event per frame, the bare 2-thread loop "
        f"publishing every result with paho at QoS 1 / bare 2-thread invoke, {n}",
        spread("paho1"),
        "(no goal: what any daemon sending an event per frame reaches at most)",
        True,
    )
    one = statistics.median(per["one"])
    row(
        f"CPU 1 camera at 2 threads / bare 2-thread invoke, {n}",
        spread("one"),
        ">= 0.85",
        one >= 0.85,
    )


def outage_rows(frames: Path, broker_url: str, args: argparse.Namespace, row: Row) -> None:
    """One camera of 3 killed: its MJPEG server stopped for --outage s."""
    jpegs = jpeg_frames([PHOTO], (384, 256))
    mjpeg = MjpegServer(jpegs, fps=10).start()
    port = mjpeg.port
    cams = [
        *_replays(2, frames, fps=10.0),
        {
            "name": "mjpeg",
            "type": "stream",
            "url": f"http://127.0.0.1:{port}/stream",
            "reconnect_min_s": 0.25,
            "reconnect_max_s": 2.0,
            "read_timeout_s": 2.0,
            "connect_timeout_s": 2.0,
        },
    ]
    run = Run(cams, broker_url)
    try:
        run.wait(20)
        before = run.rates(args.outage)
        mjpeg.stop()
        during = run.rates(args.outage)
        mjpeg = MjpegServer(jpegs, fps=10, port=port).start()
        deadline = time.monotonic() + 30
        mjpeg_source = run.daemon.cameras[2].source
        while getattr(mjpeg_source, "reconnects", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        reconnects = getattr(mjpeg_source, "reconnects", 0)
    finally:
        run.close()
        mjpeg.stop()
    change = max(abs(d - b) / b for b, d in zip(before[:2], during[:2], strict=True))
    row(
        f"3 cameras, one stopped {args.outage:g} s: others' rate change",
        f"{change * 100:.1f} % ({before[0]:.1f},{before[1]:.1f} -> "
        f"{during[0]:.1f},{during[1]:.1f} fps; stopped one {before[2]:.1f} -> "
        f"{during[2]:.1f})",
        "<= 5 %",
        change <= 0.05,
    )
    row(
        "3 cameras: the stopped camera's reconnects",
        str(reconnects),
        ">= 1",
        reconnects >= 1,
    )


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
    m = sub.add_parser("many")
    m.add_argument("--seconds", type=float, default=10.0, help="each rate's window")
    m.add_argument("--outage", type=float, default=10.0)
    m.add_argument("--rss-seconds", type=float, default=20.0)
    m.add_argument("--parts", default="tpu,cpu,outage,rss", help="which figures")
    m.add_argument("--cpu-rounds", type=int, default=5, help="rounds of the CPU figures")
    m.set_defaults(func=cmd_many)
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the outages are on purpose
    args.func(args)


if __name__ == "__main__":
    main()
