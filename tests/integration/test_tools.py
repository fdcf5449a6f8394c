"""edged eval / bench / devices on real models and images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.support import BUNDLED, FIXTURES, MODELS, SAMPLES, need, run_edged

CALIBRATION = FIXTURES / "calibration"
SYNSETS = FIXTURES / "imagenet_synsets.tsv"

# Measured with `edged eval` on the 200 calibration images (center crop, bilinear; ties
# between equal scores go to the lower class id), JPEGs decoded at the DCT scale the daemon
# uses (the 128-pixel model's input allows 1/2 or 1/4 more often: 0.505/0.705 when they were
# decoded in full). One image is 0.005.
EXPECTED = {
    "mobilenet_v2_1.0_224_quant.tflite": (0.865, 0.985),
    "mobilenet_v1_0.75_192_quant.tflite": (0.79, 0.95),
    "mobilenet_v1_0.25_128_quant.tflite": (0.51, 0.74),
}
ONE_IMAGE = 0.0051


@pytest.mark.parametrize("model", sorted(EXPECTED))
def test_eval_coral_models_with_background_class(model: str) -> None:
    r = run_edged(
        "eval",
        "--json",
        str(need(CALIBRATION)),
        "--synsets",
        str(need(SYNSETS)),
        "--model",
        str(need(MODELS / model)),
        "--backend",
        "cpu",
    )
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["images"] == 200
    assert (report["top1"], report["top5"]) == pytest.approx(EXPECTED[model], abs=ONE_IMAGE)


def test_eval_edgetpu_twin_reports_the_backend_that_ran() -> None:
    twin = "mobilenet_v1_0.25_128_quant_edgetpu.tflite"
    r = run_edged(
        "eval",
        "--json",
        str(need(CALIBRATION)),
        "--synsets",
        str(need(SYNSETS)),
        "--model",
        str(need(MODELS / twin)),
    )
    report = json.loads(r.stdout)
    assert report["backend"] == "cpu" and report["model"] == twin.replace("_edgetpu", "")
    expected = EXPECTED[report["model"]]
    assert (report["top1"], report["top5"]) == pytest.approx(expected, abs=ONE_IMAGE)


def test_eval_folder_per_class(tmp_path: Path) -> None:
    for label, image in [
        ("espresso", "coffee.jpg"),
        ("tiger cat", "chelsea_cat.jpg"),
        ("missile", "rocket.jpg"),
    ]:
        (tmp_path / label).mkdir()
        shutil.copy(SAMPLES / image, tmp_path / label / image)
    r = run_edged("eval", "--json", "--confusion", str(tmp_path))
    report = json.loads(r.stdout)
    assert report["images"] == 3 and report["top1"] == 1.0
    # the cat filed under a label the model ranks second
    (tmp_path / "tiger cat").rename(tmp_path / "Egyptian cat")
    r = run_edged("eval", "--json", "--confusion", str(tmp_path))
    report = json.loads(r.stdout)
    assert report["top1"] < 1.0 and report["top5"] == 1.0
    worst = report["worst_classes"][0]
    assert worst["class"] == "Egyptian cat" and worst["top1"] == 0.0
    assert worst["confused_with"][0][0] == "tiger cat"


def test_bench_reports_benchmark_model_figures() -> None:
    r = run_edged("bench", "--json", "--runs", "20", "--threads", "1", "--model", str(BUNDLED))
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    assert b["backend"] == "cpu" and b["threads"] == 1 and b["runs"] == 20
    assert 0 < b["min_ms"] <= b["p50_ms"] <= b["p95_ms"] <= b["max_ms"]
    assert b["init_ms"] > 0 and b["first_inference_ms"] > 0 and b["peak_rss_mb"] > 10
    assert b["frames_in_flight"] == 1 and b["throughput_fps"] > 0


def test_bench_on_the_edge_tpu_worker_keeps_two_frames_in_flight(tmp_path: Path) -> None:
    from tests.fakes.delegate import build_fake_delegate

    lib = build_fake_delegate(tmp_path)
    r = run_edged(
        "bench",
        "--json",
        "--runs",
        "20",
        "--threads",
        "1",
        "--backend",
        "edgetpu",
        "--model",
        str(BUNDLED),
        env={"EDGED_MODEL__EDGETPU_LIBRARY": str(lib)},
    )
    assert r.returncode == 0, r.stderr
    b = json.loads(r.stdout)
    assert b["backend"] == "edgetpu" and b["frames_in_flight"] == 2 and b["throughput_fps"] > 0


def test_devices_lists_nothing_here() -> None:
    r = run_edged("devices", "--json")
    assert r.returncode == 0
    found = json.loads(r.stdout)
    assert set(found) == {"edge_tpus", "tpu_temp_c", "cameras"}
