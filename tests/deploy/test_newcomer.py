"""A newcomer's first hour: the README's two commands on a fresh Debian 12.

Starts from a pristine debootstrap root (Debian bookworm minbase plus make, which a user
types the commands with), clones this repository's HEAD into it, and inside systemd-nspawn
runs ``make run FRAMES=8`` and ``make test`` as root, with no ../shared fixtures.  Each
command must install what it needs by itself.

The pristine root is cached as a tarball under .deploy-cache/ (git-ignored); every run
unpacks a fresh copy, so nothing installed by an earlier run is seen.  pip's download cache
is kept beside it so that a warm run does not fetch the same wheels again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.deploy.conftest import unavailable

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EDGED_NEWCOMER_CACHE", str(REPO / ".deploy-cache" / "newcomer")))
SUITE = "bookworm"
MIRROR = os.environ.get("EDGED_FLEET_SIM_MIRROR", "http://deb.debian.org/debian")
# what a newcomer has before the README's first command: Debian's python3 and make
INCLUDE = "python3,make"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
CA_IN_ROOT = "/usr/local/share/edged-host-ca.crt"
CHECKOUT = "/root/edged"


def _require_host() -> None:
    if os.geteuid() != 0:
        unavailable("the newcomer check needs root (debootstrap, systemd-nspawn)")
    missing = [t for t in ("debootstrap", "systemd-nspawn", "git", "tar") if not shutil.which(t)]
    if missing:
        unavailable(f"the newcomer check needs: {', '.join(missing)} (deploy/ci-setup.sh)")
    if not HOST_CA.is_file():
        unavailable(f"the newcomer check needs the host's CA bundle {HOST_CA}")


def pristine_tarball(arch: str = "amd64") -> Path:
    """The debootstrap root as a tarball, built once per machine."""
    tarball = CACHE / f"{SUITE}-minbase-{arch}.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    build = CACHE / f"root-{arch}.build"
    shutil.rmtree(build, ignore_errors=True)
    proc = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={INCLUDE}",
            f"--arch={arch}",
            SUITE,
            str(build),
            MIRROR,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, f"debootstrap failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    for deb in (build / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(build), "-cf", str(partial), "."], check=True)
    partial.rename(tarball)
    shutil.rmtree(build)
    return tarball


def fresh_root(tarball: Path, dest: Path) -> Path:
    dest.mkdir()
    subprocess.run(["tar", "-C", str(dest), "-xf", str(tarball)], check=True)
    return dest


def nspawn(
    root: Path, command: str, *, timeout: float
) -> tuple[subprocess.CompletedProcess[str], float]:
    pip_cache = CACHE / "pip-cache"
    pip_cache.mkdir(parents=True, exist_ok=True)
    argv = [
        "systemd-nspawn",
        "-D",
        str(root),
        "--register=no",
        "--keep-unit",
        "--quiet",
        "--console=pipe",
        f"--bind-ro={HOST_CA}:{CA_IN_ROOT}",
        f"--bind={pip_cache}:/root/.cache/pip",
        f"--setenv=PIP_CERT={CA_IN_ROOT}",
        "--setenv=PIP_DEFAULT_TIMEOUT=180",
        f"--chdir={CHECKOUT}",
        "--",
        "/bin/sh",
        "-c",
        command,
    ]
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return proc, time.monotonic() - t0


def _tail(proc: subprocess.CompletedProcess[str]) -> str:
    return f"--- stdout\n{proc.stdout[-5000:]}\n--- stderr\n{proc.stderr[-3000:]}"


def test_make_run_and_make_test_on_a_fresh_debian(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _require_host()
    t0 = time.monotonic()
    tarball = pristine_tarball()
    root = fresh_root(tarball, tmp_path / "root")
    prepared = time.monotonic() - t0
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(root / CHECKOUT.lstrip("/"))],
        check=True,
        capture_output=True,
    )
    assert not (root / "root" / "shared").exists()

    run, run_s = nspawn(root, "make run FRAMES=8 2>&1", timeout=1200)
    with capsys.disabled():
        print(f"\nnewcomer: root ready in {prepared:.0f} s; `make run FRAMES=8` took {run_s:.0f} s")
    assert run.returncode == 0, f"make run FRAMES=8 failed\n{_tail(run)}"
    text = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout)
    events = re.findall(r"edged/demo/events #(\d+) (\S+): (.+?) (0\.\d\d|1\.00)", text)
    assert len(events) == 8, f"expected 8 classified events\n{_tail(run)}"
    assert "XNNPACK" not in run.stdout, "the runtime's INFO line leaked into the output"

    test, test_s = nspawn(root, "make test 2>&1", timeout=2400)
    summary = test.stdout.strip().splitlines()[-1] if test.stdout.strip() else ""
    with capsys.disabled():
        print(f"newcomer: `make test` took {test_s:.0f} s: {summary}")
    assert test.returncode == 0, f"make test failed\n{_tail(test)}"
    counts = dict(
        (k, int(n)) for n, k in re.findall(r"(\d+) (passed|failed|skipped|error)", summary)
    )
    assert counts.get("passed", 0) > 0 and not counts.get("failed") and not counts.get("error")
    total = counts["passed"] + counts.get("skipped", 0)
    assert counts.get("skipped", 0) <= total // 10, f"too many tests skipped: {summary}"
