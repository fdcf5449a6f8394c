#!/usr/bin/env python3
"""The daemon's CPU per frame with the AI camera's network on the sensor, against the CPU
path on the same frames, in the same run: the same ``capture.type = "imx500"`` source at
30 fps (the simulated sensor of tests/fakes/imx500_api under the real picamera2 0.3.38,
cycling the sample photos), once with the network running (each frame's output tensor is
classified, no invoke) and once with the camera reporting another sensor model, so that the
source falls back and the bundled model classifies every frame on the CPU.

CPU is the daemon process's utime + stime (/proc/PID/stat, every thread) over a steady
window after warm-up, divided by the frames processed in that window (QoS 1 to a local
mosquitto).  The simulated camera's own CPU in the daemon (the simulated libcamera's
thread: pacing, writing each frame into its buffer, building its request's metadata; on a
Pi, libcamera's and the ISP's work, and more of it in the sensor way, which carries a
tensor) is counted by the simulation on that thread's clock and left out of both ways'
figures; the raw figures are printed beside.  picamera2's own work (its listening and
event-loop threads, the request, get_metadata, the IMX500 class's parsing, the frame's
copy) stays in: it runs on a Pi too.  Rounds alternate the two ways, both orders; medians.

    python bench/aicamera.py [--rounds 2] [--window 15] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.aicamera import PHOTOS, AiCamera, imx500_sim, make_aicamera  # noqa: E402
from tests.support import (  # noqa: E402
    Mosquitto,
    Subscriber,
    start_edged,
    stop_process,
    wait_until,
    write_config,
)

FPS = 30.0
HEALTH_S = 10.0
WAYS = ("sensor", "cpu")
POLICIES = ("every_frame", "on_change")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def simulation_ms(cam: AiCamera, pid: int) -> float:
    seconds: float = imx500_sim.simulation_cpu(cam.root, pid)[1]
    return 1000.0 * seconds


def frames_processed(sub: Subscriber) -> int:
    health = sub.last_health()
    return int(health["frames_processed"]) if health else 0


def one_run(
    way: str,
    policy: str,
    cam: AiCamera,
    broker: Mosquitto,
    tmp: Path,
    window: float,
    threads: int,
) -> tuple[float, float, float, float]:
    """(CPU ms per frame without the simulated camera's, the simulated camera's CPU ms per
    frame, frames per second, events per frame) of one daemon run."""
    cfg = write_config(
        tmp / f"{way}.toml",
        f"""
[device]
id = "bench-{way}"
[capture]
type = "imx500"
network = "{cam.network}"
fps = {FPS}
retry_min_s = 3600
retry_max_s = 3600
[model]
num_threads = {threads}
[publish]
policy = "{policy}"
[mqtt]
url = "{broker.url}"
[health]
interval_s = {HEALTH_S}
""",
    )
    # on_change: each photo is held for a second, as a scene in front of a camera is
    knobs = {"hold": str(int(FPS))} if policy == "on_change" else {}
    env = cam.env(**knobs, **({"cameras": "imx708"} if way == "cpu" else {}))
    sub = Subscriber(broker.port, f"edged/bench-{way}/#")
    proc = start_edged("run", "-c", str(cfg), log=tmp / f"{way}.log", env=env)
    want = "imx500" if way == "sensor" else "cpu"
    try:
        if not wait_until(lambda: frames_processed(sub) >= 60 and bool(sub.events()), 90):
            log = (tmp / f"{way}.log").read_text()[-2000:]
            raise RuntimeError(f"{way}: no events; the daemon's log ends:\n{log}")
        backends = {e["backend"] for e in sub.events()[-3:]}
        if backends != {want}:
            raise RuntimeError(f"{way}: events from {backends}, wanted {want}")
        # the window runs from one health report to another: the frames it counts and
        # the CPU read just after it arrives belong to the same moment (within a few ms)
        edges = []
        for _ in range(2):
            seen = len(sub.on("health"))
            wait_until(lambda: len(sub.on("health")) > seen, HEALTH_S + 5)  # noqa: B023
            edges.append(
                (
                    cpu_seconds(proc.pid),
                    simulation_ms(cam, proc.pid),
                    frames_processed(sub),
                    len(sub.events()),
                    time.monotonic(),
                )
            )
            if not edges[1:]:
                time.sleep(window - HEALTH_S)  # the measured window, not a wait for a condition
    finally:
        stop_process(proc)
        sub.close()
    (c0, s0, f0, e0, t0), (c1, s1, f1, e1, t1) = edges
    frames = f1 - f0
    sim = (s1 - s0) / frames
    return 1000.0 * (c1 - c0) / frames - sim, sim, frames / (t1 - t0), (e1 - e0) / frames


def camera_alone(seconds: float) -> None:
    """In a process of its own: the simulated camera under picamera2 at 30 fps, each
    request's tensor parsed by picamera2's IMX500 class, nothing of edged.  Prints its CPU
    ms per frame without the simulation's own: picamera2's part of the sensor way's
    figure (its capture path and event loop, its parsing, the frame's copy)."""
    from picamera2 import Picamera2
    from picamera2.devices.imx500 import IMX500

    imx = IMX500(os.environ["BENCH_NETWORK"])
    cam = Picamera2(imx.camera_num)
    config = cam.create_video_configuration(
        main={"size": (256, 256), "format": "BGR888"}, controls={"FrameRate": FPS}
    )
    cam.configure(config)
    cam.start()
    frames = 0
    while imx.get_outputs(cam.capture_request().get_metadata()) is None:
        pass  # the upload
    c0, end = time.process_time(), time.monotonic() + seconds
    s0 = simulation_ms_here()
    while time.monotonic() < end:
        request = cam.capture_request()
        imx.get_outputs(request.get_metadata())
        imx.get_kpi_info(request.get_metadata())
        request.make_array("main")
        request.release()
        frames += 1
    sim = simulation_ms_here() - s0
    print(f"{(1000.0 * (time.process_time() - c0) - sim) / frames:.3f}")


def paho_alone(url: str, seconds: float) -> None:
    """In a process of its own: paho's own client (``loop_start()``) sending a QoS 1 event
    of an event's size at 30 per second to the broker, nothing of edged.  Windows with and
    without the events alternate; prints the CPU ms one event adds (what every_frame costs
    per frame whoever publishes it)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edged.wire import broker_address

    broker = broker_address(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    payload = b"x" * 450  # an event's size
    n = max(1, int(seconds * FPS / 4))
    cpu: dict[bool, list[float]] = {True: [], False: []}
    try:
        for window in range(4):
            send = window % 2 == 1
            c0, t0 = time.process_time(), time.perf_counter()
            for i in range(n):
                if send:
                    client.publish("bench/paho/events", payload, qos=1)
                left = t0 + (i + 1) / FPS - time.perf_counter()
                if left > 0:
                    time.sleep(left)  # the pace of a 30 fps camera, not a wait for a condition
            cpu[send].append((time.process_time() - c0) / n)
    finally:
        client.loop_stop()
        client.disconnect()
    print(f"{1000.0 * (statistics.median(cpu[True]) - statistics.median(cpu[False])):.3f}")


def simulation_ms_here() -> float:
    ns: int = imx500_sim.METER.ns
    return ns / 1e6


def camera_run(cam: AiCamera, window: float) -> float:
    env = {"BENCH_NETWORK": str(cam.network), **cam.env()}
    return float(_alone(["--camera-alone", str(window)], window, env))


def _alone(args: list[str], window: float, env: dict[str, str] | None = None) -> str:
    """The last line a ``--*-alone`` run of this script prints, in a process of its own."""
    out = subprocess.run(
        [sys.executable, __file__, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
        timeout=window + 60,
    )
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--window", type=float, default=20.0, help="seconds measured per run")
    ap.add_argument("--threads", type=int, default=2, help="interpreter threads (CPU path)")
    ap.add_argument("--policy", default=",".join(POLICIES), help="publish policies to run")
    ap.add_argument("--camera-alone", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--paho-alone", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.camera_alone:
        camera_alone(args.camera_alone)
        return
    if args.paho_alone:
        paho_alone(args.paho_alone, args.window)
        return
    print(
        f"edged AI camera: {args.rounds} rounds, {args.window:g} s windows at {FPS:g} fps, "
        f"{len(PHOTOS)} sample photos, {args.threads} interpreter threads, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        scores = imx500_sim.write_scores(tmp / "scores.npz", PHOTOS)
        cam = make_aicamera(tmp, scores)
        broker = Mosquitto(tmp).start()
        cpu_path: dict[str, float] = {}
        try:
            for policy in args.policy.split(","):
                ms: dict[str, list[float]] = {w: [] for w in WAYS}
                sims: dict[str, list[float]] = {w: [] for w in WAYS}
                fps: dict[str, list[float]] = {w: [] for w in WAYS}
                events: dict[str, list[float]] = {w: [] for w in WAYS}
                for r in range(args.rounds):
                    for way in WAYS if r % 2 == 0 else WAYS[::-1]:
                        m, sim, f, e = one_run(
                            way, policy, cam, broker, tmp, args.window, args.threads
                        )
                        ms[way].append(m)
                        sims[way].append(sim)
                        fps[way].append(f)
                        events[way].append(e)
                        print(
                            f"  {policy:11s} round {r + 1} {way:6s}: {m:6.3f} ms CPU/frame "
                            f"(+ {sim:.3f} simulated camera), {f:5.1f} frames/s, "
                            f"{e:.2f} events/frame"
                        )
                sensor, cpu = statistics.median(ms["sensor"]), statistics.median(ms["cpu"])
                cpu_path[policy] = cpu
                raw = {
                    w: statistics.median(m + s for m, s in zip(ms[w], sims[w], strict=True))
                    for w in WAYS
                }
                print(
                    f"{policy}: CPU per frame: sensor {sensor:.3f} ms, CPU path {cpu:.3f} ms; "
                    f"ratio {sensor / cpu:.3f} (goal <= 0.15); with the simulated camera's "
                    f"CPU: sensor {raw['sensor']:.3f} ms, CPU path {raw['cpu']:.3f} ms, ratio "
                    f"{raw['sensor'] / raw['cpu']:.3f}; frames/s sensor "
                    f"{statistics.median(fps['sensor']):.1f}, CPU path "
                    f"{statistics.median(fps['cpu']):.1f}"
                )
            alone = statistics.median(camera_run(cam, args.window) for _ in range(args.rounds))
            print(
                f"picamera2 alone (capture path, event loop, parsing, copy) over the simulated "
                f"camera (without its CPU), "
                f"no edged: {alone:.3f} ms CPU/frame (inside the sensor way's figure)"
            )
            paho = ["--paho-alone", broker.url, "--window", str(args.window)]
            event = statistics.median(float(_alone(paho, args.window)) for _ in range(args.rounds))
            line = (
                f"paho alone (its own network thread, no edged), a QoS 1 event at {FPS:g}/s: "
                f"{event:.3f} ms CPU per event"
            )
            if "every_frame" in cpu_path:
                floor = alone + event
                line += (
                    f"; with picamera2 alone, the least an event per frame can cost on the "
                    f"sensor way: {floor:.3f} ms, ratio {floor / cpu_path['every_frame']:.3f} "
                    "against every_frame's CPU path"
                )
            print(line)
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
