"""Device discovery over fake /sys and /dev trees built in tmp_path."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edged.capture.cameras import Camera, list_cameras
from edged.health.devices import (
    DeviceSpec,
    EdgeTpu,
    list_edge_tpus,
    parse_device_spec,
    select_tpu,
    tpu_temperature_c,
)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    root = tmp_path / "sys"
    root.mkdir()
    return root


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    root = tmp_path / "dev"
    root.mkdir()
    return root


@pytest.fixture(autouse=True)
def no_hardware_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make pycoral and picamera2 unimportable unless a test injects its own."""
    for name in ("pycoral", "pycoral.utils", "pycoral.utils.edgetpu", "picamera2"):
        monkeypatch.setitem(sys.modules, name, None)


def add_usb(sysfs: Path, name: str, vendor: str, product: str) -> None:
    device = sysfs / "bus" / "usb" / "devices" / name
    write(device / "idVendor", vendor + "\n")
    write(device / "idProduct", product + "\n")


def install_pycoral(monkeypatch: pytest.MonkeyPatch, list_edge_tpus: Callable[[], Any]) -> None:
    """Put a pycoral package with utils.edgetpu.list_edge_tpus into sys.modules."""
    package = types.ModuleType("pycoral")
    utils = types.ModuleType("pycoral.utils")
    edgetpu = types.ModuleType("pycoral.utils.edgetpu")
    edgetpu.list_edge_tpus = list_edge_tpus  # type: ignore[attr-defined]
    package.__path__ = []
    utils.__path__ = []
    package.utils = utils  # type: ignore[attr-defined]
    utils.edgetpu = edgetpu  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycoral", package)
    monkeypatch.setitem(sys.modules, "pycoral.utils", utils)
    monkeypatch.setitem(sys.modules, "pycoral.utils.edgetpu", edgetpu)


# --- Edge TPU scan ---------------------------------------------------------


def test_nothing_attached(sysfs: Path, dev: Path) -> None:
    assert list_edge_tpus(sysfs, dev) == []


def test_missing_roots_are_not_errors(tmp_path: Path) -> None:
    assert list_edge_tpus(tmp_path / "no-sys", tmp_path / "no-dev") == []
    assert list_cameras(tmp_path / "no-dev", tmp_path / "no-sys") == []


def test_pcie_apex_nodes_sorted_numerically(sysfs: Path, dev: Path) -> None:
    for name in ("apex_10", "apex_2", "apex_0", "apex", "apex_x", "video0"):
        write(dev / name, "")
    assert list_edge_tpus(sysfs, dev) == [
        EdgeTpu("pci", str(dev / "apex_0")),
        EdgeTpu("pci", str(dev / "apex_2")),
        EdgeTpu("pci", str(dev / "apex_10")),
    ]


def test_usb_both_coral_ids_found_others_ignored(sysfs: Path, dev: Path) -> None:
    add_usb(sysfs, "2-1", "1a6e", "089a")  # before first use
    add_usb(sysfs, "1-1.3", "18D1", "9302")  # after firmware load (upper case tolerated)
    add_usb(sysfs, "1-1", "2109", "3431")  # a hub
    add_usb(sysfs, "3-1", "18d1", "4ee7")  # a Google phone, not a TPU
    write(sysfs / "bus" / "usb" / "devices" / "2-1:1.0" / "bInterfaceClass", "ff\n")
    root = sysfs / "bus" / "usb" / "devices"
    assert list_edge_tpus(sysfs, dev) == [
        EdgeTpu("usb", str(root / "1-1.3")),
        EdgeTpu("usb", str(root / "2-1")),
    ]


def test_usb_bus_paths_sort_naturally(sysfs: Path, dev: Path) -> None:
    for name in ("1-10", "1-2", "usb1"):
        add_usb(sysfs, name, "18d1", "9302")
    paths = [Path(t.path).name for t in list_edge_tpus(sysfs, dev)]
    assert paths == ["1-2", "1-10", "usb1"]


def test_usb_device_with_unreadable_ids_is_skipped(sysfs: Path, dev: Path) -> None:
    write(sysfs / "bus" / "usb" / "devices" / "2-1" / "idVendor", "1a6e\n")  # no idProduct
    assert list_edge_tpus(sysfs, dev) == []


def test_pcie_listed_before_usb(sysfs: Path, dev: Path) -> None:
    add_usb(sysfs, "2-1", "1a6e", "089a")
    write(dev / "apex_0", "")
    assert [t.type for t in list_edge_tpus(sysfs, dev)] == ["pci", "usb"]


# --- pycoral ---------------------------------------------------------------


def test_real_pycoral_api_is_trusted(
    monkeypatch: pytest.MonkeyPatch, sysfs: Path, dev: Path
) -> None:
    write(dev / "apex_0", "")  # ignored: pycoral is authoritative when present
    install_pycoral(
        monkeypatch,
        lambda: [
            {"type": "usb", "path": "/sys/bus/usb/devices/2-1"},
            {"type": "pci", "path": "/dev/apex_0"},
        ],
    )
    assert list_edge_tpus(sysfs, dev) == [
        EdgeTpu("usb", "/sys/bus/usb/devices/2-1"),
        EdgeTpu("pci", "/dev/apex_0"),
    ]


def test_real_pycoral_reporting_none_is_trusted(
    monkeypatch: pytest.MonkeyPatch, sysfs: Path, dev: Path
) -> None:
    write(dev / "apex_0", "")
    install_pycoral(monkeypatch, lambda: [])
    assert list_edge_tpus(sysfs, dev) == []


def test_unrelated_pycoral_package_without_utils_falls_back(
    monkeypatch: pytest.MonkeyPatch, sysfs: Path, dev: Path
) -> None:
    unrelated = types.ModuleType("pycoral")  # a plain module, not Coral's package
    unrelated.hello = lambda: "coral reef"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycoral", unrelated)
    monkeypatch.delitem(sys.modules, "pycoral.utils")
    monkeypatch.delitem(sys.modules, "pycoral.utils.edgetpu")
    write(dev / "apex_0", "")
    assert list_edge_tpus(sysfs, dev) == [EdgeTpu("pci", str(dev / "apex_0"))]


@pytest.mark.parametrize(
    "result",
    [
        ["/dev/apex_0"],  # list of strings
        [{"kind": "pci", "where": "/dev/apex_0"}],  # dicts of another shape
        [{"type": "pci", "path": 0}],  # wrong value type
        {"type": "pci", "path": "/dev/apex_0"},  # not a list
        None,
    ],
)
def test_unrelated_list_edge_tpus_shape_falls_back(
    monkeypatch: pytest.MonkeyPatch, sysfs: Path, dev: Path, result: object
) -> None:
    install_pycoral(monkeypatch, lambda: result)
    write(dev / "apex_1", "")
    assert list_edge_tpus(sysfs, dev) == [EdgeTpu("pci", str(dev / "apex_1"))]


def test_non_callable_list_edge_tpus_falls_back(
    monkeypatch: pytest.MonkeyPatch, sysfs: Path, dev: Path
) -> None:
    install_pycoral(monkeypatch, "not a function")  # type: ignore[arg-type]
    add_usb(sysfs, "2-1", "18d1", "9302")
    assert [t.type for t in list_edge_tpus(sysfs, dev)] == ["usb"]


def test_failing_pycoral_is_logged_and_falls_back(
    monkeypatch: pytest.MonkeyPatch, sysfs: Path, dev: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> list[dict[str, str]]:
        raise RuntimeError("libedgetpu.so.1: cannot open shared object file")

    install_pycoral(monkeypatch, broken)
    write(dev / "apex_0", "")
    with caplog.at_level(logging.WARNING, logger="edged.health.devices"):
        assert list_edge_tpus(sysfs, dev) == [EdgeTpu("pci", str(dev / "apex_0"))]
    assert "libedgetpu.so.1: cannot open shared object file" in caplog.text


# --- temperature -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("52300\n", 52.3), ("0", 0.0), ("-1500\n", -1.5), ("85000", 85.0)],
)
def test_temperature_is_millidegrees(sysfs: Path, text: str, expected: float) -> None:
    write(sysfs / "class" / "apex" / "apex_0" / "temp", text)
    assert tpu_temperature_c(0, sysfs) == pytest.approx(expected)


def test_temperature_of_other_index(sysfs: Path) -> None:
    write(sysfs / "class" / "apex" / "apex_1" / "temp", "47000\n")
    assert tpu_temperature_c(0, sysfs) is None
    assert tpu_temperature_c(1, sysfs) == pytest.approx(47.0)


@pytest.mark.parametrize("text", ["", "hot\n", "52.3"])
def test_temperature_garbage_is_none(sysfs: Path, text: str) -> None:
    write(sysfs / "class" / "apex" / "apex_0" / "temp", text)
    assert tpu_temperature_c(0, sysfs) is None


def test_temperature_absent_or_unreadable_is_none(sysfs: Path) -> None:
    assert tpu_temperature_c(0, sysfs) is None
    (sysfs / "class" / "apex" / "apex_0" / "temp").mkdir(parents=True)  # a directory: EISDIR
    assert tpu_temperature_c(0, sysfs) is None


# --- device specs ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "parsed", "canonical"),
    [
        ("", DeviceSpec(None, None), ""),
        ("  ", DeviceSpec(None, None), ""),
        ("usb", DeviceSpec("usb", None), "usb"),
        ("usb:0", DeviceSpec("usb", 0), "usb:0"),
        ("pci", DeviceSpec("pci", None), "pci"),
        ("pci:12", DeviceSpec("pci", 12), "pci:12"),
        (" pci:1 ", DeviceSpec("pci", 1), "pci:1"),
    ],
)
def test_parse_device_spec(spec: str, parsed: DeviceSpec, canonical: str) -> None:
    assert parse_device_spec(spec) == parsed
    assert str(parse_device_spec(spec)) == canonical


@pytest.mark.parametrize(
    "spec", ["tpu", "usb:", "usb:-1", "usb:x", "pcie", "pci:0:1", ":0", "USB", "usb 0", "apex_0"]
)
def test_bad_device_spec_names_value_and_valid_forms(spec: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        parse_device_spec(spec)
    message = str(excinfo.value)
    assert repr(spec) in message
    assert "model.edgetpu_device" in message
    for form in ("'usb'", "'usb:N'", "'pci'", "'pci:N'", "''"):
        assert form in message


TPUS = [
    EdgeTpu("pci", "/dev/apex_0"),
    EdgeTpu("pci", "/dev/apex_1"),
    EdgeTpu("usb", "/sys/bus/usb/devices/2-1"),
    EdgeTpu("usb", "/sys/bus/usb/devices/2-2"),
]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("", TPUS[0]),
        ("pci", TPUS[0]),
        ("pci:1", TPUS[1]),
        ("usb", TPUS[2]),
        ("usb:0", TPUS[2]),
        ("usb:1", TPUS[3]),
        ("usb:2", None),
        ("pci:5", None),
    ],
)
def test_select_tpu(spec: str, expected: EdgeTpu | None) -> None:
    assert select_tpu(spec, TPUS) == expected


def test_select_from_nothing() -> None:
    assert select_tpu("", []) is None
    assert select_tpu("usb", [EdgeTpu("pci", "/dev/apex_0")]) is None


def test_select_bad_spec_raises() -> None:
    with pytest.raises(ValueError, match="'usb0'"):
        select_tpu("usb0", TPUS)


# --- cameras ---------------------------------------------------------------


def add_video(sysfs: Path, dev: Path, n: int, name: str | None) -> None:
    write(dev / f"video{n}", "")
    if name is not None:
        write(sysfs / "class" / "video4linux" / f"video{n}" / "name", name + "\n")


def test_v4l2_nodes_with_names(sysfs: Path, dev: Path) -> None:
    add_video(sysfs, dev, 10, "bcm2835-codec-decode")
    add_video(sysfs, dev, 0, "unicam-image")
    add_video(sysfs, dev, 2, None)  # no sysfs entry
    write(dev / "video-extra", "")
    write(dev / "vchiq", "")
    assert list_cameras(dev, sysfs) == [
        Camera("v4l2", str(dev / "video0"), "unicam-image"),
        Camera("v4l2", str(dev / "video2"), ""),
        Camera("v4l2", str(dev / "video10"), "bcm2835-codec-decode"),
    ]


def install_picamera2(
    monkeypatch: pytest.MonkeyPatch, global_camera_info: Callable[[], Any]
) -> None:
    module = types.ModuleType("picamera2")

    class Picamera2:
        @staticmethod
        def global_camera_info() -> Any:
            return global_camera_info()

    module.Picamera2 = Picamera2  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "picamera2", module)


def test_picamera2_cameras_come_first(
    monkeypatch: pytest.MonkeyPatch, sysfs: Path, dev: Path
) -> None:
    install_picamera2(
        monkeypatch,
        lambda: [
            {
                "Model": "imx708_wide",
                "Location": 2,
                "Rotation": 180,
                "Id": "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a",
                "Num": 0,
            },
            {
                "Model": "ov5647",
                "Location": 2,
                "Rotation": 0,
                "Id": "/base/soc/i2c0mux/ov5647@36",
                "Num": 1,
            },
        ],
    )
    add_video(sysfs, dev, 0, "rp1-cfe")
    assert list_cameras(dev, sysfs) == [
        Camera("picamera2", "/base/axi/pcie@120000/rp1/i2c@88000/imx708@1a", "imx708_wide"),
        Camera("picamera2", "/base/soc/i2c0mux/ov5647@36", "ov5647"),
        Camera("v4l2", str(dev / "video0"), "rp1-cfe"),
    ]


def test_picamera2_failure_is_logged_and_v4l2_still_listed(
    monkeypatch: pytest.MonkeyPatch, sysfs: Path, dev: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken() -> list[dict[str, Any]]:
        raise RuntimeError("libcamera: no camera manager")

    install_picamera2(monkeypatch, broken)
    add_video(sysfs, dev, 0, "uvcvideo")
    with caplog.at_level(logging.WARNING, logger="edged.capture.cameras"):
        assert list_cameras(dev, sysfs) == [Camera("v4l2", str(dev / "video0"), "uvcvideo")]
    assert "no camera manager" in caplog.text


def test_picamera2_without_cameras(monkeypatch: pytest.MonkeyPatch, sysfs: Path, dev: Path) -> None:
    install_picamera2(monkeypatch, lambda: [])
    assert list_cameras(dev, sysfs) == []
