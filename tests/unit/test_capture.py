"""Frame sources: replay (files, directories, video, pacing) and picamera2 against a stand-in
module that honours picamera2's API (no Pi camera on this machine)."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from edged.capture import open_source
from edged.config import parse_config
from tests.support import pixels


def _images(d: Path, n: int) -> list[Path]:
    out = []
    for i in range(n):
        p = d / f"{i:02d}.png"
        Image.new("RGB", (64, 48), (i * 40 % 256, 0, 0)).save(p)
        out.append(p)
    return out


def test_replay_directory_once_in_order(tmp_path: Path) -> None:
    _images(tmp_path, 3)
    (tmp_path / "notes.txt").write_text("not an image")
    cfg = parse_config({"capture": {"paths": [str(tmp_path)]}})
    src = open_source(cfg.capture, (32, 32))
    frames = list(src.frames(threading.Event()))
    assert [f.source for f in frames] == ["00.png", "01.png", "02.png"]
    assert [f.number for f in frames] == [1, 2, 3]
    assert pixels(frames[1])[0, 0].tolist() == [40, 0, 0]
    assert src.skipped == 1 and not src.live


def test_replay_loop_and_pacing(tmp_path: Path) -> None:
    _images(tmp_path, 2)
    cfg = parse_config({"capture": {"paths": [str(tmp_path)], "loop": True, "fps": 200}})
    src = open_source(cfg.capture, (32, 32))
    assert src.live
    stop = threading.Event()
    t0 = time.monotonic()
    frames = []
    for f in src.frames(stop):
        frames.append(f.source)
        if len(frames) == 10:
            stop.set()
    elapsed = time.monotonic() - t0
    assert frames == ["00.png", "01.png"] * 5
    assert 0.04 < elapsed < 2.0  # 10 frames at 200 fps: nine periods of 5 ms at least


def test_looped_replay_lists_a_directory_again_only_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edged.capture import replay

    _images(tmp_path, 2)
    listings = []
    real_expand = replay.expand

    def counting_expand(paths: list[str], recursive: bool = False) -> list[Path]:
        listings.append(paths)
        return real_expand(paths, recursive)

    monkeypatch.setattr(replay, "expand", counting_expand)
    cfg = parse_config({"capture": {"paths": [str(tmp_path)], "loop": True}})
    src = open_source(cfg.capture, (32, 32))
    listings.clear()  # opening the source checked the paths
    frames = src.frames(threading.Event())
    seen = [next(frames).source for _ in range(40)]  # twenty passes
    assert seen == ["00.png", "01.png"] * 20
    assert len(listings) <= 2, listings  # one listing (or two, a second apart), not twenty

    # a file added and one removed are seen on the next pass (the directory's mtime moves
    # on once the file system's clock has ticked since its last change)
    time.sleep(0.05)
    _images(tmp_path, 3)[0].unlink()  # writes 00, 01 and 02, then takes 00 away
    assert [next(frames).source for _ in range(4)] == ["01.png", "02.png"] * 2


def _count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the files the replay source decodes, in order."""
    from edged.capture import replay
    from edged.preprocess import image

    decodes: list[str] = []

    def counting_load(path: Path, size: Any = None) -> Any:
        decodes.append(Path(path).name)
        return image.load_image(path, size)

    monkeypatch.setattr(replay, "load_image", counting_load)
    return decodes


def test_looped_replay_decodes_each_image_once_until_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    paths = _images(tmp_path, 2)
    decodes = _count_decodes(monkeypatch)
    cfg = parse_config({"capture": {"paths": [str(tmp_path)], "loop": True}})
    frames = open_source(cfg.capture, (32, 32)).frames(threading.Event())
    seen = [next(frames) for _ in range(20)]  # ten passes
    assert decodes == ["00.png", "01.png"]
    assert [pixels(f)[0, 0].tolist() for f in seen[:4]] == [[0, 0, 0], [40, 0, 0]] * 2
    with pytest.raises(ValueError, match="read-only"):
        pixels(seen[1])[0, 0] = 1  # every pass shares the arrays: nobody may write into them
    # a file rewritten (another size) is decoded again, and its new pixels are replayed
    Image.new("RGB", (80, 48), (200, 0, 0)).save(paths[1])
    again = [next(frames) for _ in range(4)]
    assert decodes == ["00.png", "01.png", "01.png"]
    assert [pixels(f)[0, 0].tolist() for f in again] == [[0, 0, 0], [200, 0, 0]] * 2
    assert pixels(again[1]).shape == (48, 80, 3)


def test_replay_keeps_no_more_decoded_images_than_it_may(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edged.capture import replay

    _images(tmp_path, 3)  # 64x48x3 = 9216 bytes each
    monkeypatch.setattr(replay, "DECODED_MAX_BYTES", 2 * 64 * 48 * 3)
    decodes = _count_decodes(monkeypatch)
    once = parse_config({"capture": {"paths": [str(tmp_path)]}})
    assert len(list(open_source(once.capture, (32, 32)).frames(threading.Event()))) == 3
    assert len(decodes) == 3
    decodes.clear()
    cfg = parse_config({"capture": {"paths": [str(tmp_path)], "loop": True}})
    frames = open_source(cfg.capture, (32, 32)).frames(threading.Event())
    assert [next(frames).source for _ in range(9)] == ["00.png", "01.png", "02.png"] * 3
    # two fit: the third is decoded on every pass
    assert decodes == ["00.png", "01.png", "02.png", "02.png", "02.png"]


def test_replay_video(tmp_path: Path) -> None:
    av = pytest.importorskip("av")
    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 40, np.uint8), "rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    cfg = parse_config({"capture": {"paths": [str(video)]}})
    frames = list(open_source(cfg.capture, (32, 32)).frames(threading.Event()))
    assert len(frames) == 6
    assert pixels(frames[0]).shape == (48, 64, 3)
    assert abs(int(pixels(frames[5]).mean()) - 200) < 8


def test_replay_missing_path_is_an_error(tmp_path: Path) -> None:
    cfg = parse_config({"capture": {"paths": [str(tmp_path / "nope")]}})
    with pytest.raises(FileNotFoundError, match="nope"):
        open_source(cfg.capture, (32, 32))


def test_picamera2_streams_rgb_at_model_size(fake_picamera2: Any) -> None:
    cfg = parse_config({"capture": {"type": "picamera2", "fps": 100}})
    src = open_source(cfg.capture, (224, 224))
    cam = fake_picamera2.instances[0]
    assert cam.camera_config["main"] == {"size": (224, 224), "format": "BGR888"}
    assert cam.camera_config["controls"]["FrameRate"] == 100
    assert src.live
    stop = threading.Event()
    frames = []
    for f in src.frames(stop):
        frames.append(f)
        if len(frames) == 3:
            stop.set()
    assert pixels(frames[0]).shape == (224, 224, 3)
    assert pixels(frames[0])[0, 0].tolist() == [200, 0, 0]  # R first: RGB order
    src.close()
    src.close()
    assert cam.closed and cam.close_calls == 1 and not cam.started


def test_picamera2_lores_beside_full_main(fake_picamera2: Any) -> None:
    cfg = parse_config({"capture": {"type": "picamera2", "stream": "lores", "fps": 100}})
    src = open_source(cfg.capture, (299, 299))
    cam = fake_picamera2.instances[0]
    assert cam.camera_config["main"]["size"] == (1280, 720)
    assert cam.camera_config["lores"] == {"size": (320, 300), "format": "BGR888"}  # aligned
    stop = threading.Event()
    frame = next(iter(src.frames(stop)))
    assert pixels(frame).shape == (300, 320, 3)
    src.close()


def test_picamera2_missing_camera(fake_picamera2: Any) -> None:
    from edged.capture.picamera2 import CameraError

    cfg = parse_config({"capture": {"type": "picamera2", "camera_num": 3}})
    with pytest.raises(CameraError, match="camera 3"):
        open_source(cfg.capture, (224, 224))


def test_picamera2_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from edged.capture.picamera2 import CameraError

    monkeypatch.setitem(sys.modules, "picamera2", None)
    cfg = parse_config({"capture": {"type": "picamera2"}})
    with pytest.raises(CameraError, match="python3-picamera2"):
        open_source(cfg.capture, (224, 224))


def test_picamera2_absent_camera_is_waited_for(
    fake_picamera2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's source (wait=True) starts without a camera, names what is missing and
    opens the camera once it is there."""
    from edged.capture.picamera2 import Picamera2Source

    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", "0")
    cfg = parse_config({"capture": {"type": "picamera2", "fps": 100}})
    src = Picamera2Source(cfg.capture, (224, 224), wait=True, retry_s=0.01)  # type: ignore[arg-type]
    assert src.absent() is not None and "camera 0 cannot be opened" in src.absent()  # type: ignore[operator]
    assert src.status() == {"source_state": "connecting", "source_error": src.absent()}
    assert fake_picamera2.instances == []
    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", "1")  # the camera is detected
    stop = threading.Event()
    frame = next(iter(src.frames(stop)))
    assert pixels(frame).shape == (224, 224, 3)
    assert src.absent() is None and src.status() == {}
    src.close()
    assert fake_picamera2.instances[0].closed


def test_picamera2_waiting_source_stops_without_a_camera(
    fake_picamera2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edged.capture.picamera2 import Picamera2Source

    monkeypatch.setenv("FAKE_PICAMERA2_CAMERAS", "0")
    cfg = parse_config({"capture": {"type": "picamera2"}})
    src = Picamera2Source(cfg.capture, (224, 224), wait=True, retry_s=0.01)  # type: ignore[arg-type]
    stop = threading.Event()
    stop.set()
    assert list(src.frames(stop)) == []
    src.close()  # nothing was opened: nothing to close, no error


def test_picamera2_not_installed_is_waited_for_by_the_daemon(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    cfg = parse_config({"capture": {"type": "picamera2"}})
    src = open_source(cfg.capture, (224, 224), wait=True)
    assert "python3-picamera2" in (src.absent() or "")
    src.close()


def test_picamera2_one_region_cropped_by_the_isp(fake_picamera2: Any, tmp_path: Path) -> None:
    """One region on picamera2: ScalerCrop on the sensor, frames are the region itself."""
    arr = np.zeros((480, 640, 3), np.uint8)
    arr[:, :320, 0] = 200  # red left half
    arr[:, 320:, 2] = 200  # blue right half
    Image.fromarray(arr).save(tmp_path / "scene.png")
    region = {"name": "right", "x": 0.5, "width": 0.5}
    cfg = parse_config({"capture": {"type": "picamera2", "fps": 100, "regions": [region]}})
    src = open_source(cfg.capture, (224, 224))
    cam = fake_picamera2.instances[0]
    assert cam.controls["ScalerCrop"] == (2304, 0, 2304, 2592)
    assert src.cropped_region == "right"
    # the stream has the region's aspect (2304:2592) and covers the model input
    assert cam.camera_config["main"]["size"] == (224, 252)
    frame = next(iter(src.frames(threading.Event())))
    assert pixels(frame).shape == (252, 224, 3)
    assert pixels(frame)[:, :, 2].min() == 200 and pixels(frame)[:, :, 0].max() == 0  # all blue
    src.close()


def test_picamera2_two_regions_cropped_on_the_cpu(fake_picamera2: Any) -> None:
    regions = [{"name": "a", "width": 0.5}, {"name": "b", "x": 0.5, "width": 0.5}]
    cfg = parse_config({"capture": {"type": "picamera2", "fps": 100, "regions": regions}})
    src = open_source(cfg.capture, (224, 224))
    cam = fake_picamera2.instances[0]
    assert "ScalerCrop" not in cam.controls and src.cropped_region is None
    assert cam.camera_config["main"]["size"] == (448, 224)  # each half covers 224
    src.close()


def test_picamera2_closed_when_configure_fails(
    fake_picamera2: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: Any, camera_config: dict[str, Any]) -> None:
        raise RuntimeError("Invalid configuration")

    monkeypatch.setattr(fake_picamera2.Picamera2, "configure", refuse)
    cfg = parse_config({"capture": {"type": "picamera2"}})
    with pytest.raises(RuntimeError, match="Invalid configuration"):
        open_source(cfg.capture, (224, 224))
    assert fake_picamera2.instances[0].closed


def test_picamera2_takes_the_models_center_crop_on_the_isp(fake_picamera2: Any) -> None:
    """With a model that center-crops (0.875), the ISP crops the centered square and scales
    it to the model's size: frames arrive final, and preprocessing feeds them as they are."""
    from edged.capture import Framing

    cfg = parse_config({"capture": {"type": "picamera2", "fps": 100}})
    src = open_source(cfg.capture, (256, 256), Framing((224, 224), 0.875))
    cam = fake_picamera2.instances[0]
    side = round(2592 * 0.875)  # of the sensor's 4608x2592 pixel array
    assert cam.controls["ScalerCrop"] == ((4608 - side) // 2, (2592 - side) // 2, side, side)
    assert cam.camera_config["main"]["size"] == (224, 224)
    frame = next(iter(src.frames(threading.Event())))
    assert pixels(frame).shape == (224, 224, 3)
    src.close()


@pytest.mark.parametrize(
    "capture",
    [
        {"stream": "lores"},  # the ISP crop would crop the full-size main stream too
        {"width": 640, "height": 480},  # a size the user chose
        {"regions": [{"name": "r", "width": 0.5}]},  # the region's own crop wins
    ],
)
def test_picamera2_center_crop_stays_on_the_cpu_when_the_isp_cannot_take_it(
    fake_picamera2: Any, capture: dict[str, Any]
) -> None:
    from edged.capture import Framing

    cfg = parse_config({"capture": {"type": "picamera2", "fps": 100, **capture}})
    src = open_source(cfg.capture, (256, 256), Framing((224, 224), 0.875))
    cam = fake_picamera2.instances[0]
    rect = cam.controls.get("ScalerCrop")
    assert rect is None or rect[2] != rect[3] or "regions" in capture  # no centered square
    assert cam.camera_config[capture.get("stream", "main")]["size"] != (224, 224)
    src.close()
