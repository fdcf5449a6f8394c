"""A backend in a worker process.

The parent owns two shared-memory blocks (input tensors, output vectors), each with
``SLOTS`` slots; a frame crosses the process boundary as bytes in shared memory plus a
two-byte command on a socket, never as a pickled array.  If the worker aborts, segfaults or
hangs, only the worker is lost: the parent sees EOF or a timeout and raises
:class:`WorkerFault`.

After the start-up handshake (pickled, once) the per-frame exchange is raw ``os.read`` /
``os.write`` on the socket's descriptor: the command ``r`` + slot, then a 9-byte reply,
``k`` + the invoke time (double, ms) or ``e`` + the length of an error message that
follows.  With two slots the parent submits the next frame before it waits for the
previous result, so the worker finds its next command already waiting and the round trip
leaves the worker's critical path; see bench/worker.py for what it costs.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import select
import signal
import struct
import sys
import time
from collections import deque
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import numpy.typing as npt

from edged.config import ModelConfig
from edged.infer.base import Inference, InferenceBackend, OutputSpec, check_spec
from edged.infer.model import ModelError, ModelFile
from edged.tensor import InputSpec

log = logging.getLogger(__name__)

RUN, QUIT = b"r", b"q\0"  # a command is two bytes: RUN is followed by the slot
SLOTS = 2
_OK = struct.Struct("<cd")  # b"k", invoke ms
_ERROR = struct.Struct("<cQ")  # b"e", length of the message that follows
_REPLY_SIZE = _OK.size  # both are 9 bytes


def _read_exact(fd: int, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class WorkerFault(RuntimeError):
    """The worker failed, died or timed out; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def _quiet_unraisable(hook: Any) -> None:
    # ai_edge_litert's Delegate.__del__ raises AttributeError after a failed load_delegate.
    if not (hook.exc_type is AttributeError and "Delegate" in repr(hook.object)):
        sys.__unraisablehook__(hook)


def _worker_main(conn: Connection, kind: str, model_path: str, cfg_json: str) -> None:
    """Runs in the worker process."""
    sys.unraisablehook = _quiet_unraisable
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    from edged.infer import cpu as _cpu  # noqa: F401
    from edged.infer import edgetpu as _edgetpu  # noqa: F401
    from edged.infer.base import BACKENDS
    from edged.infer.model import inspect_model

    cfg = ModelConfig.model_validate_json(cfg_json)
    try:
        backend = BACKENDS[kind](inspect_model(model_path), cfg)
    except ModelError as exc:
        cause = exc.__cause__ or exc
        conn.send(("error", type(cause).__name__, str(cause)))
        return
    except (OSError, ValueError, RuntimeError) as exc:
        conn.send(("error", type(exc).__name__, str(exc)))
        return
    i, o = backend.input_spec, backend.output_spec
    conn.send(("ready", i, o))
    names = conn.recv()
    # The blocks belong to the parent, which unlinks them.  (Before Python 3.13 attaching also
    # registers them with the resource tracker; a spawned child shares the parent's tracker,
    # where that is a no-op, so nothing is unregistered here: it would drop the parent's entry.)
    shm_in, shm_out = SharedMemory(name=names[0]), SharedMemory(name=names[1])
    fd = conn.fileno()
    try:
        tensors = np.ndarray((SLOTS, 1, i.height, i.width, 3), dtype=i.dtype, buffer=shm_in.buf)
        outs = np.ndarray((SLOTS, o.classes), dtype=o.dtype, buffer=shm_out.buf)
        while True:
            try:
                cmd = _read_exact(fd, 2)
            except (OSError, EOFError):
                break  # the parent is gone
            if cmd[:1] != RUN or cmd[1] >= SLOTS:
                break  # QUIT
            slot = cmd[1]
            t0 = time.perf_counter()
            try:
                outs[slot] = backend.invoke(tensors[slot])
            except (RuntimeError, ValueError) as exc:
                msg = f"{type(exc).__name__}: {exc}".encode()
                _write_all(fd, _ERROR.pack(b"e", len(msg)) + msg)
                continue
            _write_all(fd, _OK.pack(b"k", (time.perf_counter() - t0) * 1000.0))
    finally:
        del tensors, outs
        shm_in.close()
        shm_out.close()
        backend.close()


class WorkerBackend(InferenceBackend):
    """Proxy for a backend of type ``kind`` running in a worker process."""

    def __init__(
        self,
        model: ModelFile,
        cfg: ModelConfig,
        kind: str = "edgetpu",
        start_timeout: float = 30.0,
    ) -> None:
        super().__init__(model, cfg)
        self.kind = kind
        self.timeout = cfg.inference_timeout_s
        self._closed = False
        self._shm: list[SharedMemory] = []
        self._slots: deque[int] = deque()  # slots in flight, oldest first
        self._next_slot = 0
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main,
            args=(child, kind, str(model.path), cfg.model_dump_json()),
            name=f"edged-{kind}-worker",
            daemon=True,
        )
        self.process.start()
        child.close()
        try:
            self._handshake(start_timeout)
        except BaseException:
            self.close()
            raise

    @property
    def name(self) -> str:
        return self.kind

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def depth(self) -> int:
        return SLOTS

    @property
    def in_flight(self) -> int:
        return len(self._slots)

    def _handshake(self, timeout: float) -> None:
        if not self._conn.poll(timeout):
            raise WorkerFault(f"{self.kind} worker did not load the model within {timeout:g} s")
        try:
            msg = self._conn.recv()
        except (EOFError, OSError):
            self.process.join(1.0)
            raise WorkerFault(
                f"{self.kind} worker {_describe_exit(self.process.exitcode)} while loading"
            ) from None
        if msg[0] == "error":
            raise WorkerFault(f"{msg[1]}: {msg[2]}")
        _, self.input_spec, self.output_spec = msg
        i: InputSpec = self.input_spec
        o: OutputSpec = self.output_spec
        in_bytes = i.height * i.width * 3 * np.dtype(i.dtype).itemsize
        out_bytes = o.classes * np.dtype(o.dtype).itemsize
        self._shm = [
            SharedMemory(create=True, size=SLOTS * in_bytes),
            SharedMemory(create=True, size=SLOTS * out_bytes),
        ]
        shape = (SLOTS, 1, i.height, i.width, 3)
        self._in = np.ndarray(shape, dtype=i.dtype, buffer=self._shm[0].buf)
        self._out = np.ndarray((SLOTS, o.classes), dtype=o.dtype, buffer=self._shm[1].buf)
        self._conn.send([s.name for s in self._shm])
        # from here on, raw reads and writes on the descriptor (see the module's docstring)
        self._fd = self._conn.fileno()
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)

    def invoke(self, tensor: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
        return self.infer(tensor).raw

    def submit(self, tensor: npt.NDArray[np.generic], spec: InputSpec | None = None) -> None:
        """Copy the frame into a free slot and start it; returns at once."""
        check_spec(self, spec)
        if self._closed:
            raise WorkerFault(f"{self.kind} worker is closed")
        if len(self._slots) >= SLOTS:
            raise RuntimeError(f"{self.kind} worker: {SLOTS} frames in flight already")
        slot = self._next_slot
        self._in[slot] = tensor
        try:
            os.write(self._fd, RUN + bytes((slot,)))
        except OSError:
            raise self._died() from None
        self._slots.append(slot)
        self._next_slot = (slot + 1) % SLOTS

    def collect(self) -> Inference:
        """Wait (at most ``model.inference_timeout_s``) for the oldest frame's result.

        An error raised by the model in the worker is a :class:`WorkerFault` and the worker
        goes on; a death or a timeout is a :class:`WorkerFault` and the worker is killed,
        since what it would answer next could no longer be matched to a frame."""
        if self._closed:
            raise WorkerFault(f"{self.kind} worker is closed")
        slot = self._slots.popleft()
        fd = self._fd
        try:
            if not self._poll.poll(self.timeout * 1000.0):
                self._kill()
                raise WorkerFault(f"{self.kind} inference took longer than {self.timeout:g} s")
            reply = _read_exact(fd, _REPLY_SIZE)
            if reply[:1] == b"e":
                length = _ERROR.unpack(reply)[1]
                raise WorkerFault(_read_exact(fd, length).decode(errors="replace"))
        except (EOFError, OSError):
            raise self._died() from None
        self.last_ms = _OK.unpack(reply)[1]
        return Inference(self._out[slot].copy(), self.output_spec, self.kind, self.last_ms)

    def _died(self) -> WorkerFault:
        """The fault for a worker whose socket broke: how it ended, once it is gone."""
        self.process.join(0.5)
        fault = WorkerFault(f"{self.kind} worker {_describe_exit(self.process.exitcode)}")
        self._kill()
        return fault

    def _kill(self) -> None:
        """End a worker that can no longer be trusted, without asking it first."""
        if self.process.is_alive() and self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)  # also ends a SIGSTOPped worker
            self.process.join(2.0)
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._slots.clear()
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                os.write(self._conn.fileno(), QUIT)
            self.process.join(0.5)
        if self.process.is_alive() and self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)  # also ends a SIGSTOPped worker
            self.process.join(2.0)
        self._conn.close()
        if hasattr(self, "_in"):
            del self._in, self._out
        for shm in self._shm:
            shm.close()
            with contextlib.suppress(FileNotFoundError):
                shm.unlink()
        self._shm = []
