"""Edge TPU selection and fallback with real faults.

No Edge TPU exists on this machine: a small C delegate (tests/fakes/fake_delegate.c), built
with gcc and loaded through the runtime's real ``load_delegate``, stands in for libedgetpu.
Its modes: pass-through (a working "TPU" that leaves every node to the CPU kernels), NULL (no
device: ValueError), abort() while loading.  Mid-run faults are real signals sent to the
real worker process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.delegate import build_fake_delegate
from tests.support import (
    BUNDLED,
    CONFIDENT,
    CONFIDENT_LABEL,
    MODELS,
    SAMPLES,
    V1_025,
    Mosquitto,
    Subscriber,
    freeze_child,
    need,
    run_edged,
    sample_bmp,
    scaled,
    start_edged,
    stop_process,
)

# An Edge TPU compiled model and its CPU twin: only the shared fixtures have one
EDGETPU_TWIN = MODELS / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_delegate(tmp_path_factory.mktemp("delegate"))


def classify_json(
    *args: str, env: dict[str, str] | None = None
) -> tuple[int, list[dict[str, Any]], str]:
    r = run_edged("classify", "--json", *args, env=env)
    return r.returncode, (json.loads(r.stdout) if r.returncode == 0 else []), r.stderr


def lib_env(lib: Path, mode: str = "passthrough") -> dict[str, str]:
    return {
        "EDGED_MODEL__EDGETPU_LIBRARY": str(lib),
        "EDGED_MODEL__EDGETPU_OPTIONS": f'{{mode = "{mode}"}}',
    }


def test_working_tpu_runs_on_edgetpu(fake_lib: Path) -> None:
    code, rows, err = classify_json(
        "--backend", "edgetpu", "--model", str(BUNDLED), str(CONFIDENT), env=lib_env(fake_lib)
    )
    assert code == 0, err
    assert rows[0]["backend"] == "edgetpu" and rows[0]["label"] == CONFIDENT_LABEL


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("null", "ValueError: Failed to load delegate"),
        ("abort", "killed by SIGABRT while loading"),
        ("passthrough", "RuntimeError: Encountered unresolved custom op: edgetpu-custom-op"),
    ],
)
def test_auto_falls_back_to_cpu_twin_with_one_warning(
    fake_lib: Path, mode: str, reason: str
) -> None:
    code, rows, err = classify_json(
        "--model", str(need(EDGETPU_TWIN)), str(CONFIDENT), env=lib_env(fake_lib, mode)
    )
    assert code == 0, err
    assert rows[0]["backend"] == "cpu" and rows[0]["model"] == V1_025.name
    assert err.count("WARNING") == 1 and reason in err, err


def test_forced_edgetpu_that_cannot_start_exits_3(fake_lib: Path) -> None:
    code, _, err = classify_json(
        "--backend",
        "edgetpu",
        "--model",
        str(BUNDLED),
        str(CONFIDENT),
        env=lib_env(fake_lib, "null"),
    )
    assert code == 3 and "the Edge TPU backend cannot start: ValueError" in err
    code, _, err = classify_json(
        "--backend", "edgetpu", "--model", str(BUNDLED), str(CONFIDENT)
    )  # the real libedgetpu: absent
    assert code == 3 and "OSError" in err and "libedgetpu.so.1" in err


def test_edgetpu_model_without_tpu_or_twin(tmp_path: Path) -> None:
    lone = tmp_path / "lonely_edgetpu.tflite"
    shutil.copy(need(EDGETPU_TWIN), lone)
    code, _, err = classify_json("--model", str(lone), str(CONFIDENT))
    assert code == 3
    assert str(tmp_path / "lonely.tflite") in err and "does not exist" in err
    code, _, err = classify_json("--backend", "cpu", "--model", str(lone), str(CONFIDENT))
    assert code == 3 and "lonely.tflite" in err


def test_edgetpu_twins_give_the_cpu_models_classes() -> None:
    need(EDGETPU_TWIN)
    images = [str(p) for p in sorted(SAMPLES.glob("*.jpg"))]
    for twin in sorted(MODELS.glob("*_edgetpu.tflite")):
        cpu_model = MODELS / twin.name.replace("_edgetpu", "")
        c1, tpu_rows, e1 = classify_json("--model", str(twin), *images)
        c2, cpu_rows, e2 = classify_json("--backend", "cpu", "--model", str(cpu_model), *images)
        assert c1 == 0 and c2 == 0, (e1, e2)
        assert {r["backend"] for r in tpu_rows} == {"cpu"}
        assert [r["label"] for r in tpu_rows] == [r["label"] for r in cpu_rows]


def _daemon(
    tmp_path: Path,
    broker: Mosquitto,
    lib: Path,
    timeout: float = 2.0,
    fps: int = 20,
    model: Path = BUNDLED,
) -> subprocess.Popen[bytes]:
    cfg = tmp_path / "tpu.toml"
    cfg.write_text(f"""
[device]
id = "tpu-1"
[capture]
paths = ["{CONFIDENT}", "{sample_bmp(tmp_path)}"]
loop = true
fps = {fps}
[model]
path = "{model}"
backend = "edgetpu"
edgetpu_library = "{lib}"
inference_timeout_s = {timeout}
num_threads = 1
[mqtt]
url = "{broker.url}"
[health]
interval_s = 0.5
""")
    return start_edged("run", "-c", str(cfg), log=tmp_path / "edged.log")


def _worker_pid(sub: Subscriber) -> int:
    assert sub.wait(lambda: bool((h := sub.last_health()) and h.get("worker_pid")), 20)
    health = sub.last_health()
    assert health is not None and health["backend"] == "edgetpu"
    return int(health["worker_pid"])


def _check_fault(
    tmp_path: Path,
    mosquitto: Mosquitto,
    lib: Path,
    sig: int,
    timeout: float,
    budget: float,
    fps: int = 20,
    model: Path = BUNDLED,
) -> None:
    sub = Subscriber(mosquitto.port)
    proc = _daemon(tmp_path, mosquitto, lib, timeout, fps, model)
    try:
        assert sub.wait(lambda: len(sub.events()) >= 5), (tmp_path / "edged.log").read_text()
        assert {e["backend"] for e in sub.events()} == {"edgetpu"}
        pid = _worker_pid(sub)
        t_fault = time.monotonic()
        os.kill(pid, sig)
        assert sub.wait(lambda: any(e["backend"] == "cpu" for e in sub.events()), 10)
        t_cpu = next(t for t, e in sub.timed_events() if e["backend"] == "cpu")
        # the budget holds on an idle machine; a loaded one stretches it
        took = t_cpu - t_fault
        assert took < scaled(budget), f"first CPU event {took:.2f} s after fault"
        # by itself, back to the Edge TPU path once the fault has cleared
        assert sub.wait(
            lambda: (
                sub.events()[-1]["backend"] == "edgetpu"
                and any(e["backend"] == "cpu" for e in sub.events())
            ),
            30,
        ), (tmp_path / "edged.log").read_text()
        assert proc.poll() is None
        assert sub.wait(lambda: (sub.last_health() or {}).get("worker_restarts", 0) >= 1, 5)
        health = sub.last_health()
        assert health and health["fallbacks"] >= 1 and health["backend"] == "edgetpu"
        assert health["worker_pid"] != pid and health["fallback_reason"] is None
    finally:
        assert stop_process(proc) == 0
        sub.close()
    events = sub.events()
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1)), "events out of order or missing"
    frames = [e["frame"] for e in events]
    assert frames == sorted(frames)
    final = json.loads(sub.on("health")[-1][1])
    assert final["frames_lost"] == 0  # the frame in flight was re-run on the CPU
    assert final["events_published"] == len(events)


@pytest.mark.parametrize(
    "fps",
    [
        20,  # paced: the worker waits for frames, one in flight
        # unpaced, a model slower than decoding the images: two frames in flight at the kill
        0,
    ],
    ids=["paced", "saturated"],
)
def test_worker_kill9_mid_run_falls_back_and_returns(
    tmp_path: Path, mosquitto: Mosquitto, fake_lib: Path, fps: int
) -> None:
    _check_fault(tmp_path, mosquitto, fake_lib, signal.SIGKILL, timeout=2.0, budget=1.0, fps=fps)


def test_worker_sigstop_mid_run_times_out_and_returns(
    tmp_path: Path, mosquitto: Mosquitto, fake_lib: Path
) -> None:
    # the timeout (2 s) fires, then the switch to the CPU takes under 1 s
    _check_fault(tmp_path, mosquitto, fake_lib, signal.SIGSTOP, timeout=2.0, budget=3.0)


def test_start_failure_is_reported_in_health(
    tmp_path: Path, mosquitto: Mosquitto, fake_lib: Path
) -> None:
    need(EDGETPU_TWIN)
    cfg = tmp_path / "auto.toml"
    cfg.write_text(f"""
[device]
id = "auto-1"
[capture]
paths = ["{CONFIDENT}"]
[model]
path = "{EDGETPU_TWIN}"
edgetpu_library = "{fake_lib}"
edgetpu_options = {{ mode = "null" }}
[mqtt]
url = "{mosquitto.url}"
""")
    sub = Subscriber(mosquitto.port)
    try:
        r = run_edged("run", "-c", str(cfg))
        assert r.returncode == 0, r.stderr
        # Health is retained state: the last report wins, and one made before the broker
        # connection is up is replaced by the next one.  So wait for the report made after
        # the frame (state ok), not for a number of reports.
        assert sub.wait(
            lambda: (sub.last_health() or {}).get("state") == "ok" and bool(sub.events()),
            scaled(20),
        ), r.stderr[-3000:]
        health = sub.last_health()
    finally:
        sub.close()
    assert health and health["backend"] == "cpu" and health["fallbacks"] == 1
    assert health["fallback_reason"].startswith("ValueError: Failed to load delegate")
    assert health["tpus"] == [] and health["tpu_temp_c"] is None
    assert sub.events()[0]["backend"] == "cpu" and sub.events()[0]["label"] == CONFIDENT_LABEL


def test_restart_limit_then_stays_on_cpu(fake_lib: Path) -> None:
    import numpy as np

    from edged.config import parse_config
    from edged.engine import open_engine
    from edged.infer import supervisor

    cfg = parse_config(
        {"model": {"path": str(BUNDLED), "backend": "edgetpu", "edgetpu_library": str(fake_lib)}}
    )
    timings = supervisor.Timings(restart_limit=3, restart_window_s=60.0, first_reprobe_s=0.05)
    engine = open_engine(cfg.model, cfg.classify, timings)
    sup = engine.backend
    assert isinstance(sup, supervisor.Supervisor)
    spec = sup.input_spec
    tensor = np.zeros((1, spec.height, spec.width, 3), spec.dtype)
    try:
        for i in range(timings.restart_limit):
            back = sup.wait_for(lambda s: s.name == "edgetpu", timeout=20)
            assert back, f"no return to the TPU after fault {i}"
            pid = sup.worker_pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            _, _, backend = engine.infer_with_backend(tensor)
            assert backend == "cpu"
        # given up: no re-probe comes back, even after many first-reprobe delays
        assert not sup.wait_for(lambda s: s.name == "edgetpu", timeout=20 * timings.first_reprobe_s)
        assert sup.gave_up and sup.name == "cpu"
        reason = sup.status()["fallback_reason"]
        assert isinstance(reason, str) and "staying on the CPU" in reason
        assert sup.status()["fallbacks"] == timings.restart_limit
    finally:
        engine.close()


def test_frames_in_flight_at_a_kill_are_rerun_on_the_cpu_in_order(fake_lib: Path) -> None:
    from edged.classify import Classification
    from edged.config import parse_config
    from edged.engine import open_engine
    from edged.infer.supervisor import Supervisor

    def top1(r: Classification) -> str:
        assert r.top1 is not None
        return r.top1.label

    cfg = parse_config(
        {
            "model": {
                "path": str(BUNDLED),
                "backend": "edgetpu",
                "edgetpu_library": str(fake_lib),
                "num_threads": 1,
            }
        }
    )
    engine = open_engine(cfg.model, cfg.classify)
    try:
        images = [engine.load(p) for p in (CONFIDENT, SAMPLES / "rocket.jpg")]
        expected = [engine.infer_with_backend(t) for t in images]
        assert [b for _, _, b in expected] == ["edgetpu", "edgetpu"]
        assert engine.depth == 2
        # The worker is frozen before the frames go in, so neither can finish before the kill.
        sup = engine.backend
        assert isinstance(sup, Supervisor) and sup.worker_pid is not None
        pid = sup.worker_pid
        freeze_child(pid)
        for t in images:
            engine.submit(t)
        assert engine.backend.in_flight == 2
        os.kill(pid, signal.SIGKILL)
        got = [engine.collect(), engine.collect()]
        assert [b for _, _, b in got] == ["cpu", "cpu"]
        assert [top1(r) for r, _, _ in got] == [top1(r) for r, _, _ in expected]
        assert top1(got[0][0]) == CONFIDENT_LABEL != top1(got[1][0])  # so order shows
        status = engine.backend.status()
        reason = status["fallback_reason"]
        assert status["fallbacks"] == 1 and isinstance(reason, str) and "SIGKILL" in reason
        assert engine.depth == 1  # in-process CPU twin
    finally:
        engine.close()
