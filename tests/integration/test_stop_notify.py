"""A notify socket that stops taking messages must not stop the daemon from stopping.

A service manager that reads READY=1 and then nothing more (a bench, a busy PID 1) lets the
socket's queue fill with STATUS= lines, one per health interval.  The send that found it full
used to block for ever: through systemd-python it held the GIL, so the whole daemon froze,
its SIGTERM handler included; without it, STOPPING=1 blocked the stop.  Found after 10
minutes of a paced run (10 messages fill the queue with net.unix.max_dgram_qlen = 10);
here the test fills the queue itself."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from tests.support import Mosquitto, Subscriber, start_edged, write_config

PHOTO = Path(__file__).resolve().parents[2] / "edged" / "samples" / "coffee.jpg"


def _fill(path: Path) -> int:
    """Datagrams sent until the reader's queue refuses one more."""
    sent = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        s.connect(str(path))
        try:
            while True:
                s.send(b"STATUS=filler")
                sent += 1
        except BlockingIOError:
            return sent


def test_sigterm_stops_within_2s_when_the_notify_socket_is_full(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path).start()
    cfg = write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "notify"
[capture]
type = "replay"
paths = ["{PHOTO}"]
loop = true
fps = 20
[mqtt]
url = "{broker.url}"
[health]
interval_s = 0.5
""",
    )
    path = tmp_path / "notify.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    ready = threading.Event()

    def read_until_ready() -> None:  # then read nothing more, as the bench's reader did
        while b"READY=1" not in server.recv(4096).split(b"\n"):
            pass
        ready.set()

    threading.Thread(target=read_until_ready, daemon=True).start()
    sub = Subscriber(broker.port, client_id="notify-check")
    log = tmp_path / "edged.log"
    proc = start_edged("run", "-c", str(cfg), log=log, env={"NOTIFY_SOCKET": str(path)})
    try:
        assert ready.wait(60), log.read_text()
        assert _fill(path) > 0
        time.sleep(1.5)  # a few STATUS= sends find the queue full
        n = len(sub.events())
        assert sub.wait(lambda: len(sub.events()) >= n + 5, 10), "the daemon froze"
        t0 = time.monotonic()
        proc.terminate()
        assert proc.wait(10) == 0, log.read_text()
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sub.close()
        server.close()
        broker.stop()
    assert took < 2.0, took
    text = log.read_text()
    assert text.count("sd_notify(STATUS) failed") == 1, text  # once, not per message
