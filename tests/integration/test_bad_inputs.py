"""Every kind of bad input gets a clear error naming the problem, and loses nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support import (
    IMAGES,
    V1_025,
    V2,
    Mosquitto,
    Subscriber,
    retained,
    rewire_outputs,
    run_edged,
)


def test_config_with_several_wrong_keys_reports_all(tmp_path: Path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("""
[model]
backend = "gpu"
num_threads = 0
colour = "blue"
[capture]
type = "replay"
fps = -3
[mqtt]
url = "http://broker"
qos = 7
[publish]
policy = "sometimes"
""")
    result = run_edged("check-config", "-c", str(cfg))
    assert result.returncode == 2
    err = result.stderr
    for needle in (
        "model.backend",
        "'gpu'",
        "'auto', 'cpu' or 'edgetpu'",
        "model.num_threads",
        "model.colour: unknown key",
        "capture.fps",
        "mqtt.url",
        "mqtt.qos",
        "publish.policy",
        "'sometimes'",
        "7 problem(s)",
    ):
        assert needle in err, (needle, err)
    # the daemon refuses to start on the same errors
    run = run_edged("run", "-c", str(cfg), "--frames", "1")
    assert run.returncode == 2 and "model.colour: unknown key" in run.stderr


def test_unknown_capture_type_and_bad_toml(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[capture]\ntype = "webcam"\n')
    r = run_edged("check-config", "-c", str(cfg))
    assert r.returncode == 2 and "valid types: 'replay', 'picamera2'" in r.stderr
    cfg.write_text("[model\npath=")
    r = run_edged("check-config", "-c", str(cfg))
    assert r.returncode == 2 and "(file)" in r.stderr
    r = run_edged("check-config", "-c", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_env_override_and_check_config_ok(tmp_path: Path):
    cfg = tmp_path / "ok.toml"
    cfg.write_text('[device]\nid = "a"\n')
    r = run_edged("check-config", "-c", str(cfg), env={"EDGED_DEVICE__ID": "from-env"})
    assert r.returncode == 0 and "device from-env" in r.stdout
    r = run_edged("check-config", "-c", str(cfg), env={"EDGED_MODEL__NUM_THREADS": "0"})
    assert r.returncode == 2 and "model.num_threads" in r.stderr


@pytest.mark.usefixtures("fixtures")
def test_truncated_model(tmp_path: Path):
    bad = tmp_path / "truncated.tflite"
    bad.write_bytes(V2.read_bytes()[:200_000])
    r = run_edged("classify", "--model", str(bad), str(IMAGES / "parrot.jpg"))
    assert r.returncode == 3
    assert "truncated.tflite" in r.stderr and "model error" in r.stderr


def test_text_file_named_tflite(tmp_path: Path):
    bad = tmp_path / "notes.tflite"
    bad.write_text("this is not a model\n" * 10)
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(img)
    r = run_edged("classify", "--model", str(bad), str(img))
    assert r.returncode == 3
    assert "is not a TFLite model" in r.stderr and "notes.tflite" in r.stderr


@pytest.mark.usefixtures("fixtures")
def test_model_without_a_class_vector(tmp_path: Path):
    def a_feature_map(sg):
        return [
            next(
                i
                for i, t in enumerate(sg.tensors)
                if t.shape is not None and len(t.shape) == 4 and t.shape[1] == 8 and t.type == 3
            )
        ]

    feature_map = rewire_outputs(V1_025, tmp_path / "features.tflite", a_feature_map)
    r = run_edged("classify", "--model", str(feature_map), str(IMAGES / "parrot.jpg"))
    assert r.returncode == 3 and "is not a class vector" in r.stderr, r.stderr
    multi = rewire_outputs(
        V1_025,
        tmp_path / "detector.tflite",
        lambda sg: [*sg.outputs, sg.outputs[0] - 1, sg.outputs[0] - 2],
    )
    r = run_edged("classify", "--model", str(multi), str(IMAGES / "parrot.jpg"))
    assert r.returncode == 3 and "has 3 outputs" in r.stderr and "detection" in r.stderr


@pytest.mark.usefixtures("fixtures")
def test_labels_file_length_mismatch(tmp_path: Path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(10)) + "\n")
    r = run_edged(
        "classify", "--model", str(V2), "--labels", str(labels), str(IMAGES / "parrot.jpg")
    )
    assert r.returncode == 3
    assert "has 10 labels" in r.stderr and "outputs 1001 classes" in r.stderr


@pytest.mark.usefixtures("fixtures")
def test_labels_file_formats(tmp_path: Path):
    names = (IMAGES.parent / "models" / "imagenet_labels.txt").read_text().splitlines()
    labels = tmp_path / "ids.txt"
    labels.write_text("".join(f"{i}: {n}\n" for i, n in enumerate(names)))
    r = run_edged(
        "classify",
        "--json",
        "--model",
        str(V2),
        "--labels",
        str(labels),
        str(IMAGES / "parrot.jpg"),
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["label"] == "macaw"
    # a 1000-line file for the 1001-output model: index 0 is background
    labels.write_text("".join(f"{n}\n" for n in names[1:]))
    r = run_edged(
        "classify",
        "--json",
        "--model",
        str(V2),
        "--labels",
        str(labels),
        str(IMAGES / "parrot.jpg"),
    )
    assert json.loads(r.stdout)[0]["label_id"] == 89


@pytest.mark.usefixtures("fixtures")
def test_sha256_mismatch_is_refused(tmp_path: Path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\npath = "{V2}"\nsha256 = "{"0" * 64}"\n')
    r = run_edged("classify", "-c", str(cfg), str(IMAGES / "parrot.jpg"))
    assert r.returncode == 3 and "sha256" in r.stderr and "0" * 64 in r.stderr


@pytest.mark.usefixtures("fixtures")
def test_directory_with_corrupt_images(tmp_path: Path, mosquitto: Mosquitto):
    d = tmp_path / "frames"
    d.mkdir()
    shutil.copy(IMAGES / "parrot.jpg", d / "01_parrot.jpg")
    (d / "02_truncated.jpg").write_bytes((IMAGES / "hot_dog.jpg").read_bytes()[:3000])
    (d / "03_empty.png").write_bytes(b"")
    (d / "04_text.jpg").write_text("not a jpeg")
    shutil.copy(IMAGES / "bird.bmp", d / "05_bird.bmp")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[device]
id = "dir"
[capture]
paths = ["{d}"]
[model]
path = "{V2}"
[mqtt]
url = "{mosquitto.url}"
""")
    sub = Subscriber(mosquitto.port)
    try:
        r = run_edged("run", "-c", str(cfg))
        assert r.returncode == 0, r.stderr
        assert sub.wait(lambda: len(sub.events()) >= 2)
        assert [e["source"] for e in sub.events()] == ["01_parrot.jpg", "05_bird.bmp"]
    finally:
        sub.close()
    health = json.loads(retained(mosquitto.port, "edged/dir/health") or b"{}")
    assert health["frames_skipped"] == 3
    for name in ("02_truncated.jpg", "03_empty.png", "04_text.jpg"):
        assert f"skipping {d / name}" in r.stderr


@pytest.mark.usefixtures("fixtures")
def test_ambiguity_defaults():
    from edged.config import parse_config
    from edged.engine import open_engine
    from edged.preprocess import load_image

    def classify(model: Path, image: str):
        cfg = parse_config({"model": {"path": str(model)}})
        engine = open_engine(cfg.model, cfg.classify)
        try:
            return engine.classify_frame(load_image(IMAGES / image))[0]
        finally:
            engine.close()

    cat = classify(V1_025, "cat.bmp")
    assert cat.ambiguous
    parrot = classify(V2, "parrot.jpg")
    assert not parrot.ambiguous and parrot.top1 is not None and parrot.top1.label == "macaw"
