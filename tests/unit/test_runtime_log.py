"""The TFLite runtime's C++ log lines while a model loads: INFO to the debug log, the rest
(errors that explain a failure) still on stderr."""

from __future__ import annotations

import logging
import os

import pytest

from edged.infer.runtime import native_log_to_debug


def test_info_lines_go_to_the_debug_log_and_others_stay_on_stderr(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edged.infer.runtime")
    with native_log_to_debug():
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"ERROR: Didn't find op for builtin opcode 'FOO'\n")
    err = capfd.readouterr().err
    assert err == "ERROR: Didn't find op for builtin opcode 'FOO'\n"
    assert [r.getMessage() for r in caplog.records] == [
        "runtime: Created TensorFlow Lite XNNPACK delegate for CPU."
    ]
    os.write(2, b"after\n")  # the descriptor is back
    assert capfd.readouterr().err == "after\n"
