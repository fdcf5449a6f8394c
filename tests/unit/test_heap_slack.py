"""glibc's thresholds for a long-lived process: fixed by ``edged run``, unless the
environment sets them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from edged.infer.runtime import MALLOC_ENV

CHILD = "from edged.infer.runtime import bound_heap_slack; print(bound_heap_slack())"


def child(env: dict[str, str]) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in MALLOC_ENV}
    done = subprocess.run(
        [sys.executable, "-c", CHILD], env={**clean, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_thresholds_are_fixed_on_glibc() -> None:
    assert child({}) == "True"


@pytest.mark.parametrize("name", MALLOC_ENV)
def test_thresholds_from_the_environment_are_left_alone(name: str) -> None:
    assert child({name: "262144"}) == "False"
