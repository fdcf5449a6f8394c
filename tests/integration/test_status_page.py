"""The status page in headless Chromium (Debian ``chromium``): the live frame with the
current label, basic auth, /healthz, /metrics, the redacted config.  The screenshot is kept
in test-artifacts/ (git-ignored)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support import (
    ROOT,
    free_port,
    replay_config,
    run_edged,
    start_edged,
    stop_process,
    wait_port,
)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"
SAMPLE = ROOT / "edged" / "samples" / "coffee.jpg"  # espresso, stable


def web_config(tmp_path: Path, web: str, metrics: str = "", password: bool = True) -> Path:
    pw = tmp_path / "web.pw"
    pw.write_text("s3cret-page\n")
    (tmp_path / "pw-cam-1").write_text("mqtt-secret\n")
    sections = f'[web]\nlisten = "{web}"\nrefresh_s = 0.2\n'
    if password:
        sections += f'password_file = "{pw}"\n'
    if metrics:
        sections += f'[metrics]\nlisten = "{metrics}"\n'
    return replay_config(
        tmp_path,
        f"mqtt://127.0.0.1:{free_port()}",
        fps=5,
        paths=(str(SAMPLE),),
        username="cam-1",
        sections=sections,
    )


def fetch(url: str, auth: tuple[str, str] | None = None) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=6000",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_status_page_http(tmp_path: Path) -> None:
    port, mport = free_port(), free_port()
    cfg = web_config(tmp_path, f"127.0.0.1:{port}", metrics=f"127.0.0.1:{mport}")
    proc = start_edged("run", "--config", str(cfg), log=tmp_path / "edged.log")
    base = f"http://127.0.0.1:{port}"
    good = ("edged", "s3cret-page")
    try:
        wait_port(port, 60)
        assert fetch(f"{base}/")[0] == 401
        assert fetch(f"{base}/", ("edged", "wrong"))[0] == 401
        assert fetch(f"{base}/frame.jpg", ("other", "s3cret-page"))[0] == 401
        status, body, ctype = fetch(f"{base}/", good)
        assert status == 200 and ctype.startswith("text/html") and b'id="frame"' in body
        status, body, _ = fetch(f"{base}/healthz")  # probes need no password
        for _ in range(50):
            if status == 200:
                break
            status, body, _ = fetch(f"{base}/healthz")
        assert (status, body) == (200, b"ok\n")
        status, body, ctype = fetch(f"{base}/frame.jpg", good)
        for _ in range(300):  # healthy while starting: the first frame may still be coming
            if status != 503:
                break
            time.sleep(0.1)
            status, body, ctype = fetch(f"{base}/frame.jpg", good)
        assert status == 200 and ctype == "image/jpeg" and body[:3] == b"\xff\xd8\xff"
        for _ in range(300):  # the first frame may be on screen before it is classified
            data = json.loads(fetch(f"{base}/api/status", good)[1])
            if data["classification"]:
                break
            time.sleep(0.1)
        assert data["classification"]["label"] == "espresso"
        assert data["health"]["schema"] == "edged.health/1"
        status, body, _ = fetch(f"{base}/api/config", good)
        config = json.loads(body)
        assert config["mqtt"]["password_file"] == "***"
        assert config["web"]["password_file"] == "***"
        assert config["device"]["id"] == "cam-1"
        assert b"mqtt-secret" not in body and b"s3cret" not in body
        status, body, ctype = fetch(f"{base}/metrics", good)
        assert status == 200 and b"edged_frames_processed_total" in body
    finally:
        assert stop_process(proc) == 0, (tmp_path / "edged.log").read_text()
    log = (tmp_path / "edged.log").read_text()
    assert "s3cret" not in log and "mqtt-secret" not in log


def test_lan_address_requires_a_password(tmp_path: Path) -> None:
    cfg = web_config(tmp_path, f"0.0.0.0:{free_port()}", password=False)
    done = run_edged("run", "--config", str(cfg), timeout=60)
    assert done.returncode == 2, done.stderr
    assert "web.listen" in done.stderr and "password" in done.stderr


def test_address_in_use_is_a_config_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = web_config(tmp_path, f"127.0.0.1:{free_port()}", metrics=f"127.0.0.1:{port}")
        done = run_edged("run", "--config", str(cfg), timeout=60)
    assert done.returncode == 2, done.stderr
    assert "metrics.listen" in done.stderr and "in use" in done.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt install chromium)")
def test_status_page_in_chromium(tmp_path: Path) -> None:
    port = free_port()
    cfg = web_config(tmp_path, f"127.0.0.1:{port}")
    proc = start_edged("run", "--config", str(cfg), log=tmp_path / "edged.log")
    try:
        wait_port(port, 60)
        url = f"http://edged:s3cret-page@127.0.0.1:{port}/"
        dom = chromium(url, tmp_path / "profile-1", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        label = re.search(r'<span id="label">([^<]*)</span>', html)
        assert label and label.group(1) == "espresso", html[:3000]
        shown = re.search(r'<img id="frame"[^>]*data-frame="(\d+)"', html)
        assert shown and int(shown.group(1)) >= 1, "no frame shown"
        assert 'src="blob:' in html
        assert "frames_processed" in html  # the health table
        assert '"password_file": "***"' in html  # the redacted config

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        shot.unlink(missing_ok=True)
        done = chromium(
            url,
            tmp_path / "profile-2",
            f"--screenshot={shot}",
            "--window-size=1280,900",
            "--hide-scrollbars",
        )
        assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]

        wrong = chromium(
            f"http://edged:wrong@127.0.0.1:{port}/", tmp_path / "profile-3", "--dump-dom"
        )
        assert 'id="label"' not in wrong.stdout
    finally:
        assert stop_process(proc) == 0, (tmp_path / "edged.log").read_text()
