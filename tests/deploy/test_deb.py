"""One Pi, one command: the Debian package in a booted Debian, bookworm and trixie.

For each suite, deploy/build-deb.sh builds two packages of this tree (as it is, and with
its version bumped).  A fresh root of that suite (debootstrap minbase with systemd, python3,
python3-venv, adduser and mosquitto: the package's dependencies and the broker it
recommends) boots with systemd as PID 1 in systemd-nspawn, on a private network: its
``localhost`` is its own, as on a Pi, and its mosquitto listens there.  Then, as a user
would:

- ``apt install ./edged_<version>_amd64.deb``: the service is enabled and started with the
  default configuration (the Pi camera).  There is no camera: the service is active, not
  restarting, and says what is missing in its status and journal;
- the configuration is edited (photos from a folder, a model of one's own in
  /opt/edged/models) and the service restarted; ``mosquitto_sub`` in the container receives
  every event from then on;
- ``apt install`` of the next version: the configuration and the model are kept, the service
  restarts once, and no event is lost (every seq of each run_id arrives);
- ``apt remove`` stops and removes the service and keeps configuration and state;
- ``apt purge`` leaves nothing of edged: the file list equals the one taken before the
  install, but for the package manager's own records and logs.

The packages are built once per run (each suite's wheelhouse is downloaded once and serves
both versions); the roots are cached per machine (tests/deploy/roots.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.conftest import bumped_tree, run
from tests.deploy.roots import fresh_root, pristine_tarball, require_tools, scratch

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SUITES = ("bookworm", "trixie")
# what the package depends on, and the broker it recommends: the container needs no mirror
INCLUDE = "systemd,systemd-sysv,dbus,python3,python3-venv,adduser,mosquitto,mosquitto-clients"
PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PHOTOS = "/srv/photos"
MODEL = "/opt/edged/models/mine.tflite"
# A drop-in for the no-camera check only: a watchdog ping that stopped would kill the
# service within this many seconds instead of 30.
WATCHDOG_S = 6
# the daemon's own: no frame for health.stall_s (default 10 s) would stop the pings
STALL_S = 10
# Paths the package manager, the logs and the interpreter's bytecode caches own: they may
# differ after a purge.  Nothing in them may be named after edged.
# The broker's own database (/var/lib/mosquitto), written when the test stops it, is the
# broker's: it holds edged's retained status and health as it holds any client's.
BOOKKEEPING = re.compile(
    r"^(var/lib/dpkg/|var/lib/apt/|var/cache/apt/|var/cache/debconf/|var/cache/ldconfig/|"
    r"var/log/|var/lib/systemd/|etc/(passwd|group|shadow|gshadow)-$|"
    r"usr/lib/python3[^/]*/.*__pycache__|var/lib/mosquitto/mosquitto.db$)"
)


# --------------------------------------------------------------------------- packages


@dataclass(frozen=True)
class Debs:
    current: Path
    next: Path
    version: str  # the Debian version of each
    next_version: str
    build_s: float  # building one package from its wheelhouse


def _deb_version(deb: Path) -> str:
    return run(["dpkg-deb", "-f", deb, "Version"]).stdout.strip()


@pytest.fixture(scope="module")
def packages() -> Iterator[dict[str, Debs]]:
    """Per suite, the package of this tree and of the same with its version bumped."""
    require_tools("dpkg-deb", "nsenter")
    with scratch("deb") as work:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EDGED_")}
        env["EDGED_SRC"] = str(REPO)
        nxt = bumped_tree(work / "src-next")
        run(
            [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
             "--wheel-dir", work / "next-wheel", nxt],
            timeout=600,
        )  # fmt: skip
        next_wheel = next((work / "next-wheel").glob("edged-*.whl"))
        debs: dict[str, Debs] = {}
        for suite in SUITES:
            wheels = work / f"wheels-{suite}"
            run([DEPLOY / "build-wheelhouse.sh", "x86_64", suite, wheels], env=env, timeout=1200)
            next_wheels = work / f"wheels-{suite}-next"
            shutil.copytree(wheels, next_wheels, ignore=shutil.ignore_patterns("edged-*.whl"))
            shutil.copy2(next_wheel, next_wheels)
            built = []
            t0 = time.monotonic()
            for house in (wheels, next_wheels):
                out = run(
                    [DEPLOY / "build-deb.sh", "amd64", suite, work / "debs"],
                    env={**env, "EDGED_WHEELHOUSE": str(house)},
                    timeout=600,
                )
                built.append(Path(out.stdout.strip().splitlines()[-1]))
            build_s = (time.monotonic() - t0) / 2
            debs[suite] = Debs(
                built[0], built[1], _deb_version(built[0]), _deb_version(built[1]), build_s
            )
            assert debs[suite].version != debs[suite].next_version
        yield debs


def test_the_packaged_configuration_is_valid() -> None:
    """/etc/edged/config.toml as shipped: valid, the Pi camera, the broker on this machine."""
    config = DEPLOY / "deb" / "config.toml"
    proc = run([sys.executable, "-m", "edged", "check-config", "--config", config], check=False)
    assert proc.returncode == 0, proc.stderr
    text = config.read_text()
    assert 'type = "picamera2"' in text and 'url = "mqtt://localhost"' in text


# Tags the host's lintian knows but a package's own suite's lintian does not: bookworm's
# lintian (CI's) reviewing the trixie package asks for an init.d script, a tag trixie's
# lintian dropped (and whose override it calls an error).  Per suite, what may stay.
FOREIGN_TAGS = {
    "bookworm": set(),
    "trixie": {"package-supports-alternative-init-but-no-init.d-script"},
}


def test_lintian_is_clean(packages: dict[str, Debs], capsys: pytest.CaptureFixture[str]) -> None:
    """Every tag lintian finds (pedantic and info included) is fixed or overridden with its
    reason in deploy/deb/lintian-overrides*."""
    require_tools("lintian")
    host = run(["lintian", "--version"]).stdout.strip()
    for suite, debs in packages.items():
        proc = run(
            ["lintian", "--pedantic", "--display-info", "--display-experimental", debs.current],
            check=False,
            timeout=600,
        )
        tags = re.findall(r"^[EWIPX]: edged: (\S+)", proc.stdout, flags=re.MULTILINE)
        unexplained = [t for t in tags if t not in FOREIGN_TAGS[suite]]
        assert proc.returncode == 0 and not unexplained, (
            f"{host} on {debs.current.name}:\n{proc.stdout}"
        )
        with capsys.disabled():
            size_mb = debs.current.stat().st_size / 1e6
            print(
                f"\n{debs.current.name}: {size_mb:.1f} MB, built in {debs.build_s:.1f} s "
                f"from its wheelhouse; {host}: {', '.join(tags) or 'no tag'}"
            )


# --------------------------------------------------------------------------- the container


@dataclass
class Container:
    suite: str
    root: Path
    nspawn: subprocess.Popen[bytes]
    leader: int = 0
    subscribers: list[subprocess.Popen[str]] = field(default_factory=list)

    def argv(self, command: str) -> list[str]:
        return [
            "nsenter", "-t", str(self.leader), "-a",
            "env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive",
            "/bin/sh", "-c", command,
        ]  # fmt: skip

    def sh(self, command: str, *, timeout: float = 120, check: bool = True) -> str:
        proc = subprocess.run(
            self.argv(command),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"in the container: {command!r} exited {proc.returncode}\n"
                f"--- stdout\n{proc.stdout[-5000:]}\n--- stderr\n{proc.stderr[-3000:]}"
            )
        return proc.stdout

    def show(self, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show edged.service -p {','.join(props)}")
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def journal(self) -> str:
        return self.sh("journalctl -u edged.service -o cat --no-pager", check=False)

    def wait(self, what: str, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{what}: not within {timeout:g} s\n"
                    f"{self.show('ActiveState', 'SubState', 'StatusText', 'NRestarts')}\n"
                    f"--- journal\n{self.journal()[-4000:]}"
                )
            time.sleep(0.5)

    def active(self) -> bool:
        s = self.show("ActiveState", "SubState")
        return s.get("ActiveState") == "active" and s.get("SubState") == "running"


def _prepare(root: Path, name: str) -> None:
    """What a booted machine has that a debootstrap root lacks, and nothing that would
    touch the host: no network management, no timers."""
    (root / "etc" / "machine-id").write_text("")
    (root / "etc" / "hostname").write_text(f"{name}\n")
    (root / "etc" / "hosts").write_text(
        f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost\n"
    )
    for unit in (
        "systemd-networkd.service", "systemd-networkd.socket",
        "systemd-networkd-wait-online.service", "systemd-resolved.service",
        "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer",
        "e2scrub_reap.service", "fstrim.timer", "getty@tty1.service", "console-getty.service",
    ):  # fmt: skip
        link = root / "etc" / "systemd" / "system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    # the photos the edited configuration classifies (a user's, there before edged)
    photos = root / PHOTOS.lstrip("/")
    photos.mkdir(parents=True)
    for jpg in (REPO / "edged" / "samples").glob("*.jpg"):
        shutil.copy2(jpg, photos)


@pytest.fixture
def container(request: pytest.FixtureRequest, packages: dict[str, Debs]) -> Iterator[Container]:
    suite: str = request.param
    tarball = pristine_tarball("amd64", INCLUDE, suite)
    debs = packages[suite]
    with scratch(f"deb-{suite}") as work:
        root = fresh_root(tarball, work / "root")
        _prepare(root, f"pi-{suite}")
        argv = [
            "systemd-nspawn", "-D", str(root), "--register=no", "--keep-unit", "-b",
            "--private-network", "--console=passive", "--timezone=off",
            f"--bind-ro={debs.current.parent}:/srv/debs",
        ]  # fmt: skip
        console = (work / "console.log").open("wb")
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=console, stderr=console, start_new_session=True
        )
        c = Container(suite, root, proc)
        try:
            deadline = time.monotonic() + 60
            while not c.leader:
                assert proc.poll() is None, (work / "console.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the container's init did not start"
                children = subprocess.run(
                    ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True
                ).stdout.split()
                c.leader = int(children[0]) if children else 0
                time.sleep(0.2)
            # systemctl fails until PID 1 listens on its socket: asked again until it answers
            c.wait(
                "the container's boot",
                lambda: (
                    c.sh("systemctl is-system-running --wait", check=False, timeout=180).strip()
                    in ("running", "degraded")
                ),
                180,
            )
            yield c
        finally:
            for sub in c.subscribers:
                sub.kill()
            # power off: the container's init killed, and with it every process in it (as
            # fleet-sim cut does); an orderly shutdown would only cost time
            if c.leader:
                os.kill(c.leader, signal.SIGKILL)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            console.close()


def _files(root: Path) -> set[str]:
    """Every path under the root (as on its disk), relative."""
    paths = set()
    for top, dirs, files in os.walk(root):
        rel = os.path.relpath(top, root)
        for name in dirs + files:
            paths.add(os.path.normpath(os.path.join(rel, name)))
    return paths


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Subscriber:
    """mosquitto_sub in the container, on edged's events: what a user would run."""

    def __init__(self, c: Container) -> None:
        self.c = c
        self.events: list[dict[str, object]] = []
        self._lock = threading.Lock()
        self._probed = threading.Event()
        self.start()

    def wait_subscribed(self) -> None:
        """Until a message published now reaches it: from then on it misses nothing."""

        def probed() -> bool:
            self.c.sh("mosquitto_pub -q 1 -t edged-test/probe -m probe")
            return self._probed.wait(0.5)

        self.c.wait("mosquitto_sub subscribed", probed, 60)

    def start(self) -> None:
        """Subscribe (again, if it ended): a persistent session (-c) at QoS 1, so that the
        broker keeps what arrives while it is away."""
        argv = self.c.argv(
            "exec mosquitto_sub -q 1 -c -i edged-test-sub -t 'edged/+/events' -t edged-test/probe"
        )
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.c.subscribers.append(self.proc)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "probe":
                self._probed.set()
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not an event: the seq checks say what is missing
            with self._lock:
                self.events.append(event)

    def seqs(self) -> dict[str, set[int]]:
        """Per run_id, the seqs received (duplicates, which QoS 1 allows, counted once)."""
        runs: dict[str, set[int]] = {}
        with self._lock:
            for e in self.events:
                runs.setdefault(str(e["run_id"]), set()).add(int(e["seq"]))  # type: ignore[call-overload]
        return runs


STOPPED = re.compile(
    r"stopped: \d+ frames processed .*?; (\d+) events \((\d+) acknowledged, (\d+) waiting"
)


@pytest.mark.parametrize("container", SUITES, indirect=True)
def test_one_command_install_upgrade_remove_purge(
    container: Container, packages: dict[str, Debs], capsys: pytest.CaptureFixture[str]
) -> None:
    c = container
    suite = c.suite
    debs = packages[suite]
    before = _files(c.root)
    # -- install: one command, the default configuration (the Pi camera, mqtt://localhost)
    t0 = time.monotonic()
    c.sh(f"apt-get install -y /srv/debs/{debs.current.name}", timeout=600)
    install_s = time.monotonic() - t0
    assert c.sh("systemctl is-enabled edged.service").strip() == "enabled"
    assert os.readlink(c.root / "opt/edged/current") == f"/opt/edged/releases/{_upstream(debs)}"
    venv_python = c.sh("/opt/edged/current/venv/bin/python -c 'import sys; print(sys.version)'")
    assert venv_python.startswith(PYTHON[suite]), venv_python
    pyvenv = c.sh("cat /opt/edged/current/venv/pyvenv.cfg")
    assert "include-system-site-packages = true" in pyvenv, pyvenv
    user = c.sh("id edged")
    for group in ("video", "plugdev", "apex"):
        assert f"({group})" in user, user

    # -- no camera: active, not restarting, says what is missing
    c.wait("edged active without a camera", c.active, 120)
    status = c.show("StatusText")["StatusText"]
    assert "waiting:" in status and "picamera2" in status, status
    assert "python3-picamera2" in c.sh("systemctl status edged.service --no-pager", check=False)
    assert "python3-picamera2" in c.journal()
    dropin = c.root / "etc/systemd/system/edged.service.d/50-test-watchdog.conf"
    dropin.parent.mkdir(parents=True)
    dropin.write_text(f"[Service]\nWatchdogSec={WATCHDOG_S}\n")
    c.sh("systemctl daemon-reload && systemctl restart edged.service")
    c.wait("edged active without a camera (short watchdog)", c.active, 120)
    first = c.show("InvocationID", "ExecMainStartTimestampMonotonic", "NRestarts")
    # systemd's monotonic clock is the host's (no time namespace)
    started = int(first.pop("ExecMainStartTimestampMonotonic")) / 1e6

    def quiet_for_long() -> bool:
        """Alive past the stall time plus two watchdog periods, never restarted."""
        s = c.show("InvocationID", "NRestarts", "ActiveState")
        assert s == {**first, "ActiveState": "active"}, f"restarted without a camera: {s}"
        return time.monotonic() - started > STALL_S + 2 * WATCHDOG_S

    c.wait("edged without a camera for a while", quiet_for_long, 120)
    journal = c.journal()
    run_log = journal[journal.rindex("waiting for it") :]
    assert "still waiting" not in run_log and "Watchdog timeout" not in journal, journal[-3000:]
    dropin.unlink()
    dropin.parent.rmdir()
    c.sh("systemctl daemon-reload")

    # -- the user's configuration: photos from a folder, a model of their own
    shutil.copy2(REPO / "models" / "efficientnet_lite0_int8.tflite", c.root / MODEL.lstrip("/"))
    config = c.root / "etc/edged/config.toml"
    text = config.read_text()
    assert 'type = "picamera2"\nfps = 5.0\n' in text and 'url = "mqtt://localhost"' in text
    text = text.replace(
        'type = "picamera2"\nfps = 5.0\n',
        f'type = "replay"\npaths = ["{PHOTOS}"]\nloop = true\nfps = 4.0\n',
    ).replace('#path = "/opt/edged/models/birds.tflite"', f'path = "{MODEL}"')
    config.write_text(text)
    c.sh("/opt/edged/current/venv/bin/edged check-config --config /etc/edged/config.toml")
    edited = _sha256(config)
    subscriber = Subscriber(c)
    subscriber.wait_subscribed()
    c.sh("systemctl restart edged.service", timeout=180)
    c.wait("edged classifying the photos", lambda: len(subscriber.seqs()) == 1, 120)
    (run1,) = subscriber.seqs()
    c.wait("events of the first run", lambda: len(subscriber.seqs()[run1]) >= 10, 120)
    assert all(e["model"] == "mine.tflite" for e in subscriber.events), subscriber.events[0]
    invocation = c.show("InvocationID")["InvocationID"]
    starts = c.journal().count("edged edge classification daemon...")

    # -- upgrade: config, model and spool kept; one restart; no event lost.  The broker is
    #    away meanwhile, so that the first run's last events wait in its spool at the stop
    #    and the new version sends them.
    mark = len(c.journal())
    c.sh("systemctl stop mosquitto.service")
    c.wait("edged sees the broker gone", lambda: "disconnected" in c.journal()[mark:], 60)
    t0 = time.monotonic()
    c.sh(f"apt-get install -y /srv/debs/{debs.next.name}", timeout=600)
    upgrade_s = time.monotonic() - t0
    c.wait("edged active after the upgrade", c.active, 120)
    journal = c.journal()
    created, acked, spooled = (int(n) for n in STOPPED.findall(journal)[-1])  # the first run's
    assert spooled > 0 and f"{spooled} event(s) kept in" in journal, journal[-3000:]
    c.sh("systemctl start mosquitto.service")  # Type=notify: it listens once this returns
    if subscriber.proc.poll() is not None:  # mosquitto_sub gave up while the broker was away
        subscriber.start()
    c.wait("events of the new version", lambda: len(subscriber.seqs()) >= 2, 120)
    runs = subscriber.seqs()
    run2 = next(r for r in runs if r != run1)
    c.wait(
        "every event of the first run",
        lambda: subscriber.seqs()[run1] >= set(range(1, created + 1)),
        60,
    )
    runs = subscriber.seqs()
    lost = set(range(1, created + 1)) - runs[run1]
    assert not lost and max(runs[run1]) == created, (created, sorted(lost)[:20])
    assert set(runs) == {run1, run2}, runs.keys()
    assert runs[run2] == set(range(1, max(runs[run2]) + 1)), "a gap in the new run's events"
    assert c.show("InvocationID")["InvocationID"] != invocation
    # one stop and one start: "Stopping ..." and "Starting ..." once each
    assert c.journal().count("edged edge classification daemon...") == starts + 2
    assert _sha256(config) == edited, "the upgrade changed the configuration"
    assert not list(config.parent.glob("config.toml.dpkg-*"))
    assert (c.root / MODEL.lstrip("/")).exists()
    assert (c.root / "var/lib/edged/events.db").exists()
    assert os.listdir(c.root / "opt/edged/releases") == [_upstream(debs, nxt=True)]
    version = c.sh("/opt/edged/current/venv/bin/edged version").splitlines()[0]
    assert version == f"edged {_upstream(debs, nxt=True)}", version

    # -- remove: the service goes; configuration, state and models stay
    c.sh("apt-get remove -y edged", timeout=300)
    assert c.show("ActiveState")["ActiveState"] in ("inactive", "failed")
    assert c.show("LoadState")["LoadState"] in ("not-found", "masked")
    assert _sha256(config) == edited
    assert (c.root / "var/lib/edged/events.db").exists()
    assert (c.root / MODEL.lstrip("/")).exists()
    assert not os.path.lexists(c.root / "opt/edged/current")
    assert not (c.root / "opt/edged/releases").exists()

    # -- purge: nothing of edged is left
    for sub in c.subscribers:
        sub.kill()
    c.sh("apt-get purge -y edged", timeout=300)
    after = _files(c.root)
    added = sorted(p for p in after - before if not BOOKKEEPING.match(p))
    removed = sorted(p for p in before - after if not BOOKKEEPING.match(p))
    named = sorted(p for p in after if "edged" in p)
    assert not added and not removed and not named, (added, removed, named)
    assert c.sh("getent passwd edged; getent group edged", check=False) == ""
    with capsys.disabled():
        size_mb = debs.current.stat().st_size / 1e6
        print(
            f"\n{suite}: {debs.current.name} {size_mb:.1f} MB; install {install_s:.1f} s, "
            f"upgrade {upgrade_s:.1f} s; first run: {created} events created, {acked} "
            f"acknowledged before its stop, {spooled} left in the spool, {len(runs[run1])} "
            f"received, {len(lost)} lost; new run: {len(runs[run2])} received"
        )


def _upstream(debs: Debs, *, nxt: bool = False) -> str:
    return (debs.next_version if nxt else debs.version).split("-")[0]
