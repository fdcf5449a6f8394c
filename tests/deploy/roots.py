"""Fresh Debian roots for the deploy checks: debootstrap once per machine and architecture,
kept as a pristine tarball under .deploy-cache/ (git-ignored), unpacked anew for every run
so that nothing an earlier run installed is seen; and commands run in them with
systemd-nspawn."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.deploy.conftest import unavailable

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("EDGED_ROOTS_CACHE", str(REPO / ".deploy-cache" / "roots")))
# Debian 12 (Raspberry Pi OS until late 2025, Python 3.11) and Debian 13 (today's Raspberry Pi
# OS, Python 3.13)
SUITES = ("bookworm", "trixie")
SUITE = "bookworm"
MIRROR = os.environ.get("EDGED_FLEET_SIM_MIRROR", "http://deb.debian.org/debian")


def require_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        unavailable("fresh-root checks need root (debootstrap, systemd-nspawn)")
    missing = [t for t in ("debootstrap", "systemd-nspawn", "tar", *tools) if not shutil.which(t)]
    if missing:
        unavailable(f"fresh-root checks need: {', '.join(missing)} (deploy/ci-setup.sh)")


def pristine_tarball(arch: str, include: str, suite: str = SUITE) -> Path:
    """Debian ``suite`` minbase for ``arch`` with ``include``d packages, as a tarball.  Built
    once per machine; a lock lets several test runs ask for the same root at once."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    name = f"{suite}-minbase-{arch}-{include.replace(',', '+')}.tar"
    tarball = CACHE / name
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not tarball.exists():
            _debootstrap(arch, include, suite, tarball)
    return tarball


def _debootstrap(arch: str, include: str, suite: str, tarball: Path) -> None:
    build = tarball.with_name(f"{tarball.name}.build")
    shutil.rmtree(build, ignore_errors=True)
    argv = ["debootstrap", "--variant=minbase", f"--arch={arch}", f"--include={include}"]
    # an arm64 root runs its second stage under qemu: about 3 minutes on a quiet machine, and
    # 27 minutes was seen for trixie on a heavily loaded one
    try:
        proc = subprocess.run(
            [*argv, suite, str(build), MIRROR], capture_output=True, text=True, timeout=3600
        )
    finally:
        _unmount_below(build)  # a debootstrap that was stopped leaves its /proc mounted
    assert proc.returncode == 0, f"debootstrap failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    for deb in (build / "var" / "cache" / "apt" / "archives").glob("*.deb"):
        deb.unlink()
    partial = tarball.with_suffix(".partial")
    subprocess.run(["tar", "-C", str(build), "-cf", str(partial), "."], check=True)
    partial.rename(tarball)
    shutil.rmtree(build)


def _unmount_below(path: Path) -> None:
    prefix = f"{path}/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


@contextmanager
def scratch(name: str) -> Iterator[Path]:
    """A work directory under the cache, removed afterwards.  Not pytest's tmp_path: other
    pytest runs on the machine prune old /tmp/pytest-of-* directories while a long check
    still uses them."""
    base = CACHE / "work"
    base.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def fresh_root(tarball: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(dest), "-xf", str(tarball)], check=True)
    return dest


def nspawn(
    root: Path,
    command: str,
    *,
    timeout: float,
    options: list[str] | None = None,
    chdir: str = "/",
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``command`` with /bin/sh in ``root`` (host network); output and seconds taken."""
    argv = [
        "systemd-nspawn", "-D", str(root), "--register=no", "--keep-unit", "--quiet",
        "--console=pipe", f"--chdir={chdir}", *(options or []),
        "--", "/bin/sh", "-c", command,
    ]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    return proc, time.monotonic() - t0


def tail(proc: subprocess.CompletedProcess[str]) -> str:
    return f"--- stdout\n{proc.stdout[-5000:]}\n--- stderr\n{proc.stderr[-3000:]}"
