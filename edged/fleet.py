"""``edged fleet``: watch a fleet of edged devices from the operator's side of the broker.

``edged fleet status`` collects the retained ``{prefix}/+/status`` and ``{prefix}/+/health``
messages and prints one row per device; ``edged fleet wait`` blocks until one device reports a
given version as healthy (used by the rolling update as its health gate).

The broker password comes from ``--password-file`` or ``$EDGED_MQTT_PASSWORD_FILE``, never
from the command line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from edged import wire
from edged.wire import Suffix

logger = logging.getLogger(__name__)

DEFAULT_URL = "mqtt://127.0.0.1:1883"
DEFAULT_PREFIX = "edged"
PASSWORD_ENV = "EDGED_MQTT_PASSWORD_FILE"  # noqa: S105 - a variable name, not a secret
USERNAME_ENV = "EDGED_MQTT_USERNAME"

SETTLE_S = 0.5  # no message for this long after the subscription: the snapshot is in

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class FleetError(Exception):
    """A problem the operator has to fix (bad URL, unreadable password file, broker down)."""


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class DeviceState:
    """What the broker told us about one device: its status and its last valid health
    report (:class:`edged.wire.Health`), whose fields the properties below read."""

    device: str
    online: bool | None = None
    health: wire.Health | None = None
    health_ts: datetime | None = None  # the report's ts, parsed (None when unreadable)
    last_seen: float | None = None  # local epoch seconds of the last message

    @property
    def version(self) -> str | None:
        return self.health.version if self.health else None

    @property
    def backend(self) -> str | None:
        return self.health.backend if self.health else None

    @property
    def model(self) -> str | None:
        return self.health.model if self.health else None

    @property
    def fps(self) -> float | None:
        return self.health.fps if self.health else None

    @property
    def cpu_temp_c(self) -> float | None:
        return self.health.cpu_temp_c if self.health else None

    @property
    def frames_processed(self) -> int | None:
        return self.health.frames_processed if self.health else None

    @property
    def run_id(self) -> str | None:
        return self.health.run_id if self.health else None

    @property
    def state(self) -> str | None:
        """starting, ok, stalled or fault, as the device reports it."""
        return self.health.state if self.health else None

    @property
    def source_live(self) -> bool | None:
        return self.health.source_live if self.health else None

    @property
    def cameras(self) -> dict[str, wire.CameraHealth]:
        """Each camera of a device with [[cameras]] (empty for one [capture] camera)."""
        return dict(self.health.cameras or {}) if self.health else {}

    def cameras_cell(self) -> str:
        """``3/4 ok (down: gate)``; ``-`` for a device with one [capture] camera."""
        cams = self.cameras
        if not cams:
            return "-"
        ok = [n for n, c in cams.items() if c.state == "ok"]
        text = f"{len(ok)}/{len(cams)} ok"
        others = [f"{c.state}: {n}" for n, c in cams.items() if c.state != "ok"]
        return text + (f" ({', '.join(others)})" if others else "")

    @property
    def extra(self) -> dict[str, Any]:
        """The health report as JSON data (empty before the first one)."""
        return self.health.model_dump(mode="json", by_alias=True) if self.health else {}

    def as_json(self) -> dict[str, Any]:
        """One device of ``edged fleet status --json``: device, online, last_seen and every
        field of its last health report (null before the first one)."""
        report = self.extra or dict.fromkeys(wire.HEALTH_FIELDS)
        for own in (wire.HEALTH_FIELDS.schema_, wire.HEALTH_FIELDS.device):
            report.pop(own, None)
        last_seen = None
        if self.last_seen is not None:
            last_seen = format_ts(datetime.fromtimestamp(self.last_seen, UTC))
        head = {wire.HEALTH_FIELDS.device: self.device, "online": self.online}
        return {**head, "last_seen": last_seen, **report}


def parse_ts(value: str) -> datetime:
    """An RFC 3339 timestamp as an aware UTC datetime (``Z`` and offsets accepted)."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    ts = datetime.fromisoformat(text)
    if ts.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no time zone; expected RFC 3339 (…Z)")
    return ts.astimezone(UTC)


def format_ts(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def split_topic(prefix: str, topic: str) -> tuple[str, str] | None:
    """``(device, kind)`` for ``{prefix}/{device}/{kind}``; None for anything else."""
    return wire.parse_topic(prefix, topic, (Suffix.STATUS, Suffix.HEALTH))


def parse_health(payload: bytes) -> wire.Health:
    """A health report; ValueError names what is wrong with it (see :func:`wire.read_health`:
    unknown fields are kept, an invalid optional field takes its default)."""
    health, dropped = wire.read_health(payload)
    if dropped:
        logger.warning(
            "device %s: health field(s) %s invalid, ignored", health.device, ", ".join(dropped)
        )
    return health


def apply_message(state: DeviceState, kind: str, payload: bytes, received: float) -> DeviceState:
    """``state`` updated with one status or health message (invalid health is ignored)."""
    if kind == Suffix.STATUS:
        try:
            status = wire.Status.parse(payload)
        except ValueError as exc:
            logger.warning("device %s: %s", state.device, exc)
            return replace(state, last_seen=received)
        return replace(state, online=status.online, last_seen=received)
    try:
        health = parse_health(payload)
    except ValueError as exc:
        logger.warning("device %s: %s", state.device, exc)
        return state
    try:
        ts = parse_ts(health.ts)
    except ValueError as exc:
        logger.warning("device %s: bad ts: %s", state.device, exc)
        ts = None
    return replace(state, health=health, health_ts=ts, last_seen=received)


class FleetView:
    """Every device seen on the broker, updated message by message (thread-safe)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()
        self._devices: dict[str, DeviceState] = {}

    def handle(self, topic: str, payload: bytes, received: float | None = None) -> str | None:
        """Record one message; the device id it was about, or None if it was not ours."""
        parsed = split_topic(self.prefix, topic)
        if parsed is None:
            return None
        device, kind = parsed
        now = time.time() if received is None else received
        with self._lock:
            old = self._devices.get(device, DeviceState(device=device))
            self._devices[device] = apply_message(old, kind, payload, now)
        return device

    def get(self, device: str) -> DeviceState | None:
        with self._lock:
            return self._devices.get(device)

    def devices(self) -> list[DeviceState]:
        with self._lock:
            return [self._devices[k] for k in sorted(self._devices)]


def is_healthy(state: DeviceState | None, version: str, since: datetime) -> bool:
    """True once ``state`` is online with a health report of ``version`` newer than ``since``."""
    return (
        state is not None
        and state.online is True
        and state.version == version
        and state.health_ts is not None
        and state.health_ts > since
    )


class Gate:
    """The rollout's health gate: a device passes when it is *classifying* the new release.

    All of: online; a health report of ``version`` newer than ``since``; no fault state
    (``state`` stalled or fault); on ``backend`` when one is asked for; and, between a first
    fresh report (the baseline) and a later one of the same run, ``frames_processed`` grew
    and (for a live source) fps > 0.  A source of files that has finished passes with
    frames processed.

    A device with ``[[cameras]]`` is judged camera by camera: every camera named in
    ``cameras`` (the configured ones) must be in its report, and at least ``min_cameras``
    of the cameras it reports (0: every one) must classify, that is report state ``ok``
    and, for a live source, have classified frames between the baseline and the later
    report.  :meth:`update` takes every new state; :meth:`failure` says which condition
    does not hold (None once the gate is passed)."""

    def __init__(
        self,
        version: str,
        since: datetime,
        backend: str | None = None,
        cameras: Sequence[str] = (),
        min_cameras: int = 0,
    ) -> None:
        if min_cameras < 0:
            raise ValueError(f"min_cameras must be 0 (every camera) or more, not {min_cameras}")
        if cameras and min_cameras > len(cameras):
            raise ValueError(
                f"min_cameras {min_cameras} is more than the {len(cameras)} camera(s) named: "
                + ", ".join(cameras)
            )
        self.version = version
        self.since = since
        self.backend = backend
        self.cameras = tuple(cameras)
        self.min_cameras = min_cameras
        self.baseline: DeviceState | None = None
        self.passed = False

    def update(self, state: DeviceState | None) -> bool:
        if state is None or self.passed:
            return self.passed
        fresh = (
            state.version == self.version
            and state.health_ts is not None
            and state.health_ts > self.since
        )
        if not fresh:
            return False
        base = self.baseline
        if base is None or base.run_id != state.run_id:
            self.baseline = state  # the window starts at the first report of this run
            base = state
        if self.failure(state) is None:
            self.passed = True
        return self.passed

    def failure(self, state: DeviceState | None) -> str | None:
        """The first condition that does not hold, in words; None if the device passes."""
        if state is None:
            return "nothing heard from it"
        if state.online is not True:
            return "its status is " + ("offline" if state.online is False else "unknown")
        if state.version != self.version:
            return f"it reports version {state.version or '?'}, expected {self.version}"
        if state.health_ts is None or state.health_ts <= self.since:
            seen = f" (last at {format_ts(state.health_ts)})" if state.health_ts else ""
            return f"no health report since the wait began{seen}"
        if state.state in ("fault", "stalled"):
            return f"not classifying: it reports state {state.state}"
        if self.backend and state.backend != self.backend:
            return f"it runs on backend {state.backend or '?'}, expected {self.backend}"
        cams = state.cameras
        missing = [n for n in self.cameras if n not in cams]
        if missing:
            return (
                f"its health report lacks camera(s) {', '.join(missing)} "
                f"(it reports: {', '.join(cams) or 'no [[cameras]]'})"
            )
        need = self.min_cameras or len(cams)
        if len(cams) < need:
            return f"it reports {len(cams)} camera(s), {need} must classify"
        idle = {
            n: f"is {c.state}" + (f" ({c.error})" if c.error else "")
            for n, c in cams.items()
            if c.state != "ok"
        }
        if len(cams) - len(idle) < need:
            return self._cameras_failure(cams, need, idle)
        base = self.baseline
        frames = state.frames_processed or 0
        if state.source_live is False:
            if frames > 0:
                return None
            return "not classifying: no frame processed from its source"
        if base is None or base.health_ts is None or state.health_ts <= base.health_ts:
            return (
                "not classifying yet: needs a second health report to see frames_processed "
                f"grow (at {frames} frames, fps {state.fps or 0:g})"
            )
        grew = frames - (base.frames_processed or 0)
        if grew <= 0 or not state.fps:
            return (
                f"not classifying: frames_processed stayed at {frames} and fps is "
                f"{state.fps or 0:g} between {format_ts(base.health_ts)} and "
                f"{format_ts(state.health_ts)}"
            )
        before = base.cameras
        for n, c in cams.items():
            if n not in idle and c.frames <= (before[n].frames if n in before else 0):
                idle[n] = (
                    f"classified nothing between {format_ts(base.health_ts)} and "
                    f"{format_ts(state.health_ts)} (frames stayed at {c.frames})"
                )
        if len(cams) - len(idle) < need:
            return self._cameras_failure(cams, need, idle)
        return None

    @staticmethod
    def _cameras_failure(
        cams: dict[str, wire.CameraHealth], need: int, idle: dict[str, str]
    ) -> str:
        head = (
            "not classifying on every camera"
            if need == len(cams)
            else f"not classifying on {need} of its {len(cams)} cameras "
            f"({len(cams) - len(idle)} classify)"
        )
        return head + ": " + "; ".join(f"camera {n} {why}" for n, why in idle.items())


def describe_wait_failure(device: str, state: DeviceState | None, version: str) -> str:
    """The gate's verdict for a device that never reached it (kept for callers of 0.1)."""
    return f"device {device}: " + (
        Gate(version, datetime.min.replace(tzinfo=UTC)).failure(state) or "healthy"
    )


# --------------------------------------------------------------------------- rendering


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f}h ago"
    return f"{seconds / 86400:.0f}d ago"


def table_rows(states: Sequence[DeviceState], now: datetime) -> list[list[str]]:
    """One row of display strings per device: the cells of ``edged fleet status``."""
    rows = []
    for s in states:
        if s.health_ts is not None:
            seen = _age((now - s.health_ts).total_seconds())
        elif s.last_seen is not None:
            seen = _age(now.timestamp() - s.last_seen)
        else:
            seen = "-"
        rows.append(
            [
                s.device,
                "yes" if s.online else "no" if s.online is False else "?",
                s.version or "-",
                s.backend or "-",
                f"{s.fps:.1f}" if s.fps is not None else "-",
                f"{s.cpu_temp_c:.1f} °C" if s.cpu_temp_c is not None else "-",
                str(s.frames_processed) if s.frames_processed is not None else "-",
                seen,
                s.cameras_cell(),
            ]
        )
    return rows


TABLE_COLUMNS = (
    "device",
    "online",
    "version",
    "backend",
    "fps",
    "temp",
    "frames",
    "last seen",
    "cameras",
)


def render_table(states: Sequence[DeviceState], now: datetime) -> Any:
    from rich.table import Table

    table = Table(title=f"{len(states)} device(s)")
    for name in TABLE_COLUMNS:
        table.add_column(name, justify="right" if name in ("fps", "temp", "frames") else "left")
    for row, state in zip(table_rows(states, now), states, strict=True):
        style = "green" if state.online else "red" if state.online is False else None
        table.add_row(*row, style=style)
    return table


# --------------------------------------------------------------------------- MQTT


@dataclass(frozen=True)
class BrokerOptions:
    url: str = DEFAULT_URL
    username: str = ""
    password_file: str = ""
    ca_file: str = ""
    prefix: str = DEFAULT_PREFIX


def read_password(path: str) -> str | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read().rstrip("\r\n")
    except OSError as exc:
        raise FleetError(f"cannot read password file {path}: {exc.strerror}") from None


def broker_address(url: str) -> wire.BrokerAddress:
    try:
        return wire.broker_address(url)
    except wire.BrokerUrlError as exc:
        hint = ": use --username/--password-file" if "credentials" in str(exc) else ""
        raise FleetError(f"{exc}{hint}") from None


BATCH = 400  # per-device subscriptions per SUBSCRIBE: their retained messages stay below
# the broker's per-client queue (mosquitto drops past 1,000 queued messages, QoS 0 included)


def watch(
    opts: BrokerOptions,
    topics: Sequence[str],
    view: FleetView,
    done: Callable[[], bool],
    timeout: float,
    *,
    settle: float = 0.0,
    per_device: Sequence[str] = (),
) -> bool:
    """Feed ``view`` from ``topics`` until ``done()`` or ``timeout`` seconds; True if done.

    With ``settle``, also stop once the retained snapshot is in: every subscription is
    acknowledged and no message came for ``settle`` seconds (the broker sends the retained
    messages of a subscription right after its SUBACK).

    Subscriptions are QoS 0: a retained snapshot needs no acknowledgement.  A broker still
    drops what a slow reader has not taken once a client's queue is full (mosquitto: 1,000
    messages), so a large fleet is read in two steps: ``topics`` first (the small ``status``
    messages, which name every device), then each device's ``per_device`` suffixes, subscribed
    by name, BATCH at a time, two batches in flight."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    host, port, tls = broker_address(opts.url)
    password = read_password(opts.password_file)
    wake = threading.Event()
    failure: list[str] = []
    subscribed = threading.Event()  # every subscription so far is acknowledged
    last_message = [time.monotonic()]
    batches: deque[list[tuple[str, int]]] = deque()
    expanded = not per_device

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"edged-fleet-{os.getpid()}-{int(time.time() * 1000) % 100000}",
    )
    if opts.username:
        client.username_pw_set(opts.username, password)
    if tls:
        client.tls_set(ca_certs=opts.ca_file or None, cert_reqs=ssl.CERT_REQUIRED)

    def on_connect(c: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            failure.append(f"broker {opts.url} refused the connection: {reason}")
            wake.set()
            return
        c.subscribe([(t, 0) for t in topics])

    outstanding = [1]  # SUBSCRIBEs not acknowledged yet

    def on_subscribe(c: mqtt.Client, *_args: Any) -> None:
        last_message[0] = time.monotonic()
        outstanding[0] -= 1
        if batches:
            outstanding[0] += 1
            c.subscribe(batches.popleft())
        elif outstanding[0] == 0:
            subscribed.set()

    def on_message(_c: mqtt.Client, _ud: Any, msg: mqtt.MQTTMessage) -> None:
        last_message[0] = time.monotonic()
        try:
            if view.handle(msg.topic, bytes(msg.payload)) is not None and done():
                wake.set()
        except Exception:  # a bad message must not kill the network thread silently
            logger.exception("cannot handle message on %s", msg.topic)

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message

    def settled() -> bool:
        quiet = time.monotonic() - last_message[0] > settle
        return settle > 0 and subscribed.is_set() and quiet

    try:
        client.connect(host, port, keepalive=30)
    except OSError as exc:
        raise FleetError(f"cannot reach broker {opts.url}: {exc}") from None
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout
        while not wake.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            wake.wait(min(remaining, 0.1))
            if done():
                wake.set()
            elif settled() and not expanded:
                expanded = True
                names = [
                    wire.topic(opts.prefix, d.device, suffix)
                    for d in view.devices()
                    for suffix in per_device
                ]
                for i in range(0, len(names), BATCH):
                    batches.append([(n, 0) for n in names[i : i + BATCH]])
                if batches:  # two in flight: at most 2 * BATCH messages queued
                    subscribed.clear()
                    for _ in range(min(2, len(batches))):
                        outstanding[0] += 1
                        client.subscribe(batches.popleft())
            elif settled():
                wake.set()
    finally:
        client.disconnect()
        client.loop_stop()
    if failure:
        raise FleetError(failure[0])
    return done()


# --------------------------------------------------------------------------- commands


def _options(args: argparse.Namespace) -> BrokerOptions:
    return BrokerOptions(
        url=args.url,
        username=args.username,
        password_file=args.password_file,
        ca_file=args.ca_file,
        prefix=args.prefix,
    )


def cmd_status(args: argparse.Namespace) -> int:
    opts = _options(args)
    view = FleetView(opts.prefix)
    topics = [wire.subscription(opts.prefix, Suffix.STATUS)]
    try:
        watch(
            opts, topics, view, lambda: False, args.wait, settle=SETTLE_S,
            per_device=[Suffix.HEALTH],
        )  # fmt: skip
    except FleetError as exc:
        print(f"edged fleet status: {exc}", file=sys.stderr)
        return EXIT_FAILED
    states = view.devices()
    if args.json:
        print(json.dumps([s.as_json() for s in states], indent=2))
        return EXIT_OK
    from rich.console import Console

    Console().print(render_table(states, datetime.now(UTC)))
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    opts = _options(args)
    try:
        since = parse_ts(args.since) if args.since else datetime.now(UTC)
    except ValueError as exc:
        print(f"edged fleet wait: bad --since: {exc}", file=sys.stderr)
        return EXIT_USAGE
    view = FleetView(opts.prefix)
    topics = [wire.topic(opts.prefix, args.device, s) for s in (Suffix.STATUS, Suffix.HEALTH)]
    try:
        gate = Gate(args.version, since, args.backend or None, args.camera or (), args.min_cameras)
    except ValueError as exc:
        print(f"edged fleet wait: {exc}", file=sys.stderr)
        return EXIT_USAGE

    def done() -> bool:
        return gate.update(view.get(args.device))

    try:
        ok = watch(opts, topics, view, done, args.timeout)
    except FleetError as exc:
        print(f"edged fleet wait: {exc}", file=sys.stderr)
        return EXIT_FAILED
    state = view.get(args.device)
    if ok and state is not None:
        print(
            f"device {args.device}: online, classifying on {state.backend} at "
            f"{state.fps or 0:g} fps, version {args.version}"
        )
        return EXIT_OK
    print(
        f"edged fleet wait: timed out after {args.timeout:g} s: device {args.device} "
        f"failed the health gate: {gate.failure(state)}",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _positive(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def _add_broker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("EDGED_MQTT_URL", DEFAULT_URL),
        help="broker, mqtt://host[:port] or mqtts://host[:port] (default: $EDGED_MQTT_URL "
        f"or {DEFAULT_URL})",
    )
    p.add_argument(
        "--prefix",
        default=os.environ.get("EDGED_MQTT_TOPIC_PREFIX", DEFAULT_PREFIX),
        help=f"topic prefix (default: {DEFAULT_PREFIX})",
    )
    p.add_argument(
        "--username",
        default=os.environ.get(USERNAME_ENV, ""),
        help=f"broker user (default: ${USERNAME_ENV})",
    )
    p.add_argument(
        "--password-file",
        default=os.environ.get(PASSWORD_ENV, ""),
        help=f"file holding the broker password (default: ${PASSWORD_ENV})",
    )
    p.add_argument("--ca-file", default="", help="CA bundle for mqtts:// (default: system CAs)")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``fleet status`` and ``fleet wait`` to the ``edged`` command line.

    Each leaf parser sets ``func``: a callable taking the parsed arguments and returning the
    exit code.
    """
    fleet = subparsers.add_parser("fleet", help="show or wait for devices reporting to the broker")
    sub = fleet.add_subparsers(dest="fleet_command", metavar="{status,wait}", required=True)

    status = sub.add_parser(
        "status", help="one row per device seen on the broker", allow_abbrev=False
    )
    _add_broker_options(status)
    status.add_argument(
        "--wait",
        type=_positive,
        default=30.0,
        metavar="S",
        help="collect the retained messages for at most S seconds; it ends as soon as they "
        f"are in (no message for {SETTLE_S:g} s) (default: 30)",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(func=cmd_status)

    wait = sub.add_parser(
        "wait",
        help="exit 0 once a device runs a version and is classifying (the rollout health gate)",
        allow_abbrev=False,
    )
    _add_broker_options(wait)
    wait.add_argument("--device", required=True, help="device id")
    wait.add_argument("--version", required=True, help="version the device must report")
    wait.add_argument(
        "--timeout", type=_positive, default=120.0, metavar="S", help="give up after S seconds"
    )
    wait.add_argument(
        "--backend",
        default="",
        choices=["", "cpu", "edgetpu"],
        help="also require this inference backend (default: any)",
    )
    wait.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="NAME",
        help="a camera the device must report (its [[cameras]] name); repeat for each "
        "(default: the cameras it reports)",
    )
    wait.add_argument(
        "--min-cameras",
        type=int,
        default=0,
        metavar="N",
        help="how many of its cameras must classify (default 0: every one)",
    )
    wait.add_argument(
        "--since",
        default="",
        metavar="TS",
        help="only count health reports newer than this RFC 3339 time (default: now)",
    )
    wait.set_defaults(func=cmd_wait)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edged.fleet status|wait …``: the same commands without the rest of the CLI."""
    parser = argparse.ArgumentParser(prog="edged")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main(["fleet", *sys.argv[1:]]))
