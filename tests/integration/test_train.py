"""``edged train`` and ``edged capture`` on what the project ships: class folders made from
the sample photos in edged/samples, so that they run in a fresh clone."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from edged.infer.bundled import default_model_path
from edged.train.tflite import BaseModel, op_names, read_model, schema
from tests.support import ROOT, Mosquitto, Subscriber, run_edged, write_config

SAMPLES = ROOT / "edged" / "samples"
# labels with spaces and non-ASCII letters; the photo each class is cut from
CLASSES = {"Chelsea the cat": "chelsea_cat.jpg", "café crème": "coffee.jpg", "rocket": "rocket.jpg"}
EDGE_TPU_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}


def crops(photo: Path, n: int, seed: int) -> list[Image.Image]:
    """``n`` different views of one photo: random crops of 60-90 % of each side, some
    mirrored, resized to a small camera-like frame."""
    rng = np.random.default_rng(seed)
    with Image.open(photo) as opened:
        im = opened.convert("RGB")
        w, h = im.size
        out = []
        for _ in range(n):
            share = rng.uniform(0.6, 0.9)
            cw, ch = int(w * share), int(h * share)
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            view = im.crop((left, top, left + cw, top + ch)).resize((240, 180))
            if rng.random() < 0.5:
                view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            out.append(view)
    return out


def make_dataset(root: Path, per_class: int = 6, seed: int = 0) -> dict[str, Path]:
    """Class folders under ``root``; returns one held-out view per class (not in root)."""
    held: dict[str, Path] = {}
    (root.parent / "held").mkdir(exist_ok=True)
    for i, (label, photo) in enumerate(CLASSES.items()):
        folder = root / label
        folder.mkdir(parents=True, exist_ok=True)
        views = crops(SAMPLES / photo, per_class + 1, seed + i)
        for k, view in enumerate(views[:-1]):
            view.save(folder / f"{k:02d}.jpg", quality=90)
        held[label] = root.parent / "held" / f"{photo}"
        views[-1].save(held[label], quality=90)
    return held


def train_json(*args: str) -> tuple[int, dict[str, Any], str]:
    result = run_edged("train", *args, "--json", timeout=300)
    report = json.loads(result.stdout) if result.returncode == 0 else {}
    return result.returncode, report, result.stderr


def test_train_writes_a_drop_in_int8_model(tmp_path: Path, mosquitto: Mosquitto) -> None:
    data = tmp_path / "data"
    held = make_dataset(data)
    cat = data / "Chelsea the cat"
    (cat / "notes.txt").write_text("not an image")  # skipped and counted, like replay
    (cat / "broken.jpg").write_bytes((cat / "00.jpg").read_bytes()[:300])  # truncated JPEG
    (data / "README.md").write_text("loose files beside the class folders are ignored")
    out = tmp_path / "out" / "custom.tflite"
    out.parent.mkdir()
    code, report, err = train_json(str(data), "--out", str(out), "--cache", str(tmp_path / "c"))
    assert code == 0, err

    labels = list(CLASSES)
    assert report["classes"] == sorted(labels)
    images = report["images"]
    assert isinstance(images, dict)
    assert images["Chelsea the cat"] == {"used": 6, "skipped": 2}
    assert images["rocket"] == {"used": 6, "skipped": 0}
    assert {Path(f["file"]).name for f in report["skipped_files"]} == {"notes.txt", "broken.jpg"}
    val = report["validation"]
    assert isinstance(val, dict)
    assert val["method"].startswith("5-fold")  # fewer than 20 images a class
    assert val["images"] == 18
    assert val["accuracy_int8"] >= 0.9 and val["accuracy_float"] >= 0.9
    matrix = np.array(val["confusion_matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == 18
    assert set(report["timings_s"]) >= {"scan", "features", "fit", "int8", "write", "total"}

    # the model: the base graph with a 3-class head, every tensor 8-bit (biases 32-bit)
    data_bytes = out.read_bytes()
    assert len(data_bytes) == report["size_bytes"] <= 6_000_000
    assert set(op_names(data_bytes)) <= EDGE_TPU_OPS
    assert op_names(data_bytes) == op_names(default_model_path().read_bytes())
    model = read_model(data_bytes)
    g = model.subgraphs[0]
    tt = schema().TensorType
    assert {t.type for t in g.tensors} <= {tt.INT8, tt.INT32}
    assert list(g.tensors[g.outputs[0]].shape) == [1, 3]
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["labels.txt"]
        assert zf.read("labels.txt").decode().splitlines() == report["classes"]
    manifest = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert manifest["classes"] == report["classes"]
    assert manifest["sha256"] == report["sha256"]
    assert manifest["base"]["sha256"] == report["base"]["sha256"]
    assert manifest["validation"]["confusion_matrix"] == val["confusion_matrix"]
    assert manifest["edged_version"] and manifest["date"]

    # classify, eval and bench take it with no option but the model
    result = run_edged("classify", "--model", str(out), "--json", *map(str, held.values()))
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["label"] for r in rows] == list(held)
    result = run_edged("eval", "--model", str(out), str(data), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["top1"] == 1.0
    result = run_edged("bench", "--model", str(out), "--runs", "3", "--warmup", "1", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["model"] == "custom.tflite"

    # and the daemon publishes the custom names
    cfg = write_config(
        tmp_path / "edged.toml",
        f'[capture]\ntype = "replay"\npaths = ["{tmp_path / "held"}"]\n'
        f'[model]\npath = "{out}"\n[mqtt]\nurl = "{mosquitto.url}"\n',
    )
    sub = Subscriber(mosquitto.port)
    try:
        result = run_edged("run", "-c", str(cfg))
        assert result.returncode == 0, result.stderr
        assert sub.wait(lambda: len(sub.events()) >= 3)
        events = {e["source"]: e["label"] for e in sub.events()}
    finally:
        sub.close()
    assert events == {path.name: label for label, path in held.items()}


def test_retraining_reuses_cached_features(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_dataset(data, per_class=5)
    cache = tmp_path / "cache"
    args = ("--cache", str(cache), "--no-augment")
    code, first, err = train_json(str(data), "--out", str(tmp_path / "a.tflite"), *args)
    assert code == 0, err
    assert first["features"] == {"computed": 15, "cached": 0}
    extra = crops(SAMPLES / "rocket.jpg", 2, seed=99)
    for k, view in enumerate(extra):
        view.save(data / "rocket" / f"new{k}.jpg")
    code, second, err = train_json(str(data), "--out", str(tmp_path / "b.tflite"), *args)
    assert code == 0, err
    assert second["features"] == {"computed": 2, "cached": 15}
    # the same features from the cache: the same model for the same images
    before = (tmp_path / "b.tflite").read_bytes()
    code, third, err = train_json(str(data), "--out", str(tmp_path / "b.tflite"), *args)
    assert code == 0, err
    assert third["features"] == {"computed": 0, "cached": 17}
    assert (tmp_path / "b.tflite").read_bytes() == before


def _unwritable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes anywhere a mode allows nothing: sysfs refuses it
        return Path("/sys/edged-model.tflite")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "model.tflite"


def test_bad_inputs_fail_early_with_a_clear_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_dataset(data, per_class=5)
    out = str(tmp_path / "m.tflite")

    def fails(data_dir: Path, *extra: str, out: str = out, code: int = 1) -> str:
        result = run_edged("train", str(data_dir), "--out", out, *extra)
        assert result.returncode == code, (result.stdout, result.stderr)
        assert not Path(out).exists()
        return result.stderr

    assert "'/nonexistent/photos' does not exist" in fails(Path("/nonexistent/photos"))
    err = fails(data, out=str(_unwritable(tmp_path)))
    assert "is not writable" in err
    assert "does not exist" in fails(data, out=str(tmp_path / "no" / "such" / "m.tflite"))
    assert "give a model file name" in fails(data, out=str(tmp_path / "model.json"))

    single = tmp_path / "single"
    (single / "rocket").mkdir(parents=True)
    for f in (data / "rocket").iterdir():
        (single / "rocket" / f.name).write_bytes(f.read_bytes())
    err = fails(single)
    assert "only one class ('rocket')" in err and "at least 2 classes" in err

    (data / "empty class").mkdir()
    err = fails(data)
    assert "class 'empty class' is empty" in err
    (data / "empty class").rmdir()

    nested = data / "rocket" / "launch pad"
    nested.mkdir()
    err = fails(data)
    assert "class 'rocket' holds a folder 'launch pad'" in err
    nested.rmdir()

    odd = data / "rocket\nlaunch"
    odd.mkdir()
    assert "contains a control character" in fails(data)
    odd.rmdir()

    few = data / "rocket"
    for f in sorted(few.iterdir())[:2]:
        f.write_text("no longer an image")
    err = fails(data, "--cache", str(tmp_path / "c"))
    assert "class 'rocket' has 3 readable image(s) (2 unreadable files skipped)" in err
    assert "at least 5" in err


def test_a_base_without_a_final_classifier_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_dataset(data, per_class=5)
    # the bundled model cut before its classifier: its output is a feature vector
    features = tmp_path / "features.tflite"
    features.write_bytes(BaseModel(default_model_path().read_bytes()).feature_model())
    out = str(tmp_path / "m.tflite")
    result = run_edged("train", str(data), "--out", out, "--base", str(features))
    assert result.returncode == 3, result.stderr
    assert "no recognisable final classifier" in result.stderr
    assert "comes from MEAN" in result.stderr
    image = sorted((data / "rocket").iterdir())[0]
    result = run_edged("train", str(data), "--out", out, "--base", str(image))
    assert result.returncode == 3 and "is not a TFLite model" in result.stderr


def test_capture_saves_frames_from_the_configured_source(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path / "edged.toml",
        f'[capture]\ntype = "replay"\npaths = ["{SAMPLES}"]\nloop = true\n',
    )
    result = run_edged(
        "capture",
        str(tmp_path / "data"),
        "--label",
        "blue tit",
        "--count",
        "5",
        "--interval",
        "0",
        "-c",
        str(cfg),
    )
    assert result.returncode == 0, result.stderr
    saved = sorted((tmp_path / "data" / "blue tit").iterdir())
    assert len(saved) == 5 and all(p.suffix == ".jpg" for p in saved)
    with Image.open(saved[0]) as im:
        assert im.format == "JPEG" and min(im.size) >= 224
    result = run_edged(
        "capture", str(tmp_path / "data"), "--label", "door/open", "--count", "1", "-c", str(cfg)
    )
    assert result.returncode == 1
    assert "label 'door/open' contains a slash" in result.stderr


def test_the_daemon_collects_frames_worth_labelling(tmp_path: Path, mosquitto: Mosquitto) -> None:
    keep = tmp_path / "collected"
    cfg = write_config(
        tmp_path / "edged.toml",
        f"""
[capture]
type = "replay"
paths = ["{SAMPLES}"]
[mqtt]
url = "{mosquitto.url}"
[collect]
dir = "{keep}"
below_score = 0.999
max_mb = 20
""",
    )
    sub = Subscriber(mosquitto.port)
    try:
        result = run_edged("run", "-c", str(cfg))
        assert result.returncode == 0, result.stderr
        assert sub.wait(lambda: len(sub.events()) >= 4)
        events = {e["source"]: e for e in sub.events()}
    finally:
        sub.close()
    sidecars = [json.loads(p.read_text()) for p in sorted(keep.glob("*.json"))]
    kept = {s["source"]: s for s in sidecars}
    expected = {src for src, e in events.items() if e["score"] < 0.999}
    assert set(kept) == expected and expected
    for src, side in kept.items():
        assert side["label"] == events[src]["label"]
        assert side["top_k"] == events[src]["top_k"]
        with Image.open(keep / side["image"]) as im:
            assert im.format == "JPEG" and min(im.size) >= 224
