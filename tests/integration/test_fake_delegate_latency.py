"""The fake Edge TPU delegate's latency mode (``latency_ms``) on the bundled model: it claims
the whole graph, each invoke takes the given wall time with almost no CPU, and the output is
a valid class vector.  The bench uses it to stand in for a USB or PCIe Coral."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from edged.infer.bundled import default_model_path
from tests.fakes.delegate import build_fake_delegate

litert = pytest.importorskip("ai_edge_litert.interpreter")

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="gcc is needed to build the fake delegate"
)


@pytest.fixture(scope="module")
def fake_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fake_delegate(tmp_path_factory.mktemp("fake-delegate"))


def test_each_invoke_sleeps_and_writes_one_class(fake_lib: Path) -> None:
    delegate = litert.load_delegate(str(fake_lib), {"latency_ms": "4"})
    interpreter = litert.Interpreter(
        model_path=str(default_model_path()), experimental_delegates=[delegate]
    )
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    interpreter.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    walls, cpus, tops = [], [], []
    for _ in range(20):
        c0, t0 = time.process_time(), time.perf_counter()
        interpreter.invoke()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
        scores = interpreter.get_tensor(out["index"])[0]
        assert scores.dtype == np.int8 and scores.shape == (1000,)
        assert int(scores.max()) == 127 and int((scores == 127).sum()) == 1
        assert int((scores == -128).sum()) == 999
        tops.append(int(scores.argmax()))
    assert min(walls) >= 0.004
    # the real model takes tens of ms of CPU per invoke; the sleep takes almost none
    assert sum(cpus) / len(cpus) < 0.002
    assert tops == list(range(20))


def test_bad_latency_is_refused(fake_lib: Path) -> None:
    with pytest.raises(ValueError, match="bad latency_ms 'fast'"):
        litert.load_delegate(str(fake_lib), {"latency_ms": "fast"})
