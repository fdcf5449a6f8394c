"""Pure parts of the camera features: backoff, sizes, regions, confirmation, static scenes,
and the config checks that go with them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edged.capture.live import Backoff, covering_size
from edged.capture.regions import Region, capture_size
from edged.capture.static import StaticScene
from edged.classify import Classification
from edged.classify.topk import Class
from edged.config import ConfigError, parse_config, redact_url
from edged.publish.confirm import Confirmer


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    lows = Backoff(0.5, 8.0, rng=lambda: 0.0)
    assert [lows.next() for _ in range(7)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    highs = Backoff(0.5, 8.0, rng=lambda: 1.0)
    assert [highs.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    highs.reset()
    assert highs.next() == 0.5
    real = Backoff(1.0, 10.0)
    delays = [real.next() for _ in range(50)]
    assert all(0.5 <= d <= 10.0 for d in delays) and len(set(delays)) > 10


def test_covering_size_keeps_aspect_and_never_upscales() -> None:
    assert covering_size(1920, 1080, (256, 256)) == (455, 256)
    assert covering_size(640, 480, (256, 256)) == (341, 256)
    assert covering_size(320, 240, (256, 256)) == (320, 240)


def test_regions_crop_and_capture_size() -> None:
    image = np.arange(100 * 200 * 3, dtype=np.uint32).astype(np.uint8).reshape(100, 200, 3)
    left = Region("left", 0.0, 0.0, 0.5, 1.0)
    right = Region("right", 0.5, 0.25, 0.5, 0.5)
    assert left.crop(image).shape == (100, 100, 3)
    assert right.box(200, 100) == (100, 25, 200, 75)
    assert np.shares_memory(right.crop(image), image)  # a view
    assert capture_size((256, 256), [left, right]) == (512, 512)
    assert capture_size((256, 256), []) == (256, 256)
    tiny = Region("dot", 0.999, 0.999, 0.001, 0.001)
    assert tiny.crop(image).shape[:2] == (1, 1)


def result(label: str, score: float = 0.9) -> Classification:
    return Classification((Class(1, label, score),), False)


def test_confirm_alternating_labels_never_confirm() -> None:
    c = Confirmer(3)
    changes = [c.update(result("cat" if i % 2 else "dog")) for i in range(20)]
    assert not any(changes) and c.confirmed is None


def test_confirm_three_equal_frames_confirm_once() -> None:
    c = Confirmer(3)
    assert [c.update(result("cat")) for _ in range(6)] == [False, False, True, False, False, False]
    assert c.confirmed == "cat"
    # a two-frame blip does not change the state; a three-frame run does
    assert not any(c.update(result("dog")) for _ in range(2))
    assert [c.update(result("cat"))] == [False]
    assert [c.update(result("dog")) for _ in range(3)] == [False, False, True]


def test_confirm_needs_min_score() -> None:
    c = Confirmer(2, min_score=0.5)
    assert not any(c.update(result("cat", 0.4)) for _ in range(5))
    assert [c.update(result("cat", 0.6)) for _ in range(2)] == [False, True]
    one = Confirmer(1)
    assert one.update(result("cat")) and not one.update(result("cat"))
    with pytest.raises(ValueError):
        Confirmer(0)


def test_static_scene_skips_still_frames_and_sees_a_change() -> None:
    now = [0.0]
    scene = StaticScene(threshold=0.02, max_s=10.0, clock=lambda: now[0])
    rng = np.random.default_rng(1)
    still = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    assert scene.changed(still)  # the first frame is always classified
    noisy = np.clip(still.astype(np.int16) + rng.integers(-3, 4, still.shape), 0, 255)
    assert not scene.changed(noisy.astype(np.uint8))  # sensor noise is not a change
    other = rng.integers(0, 255, still.shape, dtype=np.uint8)
    assert scene.changed(other)
    assert not scene.changed(other)
    now[0] = 10.5  # static_max_s: classified at least this often
    assert scene.changed(other)
    assert scene.skipped == 2


def test_region_and_static_config_errors() -> None:
    bad = {
        "capture": {
            "type": "stream",
            "url": "rtsp://cam/live",
            "regions": [
                {"name": "sky", "x": 0.5, "width": 0.6},
                {"name": "flat", "height": 0.0},
            ],
            "static_threshold": 0,
        }
    }
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    text = err.value.render()
    assert "capture.regions.0" in text and "reaches outside the frame" in text
    assert "capture.regions.1" in text and "has no area" in text
    assert "capture.static_threshold" in text
    with pytest.raises(ConfigError, match="repeated: a"):
        parse_config({"capture": {"regions": [{"name": "a"}, {"name": "a"}]}})


def test_stream_config_checks() -> None:
    with pytest.raises(ConfigError, match="credentials do not belong"):
        parse_config({"capture": {"type": "stream", "url": "http://u:p@cam/video"}})
    with pytest.raises(ConfigError, match="expected rtsp://"):
        parse_config({"capture": {"type": "stream", "url": "ftp://cam/x"}})
    with pytest.raises(ConfigError, match="shorter than stall_s"):
        capture = {"type": "stream", "url": "rtsp://c/x", "reconnect_max_s": 30, "stall_s": 20}
        parse_config({"capture": capture})
    with pytest.raises(ConfigError, match="valid types: 'replay', 'picamera2', 'v4l2', 'stream'"):
        parse_config({"capture": {"type": "usb"}})
    assert redact_url("rtsp://admin:pw@10.0.0.5:554/x") == "rtsp://***@10.0.0.5:554/x"
    assert redact_url("rtsp://10.0.0.5/x") == "rtsp://10.0.0.5/x"


def test_stream_messages_are_redacted(tmp_path: Path) -> None:
    from edged.capture.stream import StreamSource

    secret = tmp_path / "pw"
    secret.write_text("pa ss/w@rd\n")
    cfg = parse_config(
        {
            "capture": {
                "type": "stream",
                "url": "rtsp://10.0.0.5/live",
                "username": "viewer",
                "password_file": str(secret),
            }
        }
    ).capture
    source = StreamSource(cfg, (224, 224))  # type: ignore[arg-type]
    url, options = source._target()
    assert url == "rtsp://viewer:pa%20ss%2Fw%40rd@10.0.0.5/live"
    assert options["rtsp_transport"] == "tcp" and "headers" not in options
    message = f"[Errno 111] Connection refused: '{url}' (pa ss/w@rd)"
    redacted = "[Errno 111] Connection refused: 'rtsp://***@10.0.0.5/live' (***)"
    assert source.redact(message) == redacted
    assert "pa ss" not in source.describe()
