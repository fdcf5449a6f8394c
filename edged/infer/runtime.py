"""Find a TFLite runtime: ai_edge_litert, then tflite_runtime, then tensorflow.lite."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any

log = logging.getLogger(__name__)

CANDIDATES = (
    ("ai_edge_litert", "ai_edge_litert.interpreter"),
    ("tflite_runtime", "tflite_runtime.interpreter"),
    ("tensorflow.lite", "tensorflow.lite.python.interpreter"),
)


class RuntimeMissing(ImportError):
    pass


@dataclass(frozen=True)
class Runtime:
    name: str
    Interpreter: Any
    load_delegate: Any


@cache
def get_runtime() -> Runtime:
    errors = []
    for name, module in CANDIDATES:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        return Runtime(name, mod.Interpreter, mod.load_delegate)
    raise RuntimeMissing(
        "no TFLite runtime found; install ai-edge-litert (pip install ai-edge-litert). Tried: "
        + "; ".join(errors)
    )


_fd2_lock = threading.Lock()


@contextmanager
def native_log_to_debug() -> Iterator[None]:
    """Route what the runtime's C++ logger writes to file descriptor 2 while a model loads
    ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.") into this module's log:
    its INFO lines at debug level (shown with ``--verbose``), anything else back to stderr.

    The runtime has no Python switch for its minimal logger, so the descriptor itself is
    redirected; whatever else the process wrote meanwhile is passed on afterwards.
    """
    with _fd2_lock, tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all: nothing to keep quiet
            yield
            return
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", errors="replace")
            other = []
            for line in text.splitlines(keepends=True):
                if line.startswith("INFO: "):
                    log.debug("runtime: %s", line[6:].rstrip())
                else:
                    other.append(line)
            if other:
                sys.stderr.write("".join(other))
                sys.stderr.flush()


# the distribution that ships each runtime module
DISTRIBUTIONS = {
    "ai_edge_litert": "ai-edge-litert",
    "tflite_runtime": "tflite-runtime",
    "tensorflow.lite": "tensorflow",
}


def runtime_version(runtime: Runtime) -> str | None:
    """The installed version of the runtime's distribution, when packaging knows it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTIONS[runtime.name])
    except (KeyError, PackageNotFoundError):
        return None


@cache
def _libc() -> Any:
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim, libc.mallopt  # noqa: B018 - glibc has both
    except (OSError, AttributeError):  # not glibc
        return None
    return libc


def release_freed_memory() -> None:
    """Give the heap that a closed interpreter freed back to the system (glibc keeps it
    otherwise, and each reload of a model would leave the process larger)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


# mallopt(3) parameters
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
HEAP_SLACK = 1 << 20
"""The free memory glibc may keep at the top of a heap, and the size from which a block is
mapped on its own (and unmapped when freed): 1 MiB, above a 640x480 RGB frame."""

MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def bound_heap_slack() -> bool:
    """Fix glibc's trim and mmap thresholds at :data:`HEAP_SLACK` for a long-lived process;
    False where they are left alone (not glibc, or set in the environment).

    By default glibc raises both thresholds each time it unmaps a large block (up to 32 and
    64 MiB), so a model loaded later is allocated inside the heap of the thread that loads
    it (the command thread, at a reload), and what the old model frees at its close stays at
    the top of that heap.  ``malloc_trim`` returns the free pages inside every heap but trims
    the top of the main heap only; a thread's heap gives its top back only at a ``free``
    that leaves more than the trim threshold there.  So each of the first reloads left the
    process a few MB larger.  With fixed thresholds a model's blocks of 1 MiB or more are
    mapped on their own and unmapped at close, and no heap keeps more than 1 MiB free at its
    top."""
    libc = _libc()
    if libc is None:
        return False
    given = [name for name in MALLOC_ENV if name in os.environ]
    if given:
        log.debug("malloc thresholds left as %s sets them", " and ".join(given))
        return False
    trim = libc.mallopt(M_TRIM_THRESHOLD, HEAP_SLACK) == 1
    mmap = libc.mallopt(M_MMAP_THRESHOLD, HEAP_SLACK) == 1
    return bool(trim and mmap)
