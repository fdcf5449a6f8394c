"""The worker process on its own: same results as in-process, faults reported, nothing left."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edged.config import parse_config
from edged.engine import open_engine
from edged.infer.cpu import CpuBackend
from edged.infer.model import inspect_model
from edged.infer.worker import WorkerBackend, WorkerFault
from tests.support import BUNDLED, CONFIDENT, SAMPLES, freeze_child

MODEL = BUNDLED
OTHER = SAMPLES / "chelsea_cat.jpg"


def open_pair(timeout: float = 2.0) -> tuple[CpuBackend, WorkerBackend, np.ndarray]:
    cfg = parse_config(
        {"model": {"path": str(MODEL), "num_threads": 1, "inference_timeout_s": timeout}}
    )
    mf = inspect_model(MODEL)
    engine = open_engine(cfg.model, cfg.classify)
    tensor = engine.load(CONFIDENT)
    engine.close()
    return CpuBackend(mf, cfg.model), WorkerBackend(mf, cfg.model, "cpu"), tensor


def mapped_shm_blocks() -> set[str]:
    """The shared-memory blocks this process has mapped (other test runs on the machine
    create their own blocks in /dev/shm at the same time: only ours are looked at)."""
    maps = Path("/proc/self/maps").read_text()
    return set(re.findall(r"/dev/shm/(psm_\w+)", maps))


def test_worker_gives_the_same_output_as_in_process() -> None:
    before = mapped_shm_blocks()
    inproc, worker, tensor = open_pair()
    try:
        own = mapped_shm_blocks() - before
        assert len(own) == 2  # input tensor and output vector
        assert all((Path("/dev/shm") / name).exists() for name in own)
        for _ in range(3):
            expected = inproc.invoke(tensor).copy()
            got = worker.invoke(tensor)
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)
            assert worker.last_ms > 0
    finally:
        inproc.close()
        worker.close()
    assert mapped_shm_blocks() & own == set()
    assert not any((Path("/dev/shm") / name).exists() for name in own)  # unlinked


def test_two_frames_in_flight_come_back_in_order() -> None:
    inproc, worker, parrot = open_pair()
    engine = open_engine(worker.cfg, parse_config({}).classify)
    bird = engine.load(OTHER)
    engine.close()
    try:
        assert worker.depth == 2
        expected = [inproc.invoke(t).copy() for t in (parrot, bird, parrot)]
        assert not np.array_equal(expected[0], expected[1])
        worker.submit(parrot)
        worker.submit(bird)
        assert worker.in_flight == 2
        with pytest.raises(RuntimeError, match="2 frames in flight"):
            worker.submit(parrot)
        first = worker.collect()
        worker.submit(parrot)  # a slot is free again
        got = [first, worker.collect(), worker.collect()]
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_array_equal(g.raw, e)
            assert g.backend == "cpu" and g.ms > 0
        assert worker.in_flight == 0
        streamed = list(worker.stream([parrot, bird, parrot, bird]))
        for g, e in zip(streamed, [*expected[:2], *expected[:2]], strict=True):
            np.testing.assert_array_equal(g.raw, e)
        assert worker.in_flight == 0
    finally:
        inproc.close()
        worker.close()


def test_killed_worker_is_a_fault_naming_the_signal() -> None:
    inproc, worker, tensor = open_pair()
    try:
        worker.invoke(tensor)
        assert worker.pid is not None
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(WorkerFault, match="killed by SIGKILL"):
            worker.invoke(tensor)
    finally:
        inproc.close()
        worker.close()


def test_stopped_worker_times_out_and_close_ends_it() -> None:
    inproc, worker, tensor = open_pair(timeout=0.3)
    pid = worker.pid
    assert pid is not None
    try:
        os.kill(pid, signal.SIGSTOP)
        t0 = time.monotonic()
        with pytest.raises(WorkerFault, match=r"longer than 0\.3 s"):
            worker.invoke(tensor)
        assert time.monotonic() - t0 < 1.0
    finally:
        inproc.close()
        worker.close()
    assert not worker.process.is_alive()


def test_a_worker_leaves_no_resource_tracker_complaints(tmp_path: Path) -> None:
    """Start, use and close a worker in a fresh interpreter: stderr stays clean of the
    resource tracker's KeyError / leaked shared_memory warnings."""
    script = tmp_path / "use_worker.py"
    script.write_text(
        "from tests.integration.test_worker import open_pair\n"
        "if __name__ == '__main__':\n"
        "    a, w, t = open_pair()\n"
        "    w.invoke(t)\n"
        "    a.close(); w.close()\n"
    )
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run(
        [sys.executable, str(script)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert "KeyError" not in r.stderr
    assert "leaked shared_memory" not in r.stderr


def test_isolated_cpu_worker_is_restarted_after_a_kill() -> None:
    """``model.isolate_cpu``: the frames in flight at a kill run in-process, in order, and a
    new worker takes over by itself."""
    from edged.infer import supervisor

    cfg = parse_config({"model": {"path": str(MODEL), "num_threads": 1, "isolate_cpu": True}})
    engine = open_engine(cfg.model, cfg.classify)
    sup = engine.backend
    assert isinstance(sup, supervisor.Supervisor)
    try:
        images = [engine.load(p) for p in (CONFIDENT, OTHER)]
        expected = [engine.infer_with_backend(t)[0] for t in images]
        pid = sup.worker_pid
        assert pid is not None and pid != os.getpid() and engine.depth == 2
        freeze_child(pid)  # neither frame can finish before the kill
        for t in images:
            engine.submit(t)
        assert sup.in_flight == 2
        os.kill(pid, signal.SIGKILL)
        got = [engine.collect(), engine.collect()]
        assert [r for r, _, _ in got] == expected
        assert [b for _, _, b in got] == ["cpu", "cpu"]
        assert sup.worker_pid is None and sup.status()["fallbacks"] == 1
        assert "SIGKILL" in str(sup.status()["fallback_reason"])
        # a new worker may take up to its 30 s start timeout to load on a loaded machine
        assert sup.wait_for(lambda s: s.worker_pid is not None, timeout=60)
        assert sup.worker_pid not in (None, pid)
        assert sup.status()["worker_restarts"] == 1 and sup.status()["fallback_reason"] is None
        assert engine.infer_with_backend(images[0])[0] == expected[0]
    finally:
        engine.close()
