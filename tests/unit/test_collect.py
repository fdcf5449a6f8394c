"""The frame collector: which frames it keeps, what it writes, and the bound on its folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edged.classify import Class, Classification
from edged.config import CollectConfig, ConfigError, parse_config
from edged.publish.collect import Collector


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def result(score: float, label: str = "blue tit", ambiguous: bool = False) -> Classification:
    return Classification((Class(1, label, score), Class(0, "squirrel", 1 - score)), ambiguous)


def frame(seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def collector(tmp_path: Path, clock: Clock | None = None, **rules: object) -> Collector:
    cfg = CollectConfig(dir=str(tmp_path / "keep"), **rules)  # type: ignore[arg-type]
    return Collector(cfg, device="cam-1", model="birds.tflite", clock=clock or Clock())


def offer(c: Collector, n: int, res: Classification) -> object:
    c.hold(n, frame(n))
    return c.offer(n, f"f{n}.jpg", res)


def test_off_by_default_and_a_folder_needs_a_rule() -> None:
    assert parse_config({}).collect.dir == ""
    with pytest.raises(ConfigError) as err:
        parse_config({"collect": {"dir": "/var/lib/edged/collect"}})
    assert "collect" in err.value.render() and "no rule selects frames" in err.value.render()
    cfg = parse_config({"collect": {"dir": "/x", "ambiguous": True, "max_mb": 50}})
    assert cfg.collect.ambiguous and cfg.collect.max_mb == 50


def test_each_rule_selects_its_frames(tmp_path: Path) -> None:
    c = collector(tmp_path / "a", ambiguous=True)
    assert offer(c, 1, result(0.9)) is None
    kept = offer(c, 2, result(0.45, ambiguous=True))
    assert kept is not None and kept.reasons == ("ambiguous",)  # type: ignore[attr-defined]

    c = collector(tmp_path / "b", below_score=0.6)
    assert offer(c, 1, result(0.7)) is None
    assert offer(c, 2, result(0.59)) is not None

    c = collector(tmp_path / "c", classes=["Squirrel"])
    assert offer(c, 1, result(0.9)) is None
    assert offer(c, 2, result(0.9, label="squirrel")) is not None

    clock = Clock()
    c = collector(tmp_path / "d", clock=clock, every_s=10)
    assert offer(c, 1, result(0.9)) is not None
    clock.t += 5
    assert offer(c, 2, result(0.9)) is None
    clock.t += 5
    assert offer(c, 3, result(0.9)) is not None
    assert c.saved == 2


def test_writes_a_jpeg_and_a_sidecar_with_the_classification(tmp_path: Path) -> None:
    c = collector(tmp_path, ambiguous=True)
    kept = offer(c, 7, result(0.45, ambiguous=True))
    assert kept is not None
    jpg, side = sorted((tmp_path / "keep").iterdir())
    assert (jpg.suffix, side.suffix) == (".jpg", ".json") and jpg.stem == side.stem
    assert jpg.read_bytes()[:2] == b"\xff\xd8"
    meta = json.loads(side.read_text())
    assert meta["image"] == jpg.name and meta["frame"] == 7 and meta["source"] == "f7.jpg"
    assert meta["label"] == "blue tit" and meta["score"] == 0.45 and meta["ambiguous"] is True
    assert [k["label"] for k in meta["top_k"]] == ["blue tit", "squirrel"]
    assert meta["device"] == "cam-1" and meta["model"] == "birds.tflite"
    assert meta["reasons"] == ["ambiguous"] and meta["ts"].endswith("Z")


def test_the_folder_stays_within_max_mb_oldest_first(tmp_path: Path) -> None:
    clock = Clock()
    c = collector(tmp_path, clock=clock, below_score=1.0, max_mb=0.05)
    for n in range(1, 21):
        clock.t += 1
        offer(c, n, result(0.5))
    files = sorted((tmp_path / "keep").iterdir())
    total = sum(f.stat().st_size for f in files)
    assert total <= 50_000 and total == c.bytes
    frames = sorted(json.loads(f.read_text())["frame"] for f in files if f.suffix == ".json")
    assert frames == list(range(21 - len(frames), 21))  # the newest survive
    assert c.deleted == 20 - len(frames) > 0
    # a restart counts what is there: the bound holds across runs
    again = collector(tmp_path, clock=clock, below_score=1.0, max_mb=0.05)
    assert again.bytes == total
    clock.t += 1
    offer(again, 21, result(0.5))
    assert sum(f.stat().st_size for f in (tmp_path / "keep").iterdir()) <= 50_000


def test_a_frame_no_longer_held_is_counted_not_saved(tmp_path: Path) -> None:
    c = Collector(CollectConfig(dir=str(tmp_path), ambiguous=True), window=2, clock=Clock())
    for n in range(1, 5):
        c.hold(n, frame(n))
    assert c.offer(1, "f1", result(0.4, ambiguous=True)) is None  # left the window of 2
    assert c.missed == 1
    assert c.offer(4, "f4", result(0.4, ambiguous=True)) is not None
