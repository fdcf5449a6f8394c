#!/usr/bin/env python3
"""One table of edged's performance goals, each figure next to its goal, all from this run.

Rounds alternate the bare ``invoke()`` loop, the daemon and the plain sequential loop
(bench/sequential.py) on the bundled model, at 1 and 2 interpreter threads, on pre-sized
224x224 frames (as the Pi camera's ISP delivers them, saved as BMP) and on the JPEG photos
in edged/samples; ratios are medians over the rounds.  The daemon replays unpaced and
publishes every event at QoS 1 to a local mosquitto.  Then: the daemon with the fake Edge
TPU delegate's latency mode (worker process, frames in flight), the daemon as a process
(``edged run``) for time to READY and to the first event and for its resident memory.

    python bench/pipeline.py [--rounds 3] [--frames 300] [--rss-minutes 10]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from PIL import Image  # noqa: E402

from bench import sequential  # noqa: E402
from edged.app import Daemon  # noqa: E402
from edged.config import parse_config  # noqa: E402
from edged.engine import Engine, open_engine  # noqa: E402
from edged.infer.base import TFLiteBackend  # noqa: E402
from edged.infer.bundled import default_model_path  # noqa: E402
from edged.preprocess import load_image  # noqa: E402
from tests.fakes.delegate import build_fake_delegate  # noqa: E402
from tests.support import Mosquitto  # noqa: E402

SAMPLES = ROOT / "edged" / "samples"
TICK = os.sysconf("SC_CLK_TCK")


def presized_frames(out: Path, size: int = 224) -> Path:
    """The sample photos, center-cropped and scaled to ``size`` px, as BMP files."""
    out.mkdir(parents=True, exist_ok=True)
    for photo in sorted(SAMPLES.glob("*.jpg")):
        with Image.open(photo) as im:
            rgb = im.convert("RGB")
        side = min(rgb.size)
        left, top = (rgb.width - side) // 2, (rgb.height - side) // 2
        rgb.crop((left, top, left + side, top + side)).resize((size, size)).save(
            out / f"{photo.stem}.bmp"
        )
    return out


def photos(out: Path) -> Path:
    """The sample JPEG photos alone (their licence file stays out)."""
    out.mkdir(parents=True, exist_ok=True)
    for photo in sorted(SAMPLES.glob("*.jpg")):
        (out / photo.name).symlink_to(photo)
    return out


def _warm_engines(images: Path, threads: int, count: int) -> list[tuple[Engine, Any]]:
    """``count`` engines at ``threads`` interpreter threads, each with the first photo
    prepared as its input and ten invokes done."""
    cfg = parse_config({"model": {"num_threads": threads}})
    first = sorted(images.iterdir())[0]
    out: list[tuple[Engine, Any]] = []
    try:
        for _ in range(count):
            engine = open_engine(cfg.model, cfg.classify)
            out.append((engine, engine.preprocess(load_image(first, engine.capture_size()))))
            for _ in range(10):
                engine.backend.invoke(out[-1][1])
    except BaseException:
        for engine, _ in out:
            engine.close()
        raise
    return out


def bare_loop(images: Path, threads: int, frames: int) -> tuple[float, float]:
    """(frames/s, CPU s per invoke) of ``invoke()`` alone on one prepared frame."""
    ((engine, tensor),) = _warm_engines(images, threads, 1)
    try:
        backend = engine.backend
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(frames):
            backend.invoke(tensor)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        engine.close()
    return frames / wall, cpu / frames


def parallel_loop(
    images: Path,
    interpreters: int,
    frames: int,
    threads: int = 1,
    after: Callable[[], object] | None = None,
) -> float:
    """Frames/s of ``interpreters`` interpreters at ``threads`` threads, each invoked back to
    back on one prepared frame by a thread of its own: what that many cameras could reach
    with nothing but ``invoke()`` to do (the ceiling of a pool of 1-thread interpreters).
    ``after``, if given, is called after every ``invoke()`` (what else a frame costs)."""
    engines = _warm_engines(images, threads, interpreters)
    try:

        def loop(backend: Any, tensor: Any) -> None:
            if after is None:
                for _ in range(frames):
                    backend.invoke(tensor)
            else:
                for _ in range(frames):
                    backend.invoke(tensor)
                    after()

        loops = [threading.Thread(target=loop, args=(e.backend, t)) for e, t in engines]
        t0 = time.perf_counter()
        for t in loops:
            t.start()
        for t in loops:
            t.join()
        wall = time.perf_counter() - t0
    finally:
        for engine, _ in engines:
            engine.close()
    return interpreters * frames / wall


def _child_cpu(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


class _InvokeClock:
    """Thread CPU time spent inside ``invoke()`` of in-process backends (at 1 interpreter
    thread XNNPACK runs in the calling thread, so this is all of invoke's CPU)."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self._orig = TFLiteBackend.invoke

    def __enter__(self) -> _InvokeClock:
        orig = self._orig

        def invoke(backend: TFLiteBackend, tensor: Any) -> Any:
            t0 = time.thread_time()
            try:
                return orig(backend, tensor)
            finally:
                self.cpu += time.thread_time() - t0

        TFLiteBackend.invoke = invoke  # type: ignore[method-assign,assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        TFLiteBackend.invoke = self._orig  # type: ignore[method-assign]


def daemon_run(
    images: Path, frames: int, broker: Mosquitto, warmup: int = 20, **model: Any
) -> tuple[float, float, float]:
    """(frames/s, CPU s per frame of the daemon and its worker, of which s per frame inside
    in-process ``invoke()`` calls) between two marks."""
    # the photos listed over and over, not looped: a looped replay decodes each image once
    # and keeps it, and here the daemon decodes every frame, as the sequential loop does
    files = sorted(str(p) for p in images.iterdir())
    paths = files * ((warmup + frames + 10) // len(files) + 1)
    cfg = parse_config(
        {
            "device": {"id": "bench"},
            "capture": {"type": "replay", "paths": paths},
            "model": model,
            "mqtt": {"url": broker.url, "qos": 1},
            "health": {"interval_s": 5.0},
        }
    )
    daemon = Daemon(cfg, max_frames=warmup + frames + 10)
    thread = threading.Thread(target=daemon.run, daemon=True)
    clock = _InvokeClock().__enter__()
    thread.start()

    def wait_for(n: int) -> None:
        # 10 ms naps: this thread's own wake-ups count in the process CPU measured
        while daemon.stats.frames_processed < n:
            if not thread.is_alive():
                raise RuntimeError(f"the daemon stopped (exit code {daemon.exit_code})")
            time.sleep(0.01)

    wait_for(warmup)
    pid = daemon.engine.backend.status().get("worker_pid") if daemon.engine else None

    def mark() -> tuple[float, int, float, float, float]:
        # invoke CPU, frames, process CPU, worker CPU, wall
        return (
            clock.cpu,
            daemon.stats.frames_processed,
            time.process_time(),
            _child_cpu(pid),  # type: ignore[arg-type]
            time.perf_counter(),
        )

    i0, n0, c0, w0, t0 = mark()
    wait_for(warmup + frames)
    i1, n1, c1, w1, t1 = mark()
    thread.join(60)
    clock.__exit__()
    n = n1 - n0
    return n / (t1 - t0), (c1 - c0 + w1 - w0) / n, (i1 - i0) / n


def device_ceiling(fake: Path, ms: int, frames: int) -> float:
    """Frames/s of the fake Edge TPU alone: its worker driven back to back with two frames
    in flight and nothing else (no capture, classification or MQTT).  What the device and
    this machine's timers allow at all: the daemon cannot beat it."""
    cfg = parse_config(
        {
            "model": {
                "backend": "edgetpu",
                "edgetpu_library": str(fake),
                "edgetpu_options": {"latency_ms": str(ms)},
            }
        }
    )
    engine = open_engine(cfg.model, cfg.classify)
    try:
        side = engine.backend.input_spec
        tensor = engine.prepare(np.zeros((side.height, side.width, 3), np.uint8)).tensor
        for _ in engine.backend.stream([tensor] * 20):
            pass
        t0 = time.perf_counter()
        for _ in engine.backend.stream([tensor] * frames):
            pass
        return frames / (time.perf_counter() - t0)
    finally:
        engine.close()


def sequential_run(images: Path, threads: int, frames: int, broker: Mosquitto) -> float:
    paths = sorted(p for p in images.iterdir() if p.is_file())
    return sequential.run(paths, default_model_path(), threads, frames, "127.0.0.1", broker.port)


class _Notify:
    """A NOTIFY_SOCKET that records when READY=1 arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.ready_at: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while self.ready_at is None:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            if b"READY=1" in data.split(b"\n"):
                self.ready_at = time.monotonic()


def process_run(
    tmp: Path, images: Path, broker: Mosquitto, minutes: float
) -> tuple[float, float, list[tuple[float, float]]]:
    """``edged run`` as a process: (s to READY, s to the first event, [(s, RSS MB)]).

    It replays the photos paced at 30 frames/s, as a camera would deliver them."""
    config = tmp / "edged.toml"
    config.write_text(
        '[device]\nid = "rss"\n'
        f'[capture]\ntype = "replay"\npaths = ["{images}"]\nloop = true\nfps = 30\n'
        f'[mqtt]\nurl = "{broker.url}"\n'
    )
    first_event: list[float] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-rss")

    def on_message(c: mqtt.Client, u: Any, m: mqtt.MQTTMessage) -> None:
        if not first_event:
            first_event.append(time.monotonic())

    sub.on_message = on_message
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe("edged/rss/events")
    sub.loop_start()
    notify = _Notify(tmp / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path)}
    time.sleep(0.5)  # the subscription is in place
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "edged", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    curve: list[tuple[float, float]] = []
    try:
        deadline = start + max(10.0, minutes * 60)
        step = 1.0 if minutes <= 0 else 30.0
        next_sample = start + 5.0
        while time.monotonic() < deadline and proc.poll() is None:
            if time.monotonic() >= next_sample:
                curve.append((time.monotonic() - start, _rss_mb(proc.pid)))
                next_sample += step
            time.sleep(0.05)
        curve.append((time.monotonic() - start, _rss_mb(proc.pid)))
    finally:
        stopping = time.monotonic()
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        curve.append((-(time.monotonic() - stopping), float("nan")))  # stop time, marked < 0
        sub.loop_stop()
        sub.disconnect()
        notify.sock.close()
    ready = (notify.ready_at or float("nan")) - start
    event = (first_event[0] if first_event else float("nan")) - start
    return ready, event, curve


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=300, help="frames per measurement")
    ap.add_argument("--tpu-frames", type=int, default=1000)
    ap.add_argument(
        "--rss-minutes", type=float, default=0.0, help="run the process this long for an RSS curve"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    load_before = os.getloadavg()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        kinds = {
            "pre-sized 224": presized_frames(tmp / "frames"),
            "JPEG photos": photos(tmp / "photos"),
        }
        fake = build_fake_delegate(tmp / "delegate")
        broker = Mosquitto(tmp).start()
        try:
            runs: dict[tuple[str, int, str], list[float]] = {}

            def add(key: tuple[str, int, str], value: float) -> None:
                runs.setdefault(key, []).append(value)

            for r in range(args.rounds):
                for threads in (1, 2):
                    for kind, images in kinds.items():
                        steps: list[tuple[str, Callable[[], Any]]] = [
                            ("bare", partial(bare_loop, images, threads, args.frames)),
                            (
                                "daemon",
                                partial(
                                    daemon_run, images, args.frames, broker, num_threads=threads
                                ),
                            ),
                            ("seq", partial(sequential_run, images, threads, args.frames, broker)),
                        ]
                        if r % 2:
                            steps.reverse()
                        got: dict[str, Any] = {name: fn() for name, fn in steps}
                        bare_fps, bare_cpu = got["bare"]
                        d_fps, d_cpu, d_invoke = got["daemon"]
                        add((kind, threads, "bare"), bare_fps)
                        add((kind, threads, "daemon"), d_fps)
                        add((kind, threads, "seq"), got["seq"])
                        add((kind, threads, "daemon/bare"), d_fps / bare_fps)
                        add((kind, threads, "seq/bare"), got["seq"] / bare_fps)
                        add((kind, threads, "daemon/seq"), d_fps / got["seq"])
                        add((kind, threads, "outside"), (d_cpu - bare_cpu) * 1000)
                        add((kind, threads, "outside-direct"), (d_cpu - d_invoke) * 1000)
            tpu: dict[int, tuple[float, float, float]] = {}
            for ms in (2, 4):
                ceiling = device_ceiling(fake, ms, args.tpu_frames // 2)
                fps, cpu, _ = daemon_run(
                    kinds["pre-sized 224"],
                    args.tpu_frames,
                    broker,
                    warmup=50,
                    backend="edgetpu",
                    edgetpu_library=str(fake),
                    edgetpu_options={"latency_ms": str(ms)},
                )
                tpu[ms] = (fps / (1000 / ms), cpu * 1000, fps / ceiling)
            ready, first, curve = process_run(tmp, kinds["JPEG photos"], broker, args.rss_minutes)
        finally:
            broker.stop()
    load_after = os.getloadavg()

    def m(kind: str, threads: int, what: str) -> float:
        return _median(runs[(kind, threads, what)])

    rows: list[tuple[str, str, str, str]] = []
    pre, jpg = "pre-sized 224", "JPEG photos"
    for threads, goal in ((1, 0.97), (2, 0.85)):
        v = m(pre, threads, "daemon/bare")
        rows.append(
            (
                f"daemon / bare, {threads} thread(s), pre-sized",
                f">= {goal}",
                f"{v:.3f}",
                "met" if v >= goal else "not met",
            )
        )
    for kind in (pre, jpg):
        for threads in (1, 2):
            v = m(kind, threads, "daemon/seq")
            rows.append(
                (
                    f"daemon / sequential loop, {threads} thread(s), {kind}",
                    "> 1",
                    f"{v:.3f}",
                    "met" if v > 1 else "not met",
                )
            )
    for kind in (pre, jpg):
        for threads in (1, 2):
            rows.append(
                (
                    f"  (figures) {kind}, {threads} thread(s): bare / daemon / seq fps",
                    "",
                    f"{m(kind, threads, 'bare'):.1f} / {m(kind, threads, 'daemon'):.1f} / "
                    f"{m(kind, threads, 'seq'):.1f}",
                    "",
                )
            )
            rows.append(
                (
                    f"  (figures) {kind}, {threads} thread(s): daemon / bare, seq / bare",
                    "",
                    f"{m(kind, threads, 'daemon/bare'):.3f}, {m(kind, threads, 'seq/bare'):.3f}",
                    "",
                )
            )
    out1, direct = m(pre, 1, "outside"), m(pre, 1, "outside-direct")
    for measure, value in (
        ("CPU outside invoke(), 1 thread, pre-sized (ms/frame)", out1),
        ("  same, direct: daemon CPU - its own invoke() CPU (ms/frame)", direct),
    ):
        rows.append(
            (measure, "<= 0.5 (stretch 0.3)", f"{value:.2f}", "met" if value <= 0.5 else "not met")
        )
    rows.append(
        (
            "CPU outside invoke(), 2 threads, pre-sized (ms/frame)",
            "",
            f"{m(pre, 2, 'outside'):.2f}",
            "",
        )
    )
    for ms, (ratio, cpu, of_ceiling) in tpu.items():
        rows.append(
            (
                f"Edge TPU latency {ms} ms: fps / (1000/{ms})",
                ">= 0.95",
                f"{ratio:.3f}",
                "met" if ratio >= 0.95 else "not met",
            )
        )
        rows.append(
            (
                "  same, daemon / the fake device alone (back to back, same run)",
                "",
                f"{of_ceiling:.3f}",
                "",
            )
        )
        rows.append(
            (f"Edge TPU latency {ms} ms: CPU per frame (daemon + worker, ms)", "", f"{cpu:.2f}", "")
        )
    stop_s = -curve.pop()[0]
    rss = max(v for _, v in curve)
    rows.append(
        (
            "RSS, bundled model (MB, max of samples)",
            "<= 80",
            f"{rss:.1f}",
            "met" if rss <= 80 else "not met",
        )
    )
    rows.append(
        ("time to READY (s)", "<= 1.5", f"{ready:.2f}", "met" if ready <= 1.5 else "not met")
    )
    rows.append(
        ("time to first event (s)", "<= 1.0", f"{first:.2f}", "met" if first <= 1.0 else "not met")
    )
    rows.append(("stop after SIGTERM (s)", "", f"{stop_s:.2f}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    head = ("measure", "goal", "figure", "")
    print(
        f"edged bench: bundled model, {args.rounds} alternating rounds of {args.frames} frames, "
        f"{os.cpu_count()} CPUs, load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after, {time.monotonic() - started:.0f} s"
    )
    print(" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    if args.rss_minutes > 0:
        print("RSS curve (s: MB): " + ", ".join(f"{t:.0f}: {v:.1f}" for t, v in curve))
    return 0


if __name__ == "__main__":
    sys.exit(main())
