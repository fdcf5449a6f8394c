"""The Learn view in headless Chromium, driven over the DevTools protocol: three frames
labelled with the keyboard, a training run, the report with its confusion matrix on the
page.  The screenshot is kept in test-artifacts/learn-view.png (git-ignored)."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from tests.integration.cdp import Browser
from tests.integration.learn_support import PASSWORD, Client, learn_config, variants
from tests.support import ROOT, Mosquitto, start_edged, stop_process, wait_port, wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "test-artifacts"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt install chromium)")
def test_label_with_the_keyboard_train_and_read_the_report(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    assert CHROMIUM is not None
    truth = variants(tmp_path / "photos", per_class=3)
    photos = sorted((tmp_path / "photos").iterdir())
    # the photos a person labelled before: the dataset's own layout, a folder per class
    for name, label in variants(tmp_path / "before", per_class=8, seed=11).items():
        (tmp_path / "dataset" / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "before" / name, tmp_path / "dataset" / label / name)
    cfg, port = learn_config(tmp_path, mosquitto.url, photos, fps=2)
    log = tmp_path / "edged.log"
    proc = start_edged("run", "--config", str(cfg), log=log)
    client = Client(port)
    browser = None
    try:
        wait_port(port, 60)
        assert wait_until(lambda: client.get("api/collected")["total"] >= 6, 120, 0.3)
        browser = Browser(CHROMIUM, tmp_path / "profile")
        browser.call("Network.enable")
        token = base64.b64encode(f"edged:{PASSWORD}".encode()).decode()
        browser.call("Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {token}"})
        browser.call("Page.navigate", url=f"http://127.0.0.1:{port}/learn")
        browser.wait("document.querySelectorAll('#frames .card').length >= 6", 30)
        classes = browser.wait(
            "(() => { const b = [...document.querySelectorAll('#classes button')]"
            ".map(x => x.textContent); return b.length === 2 ? b : null; })()",
            30,
        )
        assert classes == ["1 espresso", "2 kitty"]
        sources = {i["id"]: i["source"] for i in client.get("api/collected?limit=200")["items"]}
        labelled = {}
        for _ in range(3):
            fid = browser.js("document.querySelector('#frames .card.current').dataset.id")
            label = truth[Path(sources[fid]).name]
            browser.key("1" if label == "espresso" else "2")
            labelled[fid] = label
            browser.wait(
                f"(() => {{ const c = document.querySelector('.card[data-id=\"{fid}\"] .lbl');"
                f" return c && c.textContent === {json.dumps(label)}; }})()",
                20,
            )
        items = {i["id"]: i["label"] for i in client.get("api/collected?limit=200")["items"]}
        assert {f: items[f] for f in labelled} == labelled
        counts = client.get("api/dataset")["classes"]
        assert sum(counts.values()) == 16 + 3

        # many at once: two unlabelled espresso frames selected with space, then "1"
        chosen: list[str] = []
        for _ in range(40):
            fid = browser.js("document.querySelector('#frames .card.current').dataset.id")
            source = sources.get(fid)
            if (
                source is not None and fid not in labelled and fid not in chosen
                and truth[Path(source).name] == "espresso"
            ):  # fmt: skip
                browser.key(" ")
                chosen.append(fid)
                if len(chosen) == 2:
                    break
            browser.key("ArrowRight")
        assert len(chosen) == 2, "two unlabelled espresso frames were not on the page"
        assert browser.wait("document.querySelectorAll('.card.selected').length === 2", 10)
        browser.key("1")
        assert wait_until(
            lambda: all(
                i["label"] == "espresso"
                for i in client.get("api/collected?limit=200")["items"]
                if i["id"] in chosen
            ),
            20,
            0.2,
        )
        assert sum(client.get("api/dataset")["classes"].values()) == 16 + 5

        browser.js("document.getElementById('train').click()")
        browser.wait("document.querySelectorAll('#matrix tr').length === 3", 600)
        matrix = browser.js(
            "[...document.querySelectorAll('#matrix tr')].map(r => "
            "[...r.cells].map(c => c.textContent))"
        )
        assert matrix[0] == ["true ╲ predicted", "espresso", "kitty", "other"]
        assert [row[0] for row in matrix[1:]] == ["espresso", "kitty"]
        assert sum(int(n) for row in matrix[1:] for n in row[1:]) >= 2
        text = browser.js("document.getElementById('report').innerText")
        assert "Recipe: head" in text and "running model" in text
        assert "Per class" in text and "precision" in text
        assert browser.js("document.getElementById('perclass').rows.length") == 3
        assert "Half the" in text
        job = client.get("api/models")["models"][1]["id"]
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "learn-view.png"
        browser.screenshot(shot)
        assert shot.stat().st_size > 20_000

        # Deploy, then Roll back, from the page
        browser.js("document.getElementById('deploy').click()")
        running = "[...document.querySelectorAll('#models tr.good td')].map(c => c.textContent)"
        browser.wait(f"{running}.includes({json.dumps(job)})", 60)
        assert [m["id"] for m in client.get("api/models")["models"] if m["deployed"]] == [job]
        browser.js("document.getElementById('rollback').click()")
        browser.wait(f"{running}.includes('config')", 60)
        assert [m["id"] for m in client.get("api/models")["models"] if m["deployed"]] == ["config"]
    finally:
        if browser is not None:
            browser.close()
        code = stop_process(proc, timeout=20)
    assert code == 0, log.read_text()[-3000:]
