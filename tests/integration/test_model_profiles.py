"""The int8 EfficientNet-Lite0/1/2 models behind ``model.profile``: full-integer graphs,
the fixture photos, the daemon on the "accurate" profile, and ``edged models``."""

from __future__ import annotations

import json
import shutil
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest

from edged.config import parse_config
from edged.engine import resolve_model_config
from edged.infer import bundled
from edged.infer.model import ModelError
from tests.support import IMAGES, PHOTO_CLASSES, Mosquitto, Subscriber, run_edged, write_config

PROFILES = {
    "fast": "efficientnet_lite0_int8.tflite",
    "balanced": "efficientnet_lite1_int8.tflite",
    "accurate": "efficientnet_lite2_int8.tflite",
}
SOURCE_MODELS = bundled.models_dir()
INPUT_SIZES = {"fast": 224, "balanced": 240, "accurate": 260}
# What the Edge TPU compiler and an int8-only runtime accept: no float arithmetic.
INTEGER_OPS = {
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "ADD",
    "MEAN",
    "FULLY_CONNECTED",
    "SOFTMAX",
    "RESHAPE",
    "PAD",
}


def manifest_entry(file: str) -> dict[str, Any]:
    entries = tomllib.loads((bundled.models_dir() / "manifest.toml").read_text())["models"]
    return next(e for e in entries if e["file"] == file)


def model_ops_and_types(path: Path) -> tuple[set[str], set[str], str, str]:
    """Operator names, every tensor's type name, and the input's and output's type."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    graph = model.subgraphs[0]
    ops = {
        op_names[max(c.builtinCode, c.deprecatedBuiltinCode)]
        for c in (model.operatorCodes[op.opcodeIndex] for op in graph.operators)
    }
    types = {type_names[t.type] for t in graph.tensors}
    return (
        ops,
        types,
        type_names[graph.tensors[graph.inputs[0]].type],
        type_names[graph.tensors[graph.outputs[0]].type],
    )


@pytest.mark.parametrize("profile", ["balanced", "accurate"])
def test_new_int8_models_are_full_integer(profile: str) -> None:
    path = bundled.models_dir() / PROFILES[profile]
    ops, types, input_type, output_type = model_ops_and_types(path)
    assert input_type == output_type == "INT8"
    assert types <= {"INT8", "INT32"}, types  # int32: biases and shape operands only
    assert ops <= INTEGER_OPS, ops - INTEGER_OPS
    assert "DEQUANTIZE" not in ops and "QUANTIZE" not in ops
    entry = manifest_entry(path.name)
    assert entry["profile"] == profile
    assert entry["input"]["height"] == entry["input"]["width"] == INPUT_SIZES[profile]
    assert entry["input"]["dtype"] == entry["output"]["dtype"] == "int8"


@pytest.mark.usefixtures("fixtures")
@pytest.mark.parametrize("profile", ["balanced", "accurate"])
def test_new_int8_models_classify_the_photos(profile: str) -> None:
    model = bundled.models_dir() / PROFILES[profile]
    r = run_edged(
        "classify", "--json", "--model", str(model), *(str(IMAGES / n) for n in PHOTO_CLASSES)
    )
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    for row, (name, allowed) in zip(rows, PHOTO_CLASSES.items(), strict=True):
        assert row["model"] == model.name
        assert row["label"].split(",")[0] in allowed, (name, row["label"])


def test_manifest_int8_within_1_5_points_of_its_float_reference() -> None:
    entries = tomllib.loads((bundled.models_dir() / "manifest.toml").read_text())["models"]
    by_variant: dict[str, dict[str, dict[str, Any]]] = {}
    for e in entries:
        by_variant.setdefault(e["variant"], {})[e["input"]["dtype"]] = e
    assert set(by_variant) == {"lite0", "lite1", "lite2"}
    for variant, kinds in by_variant.items():
        int8, fp32 = kinds["int8"], kinds["float32"]
        assert fp32["accuracy"]["top1"] - int8["accuracy"]["top1"] <= 0.015, variant
        assert int8["accuracy"]["images"] == fp32["accuracy"]["images"] == 200
        assert int8["latency_ms"]["threads_1"] > 0 and int8["latency_ms"]["threads_2"] > 0
    assert (
        by_variant["lite2"]["int8"]["accuracy"]["top1"]
        > by_variant["lite0"]["int8"]["accuracy"]["top1"]
    )


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_profile_resolves_to_its_model_with_the_manifest_sha256(profile: str) -> None:
    cfg = resolve_model_config(parse_config({"model": {"profile": profile}}).model)
    assert Path(cfg.path) == bundled.models_dir() / PROFILES[profile]
    assert cfg.sha256 == manifest_entry(PROFILES[profile])["sha256"]
    assert cfg.crop_fraction == 0.875 and cfg.mean == 127.0 and cfg.std == 128.0


def test_path_overrides_the_profile(tmp_path: Path) -> None:
    model = bundled.models_dir() / PROFILES["fast"]
    cfg = resolve_model_config(
        parse_config({"model": {"profile": "accurate", "path": str(model)}}).model
    )
    assert cfg.path == str(model) and cfg.sha256 == ""  # a path is taken as given


@pytest.fixture
def wheel_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """edged's models folder as the wheel installs it: the manifest and the 'fast' model only."""
    folder = tmp_path / "edged-models"
    folder.mkdir()
    shutil.copy(SOURCE_MODELS / "manifest.toml", folder)
    (folder / PROFILES["fast"]).symlink_to(SOURCE_MODELS / PROFILES["fast"])
    monkeypatch.setattr(bundled, "models_dir", lambda: folder)
    return folder


@pytest.mark.usefixtures("wheel_install")
def test_missing_profile_model_names_where_to_get_it() -> None:
    with pytest.raises(ModelError) as err:
        resolve_model_config(parse_config({"model": {"profile": "accurate"}}).model)
    text = str(err.value)
    assert "efficientnet_lite2_int8.tflite" in text and "not installed" in text
    assert "edged_model: lite2" in text and "model.models_dir" in text


@pytest.mark.usefixtures("wheel_install")
def test_profile_model_found_in_models_dir_and_checked(tmp_path: Path) -> None:
    installed = tmp_path / "installed"
    installed.mkdir()
    shutil.copy(SOURCE_MODELS / PROFILES["accurate"], installed)
    cfg = resolve_model_config(
        parse_config({"model": {"profile": "accurate", "models_dir": str(installed)}}).model
    )
    assert cfg.path == str(installed / PROFILES["accurate"])
    assert cfg.sha256 == manifest_entry(PROFILES["accurate"])["sha256"]
    # a corrupt copy is refused when the model is opened
    data = bytearray((installed / PROFILES["accurate"]).read_bytes())
    data[-100] ^= 0xFF
    (installed / PROFILES["accurate"]).write_bytes(bytes(data))
    from edged.infer.model import inspect_model

    with pytest.raises(ModelError, match="sha256"):
        inspect_model(cfg.path, cfg.sha256)


def test_models_table_columns_match_the_manifest() -> None:
    r = run_edged("models", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    rows = {row["file"]: row for row in report["models"]}
    entries = tomllib.loads((bundled.models_dir() / "manifest.toml").read_text())["models"]
    for e in entries:
        row = rows[e["file"]]
        assert row["input"] == [e["input"]["height"], e["input"]["width"]]
        assert row["input_dtype"] == e["input"]["dtype"]
        assert row["top1"] == e["accuracy"]["top1"] and row["top5"] == e["accuracy"]["top5"]
        assert row["profile"] == e.get("profile")
        path = bundled.models_dir() / e["file"]
        if path.exists():
            assert row["where"] == "bundled" and row["size_bytes"] == path.stat().st_size
            assert row["size_bytes"] == e["size_bytes"]
        else:  # the float references of Lite1/Lite2 are built, measured, not committed
            assert row["where"] == "not installed" and row["path"] is None
    r = run_edged("models")
    assert r.returncode == 0, r.stderr
    for word in ("profile", "top-1", "top-5", "accurate", "260x260"):
        assert word in r.stdout


def test_models_bench_measures_the_installed_int8_models(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "edged.toml", "[model]\nnum_threads = 1\n")
    r = run_edged("models", "--bench", "--json", "-c", str(cfg), timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["threads"] == 1
    rows = {row["file"]: row for row in report["models"]}
    for file in PROFILES.values():
        assert rows[file]["latency_ms"]["cpu"] > 0
    r = run_edged("models", "--bench", "-c", str(cfg), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "CPU ms (1 thr)" in r.stdout


def test_run_on_the_accurate_profile_publishes_events_naming_it(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The daemon on profile "accurate" over the bundled sample photos (no fixtures)."""
    cfg = write_config(
        tmp_path / "edged.toml",
        f"""
[device]
id = "cam-acc"
[capture]
type = "replay"
[model]
profile = "accurate"
[mqtt]
url = "{mosquitto.url}"
[health]
interval_s = 1
""",
    )
    sub = Subscriber(mosquitto.port)
    try:
        r = run_edged("run", "-c", str(cfg), "--frames", "4")
        assert r.returncode == 0, r.stderr
        assert sub.wait(lambda: len(sub.events()) >= 4)
        time.sleep(0.3)
        events = sub.events()
        health = sub.last_health()
    finally:
        sub.close()
    assert {e["model"] for e in events} == {PROFILES["accurate"]}
    assert health is not None and health["model"] == PROFILES["accurate"]
    labels = {e["label"].split(",")[0] for e in events}
    assert "espresso" in labels


@pytest.mark.usefixtures("wheel_install")
def test_check_config_reports_a_profile_whose_model_is_not_installed(tmp_path: Path) -> None:
    from edged.commands.run import check_files

    empty = tmp_path / "installed"
    empty.mkdir()
    cfg = parse_config({"model": {"profile": "accurate", "models_dir": str(empty)}})
    problems = check_files(cfg)
    assert [(key, value) for key, _, value in problems] == [("model.profile", "accurate")]
    assert "edged_model: lite2" in problems[0][1]
    assert check_files(parse_config({"model": {"profile": "fast"}})) == []
    missing = parse_config({"model": {"models_dir": str(tmp_path / "nope")}})
    assert [key for key, _, _ in check_files(missing)] == ["model.models_dir"]
