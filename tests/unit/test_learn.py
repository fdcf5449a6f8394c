"""The Learn store, the job's split and error mapping, and the [learn] config, on real
files in a temporary folder."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from edged.config import Config, ConfigError, load_config
from edged.learn.job import JobFailed, _disk_full, split
from edged.learn.models import CONFIG_ID, SPEC_FILE, ModelStore
from edged.learn.store import LearnError, Store, valid_label


def frame(folder: Path, stem: str, color: int = 100, meta: dict[str, Any] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 48), (color, 50, 50)).save(folder / f"{stem}.jpg")
    side = {"reasons": ["ambiguous"], "top_k": [{"label": "cup", "score": 0.4}],
            "source": "/x/a.jpg", "ts": "2026-01-01T00:00:00.000Z", "region": None}  # fmt: skip
    (folder / f"{stem}.json").write_text(json.dumps(meta if meta is not None else side))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    for i in range(3):
        frame(tmp_path / "collect", f"20260101T00000{i}.000Z-0000000{i}", 50 * i)
    return Store(tmp_path / "collect", tmp_path / "dataset", 10_000_000)


def test_labels_follow_edged_train_rules() -> None:
    assert valid_label("glass") == "glass"
    assert valid_label("tiger cat") == "tiger cat"
    for bad in ("", " ", "..", ".", "a/b", "a\\b", ".x", "x\n", " x", "x" * 65):
        with pytest.raises(LearnError) as err:
            valid_label(bad)
        assert err.value.status == 400 and repr(bad) in str(err.value)
    with pytest.raises(LearnError):
        valid_label(3)


def test_label_moves_between_class_folders_and_unlabels(store: Store, tmp_path: Path) -> None:
    page = store.page(0, 10)
    assert page["total"] == 3
    ids = [i["id"] for i in page["items"]]
    assert ids == sorted(ids, reverse=True)
    fid = ids[0]
    assert store.set_label(fid, "cup")["label"] == "cup"
    assert (tmp_path / "dataset" / "cup" / f"{fid}.jpg").exists()
    assert (tmp_path / "dataset" / "cup" / f"{fid}.json").exists()  # provenance travels
    assert store.set_label(fid, "glass")["label"] == "glass"
    assert not (tmp_path / "dataset" / "cup").exists()  # the emptied class goes
    assert store.counts()["classes"] == {"glass": 1}
    assert store.set_label(fid, None)["label"] is None
    assert store.counts()["classes"] == {}
    assert (tmp_path / "collect" / f"{fid}.jpg").exists()  # the collected frame stays


def test_hand_edits_are_read(store: Store, tmp_path: Path) -> None:
    fid = store.page(0, 10)["items"][0]["id"]
    store.set_label(fid, "cup")
    # moved by hand to another class folder: it carries that label
    (tmp_path / "dataset" / "glass").mkdir()
    for suffix in (".jpg", ".json"):
        (tmp_path / "dataset" / "cup" / f"{fid}{suffix}").rename(
            tmp_path / "dataset" / "glass" / f"{fid}{suffix}"
        )
    assert store.frame(fid).label == "glass"
    # a sidecar broken by hand: listed without its metadata
    (tmp_path / "collect" / f"{fid}.json").write_text("{broken")
    item = next(i for i in store.page(0, 10)["items"] if i["id"] == fid)
    assert item["reasons"] == [] and item["top_k"] == []
    # the collected copy trimmed away: the labelled copy still answers
    (tmp_path / "collect" / f"{fid}.jpg").unlink()
    assert store.frame(fid).image == tmp_path / "dataset" / "glass" / f"{fid}.jpg"


def test_ids_never_reach_the_filesystem(store: Store, tmp_path: Path) -> None:
    (tmp_path / "outside.jpg").write_bytes(b"x")
    for bad in ("../outside", "..", "a/b", "", ".x", "20260101T000000.000Z-00000000/../x"):
        with pytest.raises(LearnError) as err:
            store.frame(bad)
        assert err.value.status == 404
    with pytest.raises(LearnError) as err:
        store.frame("nosuchframe")
    assert err.value.status == 404


def test_corrupt_jpeg_and_full_dataset(store: Store, tmp_path: Path) -> None:
    fid = store.page(0, 10)["items"][0]["id"]
    (tmp_path / "collect" / f"{fid}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(LearnError) as err:
        store.set_label(fid, "cup")
    assert err.value.status == 422 and fid in str(err.value)
    small = Store(tmp_path / "collect", tmp_path / "dataset", 100)
    other = small.page(0, 10)["items"][1]["id"]
    with pytest.raises(LearnError) as err:
        small.set_label(other, "cup")
    assert err.value.status == 507 and "learn.max_mb" in str(err.value)
    assert small.counts()["classes"] == {}


def test_split_is_stratified_and_keeps_five_to_train() -> None:
    files = {"a": [Path(f"a{i}.jpg") for i in range(20)], "b": [Path(f"b{i}") for i in range(6)]}
    train, held = split(files, 0.2, 0)
    assert len(held["a"]) == 4 and len(train["a"]) == 16
    assert len(held["b"]) == 1 and len(train["b"]) == 5
    assert not set(held["a"]) & set(train["a"])
    assert split(files, 0.2, 0) == (train, held)  # the same split every time
    with pytest.raises(JobFailed, match="'c' has 5 readable"):
        split({"c": [Path(f"c{i}") for i in range(5)]}, 0.2, 0)


def test_disk_full_is_recognised() -> None:
    assert _disk_full(OSError(errno.ENOSPC, "No space left on device"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("write failed") from inner
    except RuntimeError as outer:
        assert _disk_full(outer)
    assert not _disk_full(OSError(errno.EACCES, "Permission denied"))


def test_history_ignores_unknown_models(tmp_path: Path) -> None:
    models = ModelStore(tmp_path, keep=2)
    assert models.deployed() == CONFIG_ID
    (tmp_path / "20260101T000000Z-aaaaaa").mkdir()
    (tmp_path / "20260101T000000Z-aaaaaa" / SPEC_FILE).write_text("{}")
    models.set_history([CONFIG_ID, "20260101T000000Z-aaaaaa", "gone"], "0" * 64)
    assert models.config_sha256() == "0" * 64
    assert models.history() == [CONFIG_ID, "20260101T000000Z-aaaaaa"]
    (tmp_path / "deployed.json").write_text("[not json")
    assert models.history() == [CONFIG_ID]


def test_learn_config(tmp_path: Path) -> None:
    assert Config().learn.enabled is False
    path = tmp_path / "c.toml"
    path.write_text("[learn]\nenabled = true\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "web.listen and collect.dir" in str(err.value)


def test_prune_keeps_the_newest_and_the_deployed(tmp_path: Path) -> None:
    models = ModelStore(tmp_path, keep=2)
    ids = [f"2026010{i}T000000Z-aaaaaa" for i in range(1, 7)]
    for mid in ids:
        (tmp_path / mid).mkdir()
        (tmp_path / mid / SPEC_FILE).write_text("{}")
    models.set_history([CONFIG_ID, ids[0], ids[1]], "0" * 64)  # ids[1] runs, ids[0] before
    models.prune(protect={ids[2]})  # e.g. the job being read
    # the two newest, the protected one, the deployed one and the roll-back target
    assert models.ids() == [ids[5], ids[4], ids[2], ids[1], ids[0]]
    models.set_history([CONFIG_ID], "0" * 64)
    models.prune(protect=set())
    assert models.ids() == [ids[5], ids[4]]
