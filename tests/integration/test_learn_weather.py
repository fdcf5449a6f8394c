"""The Learn loop on real photos the project has never seen (the shared weather fixture:
cloudy, rain, shine, sunrise): replayed, collected, labelled through the API by their
folder, trained on; the report scores the new model well above chance and above the
bundled model, which knows none of these classes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.learn_support import Client, learn_config
from tests.support import FIXTURES, Mosquitto, start_edged, stop_process, wait_port, wait_until

WEATHER = FIXTURES / "custom" / "weather"
PER_CLASS = 15


def test_weather_photos_labelled_and_trained(tmp_path: Path, mosquitto: Mosquitto) -> None:
    if not WEATHER.is_dir():
        pytest.skip(f"needs the shared fixture {WEATHER} (custom/weather, a folder per class)")
    truth: dict[str, str] = {}  # file name (an event's source names it) -> class
    photos = []
    for folder in sorted(p for p in WEATHER.iterdir() if p.is_dir()):
        for photo in sorted(folder.glob("*.jpg"))[:PER_CLASS]:
            truth[photo.name] = folder.name
            photos.append(photo)
    assert len(truth) == len(photos), "two photos share a name"
    cfg, port = learn_config(tmp_path, mosquitto.url, photos, fps=6)
    log = tmp_path / "edged.log"
    proc = start_edged("run", "--config", str(cfg), log=log)
    client = Client(port)
    try:
        wait_port(port, 60)

        def sources() -> dict[str, str]:
            items = client.get("api/collected?limit=200")["items"]
            return {Path(i["source"]).name: i["id"] for i in items}

        assert wait_until(lambda: set(sources()) >= set(truth), 300, 1.0), (
            f"not every photo was collected: {log.read_text()[-3000:]}"
        )
        first: dict[str, str] = {}
        for item in reversed(client.get("api/collected?limit=200")["items"]):
            first.setdefault(Path(item["source"]).name, item["id"])
        for source, fid in first.items():
            if source in truth:
                client.post(f"api/collected/{fid}/label", {"label": truth[source]})
        counts = client.get("api/dataset")["classes"]
        assert counts == dict.fromkeys(sorted(set(truth.values())), PER_CLASS)
        job = client.post("api/train")["job"]
        deadline = time.monotonic() + 900
        while (state := client.get(f"api/train/{job}"))["state"] == "running":
            assert time.monotonic() < deadline, state
            time.sleep(1)
        assert state["state"] == "done", state
        report = state["report"]
        assert report["baseline_accuracy"] == 0.0  # no ImageNet class is a weather
        assert report["accuracy"] >= 0.6, report  # chance is 0.25
        assert report["half"]["accuracy"] is not None
        assert sum(report["held_out"].values()) == 4 * 3
    finally:
        code = stop_process(proc, timeout=20)
    assert code == 0, log.read_text()[-3000:]
