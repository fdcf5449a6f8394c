"""The bundled EfficientNet-Lite0 models: manifest, embedded labels, expected classes."""

from __future__ import annotations

import hashlib
import json
import tomllib
import zipfile

import pytest

from edged.infer.bundled import default_model_path, models_dir
from tests.support import FIXTURES, IMAGES, run_edged

EXPECTED = {
    "parrot.jpg": {"macaw"},
    "bird.bmp": {"chickadee"},
    "dragonfly.bmp": {"dragonfly"},
    "hot_dog.jpg": {"hotdog"},
    "cat.bmp": {"Egyptian cat", "tabby", "tiger cat"},
}


def manifest() -> dict:
    return tomllib.loads((models_dir() / "manifest.toml").read_text())


def test_manifest_matches_the_files():
    entries = manifest()["models"]
    assert {e["file"] for e in entries} >= {"efficientnet_lite0_int8.tflite",
                                              "efficientnet_lite0_fp32.tflite"}
    for e in entries:
        data = (models_dir() / e["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == e["sha256"], e["file"]
        assert e["input"]["height"] == e["input"]["width"] == 224
        assert e["output"]["classes"] == 1000
        with zipfile.ZipFile(models_dir() / e["file"]) as zf:
            labels = zf.read(e["labels"]["embedded"]).decode().splitlines()
        assert len(labels) == 1000 and labels[0].startswith("tench")
    int8 = next(e for e in entries if "int8" in e["file"])
    assert int8["input"]["dtype"] in ("int8", "uint8") and int8["size_bytes"] <= 6 * 2**20
    fp32 = next(e for e in entries if "fp32" in e["file"])
    ref = manifest()["reference"]["top1"]
    assert abs(fp32["accuracy"]["top1"] - ref) <= 0.01
    assert abs(int8["accuracy"]["top1"] - fp32["accuracy"]["top1"]) <= 0.02


@pytest.mark.usefixtures("fixtures")
@pytest.mark.parametrize("kind", ["int8", "fp32"])
def test_edged_eval_reproduces_the_manifest_accuracy(kind: str):
    """The manifest's figures are what `edged eval` (the daemon's preprocessing) measures."""
    entry = next(e for e in manifest()["models"] if kind in e["file"])
    r = run_edged("eval", "--json", str(FIXTURES / "calibration"),
                  "--synsets", str(FIXTURES / "imagenet_synsets.tsv"),
                  "--model", str(models_dir() / entry["file"]))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["images"] == entry["accuracy"]["images"] == 200
    assert report["top1"] == pytest.approx(entry["accuracy"]["top1"], abs=0.0051)
    assert report["top5"] == pytest.approx(entry["accuracy"]["top5"], abs=0.0051)


@pytest.mark.usefixtures("fixtures")
def test_default_model_classifies_the_photos():
    assert default_model_path().name == "efficientnet_lite0_int8.tflite"
    r = run_edged("classify", "--json", *(str(IMAGES / n) for n in EXPECTED))
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    for row, (name, allowed) in zip(rows, EXPECTED.items(), strict=True):
        assert row["model"] == "efficientnet_lite0_int8.tflite"
        assert row["label"].split(",")[0] in allowed, (name, row["label"])


def test_runs_without_the_fixtures(tmp_path):
    """The main job needs nothing from outside the package: bundled model and samples."""
    samples = sorted((models_dir().parent / "edged" / "samples").glob("*.jpg"))
    r = run_edged("classify", "--json", *(str(p) for p in samples))
    assert r.returncode == 0, r.stderr
    labels = {row["label"].split(",")[0] for row in json.loads(r.stdout)}
    assert "espresso" in labels


@pytest.mark.usefixtures("fixtures")
def test_sha256_is_checked_for_the_bundled_model(tmp_path):
    from edged.config import parse_config
    from edged.engine import resolve_model_config

    cfg = resolve_model_config(parse_config({}).model)
    assert cfg.sha256 == next(e["sha256"] for e in manifest()["models"]
                              if e["file"] == default_model_path().name)
    assert cfg.crop_fraction == 0.875 and cfg.mean == 127.0 and cfg.std == 128.0
