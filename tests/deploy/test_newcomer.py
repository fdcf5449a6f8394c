"""A newcomer's first hour: the README's two commands on a fresh Debian 12 (bookworm, Python
3.11) and a fresh Debian 13 (trixie, today's Raspberry Pi OS, Python 3.13).

Starts from a pristine debootstrap root (Debian minbase plus make, which a user types the
commands with), clones this repository's HEAD into it, and inside systemd-nspawn runs
``make run FRAMES=8`` and ``make test`` as root, with no ../shared fixtures.  Each command
must install what it needs by itself.

The pristine roots are cached as tarballs (tests/deploy/roots.py); every run unpacks a fresh
copy, so nothing installed by an earlier run is seen.  pip's and apt's download caches are
kept beside them so that a warm run does not fetch the same wheels and packages again.

Environment:
  EDGED_NEWCOMER_SUITES  the suites to check, comma-separated (default: bookworm,trixie);
                         the others are skipped, saying so
  EDGED_NEWCOMER_LOAD    N: run both commands with N CPU-bound processes beside them (a
                         loaded machine; default 0)
  EDGED_NEWCOMER_TESTS   all (default): the whole `make test`; install: `make test` with the
                         unit tests and the integration tests that use each system package
                         `make test` installs (mosquitto, openssl, gcc, GStreamer's RTSP
                         server, ffmpeg): the same install path in a quarter of the time
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.deploy.roots import (
    CACHE,
    REPO,
    SUITES,
    fresh_root,
    nspawn,
    pristine_tarball,
    require_tools,
    scratch,
    tail,
)

pytestmark = pytest.mark.deploy

# what a newcomer has before the README's first command: Debian's python3 and make
INCLUDE = "python3,make"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CA_IN_ROOT = "/usr/local/share/edged-host-ca.crt"
CHECKOUT = "/root/edged"


def in_root(
    root: Path, suite: str, command: str, timeout: float
) -> tuple[subprocess.CompletedProcess[str], float]:
    pip_cache = CACHE / "pip-cache"
    apt_cache = CACHE / f"apt-archives-{suite}-amd64"
    for cache in (pip_cache, apt_cache):
        cache.mkdir(parents=True, exist_ok=True)
    options = [
        f"--bind-ro={HOST_CA}:{CA_IN_ROOT}",
        f"--bind={pip_cache}:/root/.cache/pip",
        f"--bind={apt_cache}:/var/cache/apt/archives",
        f"--setenv=PIP_CERT={CA_IN_ROOT}",
        "--setenv=PIP_DEFAULT_TIMEOUT=180",
    ]
    return nspawn(root, command, timeout=timeout, options=options, chdir=CHECKOUT)


@contextmanager
def beside(count: int) -> Iterator[None]:
    """``count`` CPU-bound processes running on the host meanwhile."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


# the integration tests that need the system packages `make test` installs
INSTALL_TESTS = (
    "tests/unit",
    "tests/integration/test_daemon_mqtt.py",  # mosquitto
    "tests/integration/test_mqtt_tls.py",  # openssl
    "tests/integration/test_fake_delegate.py",  # gcc, libc6-dev
    "tests/integration/test_stream.py",  # GStreamer's RTSP server, ffmpeg
)


def make_test() -> str:
    mode = os.environ.get("EDGED_NEWCOMER_TESTS", "all")
    if mode == "all":
        return "make test"
    if mode == "install":
        return f"make test TESTS='{' '.join(INSTALL_TESTS)}'"
    raise ValueError(f"EDGED_NEWCOMER_TESTS={mode!r}; valid: all, install")


@pytest.mark.parametrize("suite", SUITES)
def test_make_run_and_make_test_on_a_fresh_debian(
    suite: str, capsys: pytest.CaptureFixture[str]
) -> None:
    wanted = os.environ.get("EDGED_NEWCOMER_SUITES", ",".join(SUITES)).split(",")
    if suite not in wanted:
        pytest.skip(f"{suite} not among EDGED_NEWCOMER_SUITES={','.join(wanted)}")
    load = int(os.environ.get("EDGED_NEWCOMER_LOAD", "0") or 0)
    require_tools("git")
    with scratch(f"newcomer-{suite}") as work, beside(load):
        _newcomer(work, suite, load, capsys)


def _newcomer(tmp_path: Path, suite: str, load: int, capsys: pytest.CaptureFixture[str]) -> None:
    if not HOST_CA.is_file():
        pytest.fail(f"the newcomer check needs the host's CA bundle {HOST_CA}")
    t0 = time.monotonic()
    tarball = pristine_tarball("amd64", INCLUDE, suite)
    root = fresh_root(tarball, tmp_path / "root")
    prepared = time.monotonic() - t0
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(root / CHECKOUT.lstrip("/"))],
        check=True,
        capture_output=True,
    )
    assert not (root / "root" / "shared").exists()

    what = f"newcomer on {suite}" + (f" beside {load} CPU-bound processes" if load else "")
    run, run_s = in_root(root, suite, "make run FRAMES=8 2>&1", timeout=1200 * (1 + load))
    with capsys.disabled():
        print(f"\n{what}: root ready in {prepared:.0f} s; `make run FRAMES=8` took {run_s:.0f} s")
    assert run.returncode == 0, f"make run FRAMES=8 failed\n{tail(run)}"
    text = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
    events = re.findall(r"edged/demo/events #(\d+) (\S+): (.+?) (0\.\d\d|1\.00)", text)
    assert len(events) == 8, f"expected 8 classified events\n{tail(run)}"
    assert "XNNPACK" not in run.stdout, "the runtime's INFO line leaked into the output"

    test, test_s = in_root(root, suite, f"{make_test()} 2>&1", timeout=2400 * (1 + load))
    summary = test.stdout.strip().splitlines()[-1] if test.stdout.strip() else ""
    with capsys.disabled():
        print(f"{what}: `{make_test()}` took {test_s:.0f} s: {summary}")
    assert test.returncode == 0, f"make test failed\n{tail(test)}"
    counts = dict(
        (k, int(n)) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)
    )
    assert counts.get("passed", 0) > 0 and not counts.get("failed") and not counts.get("error")
    total = counts["passed"] + counts.get("skipped", 0)
    assert counts.get("skipped", 0) <= total // 10, f"too many tests skipped: {summary}"
