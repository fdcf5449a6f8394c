from __future__ import annotations

from pathlib import Path

import pytest

from edged.config import (
    ConfigError,
    ReplayCaptureConfig,
    load_config,
    parse_config,
    read_secret,
)


def test_defaults_are_valid() -> None:
    cfg = parse_config({})
    assert cfg.capture.type == "replay" and cfg.model.backend == "auto"
    assert cfg.mqtt.topic_prefix == "edged" and cfg.publish.policy == "every_frame"


def test_all_problems_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "model": {"backend": "gpu", "num_threads": 0, "bogus": 1},
                "capture": {"fps": -1},
                "mqtt": {"url": "http://x", "cert_file": "a.pem"},
                "nosuchsection": {},
            }
        )
    locs = [p[0] for p in info.value.problems]
    assert {
        "model.backend",
        "model.num_threads",
        "model.bogus",
        "capture.fps",
        "mqtt.url",
        "nosuchsection",
    } <= set(locs)
    text = info.value.render()
    assert "(got 'gpu')" in text and "unknown key" in text


def test_credentials_in_url_refused() -> None:
    with pytest.raises(ConfigError, match="credentials do not belong in the URL"):
        parse_config({"mqtt": {"url": "mqtt://user:pw@host"}})


def test_env_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[model]\nnum_threads = 1\n[classify]\ntop_k = 3\n")
    cfg = load_config(
        f,
        {
            "EDGED_MODEL__NUM_THREADS": "4",
            "EDGED_CLASSIFY__ALLOW": '["cat"]',
            "EDGED_MQTT__URL": "mqtts://broker:8883",
            "OTHER": "x",
        },
    )
    assert cfg.model.num_threads == 4 and cfg.classify.top_k == 3
    assert cfg.classify.allow == ["cat"] and cfg.mqtt.url == "mqtts://broker:8883"


def test_missing_default_file_is_empty_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edged.config as c

    monkeypatch.setattr(c, "DEFAULT_CONFIG_PATH", tmp_path / "absent.toml")
    assert load_config(None, {}).model.backend == "auto"


def test_secret_from_file_or_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("hunter2\n")
    assert read_secret(str(tmp_path / "pw"), "mqtt_password", {}) == "hunter2"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt_password").write_text("from-systemd")
    assert read_secret("", "mqtt_password", {"CREDENTIALS_DIRECTORY": str(creds)}) == "from-systemd"
    assert read_secret("", "mqtt_password", {}) is None
    with pytest.raises(FileNotFoundError):
        read_secret(str(tmp_path / "missing"), "mqtt_password", {})


@pytest.mark.parametrize("key", ["ca_file", "cert_file"])
def test_tls_files_on_a_plain_url_are_refused(key: str) -> None:
    data = {"mqtt": {"url": "mqtt://broker:1883", key: "x.pem"}}
    if key == "cert_file":
        data["mqtt"]["key_file"] = "x.key"
    with pytest.raises(ConfigError, match=r"needs? an mqtts:// url"):
        parse_config(data)


@pytest.mark.parametrize("url", ["mqtt://bro ker:1883", "mqtt://broker:1883 ", " mqtt://b"])
def test_urls_with_blanks_are_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="contains a space"):
        parse_config({"mqtt": {"url": url}})


def test_file_and_cross_field_errors_come_with_schema_errors(tmp_path: Path) -> None:
    data = {
        "model": {"path": str(tmp_path / "m.tflite"), "num_threads": 0},
        "mqtt": {
            "url": "mqtts://broker",
            "cert_file": str(tmp_path / "c.pem"),
            "ca_file": str(tmp_path / "ca.pem"),
            "password_file": str(tmp_path / "pw"),
        },
        "capture": {"paths": [str(tmp_path / "nothing")]},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, check_files=True)
    problems = {(loc, msg.split(";")[0]) for loc, msg, _ in info.value.problems}
    assert {
        ("model.num_threads", "Input should be greater than or equal to 1"),
        ("mqtt", "cert_file and key_file go together"),
        ("model.path", "no such file"),
        ("mqtt.cert_file", "no such file"),
        ("mqtt.ca_file", "no such file"),
        ("mqtt.password_file", "no such file"),
        ("capture.paths.0", "does not exist"),
    } <= problems, problems


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        ("capture", "loop", "yes"),
        ("classify", "top_k", "5"),
        ("mqtt", "keepalive", "30"),
        ("model", "num_threads", 2.0),
        ("capture", "paths", "/data"),
        ("classify", "allow", "cat"),
    ],
)
def test_toml_values_are_not_coerced_across_types(section: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({section: {key: value}})
    [(loc, msg, got)] = info.value.problems
    assert loc.startswith(f"{section}.{key}") and got == value
    assert "valid" in msg


def test_ints_are_valid_floats_and_the_right_types_pass() -> None:
    cfg = parse_config({"capture": {"fps": 2, "loop": True}, "classify": {"top_k": 3}})
    assert isinstance(cfg.capture, ReplayCaptureConfig)
    assert cfg.capture.fps == 2.0 and cfg.capture.loop is True and cfg.classify.top_k == 3


def test_errors_from_the_environment_name_the_variable(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("[mqtt]\nkeepalive = 1\n")
    env = {"EDGED_CLASSIFY__TOP_K": '"5"', "EDGED_MODEL__BOGUS": "1", "EDGED_NOPE__X": "1"}
    with pytest.raises(ConfigError) as info:
        load_config(f, env)
    text = info.value.render()
    assert "classify.top_k (from $EDGED_CLASSIFY__TOP_K): Input should be a valid integer" in text
    assert "model.bogus (from $EDGED_MODEL__BOGUS): unknown key" in text
    assert "nope (from $EDGED_NOPE__X): unknown key" in text
    # the file's own mistake is the file's
    assert "  mqtt.keepalive: Input should be greater than or equal to 5" in text
    # env values are TOML literals: an unquoted number is a number
    ok = tmp_path / "ok.toml"
    ok.write_text("")
    assert load_config(ok, {"EDGED_CLASSIFY__TOP_K": "5"}).classify.top_k == 5


def test_messages_carry_no_pydantic_prefix() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"mqtt": {"url": "http://x"}})
    assert "Value error" not in info.value.render()
    assert "mqtt.url: bad broker URL 'http://x': expected mqtt://" in info.value.render()


def test_durability_defaults_to_spill_and_bad_values_name_the_choices() -> None:
    cfg = parse_config({})
    assert cfg.mqtt.durability == "spill" and cfg.mqtt.spill_after_s == 1.0
    assert parse_config({"mqtt": {"durability": "always"}}).mqtt.durability == "always"
    with pytest.raises(ConfigError) as info:
        parse_config({"mqtt": {"durability": "sometimes", "spill_after_s": 0}})
    text = info.value.render()
    assert "mqtt.durability" in text and "'spill' or 'always'" in text and "'sometimes'" in text
    assert "mqtt.spill_after_s" in text and "greater than 0" in text
