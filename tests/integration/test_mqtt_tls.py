"""mqtts:// against a mosquitto TLS listener with anonymous access off."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import (
    CONFIDENT,
    Mosquitto,
    Subscriber,
    free_port,
    scaled,
    start_edged,
    stop_process,
    wait_until,
)


def make_pki(d: Path) -> None:
    def ssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    ssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=edged test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
    )
    ssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "san.ext",
        "-out",
        "server.crt",
    )


@pytest.fixture
def tls_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    make_pki(tmp_path)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "cam", "s3cret-pw"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    broker = Mosquitto(
        tmp_path,
        port=port,
        extra=f"""listener {port} 127.0.0.1
cafile {tmp_path / "ca.crt"}
certfile {tmp_path / "server.crt"}
keyfile {tmp_path / "server.key"}
allow_anonymous false
password_file {tmp_path / "passwd"}
""",
    ).start()
    yield broker
    broker.stop()


def _config(tmp_path: Path, port: int, password: str) -> Path:
    (tmp_path / "mqtt_password").write_text(password + "\n")
    cfg = tmp_path / "tls.toml"
    cfg.write_text(f"""
[device]
id = "tls-1"
[capture]
paths = ["{CONFIDENT}"]
loop = true
fps = 10
[mqtt]
url = "mqtts://127.0.0.1:{port}"
ca_file = "{tmp_path / "ca.crt"}"
username = "cam"
password_file = "{tmp_path / "mqtt_password"}"
reconnect_min_s = 1
reconnect_max_s = 2
""")
    return cfg


def test_right_credentials_publish_over_tls(tmp_path: Path, tls_broker: Mosquitto) -> None:
    sub = Subscriber(
        tls_broker.port, ca_file=str(tmp_path / "ca.crt"), username="cam", password="s3cret-pw"
    )
    proc = start_edged(
        "run",
        "-c",
        str(_config(tmp_path, tls_broker.port, "s3cret-pw")),
        log=tmp_path / "edged.log",
    )
    try:
        assert sub.wait(lambda: len(sub.events()) >= 3), (tmp_path / "edged.log").read_text()
        assert sub.events()[0]["device"] == "tls-1"
    finally:
        assert stop_process(proc) == 0
        sub.close()
    assert "s3cret-pw" not in (tmp_path / "edged.log").read_text()


def test_wrong_password_is_a_clear_error_and_retried(tmp_path: Path, tls_broker: Mosquitto) -> None:
    proc = start_edged(
        "run", "-c", str(_config(tmp_path, tls_broker.port, "wrong")), log=tmp_path / "edged.log"
    )
    try:
        log_file = tmp_path / "edged.log"
        retried = wait_until(
            lambda: (
                tls_broker.log.read_text().count("not authorised") >= 2
                and "check mqtt.username" in log_file.read_text()
            ),
            15,
        )
        assert proc.poll() is None, "the daemon must keep running"
        log = log_file.read_text()
        assert "refused the connection" in log and "check mqtt.username" in log, log
        assert "Traceback" not in log
        assert retried, "the daemon retries"
    finally:
        assert stop_process(proc) == 0


def _plain_config(tmp_path: Path, url: str, ca_file: str = "") -> Path:
    """The bundled model and samples; no credentials."""
    cfg = tmp_path / "edged.toml"
    ca = f'ca_file = "{ca_file}"' if ca_file else ""
    cfg.write_text(f"""
[device]
id = "tls-2"
[capture]
loop = true
fps = 5
[mqtt]
url = "{url}"
{ca}
reconnect_min_s = 0.5
reconnect_max_s = 1
""")
    return cfg


def _log_after_retries(proc, log: Path, broker: Mosquitto, line: str) -> str:  # type: ignore[no-untyped-def]
    """The daemon's log once it has written ``line`` and tried the broker at least three
    times, so that a line repeated per attempt shows.  mosquitto -v logs every attempt: "New
    connection from" once a TLS handshake got under way, "Client connection from ... failed"
    where it did not."""

    def attempts() -> int:
        text = broker.log.read_text()
        return text.count("New connection from") + text.count("Client connection from")

    try:
        assert wait_until(lambda: line in log.read_text() and attempts() >= 3, scaled(20)), (
            log.read_text()
        )
        assert proc.poll() is None, "the daemon must keep running"
    finally:
        assert stop_process(proc) == 0
    return log.read_text()


def test_a_certificate_that_does_not_verify_is_named_with_the_ca_file(
    tmp_path: Path, tls_broker: Mosquitto
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    make_pki(other)  # a CA that did not sign the broker's certificate
    log = tmp_path / "edged.log"
    cfg = _plain_config(tmp_path, f"mqtts://127.0.0.1:{tls_broker.port}", str(other / "ca.crt"))
    proc = start_edged("run", "-c", str(cfg), log=log)
    text = _log_after_retries(proc, log, tls_broker, "certificate verify failed")
    lines = [line for line in text.splitlines() if "certificate verify failed" in line]
    assert len(lines) == 1, text  # once per outage, though it retried every second
    assert "ERROR" in lines[0] and str(other / "ca.crt") in lines[0], lines[0]
    assert "paho" not in text and "Traceback" not in text


def test_a_plain_url_on_a_tls_port_says_so(tmp_path: Path, tls_broker: Mosquitto) -> None:
    log = tmp_path / "edged.log"
    cfg = _plain_config(tmp_path, f"mqtt://127.0.0.1:{tls_broker.port}")
    proc = start_edged("run", "-c", str(cfg), log=log)
    text = _log_after_retries(proc, log, tls_broker, "speaks TLS on this port")
    assert text.count("speaks TLS on this port") == 1, text
    assert "use mqtts://" in text
    assert "Connection reset" not in text and "paho" not in text


def test_a_tls_url_on_a_plain_port_says_so(tmp_path: Path, mosquitto: Mosquitto) -> None:
    make_pki(tmp_path)
    log = tmp_path / "edged.log"
    cfg = _plain_config(tmp_path, f"mqtts://127.0.0.1:{mosquitto.port}", str(tmp_path / "ca.crt"))
    proc = start_edged("run", "-c", str(cfg), log=log)
    text = _log_after_retries(proc, log, mosquitto, "TLS handshake failed")
    lines = [line for line in text.splitlines() if "TLS handshake failed" in line]
    assert len(lines) == 1, text
    assert "does not speak TLS on this port" in lines[0] and "mqtt://" in lines[0]
