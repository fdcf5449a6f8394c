"""A backend in a worker process.

The parent owns two shared-memory blocks (input tensors, output vectors) per model, each
with ``SLOTS`` slots; a frame crosses the process boundary as bytes in shared memory plus a
two-byte command on that model's socket, never as a pickled array.  If the worker aborts,
segfaults or hangs, only the worker is lost: the parent sees EOF or a timeout and raises
:class:`WorkerFault`.

One worker process serves every Edge TPU model of one device (:class:`Devices`): a Coral
can be opened by one process at a time, so the worker loads the device's delegate once and
gives each model an interpreter with it.  A model is attached over the worker's control
socket (its command and its own socket, passed as a file descriptor); from then on each
model has its own socket and slots, and the worker serves the sockets in turn, one command
each.  A CPU worker (``model.isolate_cpu``) hosts one model.

After each model's start-up handshake (pickled, once) the per-frame exchange is raw
``os.read`` / ``os.write`` on its socket's descriptor: the command ``r`` + slot, then a
9-byte reply, ``k`` + the invoke time (double, ms) or ``e`` + the length of an error message
that follows.  With two slots the parent submits the next frame before it waits for the
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
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from multiprocessing.reduction import recv_handle, send_handle
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


class _Hosted:
    """One model in the worker process: its backend, its socket and its slots."""

    def __init__(
        self, conn: Connection, backend: InferenceBackend, shm: tuple[SharedMemory, SharedMemory]
    ) -> None:
        i, o = backend.input_spec, backend.output_spec
        self.conn, self.backend, self.shm = conn, backend, shm
        self.fd = conn.fileno()
        self.tensors = np.ndarray(
            (SLOTS, 1, i.height, i.width, 3), dtype=i.dtype, buffer=shm[0].buf
        )
        self.outs = np.ndarray((SLOTS, o.classes), dtype=o.dtype, buffer=shm[1].buf)

    def serve(self) -> bool:
        """Run the command waiting on the socket; False when the model is done with."""
        fd = self.fd
        try:
            cmd = _read_exact(fd, 2)
        except (OSError, EOFError):
            return False  # the parent is gone, or dropped the model
        if cmd[:1] != RUN or cmd[1] >= SLOTS:
            return False  # QUIT
        slot = cmd[1]
        t0 = time.perf_counter()
        try:
            self.outs[slot] = self.backend.invoke(self.tensors[slot])
        except (RuntimeError, ValueError) as exc:
            msg = f"{type(exc).__name__}: {exc}".encode()
            _write_all(fd, _ERROR.pack(b"e", len(msg)) + msg)
            return True
        _write_all(fd, _OK.pack(b"k", (time.perf_counter() - t0) * 1000.0))
        return True

    def close(self) -> None:
        del self.tensors, self.outs
        for shm in self.shm:
            shm.close()
        self.backend.close()
        self.conn.close()


def _load(
    conn: Connection, kind: str, model_path: str, cfg_json: str, delegate: Any
) -> _Hosted | None:
    """Load a model sent over ``conn`` (its own socket) and attach its slots; None when it
    could not be loaded (the error went back over ``conn``)."""
    from edged.infer.base import BACKENDS
    from edged.infer.edgetpu import EdgeTpuBackend
    from edged.infer.model import inspect_model

    cfg = ModelConfig.model_validate_json(cfg_json)
    try:
        if kind == "edgetpu":
            backend: InferenceBackend = EdgeTpuBackend(inspect_model(model_path), cfg, delegate)
        else:
            backend = BACKENDS[kind](inspect_model(model_path), cfg)
    except (ModelError, OSError, ValueError, RuntimeError) as exc:
        cause = (exc.__cause__ or exc) if isinstance(exc, ModelError) else exc
        with contextlib.suppress(OSError):
            conn.send(("error", type(cause).__name__, str(cause)))
        conn.close()
        return None
    try:
        conn.send(("ready", backend.input_spec, backend.output_spec))
        names = conn.recv()
    except (EOFError, OSError):
        backend.close()
        conn.close()
        return None
    # The blocks belong to the parent, which unlinks them.  (Before Python 3.13 attaching also
    # registers them with the resource tracker; a spawned child shares the parent's tracker,
    # where that is a no-op, so nothing is unregistered here: it would drop the parent's entry.)
    return _Hosted(conn, backend, (SharedMemory(name=names[0]), SharedMemory(name=names[1])))


def _worker_main(control: Connection, kind: str, cfg_json: str) -> None:
    """Runs in the worker process: opens the device (for the Edge TPU, its delegate, once),
    then serves every model the parent attaches, each on its own socket, in turn."""
    sys.unraisablehook = _quiet_unraisable
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    from edged.infer import cpu as _cpu  # noqa: F401
    from edged.infer import edgetpu as _edgetpu

    delegate = None
    if kind == "edgetpu":
        try:
            delegate = _edgetpu.load_edgetpu_delegate(ModelConfig.model_validate_json(cfg_json))
        except (OSError, ValueError, RuntimeError) as exc:
            control.send(("error", type(exc).__name__, str(exc)))
            return
    control.send(("ready",))
    hosted: dict[int, _Hosted] = {}
    poll = select.poll()
    poll.register(control.fileno(), select.POLLIN)
    try:
        while True:
            for fd, _ in poll.poll():
                if fd == control.fileno():
                    try:
                        msg = control.recv()
                        if msg[0] != "load":
                            return  # quit
                        conn = Connection(recv_handle(control))
                    except (EOFError, OSError, RuntimeError):
                        return  # the parent is gone
                    model = _load(conn, kind, msg[1], msg[2], delegate)
                    if model is not None:
                        hosted[model.fd] = model
                        poll.register(model.fd, select.POLLIN)
                elif not hosted[fd].serve():
                    poll.unregister(fd)
                    hosted.pop(fd).close()
    finally:
        for model in hosted.values():
            model.close()
        hosted.clear()
        del delegate  # after the interpreters that use it


class WorkerProcess:
    """A worker process and the models it hosts: one, or with the Edge TPU every model of
    one device (the device opened once, its delegate shared by their interpreters).  Its
    users are counted by :data:`DEVICES`; the last to leave ends it."""

    def __init__(self, kind: str, cfg: ModelConfig, start_timeout: float = 30.0) -> None:
        self.kind = kind
        self.options = cfg.edgetpu_options
        self.key: tuple[str, str] | None = None  # its device in DEVICES; None: one model's
        self.models: list[str] = []  # names of the models attached now
        self.users = 0
        self.loading = 0  # models being loaded now (the worker serves no frame meanwhile)
        self.loaded = 0  # models loaded so far
        self._lock = threading.Lock()
        self._reap = threading.Lock()  # one thread at a time waits for the process
        ctx = mp.get_context("spawn")
        self._ctx = ctx
        self._control, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=_worker_main,
            args=(child, kind, cfg.model_dump_json()),
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

    def _handshake(self, timeout: float) -> None:
        if not self._control.poll(timeout):
            raise WorkerFault(f"{self.kind} worker did not open the device within {timeout:g} s")
        try:
            msg = self._control.recv()
        except (EOFError, OSError):
            self.join(1.0)
            raise WorkerFault(
                f"{self.kind} worker {_describe_exit(self.process.exitcode)} while loading"
            ) from None
        if msg[0] == "error":
            raise WorkerFault(f"{msg[1]}: {msg[2]}")

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def describe_exit(self) -> str:
        return _describe_exit(self.process.exitcode)

    def attach(self, model: ModelFile, cfg: ModelConfig) -> Connection:
        """Send ``model`` to the worker with a socket of its own (returned; the model's
        handshake follows on it)."""
        with self._lock:
            conn, child = self._ctx.Pipe(duplex=True)
            try:
                self._control.send(("load", str(model.path), cfg.model_dump_json()))
                send_handle(self._control, child.fileno(), self.process.pid)
            except OSError:
                conn.close()
                raise WorkerFault(f"{self.kind} worker {self.describe_exit()}") from None
            finally:
                child.close()
            self.loading += 1
            self.models.append(model.name)
        return conn

    def detach(self, model: ModelFile) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self.models.remove(model.name)

    def loaded_one(self) -> None:
        with self._lock:
            self.loading -= 1
            self.loaded += 1

    def join(self, timeout: float) -> None:
        """Wait for the process to end (every model's thread may ask at once)."""
        with self._reap:
            self.process.join(timeout)

    def kill(self) -> None:
        """End a worker that can no longer be trusted, without asking it first."""
        if self.process.is_alive() and self.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)  # also ends a SIGSTOPped worker
        self.join(2.0)

    def close(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self._control.send(("quit",))
            self.join(0.5)
        self.kill()
        self._control.close()


class Devices:
    """The worker processes of this process, one per Edge TPU device: every Edge TPU model
    that names the same ``model.edgetpu_device`` (and library) runs in the one worker of
    that device, never two processes on one TPU.  A CPU worker is each model's own.

    A device's worker is started, and ended while alive, under that device's own lock, so
    a new worker never meets the old one still holding the device; a dead worker holds
    nothing, and is let go without waiting for that lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the table and the users counts
        self._open: dict[tuple[str, str], WorkerProcess] = {}
        self._guards: dict[tuple[str, str], threading.Lock] = {}

    def _guard(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._guards.setdefault(key, threading.Lock())

    def acquire(
        self, kind: str, model: ModelFile, cfg: ModelConfig, start_timeout: float
    ) -> WorkerProcess:
        """The worker to attach ``model`` to, started when there is none (or it died)."""
        if kind != "edgetpu":
            own = WorkerProcess(kind, cfg, start_timeout)
            own.users += 1
            return own
        key = (cfg.edgetpu_library, cfg.edgetpu_device)
        with self._guard(key):
            with self._lock:
                found = self._open.get(key)
                if found is not None and found.users > 0 and found.alive:
                    if found.options != cfg.edgetpu_options:
                        raise ModelError(
                            f"{model.name} and {', '.join(found.models)} share Edge TPU "
                            f"device {cfg.edgetpu_device or '(the first found)'!r} with "
                            f"different edgetpu_options ({cfg.edgetpu_options} against "
                            f"{found.options}): one device is opened once, with one set of "
                            "options; give the models the same options or different "
                            "edgetpu_device values"
                        )
                    found.users += 1
                    if found.models:
                        log.info(
                            "Edge TPU %s: %s runs beside %s in one worker; models not "
                            "compiled together reload their parameters at each switch",
                            cfg.edgetpu_device or "(the first found)",
                            model.name,
                            ", ".join(found.models),
                        )
                    return found
            worker = WorkerProcess(kind, cfg, start_timeout)
            worker.key = key
            with self._lock:
                self._open[key] = worker
                worker.users += 1
            return worker

    def release(self, worker: WorkerProcess) -> None:
        """One user fewer; the last one ends the process."""
        if worker.key is None or not worker.alive:
            self._drop(worker)
            return
        with self._guard(worker.key):
            self._drop(worker)

    def _drop(self, worker: WorkerProcess) -> None:
        with self._lock:
            worker.users -= 1
            if worker.users > 0:
                return
            if worker.key is not None and self._open.get(worker.key) is worker:
                del self._open[worker.key]
        worker.close()

    def processes(self) -> list[WorkerProcess]:
        with self._lock:
            return [w for w in self._open.values() if w.alive]


DEVICES = Devices()


class WorkerBackend(InferenceBackend):
    """Proxy for a model of a backend of type ``kind`` running in a worker process (for the
    Edge TPU, the worker of its device, shared with that device's other models)."""

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
        self.worker = DEVICES.acquire(kind, model, cfg, start_timeout)
        self._conn: Connection | None = None
        try:
            self._conn = self.worker.attach(model, cfg)
            try:
                self._handshake(start_timeout)
            finally:
                self.worker.loaded_one()
        except BaseException:
            self.close()
            raise

    @property
    def process(self) -> Any:
        """The worker process (shared with the other models of an Edge TPU device)."""
        return self.worker.process

    @property
    def name(self) -> str:
        return self.kind

    @property
    def pid(self) -> int | None:
        return self.worker.process.pid

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
        assert self._conn is not None
        if not self._conn.poll(timeout):
            raise WorkerFault(f"{self.kind} worker did not load the model within {timeout:g} s")
        try:
            msg = self._conn.recv()
        except (EOFError, OSError):
            self.worker.join(1.0)
            raise WorkerFault(
                f"{self.kind} worker {self.worker.describe_exit()} while loading"
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
        since what it would answer next could no longer be matched to a frame (with it,
        every model of its device falls back).  While the worker loads another model it
        serves no frame: that time is not counted against this one."""
        if self._closed:
            raise WorkerFault(f"{self.kind} worker is closed")
        slot = self._slots.popleft()
        fd = self._fd
        try:
            loaded = self.worker.loaded
            if not self._poll.poll(self.timeout * 1000.0):
                while self.worker.loading or self.worker.loaded != loaded:
                    loaded = self.worker.loaded
                    if self._poll.poll(self.timeout * 1000.0):
                        break
                else:
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
        self.worker.join(0.5)
        fault = WorkerFault(f"{self.kind} worker {self.worker.describe_exit()}")
        self._kill()
        return fault

    def _kill(self) -> None:
        """End a worker that can no longer be trusted, without asking it first."""
        self.worker.kill()
        self.close()

    def close(self) -> None:
        """Detach the model; the worker ends with the last model of its device."""
        if self._closed:
            return
        self._closed = True
        self._slots.clear()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                os.write(self._conn.fileno(), QUIT)
            self._conn.close()
        self.worker.detach(self.model)
        DEVICES.release(self.worker)
        if hasattr(self, "_in"):
            del self._in, self._out
        for shm in self._shm:
            shm.close()
            with contextlib.suppress(FileNotFoundError):
                shm.unlink()
        self._shm = []
