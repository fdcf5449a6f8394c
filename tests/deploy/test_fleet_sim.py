"""Deploy three simulated devices with Ansible, then break them on purpose.

In order (the tests share one fleet): site.yml converges from nothing and a second run
changes nothing; the systemd watchdog restarts a frozen daemon and a stalled frame source;
rollout.yml updates device 1, rolls device 2 back when its health gate fails and never
reaches device 3; device 3 becomes an IP camera through the role and goes through a short
and a long camera outage.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from edged.fleet import DeviceState, parse_ts

from .conftest import DEVICE_FOOTAGE, Fleet, Wheelhouse, device_clock

if TYPE_CHECKING:
    from tests.servers.mjpeg import MjpegServer

pytestmark = pytest.mark.deploy

RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


def recap(output: str) -> dict[str, dict[str, int]]:
    return {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
        for m in RECAP.finditer(output)
    }


def poll(what: str, check: Callable[[], bool], timeout: float, interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def current_release(fleet: Fleet, n: int) -> str:
    return fleet.ssh(n, "readlink /opt/edged/current").stdout.strip().rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def converged(fleet: Fleet) -> Fleet:
    if not fleet.converged:
        pytest.skip("site.yml did not converge the fleet (see test_site_converges)")
    return fleet


def test_site_converges_and_second_run_changes_nothing(
    fleet: Fleet, wheelhouses: tuple[Wheelhouse, Wheelhouse]
) -> None:
    current, _ = wheelhouses
    devices = {f"dev{n}" for n in range(1, fleet.count + 1)}

    first = fleet.playbook("site.yml")
    first_recap = recap(first.stdout)
    assert set(first_recap) == devices, first.stdout[-3000:]
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in first_recap.values())
    assert all(r["changed"] > 0 for r in first_recap.values())

    second = fleet.playbook("site.yml")
    second_recap = recap(second.stdout)
    assert set(second_recap) == devices
    changed = {h: r["changed"] for h, r in second_recap.items() if r["changed"]}
    assert not changed, f"second run changed something: {changed}\n{second.stdout[-6000:]}"

    for n in range(1, fleet.count + 1):
        props = fleet.show(
            n,
            "Type",
            "ActiveState",
            "SubState",
            "StatusText",
            "User",
            "NRestarts",
            "ExecMainStartTimestampMonotonic",
            "ActiveEnterTimestampMonotonic",
        )
        assert props["Type"] == "notify", props
        assert (props["ActiveState"], props["SubState"]) == ("active", "running"), props
        assert props["User"] == "edged"
        # STATUS= from the daemon: backend, model and fps.
        assert re.search(r"backend=\S+ model=\S+ fps=", props["StatusText"]), props
        # Type=notify: active only once READY=1 arrived, after the main process started.
        assert int(props["ActiveEnterTimestampMonotonic"]) > int(
            props["ExecMainStartTimestampMonotonic"]
        )
        assert current_release(fleet, n) == current.version

    for n in range(1, fleet.count + 1):
        state = fleet.wait_healthy(f"dev{n}", version=current.version, timeout=30)
        assert state.extra.get("device") == f"dev{n}"
        assert state.frames_processed is not None

    # The unit as installed on a device (real paths): systemd-analyze verify says nothing.
    verify = fleet.ssh(1, "systemd-analyze verify edged.service 2>&1", check=False)
    assert verify.returncode == 0 and verify.stdout.strip() == "", verify.stdout
    fleet.converged = True


def test_logs_reach_journald_with_structured_fields(converged: Fleet) -> None:
    """Through systemd.journal (Debian's python3-systemd, seen by the release's venv): each
    record carries the device, model and backend as journal fields, queryable by field."""
    n = 1
    out = converged.ssh(
        n,
        "journalctl -b -u edged --no-pager -o json EDGED_BACKEND=cpu",
        timeout=60,
    ).stdout
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert entries, "no journal entry with EDGED_BACKEND=cpu"
    last = entries[-1]
    assert last["EDGED_DEVICE"] == f"dev{n}"
    assert last["EDGED_MODEL"].endswith(".tflite")
    assert last["SYSLOG_IDENTIFIER"] == "edged"
    assert "CODE_FILE" in last  # set by JournalHandler, not by stderr capture


WATCHDOG_DROPIN = """\
[Unit]
StartLimitIntervalSec=0
[Service]
WatchdogSec=5
"""


@pytest.fixture
def fast_watchdog(converged: Fleet) -> Iterator[int]:
    """Device 3 with WatchdogSec=5 (a drop-in), restored afterwards."""
    n = 3
    path = "/etc/systemd/system/edged.service.d/90-test-watchdog.conf"
    converged.ssh(
        n,
        f"mkdir -p $(dirname {path}) && cat > {path} && systemctl daemon-reload && "
        "systemctl restart edged",
        input=WATCHDOG_DROPIN.encode(),
    )
    assert converged.show(n, "WatchdogUSec")["WatchdogUSec"] == "5s"
    converged.wait_healthy(f"dev{n}", timeout=30)
    try:
        yield n
    finally:
        converged.ssh(
            n,
            f"rm -f {path} && systemctl daemon-reload && systemctl reset-failed edged; "
            "systemctl restart edged",
            check=False,
        )


def watchdog_kills(fleet: Fleet, n: int) -> int:
    """How many times systemd's watchdog fired for edged on device n (this boot)."""
    out = fleet.ssh(n, "journalctl -b -u edged --no-pager -o cat", timeout=60).stdout
    return out.count("Watchdog timeout")


def _restarted(fleet: Fleet, n: int, before: int, old_pid: str) -> Callable[[], bool]:
    def check() -> bool:
        p = fleet.show(n, "NRestarts", "ActiveState", "MainPID")
        return (
            int(p["NRestarts"]) > before
            and p["ActiveState"] == "active"
            and p["MainPID"] not in ("0", old_pid)
        )

    return check


def test_watchdog_restarts_a_frozen_daemon(converged: Fleet, fast_watchdog: int) -> None:
    n = fast_watchdog
    props = converged.show(n, "NRestarts", "MainPID")
    before, pid = int(props["NRestarts"]), props["MainPID"]
    kills = watchdog_kills(converged, n)
    converged.ssh(n, f"kill -STOP {pid}")
    started = time.monotonic()
    poll("the watchdog to restart the frozen daemon", _restarted(converged, n, before, pid), 60)
    elapsed = time.monotonic() - started
    # The last ping may be up to WatchdogSec/2 old when the process froze.
    assert elapsed >= 2, f"restarted {elapsed:.1f}s after SIGSTOP, before the watchdog could fire"
    assert watchdog_kills(converged, n) > kills
    converged.wait_healthy(f"dev{n}", since=datetime.now(UTC), timeout=30)


def test_watchdog_restarts_when_only_the_frame_source_stalls(
    converged: Fleet, fast_watchdog: int
) -> None:
    n = fast_watchdog
    props = converged.show(n, "NRestarts", "MainPID")
    before, pid = int(props["NRestarts"]), props["MainPID"]
    kills = watchdog_kills(converged, n)
    # The replay source re-opens its files every loop: a FIFO blocks it in open().
    last = sorted(converged.ssh(n, f"ls {DEVICE_FOOTAGE}").stdout.split())[-1]
    converged.ssh(n, f"cd {DEVICE_FOOTAGE} && mv {last} /root/{last}.orig && mkfifo -m 0644 {last}")
    try:
        # The process is alive and the broker connection up; only frames stop.
        poll(
            "the watchdog to restart the stalled daemon", _restarted(converged, n, before, pid), 90
        )
    finally:
        converged.ssh(
            n,
            f"cd {DEVICE_FOOTAGE} && mv {last} /root/stall.fifo && "
            f"mv /root/{last}.orig {last} && "
            # Release a reader blocked on the old FIFO, then drop it.
            "(timeout 2 sh -c ': > /root/stall.fifo' || true) && rm -f /root/stall.fifo",
        )
    restored = datetime.now(UTC)
    state = converged.wait_healthy(f"dev{n}", since=restored, timeout=45)
    assert state.online
    # Restarted by the watchdog (not a crash): the process was alive, only frames stopped.
    assert watchdog_kills(converged, n) > kills


def test_rollout_stops_at_the_first_unhealthy_device(
    converged: Fleet, wheelhouses: tuple[Wheelhouse, Wheelhouse], tmp_path: object
) -> None:
    from pathlib import Path

    current, nxt = wheelhouses
    fleet = converged
    untouched = fleet.show(3, "InvocationID", "MainPID")
    assert current_release(fleet, 3) == current.version

    # Device 2's new configuration names a model checksum that cannot match: the new
    # release refuses to start, so its health gate fails.
    broken = Path(str(tmp_path)) / "broken.yml"
    broken.write_text(json.dumps({"all": {"hosts": {"dev2": {"edged_model_sha256": "0" * 64}}}}))
    started = time.monotonic()
    proc = fleet.playbook(
        "rollout.yml", "-i", broken, "-e", f"edged_wheelhouse={nxt.path}", check=False
    )
    elapsed = time.monotonic() - started
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-4000:]
    assert "Rollout stopped at device dev2" in out, out[-6000:]
    assert f"Restored release {current.version}" in " ".join(out.split())
    results = recap(proc.stdout)
    assert results["dev1"]["failed"] == 0
    assert results["dev2"]["failed"] == 1
    assert "dev3" not in results or results["dev3"]["ok"] == 0

    # Device 1: new release, healthy.
    assert current_release(fleet, 1) == nxt.version
    fleet.wait_healthy("dev1", version=nxt.version, timeout=30)
    # Device 2: back on the previous release and healthy again.
    assert current_release(fleet, 2) == current.version
    assert fleet.show(2, "ActiveState")["ActiveState"] == "active"
    fleet.wait_healthy("dev2", version=current.version, timeout=30)
    # Device 3: not touched at all.
    assert current_release(fleet, 3) == current.version
    assert fleet.show(3, "InvocationID", "MainPID") == untouched
    snap = fleet.snapshot()
    assert snap["dev3"].version == current.version
    assert snap["dev3"].health_ts is not None
    assert snap["dev3"].health_ts > datetime.now(UTC) - timedelta(seconds=30)
    stopped = next(line for line in out.splitlines() if "Rollout stopped" in line)
    # The message carries the daemon's own reason, from the device's journal.
    assert "sha256" in stopped, stopped
    print(f"rollout took {elapsed:.0f}s: {stopped.strip()}")


class EventRecorder:
    """The operator's subscription to one device's events (QoS 1)."""

    def __init__(self, fleet: Fleet, device: str, topic: str = "events") -> None:
        """``topic`` below the device: ``events``, or ``+/events`` for every camera's."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.events: list[dict[str, object]] = []
        self.topics: list[str] = []  # the topic of each event, in the same order
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2)
        self.client.username_pw_set("operator", fleet.operator_password_file.read_text().strip())
        subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(f"edged/{device}/{topic}", 1)
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = lambda c, u, m: self._received(m.topic, m.payload)
        self.client.connect("127.0.0.1", fleet.mqtt_port)
        self.client.loop_start()
        assert subscribed.wait(10), f"cannot subscribe to {device}'s events"

    def _received(self, topic: str, payload: bytes | bytearray) -> None:
        self.topics.append(topic)  # before the event: a reader never sees an event unmatched
        self.events.append(json.loads(payload))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def sim(fleet: Fleet, *args: str) -> None:
    from .conftest import DEPLOY, run

    run([DEPLOY / "fleet-sim", *args], env=fleet.env, timeout=300)


def test_a_power_cut_while_the_broker_is_down_loses_at_most_the_commit_window(
    converged: Fleet,
) -> None:
    """Every process of a device killed at once while its broker is away; the device boots
    again (the broker still away), then the broker comes back: every event classified more
    than one commit window before the cut arrives, in order, before the new run's own."""
    n, fleet = 3, converged
    device = f"dev{n}"
    fleet.wait_healthy(device, timeout=30)
    before = EventRecorder(fleet, device)
    poll("events from the device", lambda: len(before.events) >= 3, 30)
    run_id = before.events[-1]["run_id"]
    sim(fleet, "broker", "stop")
    before.close()
    time.sleep(4.0)  # classified with the broker away: only in the spool
    cut_at = datetime.now(UTC)
    sim(fleet, "cut", str(n))
    sim(fleet, "boot", str(n))  # the broker is still away
    time.sleep(5.0)
    sim(fleet, "broker", "start")
    after = EventRecorder(fleet, device)
    try:
        poll(
            "the new run's first event (after what the cut run left)",
            lambda: any(e["run_id"] != run_id for e in after.events),
            120,
        )
    finally:
        after.close()
    old = [e for e in before.events + after.events if e["run_id"] == run_id]
    seqs = sorted({int(str(e["seq"])) for e in old})
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), seqs  # no gap
    resent = [int(str(e["seq"])) for e in after.events if e["run_id"] == run_id]
    assert resent == sorted(resent) and resent, after.events[:5]  # in order
    last = max(old, key=lambda e: int(str(e["seq"])))
    # At 4 fps: what was classified before the last commit window (0.2 s) and the frame in
    # the pipeline (0.25 s) arrived; allow 0.5 s for a slow fsync on a shared machine.
    assert parse_ts(str(last["ts"])) >= cut_at - timedelta(seconds=0.95), (last, cut_at)
    first_new = next(i for i, e in enumerate(after.events) if e["run_id"] != run_id)
    assert all(e["run_id"] != run_id for e in after.events[first_new:])
    fleet.wait_healthy(device, timeout=60)


def test_rollout_rolls_back_a_release_that_classifies_nothing(
    converged: Fleet, wheelhouses: tuple[Wheelhouse, Wheelhouse]
) -> None:
    """Device 2's new release points at a source with no readable frame: the daemon starts
    and reports healthy-looking health, but classifies nothing; the gate says "not
    classifying" and the previous release comes back."""
    current, nxt = wheelhouses
    fleet = converged
    nothing = "/srv/edged-nothing"
    fleet.ssh(2, f"mkdir -p {nothing} && echo 'not an image' > {nothing}/frame.jpg && "
                 f"chmod -R a+rX {nothing}")  # fmt: skip
    # The test's capture paths are extra vars (they win over inventory vars): the rollout is
    # limited to device 2 and its new configuration names the empty source.
    proc = fleet.playbook(
        "rollout.yml", "--limit", "dev2", "-e", f"edged_wheelhouse={nxt.path}",
        "-e", json.dumps({"edged_capture_paths": [nothing]}), check=False,
    )  # fmt: skip
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0, out[-4000:]
    assert "Rollout stopped at device dev2" in out, out[-6000:]
    assert "not classifying" in out, out[-6000:]
    assert current_release(fleet, 2) == current.version
    fleet.wait_healthy("dev2", version=current.version, timeout=30)


CAMERA_PASSWORD = "Cam-s3cret pa$$:word"  # with characters that need quoting in a URL
CAMERA_STALL_S = 10.0
CAMERA_RECONNECT_MAX_S = 2.0
CAMERA_WATCHDOG_S = 5


def _events_of_last_run(recorder: EventRecorder) -> list[dict[str, object]]:
    events = list(recorder.events)
    if not events:
        return []
    run_id = events[-1]["run_id"]
    return [e for e in events if e["run_id"] == run_id]


def test_stream_camera_reconnects_then_the_watchdog_takes_over(
    converged: Fleet, tmp_path: object
) -> None:
    """Device 3 becomes an IP camera through the role: a real HTTP MJPEG server on the host
    (basic auth), the password a vaultable variable delivered as the systemd credential
    camera_password.  An outage shorter than capture.stall_s is bridged by reconnecting (the
    same process); a longer one stops the watchdog pings and systemd restarts the service,
    which streams and publishes again once the camera is back.  The password is in no file
    under /etc/edged, not in the unit's properties, the journal or Ansible's output."""
    from pathlib import Path

    from tests.servers.mjpeg import MjpegServer, jpeg_frames

    from .conftest import SAMPLES

    n, fleet = 3, converged
    device = f"dev{n}"
    frames = jpeg_frames([SAMPLES / "coffee.jpg"], (384, 256))
    server = MjpegServer(frames, fps=4, username="viewer", password=CAMERA_PASSWORD).start()
    port = server.port
    recorder: EventRecorder | None = None
    try:
        camera = Path(str(tmp_path)) / "camera.json"
        camera.write_text(
            json.dumps(
                {
                    "edged_capture_type": "stream",
                    "edged_capture_url": f"{server.url}/stream",
                    "edged_capture_username": "viewer",
                    "edged_capture_password": CAMERA_PASSWORD,
                    "edged_capture_reconnect_max_s": CAMERA_RECONNECT_MAX_S,
                    "edged_capture_stall_s": CAMERA_STALL_S,
                    "edged_service_overrides": {"WatchdogSec": CAMERA_WATCHDOG_S},
                }
            )
        )
        started = time.monotonic()
        play = fleet.playbook("site.yml", "--limit", device, "-e", f"@{camera}")
        play_s = time.monotonic() - started
        assert recap(play.stdout)[device]["failed"] == 0, play.stdout[-4000:]
        assert CAMERA_PASSWORD not in play.stdout + play.stderr
        assert fleet.show(n, "WatchdogUSec")["WatchdogUSec"] == f"{CAMERA_WATCHDOG_S}s"
        assert fleet.ssh(
            n, "stat -c '%a %U' /etc/credstore/edged.camera_password"
        ).stdout.split() == ["600", "root"]

        recorder = EventRecorder(fleet, device)
        poll("events from the camera", lambda: len(_events_of_last_run(recorder)) >= 3, 60)
        labels = {e["label"] for e in _events_of_last_run(recorder)}
        assert labels == {"espresso"}, labels
        # basic auth from the credential, never in the URL
        assert server.requests and all(a.startswith("Basic ") for _, a in server.requests)

        # A short outage: reconnected by the same process, the watchdog is still fed.
        props = fleet.show(n, "NRestarts", "MainPID")
        restarts, pid = int(props["NRestarts"]), props["MainPID"]
        server.stop()
        time.sleep(CAMERA_STALL_S / 2)
        before = len(recorder.events)
        server = MjpegServer(
            frames, port=port, fps=4, username="viewer", password=CAMERA_PASSWORD
        ).start()
        poll(
            "events after a short outage",
            lambda: len(recorder.events) > before,
            CAMERA_RECONNECT_MAX_S + 15,
        )
        time.sleep(CAMERA_WATCHDOG_S)  # long enough for a missed ping to kill it
        props = fleet.show(n, "NRestarts", "MainPID", "ActiveState")
        assert (int(props["NRestarts"]), props["MainPID"]) == (restarts, pid), props
        assert recorder.events[-1]["run_id"] == recorder.events[before - 1]["run_id"]

        # An outage longer than capture.stall_s: the pings stop, systemd's watchdog kills
        # the service and restarts it.
        kills = watchdog_kills(fleet, n)
        server.stop()
        lost = time.monotonic()
        poll(
            "the watchdog to restart the service without its camera",
            _restarted(fleet, n, restarts, pid),
            CAMERA_STALL_S + CAMERA_WATCHDOG_S + 60,
        )
        restarted_s = time.monotonic() - lost
        assert restarted_s >= CAMERA_STALL_S, f"restarted {restarted_s:.1f}s into the outage"
        assert watchdog_kills(fleet, n) > kills
        old_run = recorder.events[-1]["run_id"]
        server = MjpegServer(
            frames, port=port, fps=4, username="viewer", password=CAMERA_PASSWORD
        ).start()
        poll(
            "events from the restarted service",
            lambda: any(e["run_id"] != old_run for e in recorder.events),
            60,
        )
        assert {e["label"] for e in _events_of_last_run(recorder)} == {"espresso"}
        print(
            f"stream camera: playbook {play_s:.0f}s, watchdog restart {restarted_s:.0f}s "
            f"into the outage (stall_s {CAMERA_STALL_S:g}, WatchdogSec {CAMERA_WATCHDOG_S})"
        )

        # The password: only in the credential store.
        found = fleet.ssh(
            n,
            "grep -rRlF -f /dev/stdin /etc/edged /etc/systemd /opt/edged/current/config.toml "
            "/etc/credstore; true",
            input=CAMERA_PASSWORD.encode(),
        ).stdout.split()
        assert found == ["/etc/credstore/edged.camera_password"], found
        shown = fleet.ssh(n, "systemctl show edged.service").stdout
        assert "s3cret" not in shown
        journal = fleet.ssh(n, "journalctl -b --no-pager -o cat", timeout=120).stdout
        assert "s3cret" not in journal
        assert "stream http://127.0.0.1" in journal  # the daemon did log its (redacted) source
    finally:
        if recorder is not None:
            recorder.close()
        server.stop()


# ------------------------------------------------------------------- two cameras, one device

TWO_CAMERAS_DEVICE = 1
# Each camera has its own account and password, with characters that need quoting.
CAMERA_ACCOUNTS = {
    "door": ("door-viewer", "Door-s3cret pa$$:w0rd"),
    "yard": ("yard", "Yard#s3cret/%"),
}
CAMERA_PHOTOS = {"door": "coffee.jpg", "yard": "chelsea_cat.jpg"}


@pytest.fixture(scope="module")
def camera_servers(converged: Fleet) -> Iterator[dict[str, MjpegServer]]:
    """Two real HTTP MJPEG cameras on the host (the devices share its network), each with
    basic auth and a photo of its own."""
    from tests.servers.mjpeg import MjpegServer, jpeg_frames

    from .conftest import SAMPLES

    servers: dict[str, MjpegServer] = {}
    try:
        for name, (user, password) in CAMERA_ACCOUNTS.items():
            frames = jpeg_frames([SAMPLES / CAMERA_PHOTOS[name]], (384, 256))
            servers[name] = MjpegServer(frames, fps=4, username=user, password=password).start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def _cameras_vars(servers: dict[str, MjpegServer], *, paths: dict[str, str] | None = None) -> str:
    """edged_cameras for the two cameras (``paths`` replaces a camera's URL path), as an
    extra-vars JSON document."""
    cameras = []
    for name, (user, password) in CAMERA_ACCOUNTS.items():
        url = servers[name].url
        path = (paths or {}).get(name, "/stream")
        cameras.append(
            {
                "name": name,
                "type": "stream",
                "url": f"{url}{path}",
                "username": user,
                "password": password,
                "reconnect_max_s": 2.0,
            }
        )
    return json.dumps({"edged_cameras": cameras})


def wait_cameras(
    fleet: Fleet,
    device: str,
    check: Callable[[DeviceState], bool],
    what: str,
    *,
    since: datetime,
    timeout: float = 60,
) -> DeviceState:
    """Block until a health report of ``device`` newer than ``since`` satisfies ``check``."""
    from edged.fleet import FleetView, watch

    view = FleetView("edged")

    def done() -> bool:
        s = view.get(device)
        return bool(s and s.health_ts and s.health_ts > since and check(s))

    ok = watch(fleet.broker(), [f"edged/{device}/health"], view, done, timeout)
    state = view.get(device)
    assert ok, f"{device}: no health report with {what} within {timeout}s: {state}"
    assert state is not None
    return state


def _both_classify(s: DeviceState) -> bool:
    cams = s.cameras
    return set(cams) == set(CAMERA_ACCOUNTS) and all(
        c.state == "ok" and c.frames > 0 for c in cams.values()
    )


def test_a_device_with_two_ip_cameras_publishes_each_on_its_own_topic(
    converged: Fleet,
    camera_servers: dict[str, MjpegServer],
    wheelhouses: tuple[Wheelhouse, Wheelhouse],
    tmp_path: object,
) -> None:
    """Device 1 gets two IP cameras through the role (edged_cameras): each password is its
    own systemd credential (a removed camera's goes), each camera publishes at
    edged/dev1/<camera>/events with a seq of its own (1, 2, 3, ... without a gap), its
    events classify its own server's photo, and the device's health has both cameras."""
    from pathlib import Path

    current, _ = wheelhouses
    n, fleet = TWO_CAMERAS_DEVICE, converged
    device = f"dev{n}"
    extra = Path(str(tmp_path)) / "cameras.json"
    extra.write_text(_cameras_vars(camera_servers))
    # A camera configured earlier and since removed: its credential goes with it.
    stale = "/etc/credstore/edged.camera_password_porch"
    fleet.ssh(n, f"install -m 0600 /dev/null {stale}")
    recorder = EventRecorder(fleet, device, "+/events")
    try:
        since = device_clock(fleet, n)
        started = time.monotonic()
        play = fleet.playbook("site.yml", "--limit", device, "-e", f"@{extra}")
        play_s = time.monotonic() - started
        assert recap(play.stdout)[device]["failed"] == 0, play.stdout[-4000:]
        assert current_release(fleet, n) == current.version
        state = wait_cameras(fleet, device, _both_classify, "both cameras ok", since=since)
        assert state.version == current.version and state.state == "ok", state

        # A run's events: at least 5 per camera.
        def run_events() -> dict[str, list[tuple[str, dict[str, object]]]]:
            pairs = list(zip(recorder.topics, recorder.events, strict=False))
            if not pairs:
                return {}
            run_id = pairs[-1][1]["run_id"]
            out: dict[str, list[tuple[str, dict[str, object]]]] = {}
            for topic, event in pairs:
                if event["run_id"] == run_id:
                    out.setdefault(str(event.get("camera")), []).append((topic, event))
            return out

        poll(
            "5 events from each camera",
            lambda: all(len(run_events().get(c, [])) >= 5 for c in CAMERA_ACCOUNTS),
            60,
        )
        per_camera = run_events()
        assert set(per_camera) == set(CAMERA_ACCOUNTS), set(per_camera)
        for camera, received in per_camera.items():
            assert {t for t, _ in received} == {f"edged/{device}/{camera}/events"}
            seqs = [int(str(e["seq"])) for _, e in received]
            # The recorder listened before the restart: each camera counts from 1, in order.
            assert seqs == list(range(1, len(seqs) + 1)), (camera, seqs)
        labels = {c: {e["label"] for _, e in r} for c, r in per_camera.items()}
        assert labels["door"] == {"espresso"}, labels
        assert labels["yard"] and "espresso" not in labels["yard"], labels
    finally:
        recorder.close()

    # The health report: both cameras, each with its own frames, fps and backend.
    state = wait_cameras(fleet, device, _both_classify, "both cameras ok", since=since)
    for name, cam in state.cameras.items():
        assert cam.fps > 0 and cam.source_state == "streaming", (name, cam)
        assert cam.backend == state.backend and cam.model, (name, cam)
    print(f"two cameras: playbook {play_s:.0f}s; health {state.cameras_cell()}")

    # Each server saw only its own account's basic auth (a wrong one gets 401, no frames).
    for name, server in camera_servers.items():
        assert server.requests, name
        assert {a for _, a in server.requests} == {server.auth}, name

    # Each password is its own credential, root-only, loaded by the unit's drop-in; none is
    # in the configuration, the unit, its properties, the journal or Ansible's output.
    for name in CAMERA_ACCOUNTS:
        stat = fleet.ssh(n, f"stat -c '%a %U' /etc/credstore/edged.camera_password_{name}")
        assert stat.stdout.split() == ["600", "root"], name
    assert fleet.ssh(n, f"test -e {stale}", check=False).returncode == 1, stale
    dropin = fleet.ssh(n, "cat /etc/systemd/system/edged.service.d/40-cameras.conf").stdout
    for name in CAMERA_ACCOUNTS:
        assert f"LoadCredential=camera_password_{name}:edged.camera_password_{name}" in dropin, (
            dropin
        )
    config = fleet.ssh(n, "cat /etc/edged/config.toml").stdout
    assert config.count("[[cameras]]") == 2, config
    shown = fleet.ssh(n, "systemctl show edged.service").stdout
    journal = fleet.ssh(n, "journalctl -b --no-pager -o cat", timeout=120).stdout
    for name, (_, password) in CAMERA_ACCOUNTS.items():
        found = fleet.ssh(
            n,
            "grep -rRlF -f /dev/stdin /etc/edged /etc/systemd /opt/edged/current/config.toml "
            "/etc/credstore; true",
            input=password.encode(),
        ).stdout.split()
        assert found == [f"/etc/credstore/edged.camera_password_{name}"], (name, found)
        for where, text in (
            ("systemctl show", shown),
            ("journal", journal),
            ("ansible", play.stdout + play.stderr),
        ):
            assert password not in text, f"{name}'s password in the {where}"
    fleet.notes["two_cameras"] = True


def test_the_rollout_gate_passes_two_cameras_only_while_both_classify(
    converged: Fleet,
    camera_servers: dict[str, MjpegServer],
    wheelhouses: tuple[Wheelhouse, Wheelhouse],
    tmp_path: object,
) -> None:
    """rollout.yml to device 1 (two cameras): a new release whose yard camera cannot
    classify (its URL names no stream: HTTP 404) is stopped by the gate, which names the
    camera, and rolled back to the previous release, healthy on both cameras; with both
    cameras right the same release passes."""
    from pathlib import Path

    current, nxt = wheelhouses
    n, fleet = TWO_CAMERAS_DEVICE, converged
    device = f"dev{n}"
    if not fleet.notes.get("two_cameras"):
        pytest.skip("device 1 has no two-camera release to roll back to (see the test above)")
    assert current_release(fleet, n) == current.version

    broken = Path(str(tmp_path)) / "broken.json"
    broken.write_text(_cameras_vars(camera_servers, paths={"yard": "/no-such-stream"}))
    started = time.monotonic()
    proc = fleet.playbook(
        "rollout.yml", "--limit", device, "-e", f"edged_wheelhouse={nxt.path}",
        "-e", f"@{broken}", check=False,
    )  # fmt: skip
    failed_s = time.monotonic() - started
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0, out[-4000:]
    assert f"Rollout stopped at device {device}" in out, out[-6000:]
    verdict = out[out.index("did not become healthy:") : out.index("Restored release")]
    assert "not classifying on every camera: camera yard is down" in verdict, verdict
    assert "camera door" not in verdict, verdict  # only the camera at fault is blamed
    assert f"Restored release {current.version} (healthy again)" in out, out[-6000:]
    assert current_release(fleet, n) == current.version
    since = device_clock(fleet, n)
    state = wait_cameras(fleet, device, _both_classify, "both cameras ok", since=since)
    assert state.version == current.version

    good = Path(str(tmp_path)) / "good.json"
    good.write_text(_cameras_vars(camera_servers))
    started = time.monotonic()
    proc = fleet.playbook(
        "rollout.yml", "--limit", device, "-e", f"edged_wheelhouse={nxt.path}",
        "-e", f"@{good}", check=False,
    )  # fmt: skip
    passed_s = time.monotonic() - started
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert recap(proc.stdout)[device]["failed"] == 0
    assert current_release(fleet, n) == nxt.version
    since = device_clock(fleet, n)
    state = wait_cameras(fleet, device, _both_classify, "both cameras ok", since=since)
    assert state.version == nxt.version
    print(
        f"two-camera rollout: stopped and rolled back in {failed_s:.0f}s, passed in {passed_s:.0f}s"
    )
