"""The Learn API's guards, against a running daemon: the page's password, ids and labels
that try to leave the collect and dataset folders, cross-origin and non-JSON requests, a
second training run while one runs, a training killed half-way, a corrupt JPEG, a sidecar
and a dataset edited by hand."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.learn_support import PASSWORD, Client, learn_config, variants
from tests.support import Mosquitto, start_edged, stop_process, wait_port, wait_until


def raw(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """A request whose path goes out exactly as written (no client-side normalisation)."""
    import base64

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    token = base64.b64encode(f"edged:{PASSWORD}".encode()).decode()
    headers = {"Authorization": f"Basic {token}"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=data, headers=headers)
    resp = conn.getresponse()
    payload = resp.read()
    conn.close()
    try:
        return resp.status, json.loads(payload)
    except ValueError:
        return resp.status, payload


def tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture
def daemon(tmp_path: Path, mosquitto: Mosquitto) -> Any:
    variants(tmp_path / "photos", per_class=2)
    photos = sorted((tmp_path / "photos").iterdir())
    cfg, port = learn_config(tmp_path, mosquitto.url, photos, fps=2)
    log = tmp_path / "edged.log"
    proc = start_edged("run", "--config", str(cfg), log=log)
    client = Client(port)
    try:
        wait_port(port, 60)
        assert wait_until(lambda: client.get("api/collected")["total"] >= 2, 120, 0.3), (
            log.read_text()[-3000:]
        )
        yield port, client
    finally:
        code = stop_process(proc, timeout=20)
        assert code == 0, log.read_text()[-3000:]


def test_password_required(daemon: Any) -> None:
    port, client = daemon
    fid = client.get("api/collected")["items"][0]["id"]
    routes = [
        ("GET", "api/collected"),
        ("GET", f"api/collected/{fid}/image"),
        ("POST", f"api/collected/{fid}/label"),
        ("DELETE", f"api/collected/{fid}"),
        ("GET", "api/dataset"),
        ("POST", "api/train"),
        ("GET", "api/train/20260101T000000Z-abcdef"),
        ("POST", "api/models/rollback"),
        ("GET", "api/models"),
        ("GET", "learn"),
    ]
    for auth in (None, ("edged", "wrong"), ("other", PASSWORD)):
        anon = Client(port, auth)
        for method, path in routes:
            body = {"label": "x"} if method == "POST" else None
            status, _ = anon.call(method, path, body)
            assert status == 401, (auth, method, path, status)
    # nothing changed meanwhile
    assert client.get("api/collected?limit=200")["total"] >= 2
    assert client.get("api/dataset")["classes"] == {}
    status, page = client.call("GET", "learn")
    assert status == 200 and b"Learn" in page


def test_traversal_through_ids_and_labels(daemon: Any, tmp_path: Path) -> None:
    port, client = daemon
    secret = tmp_path / "secret.jpg"
    shutil.copy(tmp_path / "photos" / sorted(os.listdir(tmp_path / "photos"))[0], secret)
    (tmp_path / "secret.json").write_text("{}")
    before = tree(tmp_path)
    for bad in (
        "..",
        "../secret",
        "..%2Fsecret",
        "%2e%2e%2fsecret",
        "..%2F..%2Fetc%2Fpasswd",
        ".hidden",
        "a%00b",
        "%2Fetc%2Fpasswd",
    ):
        for method, path, body in (
            ("GET", f"/api/collected/{bad}/image", None),
            ("POST", f"/api/collected/{bad}/label", {"label": "cat"}),
            ("DELETE", f"/api/collected/{bad}", None),
            ("GET", f"/api/train/{bad}", None),
            ("POST", f"/api/train/{bad}/deploy", {"force": True}),
        ):
            status, reply = raw(port, method, path, body)
            assert status == 404, (method, path, status, reply)
            assert isinstance(reply, dict) and "error" in reply
    status, _ = raw(port, "GET", "/api/collected/../../secret/image")
    assert status == 404
    fid = client.get("api/collected")["items"][0]["id"]
    for label in ("..", ".", "../../evil", "a/b", "a\\b", " x", "x ", "x\ny", ".hidden",
                  "", "x" * 65, 7, ["cat"], {"name": "cat"}):  # fmt: skip
        status, reply = client.call("POST", f"api/collected/{fid}/label", {"label": label})
        assert status == 400, (label, status, reply)
        assert "label" in reply["error"]
    status, reply = client.call("POST", f"api/collected/{fid}/label", {"name": "cat"})
    assert status == 400 and "label" in reply["error"]
    assert tree(tmp_path) - before <= {
        p for p in tree(tmp_path) if p.startswith(("collect/", "models/"))
    }, "a file appeared outside the collect and models folders"
    assert secret.exists() and (tmp_path / "secret.json").exists()
    assert client.get("api/dataset")["classes"] == {}


def test_requests_a_browser_page_of_another_site_could_send(daemon: Any) -> None:
    _port, client = daemon
    fid = client.get("api/collected")["items"][0]["id"]
    status, reply = client.call(
        "POST", f"api/collected/{fid}/label", {"label": "cat"},
        headers={"Origin": "http://evil.example"},
    )  # fmt: skip
    assert status == 403 and "cross-origin" in reply["error"]
    status, reply = client.call(
        "POST", f"api/collected/{fid}/label", raw=b"label=cat",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert status == 415
    status, reply = client.call("POST", f"api/collected/{fid}/label", raw=b"{not json")
    assert status == 400 and "JSON" in reply["error"]
    assert client.get("api/dataset")["classes"] == {}


def test_bad_input_is_reported_and_loses_nothing(daemon: Any, tmp_path: Path) -> None:
    """A corrupt collected JPEG, a sidecar broken by hand, photos sorted by hand into the
    dataset (one corrupt), a second training run (409), a training killed half-way."""
    _port, client = daemon
    collect, dataset = tmp_path / "collect", tmp_path / "dataset"
    good = sorted(collect.glob("*.jpg"))[0]
    broken = collect / "20200101T000000.000Z-00000001.jpg"
    broken.write_bytes(good.read_bytes()[:300])  # truncated
    (collect / "20200101T000000.000Z-00000001.json").write_text('{"reasons": ["ambig')
    items = {i["id"]: i for i in client.get("api/collected?limit=200")["items"]}
    listed = items["20200101T000000.000Z-00000001"]
    assert listed["reasons"] == [] and listed["top_k"] == [] and listed["label"] is None
    status, reply = client.call(
        "POST", "api/collected/20200101T000000.000Z-00000001/label", {"label": "cat"}
    )
    assert status == 422 and "cannot be decoded" in reply["error"]
    assert client.call("DELETE", "api/collected/20200101T000000.000Z-00000001")[0] == 200
    assert not broken.exists()
    assert client.call("DELETE", "api/collected/20200101T000000.000Z-00000001")[0] == 404

    status, reply = client.call("POST", "api/train")
    assert status == 409 and "training needs at least 2" in reply["error"]

    # a dataset sorted by hand (the layout edged train reads), one photo corrupt
    truth = variants(tmp_path / "more", per_class=8, seed=5)
    for name, label in truth.items():
        (dataset / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "more" / name, dataset / label / name)
    (dataset / "kitty" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    counts = client.get("api/dataset")
    assert counts["classes"] == {"espresso": 8, "kitty": 9}
    assert any("fewer" in w or "at least 10" in w for w in counts["warnings"])

    job = client.post("api/train")["job"]
    status, reply = client.call("POST", "api/train")
    assert status == 409 and job in reply["error"]
    state = client.get(f"api/train/{job}")
    assert state["state"] == "running"
    status, reply = client.call("POST", f"api/train/{job}/deploy", {"force": True})
    assert status == 409 and "running" in reply["error"]
    # killed half-way: the job reads failed, the running model stays
    status_file = tmp_path / "models" / job / "status.json"
    assert wait_until(lambda: "pid" in json.loads(status_file.read_text()), 60, 0.05)
    pid = json.loads(status_file.read_text())["pid"]
    assert os.getpriority(os.PRIO_PROCESS, pid) == 19  # the daemon keeps its rate
    threads = max(1, len(os.sched_getaffinity(0)) - 1)
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"OMP_NUM_THREADS={threads}".encode() in env
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: client.get(f"api/train/{job}")["state"] == "failed", 30, 0.2)
    failed = client.get(f"api/train/{job}")
    assert "signal 9" in failed["error"] and "running model stays" in failed["error"]
    status, reply = client.call("POST", f"api/train/{job}/deploy", {"force": True})
    assert status == 409 and "failed" in reply["error"]
    models = client.get("api/models")["models"]
    assert [m["id"] for m in models if m["deployed"]] == ["config"]

    # again, to the end: the corrupt photo is reported and left out
    job = client.post("api/train")["job"]
    deadline = time.monotonic() + 600
    while (state := client.get(f"api/train/{job}"))["state"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert state["state"] == "done", state
    skipped = state["report"]["skipped_files"]
    assert [s["file"] for s in skipped] == ["kitty/corrupt.jpg"]
    assert state["report"]["half"]["accuracy"] is None  # too few photos: said why
    assert "needs" in state["report"]["half"]["skipped"]


def test_full_disk_during_training(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """The models folder on a 1 MB tmpfs: the model (5 MB) cannot be written; the job
    reads failed with a clear reason and the running model stays."""
    models = tmp_path / "models"
    models.mkdir()
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a full disk on demand)")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(models)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    proc = None
    try:
        truth = variants(tmp_path / "more", per_class=7, seed=5)
        for name, label in truth.items():
            (tmp_path / "dataset" / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(tmp_path / "more" / name, tmp_path / "dataset" / label / name)
        photos = sorted((tmp_path / "more").iterdir())[:2]
        cfg, port = learn_config(tmp_path, mosquitto.url, photos, fps=2)
        log = tmp_path / "edged.log"
        proc = start_edged("run", "--config", str(cfg), log=log)
        client = Client(port)
        wait_port(port, 60)
        job = client.post("api/train")["job"]
        deadline = time.monotonic() + 600
        while (state := client.get(f"api/train/{job}"))["state"] == "running":
            assert time.monotonic() < deadline, state
            time.sleep(0.5)
        assert state["state"] == "failed", state
        assert "disk is full" in state["error"] and "running model stays" in state["error"]
        running = [m["id"] for m in client.get("api/models")["models"] if m["deployed"]]
        assert running == ["config"]
        assert client.call("POST", f"api/train/{job}/deploy", {"force": True})[0] == 409
    finally:
        if proc is not None:
            code = stop_process(proc, timeout=20)
        subprocess.run(["umount", str(models)], check=False)
    assert code == 0, (tmp_path / "edged.log").read_text()[-3000:]
