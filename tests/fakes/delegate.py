"""Build the fake Edge TPU delegate (fake_delegate.c) into a shared library.

The library is compiled with gcc at test time and cached by source hash, so
repeated calls (and parallel test workers) reuse one build. Load it with
``ai_edge_litert.interpreter.load_delegate(path, {"mode": ...})``; the modes
and options are described at the top of fake_delegate.c.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SOURCE = Path(__file__).with_name("fake_delegate.c")
LIBRARY_NAME = "libfake_edgetpu.so"
_CFLAGS = ("-shared", "-fPIC", "-O2")


def build_fake_delegate(out_dir: Path) -> Path:
    """Compile fake_delegate.c under ``out_dir`` (once per source version); return the .so."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise FileNotFoundError("gcc is needed to build the fake Edge TPU delegate")
    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(_CFLAGS).encode()).hexdigest()[:16]
    target_dir = Path(out_dir) / f"fake-edgetpu-{digest}"
    target = target_dir / LIBRARY_NAME
    if target.is_file():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target_dir)
    os.close(fd)
    try:
        result = subprocess.run(
            [gcc, *_CFLAGS, "-o", tmp_name, str(SOURCE)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"gcc failed to build {SOURCE.name}:\n{result.stderr}")
        os.replace(tmp_name, target)  # atomic: a concurrent build never sees half a file
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def prepare_calls(library: Path, delegate: object) -> int:
    """How many times the interpreter has called Prepare on a loaded fake delegate.

    ``delegate`` is the object ``load_delegate`` returned for ``library``.
    """
    lib = ctypes.CDLL(str(library))
    lib.fake_delegate_prepare_calls.argtypes = [ctypes.c_void_p]
    lib.fake_delegate_prepare_calls.restype = ctypes.c_ulong
    pointer = delegate._get_native_delegate_pointer()  # type: ignore[attr-defined]
    return int(lib.fake_delegate_prepare_calls(pointer))
