"""The fake Edge TPU delegate against the real LiteRT runtime.

These pin down what ai_edge_litert does when an external delegate library
loads, fails to load, aborts, hangs or meets an Edge TPU compiled model, so
the Edge TPU backend can be tested without a TPU.
"""

from __future__ import annotations

import gc
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.fakes.delegate import build_fake_delegate, prepare_calls
from tests.support import BUNDLED, CONFIDENT, CONFIDENT_LABEL, MODELS, need

litert = pytest.importorskip("ai_edge_litert.interpreter")
Image = pytest.importorskip("PIL.Image")

CPU_MODEL = BUNDLED
# an Edge TPU compiled model: only in the shared fixtures
TPU_MODEL = MODELS / "mobilenet_v1_0.25_128_quant_edgetpu.tflite"
PHOTO = CONFIDENT

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="gcc is needed to build the fake delegate"
)

# Runs in a child process: load the fake delegate with options from argv,
# then build an interpreter with it, printing a line after each step.
CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    from ai_edge_litert.interpreter import Interpreter, load_delegate

    library, model, *pairs = sys.argv[1:]
    options = dict(pair.split("=", 1) for pair in pairs)

    def say(text):
        os.write(1, (text + "\\n").encode())  # one write: lines never interleave

    def tick():
        n = 0
        while True:
            n += 1
            say(f"tick {n}")
            time.sleep(0.05)

    if options.pop("ticker", None):
        threading.Thread(target=tick, daemon=True).start()
    delegate = load_delegate(library, options)
    say("loaded")
    interpreter = Interpreter(model_path=model, experimental_delegates=[delegate])
    say("constructed")
    interpreter.allocate_tensors()
    say("allocated")
    """
)


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_delegate(tmp_path_factory.mktemp("fake-delegate"))


@pytest.fixture(scope="module")
def parrot() -> np.ndarray[Any, np.dtype[np.int8]]:
    """The photo as the bundled model's int8 input."""
    with Image.open(PHOTO) as image:
        rgb = image.convert("RGB").resize((224, 224))
    return (np.asarray(rgb, dtype=np.int16) - 128).astype(np.int8)[np.newaxis]


def classify(model: Path, image: np.ndarray[Any, Any], delegates: list[Any] | None) -> np.ndarray:
    interpreter = litert.Interpreter(model_path=str(model), experimental_delegates=delegates)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    output: np.ndarray = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy()
    return output


def run_child(fake_lib: Path, *options: str, model: Path = CPU_MODEL) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(fake_lib), str(model), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_build_is_cached_by_source_hash(tmp_path: Path) -> None:
    first = build_fake_delegate(tmp_path)
    mtime = first.stat().st_mtime_ns
    second = build_fake_delegate(tmp_path)
    assert second == first
    assert second.stat().st_mtime_ns == mtime
    assert first.name == "libfake_edgetpu.so"
    assert [p.name for p in first.parent.iterdir()] == ["libfake_edgetpu.so"]


def test_passthrough_runs_everything_on_cpu_kernels(fake_lib: Path, parrot: np.ndarray) -> None:
    delegate = litert.load_delegate(str(fake_lib))  # mode defaults to passthrough
    assert prepare_calls(fake_lib, delegate) == 0

    plain = classify(CPU_MODEL, parrot, None)
    delegated = classify(CPU_MODEL, parrot, [delegate])

    # Prepare ran once (when the interpreter applied the delegate), claimed no
    # nodes, and the CPU kernels gave bit-identical scores.
    assert prepare_calls(fake_lib, delegate) == 1
    assert delegated.dtype == np.int8
    assert delegated.shape == (1, 1000)
    np.testing.assert_array_equal(delegated, plain)
    from edged.infer import inspect_model

    labels = inspect_model(CPU_MODEL).embedded_labels
    assert labels is not None and labels[int(delegated.argmax())] == CONFIDENT_LABEL


def test_explicit_passthrough_mode_and_unknown_keys_are_accepted(fake_lib: Path) -> None:
    delegate = litert.load_delegate(str(fake_lib), {"mode": "passthrough", "device": "usb:0"})
    assert delegate._get_native_delegate_pointer()


def test_null_mode_raises_value_error_with_reported_text(fake_lib: Path) -> None:
    with pytest.raises(ValueError) as excinfo:
        litert.load_delegate(str(fake_lib), {"mode": "null"})
    assert str(excinfo.value) == (
        f"Failed to load delegate from {fake_lib}\nfake edgetpu: no Edge TPU device found"
    )


def test_unknown_mode_is_refused(fake_lib: Path) -> None:
    with pytest.raises(ValueError, match="bad mode 'bogus': valid modes are passthrough"):
        litert.load_delegate(str(fake_lib), {"mode": "bogus"})


def load_error(library: Path, expected: type[Exception]) -> str:
    """The message load_delegate raises for a broken library.

    The half-built Delegate is collected here, inside the test, so the
    runtime's noisy __del__ is reported (and filtered) where it belongs.
    """
    with pytest.raises(expected) as excinfo:
        litert.load_delegate(str(library))
    message = str(excinfo.value)
    del excinfo
    gc.collect()
    return message


# The runtime's Delegate.__del__ then trips over its half-built object and
# prints "Exception ignored in: <function Delegate.__del__ ...>" (AttributeError).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_missing_library_raises_os_error(tmp_path: Path) -> None:
    # What the runtime does when libedgetpu.so.1 is not installed at all.
    missing = tmp_path / "libedgetpu.so.1"
    message = load_error(missing, OSError)
    assert message == f"{missing}: cannot open shared object file: No such file or directory"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_library_without_plugin_symbols_raises_attribute_error(tmp_path: Path) -> None:
    source = tmp_path / "empty.c"
    source.write_text("int not_a_delegate(void) { return 0; }\n")
    library = tmp_path / "libempty.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)
    message = load_error(library, AttributeError)
    assert message == f"{library}: undefined symbol: tflite_plugin_create_delegate"


def test_prepare_failure_raises_runtime_error_at_construction(fake_lib: Path) -> None:
    delegate = litert.load_delegate(str(fake_lib), {"fail_on_prepare": 1})
    with pytest.raises(RuntimeError) as excinfo:
        litert.Interpreter(model_path=str(CPU_MODEL), experimental_delegates=[delegate])
    assert str(excinfo.value) == (
        "Restored original execution plan after delegate application failure."
    )


def test_edgetpu_model_with_passthrough_fails_at_construction(fake_lib: Path) -> None:
    # With a delegate the graph is prepared while the delegate is applied, so
    # the unresolved Edge TPU custom op fails inside Interpreter(), not later.
    delegate = litert.load_delegate(str(fake_lib))
    with pytest.raises(RuntimeError) as excinfo:
        litert.Interpreter(model_path=str(need(TPU_MODEL)), experimental_delegates=[delegate])
    assert str(excinfo.value) == (
        "Encountered unresolved custom op: edgetpu-custom-op.\n"
        "See instructions: https://www.tensorflow.org/lite/guide/ops_custom "
        "Node number 0 (edgetpu-custom-op) failed to prepare."
    )


def test_edgetpu_model_without_delegate_fails_at_allocate(fake_lib: Path) -> None:
    interpreter = litert.Interpreter(model_path=str(need(TPU_MODEL)))
    with pytest.raises(RuntimeError, match=r"unresolved custom op: edgetpu-custom-op\."):
        interpreter.allocate_tensors()


def test_abort_mode_kills_the_process_while_loading(fake_lib: Path) -> None:
    child = run_child(fake_lib, "mode=abort")
    out, _ = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGABRT
    assert "loaded" not in out


def test_abort_on_prepare_kills_the_process_when_applied(fake_lib: Path) -> None:
    child = run_child(fake_lib, "abort_on_prepare=1")
    out, _ = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGABRT
    assert out.split() == ["loaded"]


class _Lines:
    """Collect a child's stdout lines with arrival times, from a thread."""

    def __init__(self, child: subprocess.Popen[str]) -> None:
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(child,), daemon=True)
        self._thread.start()

    def _read(self, child: subprocess.Popen[str]) -> None:
        assert child.stdout is not None
        for line in child.stdout:
            self.lines.append((time.monotonic(), line.strip()))

    def wait_for(self, text: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in list(self.lines):
                if line == text:
                    return at
            time.sleep(0.02)
        raise AssertionError(f"child never printed {text!r}: {self.lines}")

    def ticks(self) -> int:
        return sum(1 for _, line in list(self.lines) if line.startswith("tick"))

    def join(self) -> None:
        self._thread.join(timeout=30)


@pytest.fixture
def hung_child(fake_lib: Path) -> Iterator[tuple[subprocess.Popen[str], _Lines]]:
    child = run_child(fake_lib, "hang_on_prepare=1", "ticker=1")
    lines = _Lines(child)
    try:
        yield child, lines
    finally:
        child.kill()
        child.wait(timeout=30)
        lines.join()  # the reader stops at EOF once the child is gone
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()


def test_hang_on_prepare_blocks_interpreter_and_holds_the_gil(
    hung_child: tuple[subprocess.Popen[str], _Lines],
) -> None:
    child, lines = hung_child
    lines.wait_for("loaded", timeout=120)
    time.sleep(1.5)
    ticks_then = lines.ticks()
    time.sleep(1.5)
    # Still inside Interpreter(): never constructed, never exited ...
    assert child.poll() is None
    assert "constructed" not in [line for _, line in lines.lines]
    # ... and no other Python thread of that process runs meanwhile: the
    # runtime applies delegates without releasing the GIL, so only another
    # process can notice the hang.
    assert lines.ticks() == ticks_then
