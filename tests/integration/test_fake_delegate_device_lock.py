"""The fake Edge TPU's ``device_lock``: like a real Coral, one process at a time.

A process that holds the device keeps every other process out (``load_delegate`` raises
ValueError, as libedgetpu's does when the device is busy) until it closes the delegate or
dies; within the holding process the device is shared, and one delegate serves several
interpreters.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.fakes.delegate import build_fake_delegate
from tests.support import BUNDLED, scaled

litert = pytest.importorskip("ai_edge_litert.interpreter")

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="gcc is needed to build the fake delegate"
)

# Runs in a child process: open the device (load the delegate), say so, wait for stdin.
HOLDER = textwrap.dedent(
    """
    import os, sys
    from ai_edge_litert.interpreter import load_delegate

    library, lock = sys.argv[1:]
    delegate = load_delegate(library, {"device_lock": lock})
    os.write(1, b"open\\n")
    sys.stdin.read()
    """
)


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_delegate(tmp_path_factory.mktemp("fake-delegate"))


def hold(fake_lib: Path, lock: Path) -> subprocess.Popen[str]:
    """A process that has the device open (returns once it has)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(fake_lib), str(lock)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line == "open\n", proc.stderr.read() if proc.stderr else line
    return proc


def test_a_second_process_finds_the_device_busy(fake_lib: Path, tmp_path: Path) -> None:
    lock = tmp_path / "usb0.lock"
    holder = hold(fake_lib, lock)
    try:
        with pytest.raises(ValueError) as excinfo:
            litert.load_delegate(str(fake_lib), {"device_lock": str(lock)})
        assert str(excinfo.value) == (
            f"Failed to load delegate from {fake_lib}\n"
            f"fake edgetpu: device busy: another process has opened it (lock '{lock}')"
        )
        # a second holder process fails the same way
        other = subprocess.run(
            [sys.executable, "-c", HOLDER, str(fake_lib), str(lock)],
            input="",
            capture_output=True,
            text=True,
            timeout=scaled(60),
            check=False,
        )
        assert other.returncode != 0 and "device busy" in other.stderr, other.stderr
        # another device is free
        free = litert.load_delegate(str(fake_lib), {"device_lock": str(tmp_path / "usb1.lock")})
        assert free._get_native_delegate_pointer()
    finally:
        holder.kill()
        holder.wait()
    del excinfo, free
    gc.collect()


def test_the_device_is_free_again_when_its_holder_dies_or_closes(
    fake_lib: Path, tmp_path: Path
) -> None:
    lock = tmp_path / "usb0.lock"
    holder = hold(fake_lib, lock)
    os.kill(holder.pid, signal.SIGKILL)  # the kernel releases a dead process's lock
    holder.wait()
    delegate = litert.load_delegate(str(fake_lib), {"device_lock": str(lock)})
    probe = [sys.executable, "-c", HOLDER, str(fake_lib), str(lock)]
    busy = subprocess.run(
        probe, input="", capture_output=True, text=True, timeout=scaled(60), check=False
    )
    assert busy.returncode != 0 and "device busy" in busy.stderr, busy.stderr
    del delegate  # destroying the last delegate that holds it closes the device
    gc.collect()
    free = subprocess.run(
        probe, input="", capture_output=True, text=True, timeout=scaled(60), check=False
    )
    assert free.returncode == 0, free.stderr


def test_one_process_shares_the_device_among_its_interpreters(
    fake_lib: Path, tmp_path: Path
) -> None:
    """As libedgetpu: two delegates naming the device in one process share it, and one
    delegate may serve several interpreters."""
    lock = tmp_path / "usb0.lock"
    options = {"device_lock": str(lock), "latency_ms": "1"}
    first = litert.load_delegate(str(fake_lib), options)
    second = litert.load_delegate(str(fake_lib), options)
    interpreters = []
    for _ in range(2):
        interp = litert.Interpreter(model_path=str(BUNDLED), experimental_delegates=[first])
        interp.allocate_tensors()
        interpreters.append(interp)
    outputs = []
    for interp in interpreters:
        spec = interp.get_input_details()[0]
        interp.set_tensor(spec["index"], np.zeros(spec["shape"], dtype=spec["dtype"]))
        interp.invoke()
        outputs.append(interp.get_tensor(interp.get_output_details()[0]["index"]).argmax())
    # the delegate's invoke count runs across both interpreters: class 0, then class 1
    assert outputs == [0, 1]
    del interpreters, interp, first
    gc.collect()
    probe = [sys.executable, "-c", HOLDER, str(fake_lib), str(lock)]
    busy = subprocess.run(
        probe, input="", capture_output=True, text=True, timeout=scaled(60), check=False
    )
    assert "device busy" in busy.stderr, "the second delegate still holds the device"
    del second
    gc.collect()
    free = subprocess.run(
        probe, input="", capture_output=True, text=True, timeout=scaled(60), check=False
    )
    assert free.returncode == 0, free.stderr
