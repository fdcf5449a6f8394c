"""``edged models``' rows: manifest entries, installed files, latency per backend."""

from __future__ import annotations

import shutil
from pathlib import Path

from edged.config import ModelConfig
from edged.infer.bundled import DEFAULT_MODEL, models_dir
from edged.models_table import BUNDLED, INSTALLED, list_models, measure, render


def installed_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "installed"
    folder.mkdir()
    shutil.copy(models_dir() / DEFAULT_MODEL, folder / "custom.tflite")
    shutil.copy(models_dir() / DEFAULT_MODEL, folder / "custom_edgetpu.tflite")
    return folder


def test_installed_models_are_listed_with_their_input_read_from_the_file(tmp_path: Path) -> None:
    rows = {row.file: row for row in list_models(installed_dir(tmp_path))}
    assert rows[DEFAULT_MODEL].where == BUNDLED and rows[DEFAULT_MODEL].profile == "fast"
    custom = rows["custom.tflite"]
    assert custom.where == INSTALLED and custom.profile == ""
    assert custom.input_size == (224, 224) and custom.input_dtype == "int8"
    assert (
        custom.top1 is None and custom.size_bytes == (models_dir() / DEFAULT_MODEL).stat().st_size
    )


def test_measure_runs_each_installed_model_and_its_edgetpu_twin(tmp_path: Path) -> None:
    rows = [r for r in list_models(installed_dir(tmp_path)) if r.path is not None]
    asked: list[tuple[str, str, int]] = []

    def bench(cfgs: list[ModelConfig]) -> list[float | None]:
        asked.extend((Path(c.path).name, c.backend, c.num_threads) for c in cfgs)
        # the one model that cannot run gets None from the bench
        return [None if Path(c.path).name == DEFAULT_MODEL else 3.14 for c in cfgs]

    measured = {
        r.file: r for r in measure(rows, ModelConfig(num_threads=3), edgetpu=True, bench=bench)
    }
    assert measured["custom.tflite"].latency_ms == {"cpu": 3.14, "edgetpu": 3.14}
    assert measured[DEFAULT_MODEL].latency_ms == {"cpu": None, "edgetpu": None}  # no twin
    assert measured["custom_edgetpu.tflite"].latency_ms == {}  # measured through its CPU twin
    assert ("custom_edgetpu.tflite", "edgetpu", 3) in asked
    assert ("custom.tflite", "cpu", 3) in asked
    assert all(threads == 3 for _, _, threads in asked)
    assert not any(name == "custom.tflite" and b == "edgetpu" for name, b, _ in asked)


def test_interleaved_p50_measures_each_model_and_survives_a_bad_one(tmp_path: Path) -> None:
    from edged.models_table import interleaved_p50

    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"not a model")
    cfgs = [
        ModelConfig(path=str(models_dir() / DEFAULT_MODEL), backend="cpu", num_threads=1),
        ModelConfig(path=str(bad), backend="cpu", num_threads=1),
    ]
    good, broken = interleaved_p50(cfgs, runs=2, rounds=2, warmup=1)
    assert good is not None and good > 0 and broken is None


def test_render_has_a_latency_column_only_when_measured(tmp_path: Path) -> None:
    rows = list_models(installed_dir(tmp_path))
    plain = [c.header for c in render(rows).columns]
    assert plain == ["model", "profile", "input", "MB", "top-1", "top-5", "where"]
    timed = [c.header for c in render(rows, threads=2, edgetpu=True).columns]
    assert timed[-2:] == ["CPU ms (2 thr)", "Edge TPU ms"]
