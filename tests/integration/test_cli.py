"""The command line keeps its word: arguments validated like the config, ``--version`` as
documented, a JSON row per input, the demo on a config's broker, bounded runs that fail
when their events went nowhere, eval that skips folders that are no class, and a
check-config that opens the model."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edged.config import DEFAULT_CONFIG_PATH
from edged.publish.spool import Spool
from tests.support import (
    BUNDLED,
    CONFIDENT,
    CONFIDENT_LABEL,
    SAMPLES,
    Mosquitto,
    Subscriber,
    free_port,
    rewire_outputs,
    run_edged,
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["classify", "--top-k", "-3", str(CONFIDENT)], "--top-k: must be from 1 to 100"),
        (["classify", "--top-k", "0", str(CONFIDENT)], "--top-k: must be from 1 to 100"),
        (["classify", "--top-k", "1001", str(CONFIDENT)], "got 1001"),
        (["classify", "--top-k", "five", str(CONFIDENT)], "expected an integer, got 'five'"),
        (["run", "--frames", "0"], "--frames: must be at least 1, got 0"),
        (["run", "--frames", "-1"], "--frames: must be at least 1, got -1"),
        (["demo", "--frames", "0"], "--frames: must be at least 1"),
        (["bench", "--threads", "0"], "--threads: must be from 1 to 64 (as model.num_threads)"),
        (["bench", "--runs", "0"], "--runs: must be at least 1"),
    ],
)
def test_arguments_are_validated_like_the_config(args: list[str], message: str) -> None:
    r = run_edged(*args)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_top_k_is_what_was_asked() -> None:
    r = run_edged("classify", "--json", "--top-k", "1", str(CONFIDENT))
    assert r.returncode == 0, r.stderr
    [row] = json.loads(r.stdout)
    assert len(row["top_k"]) == 1 and row["label"] == CONFIDENT_LABEL


def test_version_option_is_the_version_command() -> None:
    option, command = run_edged("--version"), run_edged("version")
    assert option.returncode == command.returncode == 0
    assert option.stdout == command.stdout
    assert re.fullmatch(r"edged \S+\nruntime: \S+ \S+\nnumpy \d+\.\d+\.\d+\n", option.stdout), (
        option.stdout
    )


def test_classify_json_has_a_row_per_input_with_errors(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    missing = tmp_path / "missing.jpg"
    r = run_edged("classify", "--json", str(text), str(CONFIDENT), str(missing))
    assert r.returncode == 1
    rows = json.loads(r.stdout)
    assert [row["file"] for row in rows] == [str(text), str(CONFIDENT), str(missing)]
    assert "cannot decode image" in rows[0]["error"] and "label" not in rows[0]
    assert rows[2]["error"] and "No such file" in rows[2]["error"]
    ok = rows[1]
    assert ok["error"] is None and ok["label"] == CONFIDENT_LABEL
    # the classification fields of an event
    assert set(ok) >= {
        "label", "label_id", "score", "top_k", "ambiguous", "model", "backend", "inference_ms",
    }  # fmt: skip
    assert ok["top_k"][0] == {k: ok[k] for k in ("label", "label_id", "score")}


def test_demo_with_a_config_shows_the_events_on_its_broker(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    cfg = tmp_path / "demo.toml"
    cfg.write_text(
        f'[device]\nid = "porch"\n[capture]\npaths = ["{CONFIDENT}"]\nloop = true\nfps = 10\n'
        f'[mqtt]\nurl = "{mosquitto.url}"\ntopic_prefix = "house"\n'
    )
    sub = Subscriber(mosquitto.port, "house/#")
    try:
        r = run_edged("demo", "--config", str(cfg), "--frames", "3")
        assert r.returncode == 0, r.stderr
        assert sub.wait(lambda: len(sub.events()) >= 3)
    finally:
        sub.close()
    shown = re.findall(r"^house/porch/events #(\d) coffee\.jpg: espresso", r.stdout, re.M)
    assert shown == ["1", "2", "3"], r.stdout
    assert "embedded MQTT broker" not in r.stdout and mosquitto.url in r.stdout


def test_bounded_run_that_delivered_nothing_fails_unless_spooled(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[capture]\npaths = ["{CONFIDENT}"]\nloop = true\n'
        f'[mqtt]\nurl = "mqtt://127.0.0.1:{free_port()}"\n'
    )
    r = run_edged("run", "-c", str(cfg), "--frames", "3", env={"STATE_DIRECTORY": ""})
    assert r.returncode == 1, r.stderr
    assert "3 event(s) were neither delivered nor kept" in r.stderr
    state = tmp_path / "state"
    state.mkdir()
    r = run_edged("run", "-c", str(cfg), "--frames", "3", env={"STATE_DIRECTORY": str(state)})
    assert r.returncode == 0, r.stderr
    assert Spool(state / "events.db", max_bytes=2**20, max_rows=10).backlog == 3


def test_eval_skips_folders_that_match_no_label(tmp_path: Path) -> None:
    (tmp_path / "espresso").mkdir()
    shutil.copy(CONFIDENT, tmp_path / "espresso")
    (tmp_path / "thumbnails").mkdir()
    shutil.copy(SAMPLES / "rocket.jpg", tmp_path / "thumbnails")
    r = run_edged("eval", "--json", str(tmp_path))
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["images"] == 1 and report["top1"] == 1.0
    assert "folder 'thumbnails' matches no label" in r.stderr and "1 image(s)" in r.stderr
    shutil.rmtree(tmp_path / "espresso")
    r = run_edged("eval", "--json", str(tmp_path))
    assert r.returncode == 1 and "no folder matches a label" in r.stderr


# -- check-config ----------------------------------------------------------------------


def check(
    tmp_path: Path, text: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    return run_edged("check-config", "-c", str(cfg), env=env)


def test_check_config_refuses_string_values_for_other_types(tmp_path: Path) -> None:
    r = check(
        tmp_path, '[capture]\nloop = "yes"\n[classify]\ntop_k = "5"\n[mqtt]\nkeepalive = "30"\n'
    )
    assert r.returncode == 2
    for key in ("capture.loop", "classify.top_k", "mqtt.keepalive"):
        assert key in r.stderr, r.stderr
    assert "3 problem(s)" in r.stderr and "Value error" not in r.stderr
    r = check(tmp_path, "", env={"EDGED_MQTT__KEEPALIVE": '"30"'})
    assert r.returncode == 2 and "mqtt.keepalive (from $EDGED_MQTT__KEEPALIVE)" in r.stderr


def test_check_config_opens_the_model(tmp_path: Path) -> None:
    text = tmp_path / "notes.tflite"
    text.write_text("not a model\n" * 10)
    r = check(tmp_path, f'[model]\npath = "{text}"\n')
    assert r.returncode == 2 and "model.path" in r.stderr and "is not a TFLite model" in r.stderr

    r = check(tmp_path, f'[model]\npath = "{BUNDLED}"\nsha256 = "{"ab" * 32}"\n')
    assert r.returncode == 2 and "model.sha256" in r.stderr and "ab" * 32 in r.stderr

    features = rewire_outputs(
        BUNDLED,
        tmp_path / "features.tflite",
        lambda sg: [max(i for i, t in enumerate(sg.tensors) if t.shape is not None
                        and len(t.shape) == 4 and t.shape[1] == 7)],
    )  # fmt: skip
    r = check(tmp_path, f'[model]\npath = "{features}"\n')
    assert r.returncode == 2 and "is not a class vector" in r.stderr, r.stderr

    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    r = check(tmp_path, f'[model]\nlabels = "{labels}"\n')
    assert r.returncode == 2 and "model.labels" in r.stderr and "has 2 labels" in r.stderr

    r = check(tmp_path, "")
    assert r.returncode == 0 and "1000 classes" in r.stdout, r.stderr


@pytest.mark.skipif(DEFAULT_CONFIG_PATH.exists(), reason=f"{DEFAULT_CONFIG_PATH} exists here")
def test_check_config_without_the_default_file_is_an_error() -> None:
    r = run_edged("check-config")
    assert r.returncode == 2
    assert str(DEFAULT_CONFIG_PATH) in r.stderr and "no such file" in r.stderr
    assert "valid" not in r.stdout


def test_quiet_by_default_runtime_messages_with_verbose() -> None:
    quiet = run_edged("classify", str(CONFIDENT))
    assert quiet.returncode == 0, quiet.stderr
    assert "XNNPACK" not in quiet.stdout + quiet.stderr
    assert quiet.stderr == ""
    verbose = run_edged("--verbose", "classify", str(CONFIDENT))
    assert verbose.returncode == 0
    assert "DEBUG edged.infer.runtime: runtime: Created TensorFlow Lite XNNPACK" in verbose.stderr
