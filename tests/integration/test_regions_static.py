"""Regions of interest, state verification and skipping unchanged scenes, end to end: the
daemon (bundled model, bundled photos) publishing to a real mosquitto."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.support import Mosquitto, Subscriber, run_edged, write_config

SAMPLES = Path(__file__).resolve().parents[2] / "edged" / "samples"
COFFEE = SAMPLES / "coffee.jpg"
CAT = SAMPLES / "chelsea_cat.jpg"
CAT_LABELS = {"tiger cat", "tabby", "Egyptian cat"}


def config(tmp_path: Path, broker: str, capture: str, publish: str = "") -> Path:
    return write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "cam"
[capture]
{capture}
[mqtt]
url = "{broker}"
[publish]
{publish}
[health]
interval_s = 60
""",
    )


def run_to_end(
    tmp_path: Path, broker: Mosquitto, capture: str, publish: str = ""
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the daemon until its source ends: (its events, its last health message)."""
    cfg = config(tmp_path, broker.url, capture, publish)
    sub = Subscriber(broker.port)
    try:
        result = run_edged("run", "-c", str(cfg), timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        assert sub.wait(lambda: sub.last_health() is not None, 10)
        health = sub.last_health()
    finally:
        sub.close()
    assert health is not None
    return sub.events(), health


def side_by_side(tmp_path: Path) -> Path:
    """One frame: the coffee photo on the left half, the cat on the right."""
    composite = Image.new("RGB", (800, 300))
    with Image.open(COFFEE) as left, Image.open(CAT) as right:
        composite.paste(left.convert("RGB").resize((400, 300)), (0, 0))
        composite.paste(right.convert("RGB").resize((400, 300)), (400, 0))
    composite.save(tmp_path / "feeder.jpg", quality=92)
    return tmp_path / "feeder.jpg"


def test_two_regions_of_one_frame_get_their_own_labels(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    feeder = side_by_side(tmp_path)
    events, _ = run_to_end(
        tmp_path,
        mosquitto,
        f"""paths = ["{feeder}"]
[[capture.regions]]
name = "left"
width = 0.5
[[capture.regions]]
name = "right"
x = 0.5
width = 0.5""",
    )
    assert len(events) == 2
    by_region = {e["region"]: e for e in events}
    assert set(by_region) == {"left", "right"}
    assert {e["frame"] for e in events} == {1}  # one frame, two events
    assert by_region["left"]["label"] == "espresso"
    assert by_region["right"]["label"] in CAT_LABELS


def test_region_outside_the_frame_or_empty_rejected_by_check_config(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "edged.toml",
        """[capture]
[[capture.regions]]
name = "sky"
y = 0.8
height = 0.4
[[capture.regions]]
name = "nothing"
width = 0
""",
    )
    result = run_edged("check-config", "-c", str(cfg))
    assert result.returncode == 2
    assert "capture.regions.0: region 'sky' reaches outside the frame" in result.stderr
    assert "capture.regions.1: region 'nothing' has no area" in result.stderr
    assert "Traceback" not in result.stderr


def _sequence(tmp_path: Path, photos: list[Path]) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, photo in enumerate(photos):
        (folder / f"{i:03d}.jpg").symlink_to(photo)
    return folder


@pytest.mark.parametrize(("confirm", "expected"), [(3, 0), (1, 10)])
def test_alternating_labels_need_confirmation(
    tmp_path: Path, mosquitto: Mosquitto, confirm: int, expected: int
) -> None:
    folder = _sequence(tmp_path, [COFFEE, CAT] * 5)
    events, health = run_to_end(
        tmp_path,
        mosquitto,
        f'paths = ["{folder}"]',
        f'policy = "on_change"\nconfirm_frames = {confirm}',
    )
    assert health["frames_processed"] == 10
    assert len(events) == expected


def test_three_equal_frames_publish_exactly_one_change(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    folder = _sequence(tmp_path, [CAT, COFFEE, COFFEE, COFFEE, CAT])
    events, _ = run_to_end(
        tmp_path, mosquitto, f'paths = ["{folder}"]', 'policy = "on_change"\nconfirm_frames = 3'
    )
    [event] = events
    assert event["label"] == "espresso" and event["confirmed_label"] == "espresso"
    assert event["frame"] == 4  # the third agreeing frame


def _still_video(tmp_path: Path, parts: list[tuple[Path, int]]) -> Path:
    """An H.264 video: each photo repeated for its number of frames."""
    if subprocess.run(["which", "ffmpeg"], capture_output=True, check=False).returncode:
        pytest.skip("needs ffmpeg (Debian package ffmpeg) to encode the video")
    listing = tmp_path / "list.txt"
    lines = []
    for photo, count in parts:
        frame = tmp_path / f"{photo.stem}.png"
        with Image.open(photo) as im:
            im.convert("RGB").resize((384, 256)).save(frame)
        lines += [f"file '{frame}'\nduration 0.1\n"] * count
    listing.write_text("".join(lines) + f"file '{frame}'\n")
    out = tmp_path / "still.mp4"
    subprocess.run(
        [
            "ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
            "-vf", "fps=10", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            str(out),
        ],
        check=True,
    )  # fmt: skip
    return out


def test_still_video_is_skipped_and_a_change_classified_at_once(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    video = _still_video(tmp_path, [(COFFEE, 60), (CAT, 60)])
    events, health = run_to_end(
        tmp_path, mosquitto, f'paths = ["{video}"]\nskip_static = true\nstatic_max_s = 600'
    )
    captured, static = health["frames_captured"], health["frames_static"]
    assert captured >= 115, health
    assert static / captured >= 0.9, health
    assert health["frames_processed"] + static == captured
    assert events[0]["label"] == "espresso" and events[0]["frame"] == 1
    assert [e["frame"] for e in events] == [1, 61]  # still frames: not classified
    # the cat's first frame (61: 60 frames of coffee before it) is classified at once
    assert events[1]["label"] in CAT_LABELS


def test_home_assistant_gets_one_state_per_region(tmp_path: Path, mosquitto: Mosquitto) -> None:
    """With regions, each region's retained ``state/{region}`` feeds its own label sensor,
    which shows the confirmed label."""
    from edged.publish.homeassistant import LABEL_TEMPLATE

    jinja2 = pytest.importorskip("jinja2")
    feeder = side_by_side(tmp_path)
    cfg = config(
        tmp_path,
        mosquitto.url,
        f"""type = "replay"
paths = ["{feeder}"]
loop = true
fps = 5
[[capture.regions]]
name = "left"
width = 0.5
[[capture.regions]]
name = "right"
x = 0.5
width = 0.5""",
        "confirm_frames = 2\n[homeassistant]\ndiscovery = true\nstate_interval_s = 1",
    )
    sub = Subscriber(mosquitto.port, "#")
    try:
        result = run_edged("run", "-c", str(cfg), "--frames", "4", timeout=180)
        assert result.returncode == 0, result.stderr[-3000:]
        assert sub.wait(lambda: bool(sub.on("state/left")) and bool(sub.on("state/right")), 10)
        env = jinja2.Environment(autoescape=False)
        shown = {}
        for region in ("left", "right"):
            configs = [
                json.loads(p)
                for t, p, _ in sub.messages
                if t == f"homeassistant/sensor/cam/label_{region}/config" and p
            ]
            assert configs and configs[-1]["state_topic"] == f"edged/cam/state/{region}"
            assert configs[-1]["value_template"] == LABEL_TEMPLATE
            state = json.loads(sub.on(f"state/{region}")[-1][1])
            assert state["region"] == region
            assert state["confirmed_label"] == state["label"]  # 4 equal frames: confirmed
            shown[region] = env.from_string(LABEL_TEMPLATE).render(value_json=state)
        assert shown["left"] == "espresso"
        assert shown["right"] in CAT_LABELS
        assert not sub.on("state")  # no whole-frame state when every part is a region
    finally:
        sub.close()
