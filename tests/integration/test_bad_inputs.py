"""Every kind of bad input gets a clear error naming the problem, and loses nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tests.support import (
    BUNDLED,
    CONFIDENT,
    CONFIDENT_LABEL,
    SAMPLES,
    V2,
    Mosquitto,
    Subscriber,
    need,
    retained,
    rewire_outputs,
    run_edged,
    sample_bmp,
)


def test_config_with_several_wrong_keys_reports_all(tmp_path: Path) -> None:
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


def test_unknown_capture_type_and_bad_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[capture]\ntype = "webcam"\n')
    r = run_edged("check-config", "-c", str(cfg))
    assert r.returncode == 2 and "valid types: 'replay', 'picamera2'" in r.stderr
    cfg.write_text("[model\npath=")
    r = run_edged("check-config", "-c", str(cfg))
    assert r.returncode == 2 and "(file)" in r.stderr
    r = run_edged("check-config", "-c", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "no such file" in r.stderr


def test_tls_files_on_a_plain_url_and_missing_files_exit_2_from_check_config_and_run(
    tmp_path: Path,
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not checked here")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[mqtt]\nurl = "mqtt://127.0.0.1:1883"\nca_file = "{ca}"\n'
        f'password_file = "{tmp_path / "pw"}"\n[model]\npath = "{tmp_path / "m.tflite"}"\n'
    )
    for command in (["check-config"], ["run", "--frames", "1"]):
        r = run_edged(*command, "-c", str(cfg))
        assert r.returncode == 2, r.stderr
        assert "mqtt: ca_file needs an mqtts:// url (TLS)" in r.stderr
        assert "mqtt.password_file: no such file" in r.stderr  # reported together
        assert "model.path: no such file" in r.stderr


def test_env_override_and_check_config_ok(tmp_path: Path) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text('[device]\nid = "a"\n')
    r = run_edged("check-config", "-c", str(cfg), env={"EDGED_DEVICE__ID": "from-env"})
    assert r.returncode == 0 and "device from-env" in r.stdout
    r = run_edged("check-config", "-c", str(cfg), env={"EDGED_MODEL__NUM_THREADS": "0"})
    assert r.returncode == 2 and "model.num_threads" in r.stderr


def test_truncated_model(tmp_path: Path) -> None:
    bad = tmp_path / "truncated.tflite"
    bad.write_bytes(BUNDLED.read_bytes()[:200_000])
    r = run_edged("classify", "--model", str(bad), str(CONFIDENT))
    assert r.returncode == 3
    assert "truncated.tflite" in r.stderr and "model error" in r.stderr


def test_text_file_named_tflite(tmp_path: Path) -> None:
    bad = tmp_path / "notes.tflite"
    bad.write_text("this is not a model\n" * 10)
    img = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (32, 32)).save(img)
    r = run_edged("classify", "--model", str(bad), str(img))
    assert r.returncode == 3
    assert "is not a TFLite model" in r.stderr and "notes.tflite" in r.stderr


def test_model_without_a_class_vector(tmp_path: Path) -> None:
    def a_feature_map(sg: Any) -> list[int]:  # a tflite SubGraphT, untyped
        # the last 7x7 feature map before pooling
        return [
            max(
                i
                for i, t in enumerate(sg.tensors)
                if t.shape is not None and len(t.shape) == 4 and t.shape[1] == 7
            )
        ]

    feature_map = rewire_outputs(BUNDLED, tmp_path / "features.tflite", a_feature_map)
    r = run_edged("classify", "--model", str(feature_map), str(CONFIDENT))
    assert r.returncode == 3 and "is not a class vector" in r.stderr, r.stderr
    multi = rewire_outputs(
        BUNDLED,
        tmp_path / "detector.tflite",
        lambda sg: [*sg.outputs, sg.outputs[0] - 1, sg.outputs[0] - 2],
    )
    r = run_edged("classify", "--model", str(multi), str(CONFIDENT))
    assert r.returncode == 3 and "has 3 outputs" in r.stderr and "detection" in r.stderr


def test_labels_file_length_mismatch(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(10)) + "\n")
    r = run_edged("classify", "--model", str(BUNDLED), "--labels", str(labels), str(CONFIDENT))
    assert r.returncode == 3
    assert "has 10 labels" in r.stderr and "outputs 1000 classes" in r.stderr


def _bundled_labels() -> tuple[str, ...]:
    from edged.infer import inspect_model

    names = inspect_model(BUNDLED).embedded_labels
    assert names is not None and len(names) == 1000
    return names


def test_labels_file_formats(tmp_path: Path) -> None:
    names = _bundled_labels()
    labels = tmp_path / "ids.txt"
    for line in ("{i}: {n}\n", "{i} {n}\n", "{n}\n"):
        labels.write_text("".join(line.format(i=i, n=n) for i, n in enumerate(names)))
        r = run_edged(
            "classify", "--json", "--model", str(BUNDLED), "--labels", str(labels), str(CONFIDENT)
        )
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)[0]["label"] == CONFIDENT_LABEL, line


def test_labels_file_without_background_for_a_1001_class_model(tmp_path: Path) -> None:
    names = need(V2.parent / "imagenet_labels.txt").read_text().splitlines()
    labels = tmp_path / "ids.txt"
    # a 1000-line file for the 1001-output model: index 0 is background
    labels.write_text("".join(f"{n}\n" for n in names[1:]))
    r = run_edged(
        "classify", "--json", "--model", str(need(V2)), "--labels", str(labels), str(CONFIDENT)
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["label_id"] == names.index("espresso")


def test_sha256_mismatch_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[model]\npath = "{BUNDLED}"\nsha256 = "{"0" * 64}"\n')
    r = run_edged("classify", "-c", str(cfg), str(CONFIDENT))
    assert r.returncode == 3 and "sha256" in r.stderr and "0" * 64 in r.stderr


def test_directory_with_corrupt_images(tmp_path: Path, mosquitto: Mosquitto) -> None:
    d = tmp_path / "frames"
    d.mkdir()
    shutil.copy(CONFIDENT, d / "01_parrot.jpg")
    (d / "02_truncated.jpg").write_bytes((SAMPLES / "rocket.jpg").read_bytes()[:3000])
    (d / "03_empty.png").write_bytes(b"")
    (d / "04_text.jpg").write_text("not a jpeg")
    shutil.move(sample_bmp(tmp_path), d / "05_bird.bmp")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[device]
id = "dir"
[capture]
paths = ["{d}"]
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


def test_ambiguity_defaults() -> None:
    from edged.config import parse_config
    from edged.engine import open_engine

    cfg = parse_config({})
    engine = open_engine(cfg.model, cfg.classify)
    try:
        # a cat the model hesitates over (tiger cat, Egyptian cat), a clear espresso
        cat = engine.infer(engine.load(SAMPLES / "chelsea_cat.jpg"))[0]
        coffee = engine.infer(engine.load(CONFIDENT))[0]
    finally:
        engine.close()
    assert cat.ambiguous
    assert not coffee.ambiguous and coffee.top1 is not None
    assert coffee.top1.label == CONFIDENT_LABEL
