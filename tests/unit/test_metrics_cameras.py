"""Prometheus: each camera of [[cameras]] under a ``camera`` label."""

from __future__ import annotations

from edged.health.metrics import Metrics


def _samples(text: str, name: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('camera="')[1].split('"')[0]] = float(value)
    return out


def test_cameras_get_a_camera_label() -> None:
    snap = {
        "fps": 3.0,
        "cameras": {
            "hall": {"frames": 7, "dropped": 1, "reconnects": None, "fps": 2.5, "state": "ok"},
            "gate": {"frames": 2, "dropped": 0, "reconnects": 3, "fps": 0.0, "state": "down"},
        },
    }
    text = Metrics(lambda: snap).render().decode()
    assert _samples(text, "edged_camera_frames_processed_total") == {"hall": 7, "gate": 2}
    assert _samples(text, "edged_camera_reconnects_total") == {"gate": 3}
    assert _samples(text, "edged_camera_up") == {"hall": 1, "gate": 0}
    assert _samples(text, "edged_camera_fps") == {"hall": 2.5, "gate": 0.0}


def test_one_camera_of_capture_has_no_camera_series() -> None:
    text = Metrics(lambda: {"fps": 3.0}).render().decode()
    assert "edged_camera_" not in text
