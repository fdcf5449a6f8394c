"""The Learn loop through its JSON API, against a running daemon and a real mosquitto:
frames the bundled model is unsure of are collected, labelled, trained on; the report
compares the new model with the running one on the same held-out photos; the new model is
deployed through the reload path (events carry its labels, no seq gap) and rolled back."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from pathlib import Path
from typing import Any

from tests.integration.learn_support import CLASSES, PER_CLASS, Client, learn_config, variants
from tests.support import (
    Mosquitto,
    Subscriber,
    run_edged,
    start_edged,
    stop_process,
    wait_port,
    wait_until,
)

NEW = set(CLASSES.values())


def all_frames(client: Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    while True:
        page = client.get(f"api/collected?offset={len(items)}&limit=200")
        items += page["items"]
        if len(items) >= page["total"] or not page["items"]:
            return items


def wait_job(client: Client, job: str, timeout: float = 900) -> dict[str, Any]:
    seen: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"api/train/{job}")
        seen.append(state["progress"])
        if state["state"] != "running":
            assert seen == sorted(seen), f"progress went back: {seen}"
            return dict(state)
        time.sleep(0.5)
    raise AssertionError(f"training {job} did not finish in {timeout} s: {state}")


def label_by_source(client: Client, truth: dict[str, str]) -> int:
    """The oldest frame of each photo gets the photo's class; later copies of it (the replay
    loops) are deleted, so that no photo is both trained on and held out."""
    labelled: set[str] = set()
    for item in reversed(all_frames(client)):  # oldest first
        name = Path(item["source"]).name
        if name not in truth:
            continue
        if name in labelled:
            status, _ = client.call("DELETE", f"api/collected/{item['id']}")
            assert status in (200, 404)  # 404: the collector may have trimmed it meanwhile
            continue
        done = client.post(f"api/collected/{item['id']}/label", {"label": truth[name]})
        assert done["label"] == truth[name] and done["id"] == item["id"]
        labelled.add(name)
    return len(labelled)


def seq_gaps(events: list[dict[str, Any]]) -> list[int]:
    seqs = [e["seq"] for e in events]
    return [b for a, b in itertools.pairwise(seqs) if b != a + 1]


def test_label_train_deploy_rollback(tmp_path: Path, mosquitto: Mosquitto) -> None:
    truth = variants(tmp_path / "photos")
    photos = sorted((tmp_path / "photos").iterdir())
    cfg, port = learn_config(tmp_path, mosquitto.url, photos)
    sub = Subscriber(mosquitto.port, "edged/cam-1/events")
    log = tmp_path / "edged.log"
    proc = start_edged("run", "--config", str(cfg), log=log)
    client = Client(port)
    try:
        wait_port(port, 60)
        # 1-2: replayed photos the model is unsure of are collected
        assert wait_until(
            lambda: {Path(i["source"]).name for i in all_frames(client)} >= set(truth), 240, 0.5
        ), f"not every photo was collected: {log.read_text()[-3000:]}"
        frames = all_frames(client)
        item = frames[0]
        assert set(item) >= {"id", "image_url", "reasons", "top_k", "camera", "region",
                             "source", "ts", "label"}  # fmt: skip
        assert item["top_k"] and item["reasons"] and item["ts"]
        assert any("ambiguous" in i["reasons"] for i in frames), "no frame was ambiguous"
        ids = [i["id"] for i in frames]
        assert ids == sorted(ids, reverse=True), "not newest first"
        status, image = client.call("GET", item["image_url"])
        assert status == 200 and image[:3] == b"\xff\xd8\xff"

        # 3: label every photo once, by its known class
        assert label_by_source(client, truth) == len(truth)
        counts = client.get("api/dataset")
        assert counts["classes"] == {c: PER_CLASS for c in sorted(NEW)}
        assert counts["warnings"] == []

        # 4: train; a second run meanwhile is refused
        job = client.post("api/train")["job"]
        status, busy = client.call("POST", "api/train")
        assert status == 409 and "running" in busy["error"]
        state = wait_job(client, job)
        assert state["state"] == "done", state
        report = state["report"]

        # 5: the new model against the old on the same held-out photos
        assert report["recipe"] == "head"
        assert report["classes"] == sorted(NEW)
        held = sum(report["held_out"].values())
        assert held >= 4
        matrix = report["confusion_matrix"]
        assert len(matrix) == 2 and all(len(r) == 3 for r in matrix)
        assert sum(map(sum, matrix)) == held
        assert sum(map(sum, report["baseline_confusion_matrix"])) == held
        assert set(report["per_class"]) == NEW
        for m in report["per_class"].values():
            assert {"precision", "recall", "support"} <= set(m)
        # the bundled model knows espresso but not kitty; the new model knows both
        assert report["baseline_accuracy"] <= 0.5 + 1e-9
        assert report["accuracy"] > report["baseline_accuracy"], report
        assert report["verdict"] == "better"
        assert report["half"]["accuracy"] is not None, report["half"]
        assert report["skipped_files"] == []

        # 6: deploy through the reload path: new labels, no seq gap
        models = client.get("api/models")["models"]
        assert [m["id"] for m in models if m["deployed"]] == ["config"]
        deployed = client.post(f"api/train/{job}/deploy", {})
        assert deployed["deployed"] == job and deployed["sha256"] == report["model"]["sha256"]
        at = len(sub.events())
        assert sub.wait(lambda: "kitty" in {e["label"] for e in sub.events()[at:]}, 60)
        models = client.get("api/models")["models"]
        running = [m for m in models if m["deployed"]]
        assert [m["id"] for m in running] == [job]
        assert running[0]["sha256"] == report["model"]["sha256"]
        assert running[0]["report"]["accuracy"] == report["accuracy"]

        # 7: roll back: the old labels return
        back = client.post("api/models/rollback", {})
        assert back["deployed"] == "config" and back["rolled_back"] == job
        at = len(sub.events())
        assert sub.wait(lambda: any(e["label"] not in NEW for e in sub.events()[at:]), 60), (
            "the old model's labels did not return"
        )
        status, nothing = client.call("POST", "api/models/rollback", {})
        assert status == 409 and "nothing to roll back" in nothing["error"]
        # a deployed model runs again after a restart
        client.post(f"api/train/{job}/deploy", {})
        assert sub.wait(lambda: sub.events()[-1]["label"] in NEW, 60)
    finally:
        code = stop_process(proc, timeout=20)
    assert code == 0, log.read_text()[-4000:]
    first_run = sub.events()
    proc = start_edged("run", "--config", str(cfg), log=tmp_path / "edged-2.log")
    try:
        wait_port(port, 60)
        assert sub.wait(
            lambda: any(e["label"] == "kitty" for e in sub.events()[len(first_run) :]), 60
        ), (tmp_path / "edged-2.log").read_text()[-3000:]
        running = [m["id"] for m in client.get("api/models")["models"] if m["deployed"]]
        assert running == [job]
    finally:
        code = stop_process(proc, timeout=20)
        sub.wait(lambda: False, 0.5)
        sub.close()
    assert code == 0, (tmp_path / "edged-2.log").read_text()[-4000:]

    # the fleet: the model, its sha256 and its report, for other devices
    out = tmp_path / "export"
    out.mkdir()
    done = run_edged("models", "export", "--config", str(cfg), "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    name = f"cam-1-{job}"
    assert summary["model"] == f"{name}.tflite" and summary["trained"] == job
    data = (out / f"{name}.tflite").read_bytes()
    assert hashlib.sha256(data).hexdigest() == summary["sha256"] == report["model"]["sha256"]
    assert (out / f"{name}.tflite.sha256").read_text() == f"{summary['sha256']}  {name}.tflite\n"
    manifest = json.loads((out / f"{name}.json").read_text())
    assert (
        manifest["sha256"] == summary["sha256"]
        and manifest["report"]["accuracy"] == report["accuracy"]
    )
    wrong = run_edged("models", "export", "nosuchmodel", "--config", str(cfg), "--out", str(out))
    assert wrong.returncode != 0 and "unknown model id 'nosuchmodel'" in wrong.stderr
    assert job in wrong.stderr  # the valid choices

    events = first_run
    assert {e["run_id"] for e in events} == {events[0]["run_id"]}
    assert seq_gaps(events) == [], "events were lost around the swaps"
    labels = [e["label"] for e in events]
    first_new = next(i for i, lbl in enumerate(labels) if lbl == "kitty")
    assert any(lbl not in NEW for lbl in labels[:first_new])
