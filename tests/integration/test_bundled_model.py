"""The bundled EfficientNet-Lite0 models: manifest, embedded labels, expected classes."""

from __future__ import annotations

import hashlib
import json
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest

from edged.infer.bundled import default_model_path, models_dir
from tests.support import FIXTURES, SAMPLE_TOP1, SAMPLES, need, run_edged


def manifest() -> dict[str, Any]:
    return tomllib.loads((models_dir() / "manifest.toml").read_text())


def test_manifest_matches_the_files() -> None:
    """Every committed model is the file its manifest entry describes; the float references
    of Lite1 and Lite2 are measured but not committed."""
    entries = manifest()["models"]
    assert {e["file"] for e in entries} == {
        f"efficientnet_lite{n}_{kind}.tflite" for n in range(3) for kind in ("int8", "fp32")
    }
    sizes = {"lite0": 224, "lite1": 240, "lite2": 260}
    for e in entries:
        assert e["input"]["height"] == e["input"]["width"] == sizes[e["variant"]]
        assert e["output"]["classes"] == 1000
        path = models_dir() / e["file"]
        if not path.exists():
            assert "fp32" in e["file"], f"{e['file']} is in the manifest but not committed"
            continue
        assert hashlib.sha256(path.read_bytes()).hexdigest() == e["sha256"], e["file"]
        assert path.stat().st_size == e["size_bytes"]
        with zipfile.ZipFile(path) as zf:
            labels = zf.read(e["labels"]["embedded"]).decode().splitlines()
        assert len(labels) == 1000 and labels[0].startswith("tench")
    for e in entries:
        if e["input"]["dtype"] == "float32":
            assert abs(e["accuracy"]["top1"] - e["reference"]["top1"]) <= 0.01, e["file"]
        else:
            assert e["input"]["dtype"] == "int8" and e["size_bytes"] <= 8 * 2**20
    lite0 = next(e for e in entries if e["file"] == "efficientnet_lite0_int8.tflite")
    assert lite0["size_bytes"] <= 6 * 2**20 and lite0["profile"] == "fast"


@pytest.mark.parametrize("name", ["lite0_int8", "lite0_fp32", "lite1_int8", "lite2_int8"])
def test_edged_eval_reproduces_the_manifest_accuracy(name: str) -> None:
    """The manifest's figures are what `edged eval` (the daemon's preprocessing) measures."""
    entry = next(e for e in manifest()["models"] if e["file"] == f"efficientnet_{name}.tflite")
    r = run_edged(
        "eval",
        "--json",
        str(need(FIXTURES / "calibration")),
        "--synsets",
        str(need(FIXTURES / "imagenet_synsets.tsv")),
        "--model",
        str(models_dir() / entry["file"]),
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["images"] == entry["accuracy"]["images"] == 200
    assert report["top1"] == pytest.approx(entry["accuracy"]["top1"], abs=0.0051)
    assert report["top5"] == pytest.approx(entry["accuracy"]["top5"], abs=0.0051)


def test_default_model_classifies_the_samples() -> None:
    assert default_model_path().name == "efficientnet_lite0_int8.tflite"
    r = run_edged("classify", "--json", *(str(SAMPLES / n) for n in SAMPLE_TOP1))
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    for row, (name, label) in zip(rows, SAMPLE_TOP1.items(), strict=True):
        assert row["model"] == "efficientnet_lite0_int8.tflite"
        assert row["label"].split(",")[0] == label, (name, row["label"])


def test_runs_without_the_fixtures(tmp_path: Path) -> None:
    """The main job needs nothing from outside the package: bundled model and samples."""
    samples = sorted((models_dir().parent / "edged" / "samples").glob("*.jpg"))
    r = run_edged("classify", "--json", *(str(p) for p in samples))
    assert r.returncode == 0, r.stderr
    labels = {row["label"].split(",")[0] for row in json.loads(r.stdout)}
    assert "espresso" in labels


def test_sha256_is_checked_for_the_bundled_model(tmp_path: Path) -> None:
    from edged.config import parse_config
    from edged.engine import resolve_model_config

    cfg = resolve_model_config(parse_config({}).model)
    assert cfg.sha256 == next(
        e["sha256"] for e in manifest()["models"] if e["file"] == default_model_path().name
    )
    assert cfg.crop_fraction == 0.875 and cfg.mean == 127.0 and cfg.std == 128.0
