"""The one typed configuration of edged: a TOML file, overridable by environment variables.

Every key has a description; unknown keys are errors (``extra="forbid"``).  Errors are
collected all at once and reported with their key path, the bad value and what is allowed.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from edged.wire import BrokerUrlError, broker_address

DEFAULT_CONFIG_PATH = Path("/etc/edged/config.toml")
ENV_PREFIX = "EDGED_"
_S = TypeVar("_S", bound=BaseModel)


class _Section(BaseModel):
    # strict: TOML has types, so "5" is not a number and "yes" is not a boolean (an int is
    # still a valid float)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _hostname() -> str:
    return socket.gethostname().split(".")[0] or "edged"


class DeviceConfig(_Section):
    id: str = Field(
        default_factory=_hostname,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Device id used in MQTT topics (default: the host name).",
    )


class RegionConfig(_Section):
    """A rectangle of the frame, in fractions of its width and height, classified alone."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$",
        description="Name carried by the region's events (letters, digits, _ . -).",
    )
    x: float = Field(0.0, description="Left edge, 0..1 of the frame width.")
    y: float = Field(0.0, description="Top edge, 0..1 of the frame height.")
    width: float = Field(1.0, description="Width, a fraction of the frame width.")
    height: float = Field(1.0, description="Height, a fraction of the frame height.")
    model: str = Field(
        "", description="The [models.NAME] that classifies this region; empty = its camera's."
    )

    @model_validator(mode="after")
    def _check_box(self) -> RegionConfig:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(
                f"region {self.name!r} has no area (width {self.width:g}, height "
                f"{self.height:g}); both must be > 0"
            )
        for edge, start, size in (("x", self.x, self.width), ("y", self.y, self.height)):
            if start < 0 or start + size > 1.0 + 1e-9:
                axis = "width" if edge == "x" else "height"
                raise ValueError(
                    f"region {self.name!r} reaches outside the frame: {edge} {start:g} + "
                    f"{axis} {size:g} must lie within 0..1"
                )
        return self


class _CaptureCommon(_Section):
    """What every source offers: regions of interest and skipping unchanged scenes."""

    regions: list[RegionConfig] = Field(
        default_factory=list,
        description="Regions of interest ([[capture.regions]]); each is classified on its "
        "own and its events carry its name.  None = the whole frame.",
    )
    skip_static: bool = Field(
        False, description="Do not classify frames that look like the last classified one."
    )
    static_threshold: float = Field(
        0.02,
        gt=0.0,
        le=1.0,
        description="Mean absolute difference of a small greyscale thumbnail (0..1) below "
        "which a frame counts as unchanged.",
    )
    static_max_s: float = Field(
        60.0, gt=0.0, description="Classify at least this often even when nothing changes."
    )

    @field_validator("regions")
    @classmethod
    def _unique_names(cls, v: list[RegionConfig]) -> list[RegionConfig]:
        names = [r.name for r in v]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"region names must be unique; repeated: {', '.join(dupes)}")
        return v


class ReplayCaptureConfig(_CaptureCommon):
    type: Literal["replay"] = "replay"
    paths: list[str] = Field(
        default_factory=list,
        description="Image files, directories of images or video files; empty = bundled samples.",
    )
    loop: bool = Field(
        False,
        description=(
            "Start again from the first file after the last (images decoded once and kept, "
            "up to 16 MB, while their files do not change)."
        ),
    )
    fps: float = Field(
        0.0,
        ge=0.0,
        le=1000.0,
        description="Pace frames like a live camera; 0 = as fast as the pipeline takes them.",
    )
    recursive: bool = Field(False, description="Descend into sub-directories.")


class Picamera2CaptureConfig(_CaptureCommon):
    type: Literal["picamera2"]
    camera_num: int = Field(0, ge=0, description="Index of the camera (Picamera2(camera_num)).")
    width: int = Field(0, ge=0, le=4096, description="Frame width; 0 = the model's input width.")
    height: int = Field(0, ge=0, le=4096, description="Frame height; 0 = the model's input height.")
    main_width: int = Field(1280, ge=64, le=4608, description="Size of the camera's main stream.")
    main_height: int = Field(720, ge=64, le=3496, description="Height of the main stream.")
    fps: float = Field(15.0, gt=0.0, le=120.0, description="Camera frame rate.")
    stream: Literal["main", "lores"] = Field(
        "main",
        description="'main': a small RGB main stream scaled by the ISP (any Pi); 'lores': an "
        "RGB lores stream beside a full-size main stream (Pi 5 only).",
    )


class Imx500CaptureConfig(_CaptureCommon):
    """The Raspberry Pi AI Camera: the network runs on the IMX500 sensor, the CPU only
    reads its output tensor (docs/aicamera.md)."""

    type: Literal["imx500"]
    network: str = Field(
        description="The sensor's network (.rpk), e.g. "
        "/usr/share/imx500-models/imx500_network_mobilenet_v2.rpk."
    )
    labels: str = Field(
        "",
        description="Labels file for the network; empty = the labels in the network's "
        "intrinsics, else those of the CPU model when the class counts match.",
    )
    cpu_model: str = Field(
        "",
        description="TFLite twin that classifies the camera's frames on the CPU while the "
        "network is not running; empty = the [model] section's model.",
    )
    camera_num: int = Field(0, ge=0, description="Index of the camera (Picamera2(camera_num)).")
    fps: float = Field(30.0, gt=0.0, le=120.0, description="Camera frame rate.")
    upload_timeout_s: float = Field(
        600.0,
        gt=0.0,
        description="A network firmware upload that takes longer is a fault (the first "
        "upload of a network can take minutes; later ones come from the sensor's flash).",
    )
    tensor_timeout_s: float = Field(
        3.0,
        gt=0.0,
        le=300.0,
        description="Frames without an output tensor for this long, once the network runs, "
        "are a fault: the CPU classifies them while the sensor is retried.",
    )
    retry_min_s: float = Field(
        10.0, gt=0.0, description="First wait before trying the sensor's network again."
    )
    retry_max_s: float = Field(
        600.0, gt=0.0, description="Longest wait between tries (the backoff doubles)."
    )

    @model_validator(mode="after")
    def _check_network(self) -> Imx500CaptureConfig:
        if not self.network.endswith(".rpk"):
            raise ValueError(
                f"network {self.network!r} is not an IMX500 network package (.rpk); "
                "see `edged models` for those installed"
            )
        if self.retry_max_s < self.retry_min_s:
            raise ValueError(
                f"retry_max_s {self.retry_max_s:g} is below retry_min_s {self.retry_min_s:g}"
            )
        return self


def redact_url(url: str) -> str:
    """``url`` with any user name and password in it replaced by ``***``."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()


STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")


class StreamCaptureConfig(_CaptureCommon):
    type: Literal["stream"]
    url: str = Field(
        description="rtsp://, rtsps://, http:// or https:// URL of the camera's stream "
        "(RTSP, MJPEG, or anything FFmpeg reads); no credentials in it."
    )
    username: str = Field("", description="User name for the camera, if it needs one.")
    password_file: str = Field(
        "",
        description="File holding the camera's password; empty = "
        "$CREDENTIALS_DIRECTORY/camera_password.",
    )
    rtsp_transport: Literal["tcp", "udp"] = Field(
        "tcp", description="RTSP over TCP (interleaved, survives NAT and loss) or UDP."
    )
    connect_timeout_s: float = Field(
        10.0, gt=0.0, le=300.0, description="Give up on a connection attempt after this long."
    )
    read_timeout_s: float = Field(
        10.0, gt=0.0, le=300.0, description="No data for this long = the stream is lost."
    )
    reconnect_min_s: float = Field(0.5, gt=0.0, le=60.0, description="First reconnect delay.")
    reconnect_max_s: float = Field(
        10.0, gt=0.0, le=600.0, description="Longest reconnect delay (backoff doubles, jittered)."
    )
    stall_s: float = Field(
        120.0,
        gt=0.0,
        description="How long the stream may be away (reconnecting) before the systemd "
        "watchdog is no longer fed and the service is restarted.",
    )
    ffmpeg_options: dict[str, str] = Field(
        default_factory=dict, description="Extra FFmpeg options for the input (advanced)."
    )

    @property
    def credential(self) -> str:
        """The systemd credential that holds the password when ``password_file`` is empty."""
        return "camera_password"

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in STREAM_SCHEMES or not parts.hostname:
            raise ValueError("expected rtsp://, rtsps://, http:// or https:// followed by a host")
        if parts.username or parts.password:
            raise ValueError(
                "credentials do not belong in the URL: use username and password_file "
                "(or the camera's password credential, see docs/cameras.md)"
            )
        _ = parts.port  # raises on a bad port
        return v

    @model_validator(mode="after")
    def _check_times(self) -> StreamCaptureConfig:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        if self.reconnect_max_s >= self.stall_s:
            raise ValueError(
                f"reconnect_max_s ({self.reconnect_max_s:g}) must be shorter than stall_s "
                f"({self.stall_s:g}), or the watchdog restarts the service before a reconnect"
            )
        return self


class V4l2CaptureConfig(_CaptureCommon):
    type: Literal["v4l2"]
    device: str = Field(
        "/dev/video0",
        description="The camera: /dev/videoN, or a stable /dev/v4l/by-id/... name "
        "(a bare by-id name is looked up there).",
    )
    input_format: Literal["mjpeg", "yuyv"] = Field(
        "mjpeg", description="What the camera sends: mjpeg (compressed) or yuyv (raw 4:2:2)."
    )
    width: int = Field(
        0, ge=0, le=8192, description="Mode width; 0 = the smallest mode covering the model input."
    )
    height: int = Field(0, ge=0, le=8192, description="Mode height; 0 = chosen with width.")
    fps: float = Field(15.0, gt=0.0, le=240.0, description="Frame rate asked of the camera.")
    stall_s: float = Field(
        30.0,
        gt=0.0,
        description="How long the camera may be away (unplugged, reopening) before the "
        "systemd watchdog is no longer fed.",
    )

    @model_validator(mode="after")
    def _check_size(self) -> V4l2CaptureConfig:
        if bool(self.width) != bool(self.height):
            raise ValueError("width and height go together (both 0 = automatic)")
        return self


CAPTURE_TYPES = ("replay", "picamera2", "v4l2", "stream", "imx500")


def _capture_type(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "replay"))
    return str(getattr(value, "type", "replay"))


CaptureConfig = Annotated[
    Annotated[ReplayCaptureConfig, Tag("replay")]
    | Annotated[Picamera2CaptureConfig, Tag("picamera2")]
    | Annotated[V4l2CaptureConfig, Tag("v4l2")]
    | Annotated[StreamCaptureConfig, Tag("stream")]
    | Annotated[Imx500CaptureConfig, Tag("imx500")],
    Discriminator(
        _capture_type,
        custom_error_type="invalid_capture_type",
        custom_error_message="invalid capture type; valid types: "
        + ", ".join(repr(t) for t in CAPTURE_TYPES),
    ),
]


class ModelConfig(_Section):
    profile: Literal["fast", "balanced", "accurate"] = Field(
        "fast",
        description=(
            "Bundled model by speed/accuracy trade-off: fast (EfficientNet-Lite0 int8), "
            "balanced (Lite1 int8), accurate (Lite2 int8); model.path overrides it."
        ),
    )
    path: str = Field("", description="TFLite model; empty = the model of model.profile.")
    models_dir: str = Field(
        "",
        description=(
            "Folder of installed models, searched for the profile's model after the "
            "models bundled with edged; empty = only those."
        ),
    )
    labels: str = Field("", description="Labels file; empty = labels embedded in the model.")
    sha256: str = Field(
        "",
        pattern=r"^([0-9a-fA-F]{64})?$",
        description="When set, refuse a model file whose sha256 differs.",
    )
    backend: Literal["auto", "cpu", "edgetpu"] = Field(
        "auto", description="Where inference runs: Edge TPU when present ('auto'), or forced."
    )
    cpu_path: str = Field(
        "", description="CPU twin of an Edge TPU model; empty = same name without _edgetpu."
    )
    edgetpu_device: str = Field(
        "", pattern=r"^(|usb|pci|usb:\d+|pci:\d+)$", description="'', usb, usb:N, pci or pci:N."
    )
    edgetpu_library: str = Field("libedgetpu.so.1", description="Edge TPU delegate library.")
    edgetpu_options: dict[str, str] = Field(
        default_factory=dict, description="Extra options passed to the delegate's loader."
    )
    inference_timeout_s: float = Field(
        2.0, gt=0.0, le=60.0, description="An Edge TPU inference slower than this is a fault."
    )
    reprobe_max_s: float = Field(
        300.0, ge=1.0, description="Longest wait between attempts to return to the Edge TPU."
    )
    isolate_cpu: bool = Field(
        False,
        description=(
            "Run CPU inference in a worker process too (crash isolation); while a failed "
            "worker restarts, frames run in-process."
        ),
    )
    num_threads: int = Field(
        2,
        ge=1,
        le=64,
        description="CPU threads per interpreter.  Where several cameras share a CPU model "
        "and this is not set, the cores are divided among its interpreters.",
    )
    interpreters: int = Field(
        0,
        ge=0,
        le=64,
        description="Interpreters of a CPU model, each serving one camera's frame at a "
        "time; 0 = one per camera that uses the model, at most one per core (one for a "
        "single camera).  The Edge TPU is always one interpreter.",
    )
    mean: float | None = Field(None, description="Input normalization mean (float models).")
    std: float | None = Field(None, gt=0.0, description="Input normalization std.")
    crop: Literal["center", "none"] = Field(
        "center", description="'center' crops the central square before resizing; 'none' squashes."
    )
    crop_fraction: float = Field(
        1.0, gt=0.0, le=1.0, description="Share of the shorter side kept by the center crop."
    )
    resample: Literal["bilinear", "nearest", "bicubic", "area"] = Field(
        "bilinear", description="Resize filter."
    )


class ClassifyConfig(_Section):
    top_k: int = Field(5, ge=1, le=100, description="Classes reported per frame.")
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="Drop classes below this score.")
    ambiguity_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="Top-1 below this score is ambiguous."
    )
    ambiguity_margin: float = Field(
        0.1, ge=0.0, le=1.0, description="Top-1 minus top-2 below this is ambiguous."
    )
    allow: list[str] = Field(
        default_factory=list,
        description="Only these labels (empty = all); a label matches by its full text or any "
        "of its comma-separated names.  Allowed classes scoring under min_score (or zero) are "
        "not reported: a frame without one reports no class and publishes no event.",
    )
    deny: list[str] = Field(default_factory=list, description="Never these labels.")


class MqttConfig(_Section):
    url: str = Field(
        "mqtt://127.0.0.1:1883",
        description="Broker: mqtt://host[:port] or mqtts://host[:port] (TLS).",
    )
    client_id: str = Field("", description="Client id; empty = edged-<device id>.")
    protocol: Literal["3.1.1", "5"] = Field("3.1.1", description="MQTT protocol version.")
    username: str = Field("", description="User name, if the broker requires one.")
    password_file: str = Field(
        "",
        description="File holding the password; empty = $CREDENTIALS_DIRECTORY/mqtt_password.",
    )
    ca_file: str = Field("", description="CA bundle for mqtts:// (empty = system CAs).")
    cert_file: str = Field("", description="Client certificate (mutual TLS).")
    key_file: str = Field("", description="Client key (mutual TLS).")
    keepalive: int = Field(30, ge=5, le=3600, description="Keepalive in seconds.")
    topic_prefix: str = Field(
        "edged", pattern=r"^[^#+]+$", description="Topics are {topic_prefix}/{device}/..."
    )
    qos: Literal[0, 1, 2] = Field(1, description="QoS of events.")
    reconnect_min_s: float = Field(1.0, gt=0.0, description="First reconnect delay.")
    reconnect_max_s: float = Field(60.0, gt=0.0, description="Longest reconnect delay.")
    spool_file: str = Field(
        "",
        description="Write-ahead spool of events the broker has not acknowledged (SQLite); "
        "empty = $STATE_DIRECTORY/events.db under systemd, else memory only.",
    )
    spool_max_mb: float = Field(
        64.0,
        gt=0.0,
        le=65536.0,
        description="Size bound of the spool; past it the oldest events are evicted (counted).",
    )
    max_queued: int = Field(
        10000,
        ge=10,
        description="Events kept in memory when there is no spool or its disk refuses writes.",
    )
    durability: Literal["spill", "always"] = Field(
        "spill",
        description="spill: an event is written to the spool only when it is at risk (not "
        "acknowledged within spill_after_s, the broker away, a stop); always: every event is "
        "written before it is sent (a write per event, an SD card wears faster).",
    )
    spill_after_s: float = Field(
        1.0,
        gt=0.0,
        le=60.0,
        description="spill: how long an unacknowledged event waits in memory before it is "
        "written to the spool (what a kill -9 or a power cut can lose).",
    )
    coalesce_ms: float = Field(
        20.0,
        ge=0.0,
        le=1000.0,
        description="spill: an event that comes within this many ms of the last hand-over to "
        "the broker connection waits for the next one, at most this long (events in a burst "
        "go out together, with fewer wake-ups per event); 0 = every event at once.",
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if v != v.strip() or any(c.isspace() for c in v):
            raise ValueError("the URL contains a space or another blank character")
        try:
            broker_address(v)
        except BrokerUrlError as exc:
            hint = ": use username/password_file" if "credentials" in str(exc) else ""
            raise ValueError(f"{exc}{hint}") from None
        return v

    @model_validator(mode="after")
    def _check_tls(self) -> MqttConfig:
        problems = []
        if bool(self.cert_file) != bool(self.key_file):
            problems.append("cert_file and key_file go together")
        tls_files = [k for k in ("ca_file", "cert_file", "key_file") if getattr(self, k)]
        if tls_files and self.url.startswith("mqtt://"):
            problems.append(
                f"{' and '.join(tls_files)} need{'s' if len(tls_files) == 1 else ''} an "
                f"mqtts:// url (TLS), not {self.url!r}"
            )
        if self.durability == "spill" and self.coalesce_ms >= self.spill_after_s * 1000:
            problems.append(
                f"coalesce_ms ({self.coalesce_ms:g}) must be below spill_after_s "
                f"({self.spill_after_s:g} s): an event would be written to the spool before "
                "it is sent"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class PublishConfig(_Section):
    policy: Literal["every_frame", "on_change", "interval"] = Field(
        "every_frame",
        description="every_frame, on_change (top-1 label changed) or interval (one per N s).",
    )
    interval_s: float = Field(10.0, gt=0.0, description="For policy 'interval'.")
    min_score: float = Field(0.0, ge=0.0, le=1.0, description="No event below this top-1 score.")
    confirm_frames: int = Field(
        1,
        ge=1,
        le=1000,
        description="A new label (per region) counts as a change only after this many "
        "consecutive classified frames agree on it above min_score.",
    )


class HealthConfig(_Section):
    interval_s: float = Field(30.0, ge=0.5, le=3600.0, description="Health message period.")
    stall_s: float = Field(
        10.0, gt=0.0, description="No frame for this long = stalled (watchdog pings stop)."
    )


class PipelineConfig(_Section):
    queue_size: int = Field(2, ge=1, le=64, description="Frames buffered between stages.")


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` to (host, port); ValueError naming what is expected."""
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port such as 127.0.0.1:8080, not {value!r}")
    return host, int(port)


def _check_listen(value: str) -> str:
    if value:
        parse_listen(value)
    return value


class MetricsConfig(_Section):
    listen: str = Field(
        "",
        description="Serve Prometheus metrics on host:port (e.g. 127.0.0.1:9108); empty = off.",
    )

    @field_validator("listen")
    @classmethod
    def _check(cls, v: str) -> str:
        return _check_listen(v)


class WebConfig(_Section):
    listen: str = Field(
        "",
        description="Serve the status page on host:port (e.g. 127.0.0.1:8080); empty = off. "
        "Any address other than loopback requires a password.",
    )
    username: str = Field("edged", min_length=1, description="Basic auth user name.")
    password_file: str = Field(
        "",
        description="File holding the basic auth password; empty = "
        "$CREDENTIALS_DIRECTORY/web_password; neither = no auth (loopback only).",
    )
    refresh_s: float = Field(
        1.0, ge=0.1, le=60.0, description="How often the page fetches a new frame."
    )

    @field_validator("listen")
    @classmethod
    def _check(cls, v: str) -> str:
        return _check_listen(v)


class HomeAssistantConfig(_Section):
    discovery: bool = Field(False, description="Announce the device to Home Assistant.")
    discovery_prefix: str = Field(
        "homeassistant", pattern=r"^[^#+]+$", description="Home Assistant's discovery prefix."
    )
    state_interval_s: float = Field(
        10.0,
        ge=0.5,
        le=3600.0,
        description="The retained state (label, score) is re-sent at most this often while "
        "the label stays the same; a change is sent at once.",
    )


class CommandsConfig(_Section):
    enabled: bool = Field(
        True, description="Accept commands on {topic_prefix}/{device}/cmd (see the ACL)."
    )


class CollectConfig(_Section):
    dir: str = Field(
        "", description="Folder for collected frames (JPEG + JSON sidecar); empty = off."
    )
    max_mb: float = Field(
        500.0, gt=0.0, description="Largest size of the folder; the oldest frames go first."
    )
    ambiguous: bool = Field(False, description="Keep frames whose classification is ambiguous.")
    below_score: float = Field(
        0.0, ge=0.0, le=1.0, description="Keep frames whose top-1 score is below this; 0 = off."
    )
    classes: list[str] = Field(
        default_factory=list, description="Keep frames whose top-1 label is one of these."
    )
    every_s: float = Field(0.0, ge=0.0, description="Keep one frame every N seconds; 0 = off.")

    @model_validator(mode="after")
    def _check_rules(self) -> CollectConfig:
        if self.dir and not (self.ambiguous or self.below_score or self.classes or self.every_s):
            raise ValueError(
                "dir is set but no rule selects frames: set ambiguous, below_score, classes "
                "or every_s"
            )
        return self


CAMERA_NAME = r"^[a-z0-9_-]{1,32}$"
# words the topic layout already uses at the level of a camera's name
RESERVED_CAMERA_NAMES = ("events", "health", "status", "cmd", "state", "snapshot", "result")


class _CollectOverride(CollectConfig):
    """A camera's [collect]: its keys are merged onto the device's section first, so the
    rule check runs on the merged section (see :meth:`Config.camera_problems`)."""

    @model_validator(mode="after")
    def _check_rules(self) -> _CollectOverride:
        return self


class _CameraFields(_Section):
    """What a camera adds to the keys of [capture]: its name, its model and its own
    [classify], [publish] and [collect] keys (merged onto the device's sections)."""

    name: str = Field(
        pattern=CAMERA_NAME,
        description="The camera's name in topics and payloads: a-z, 0-9, _ and -, at most 32.",
    )
    model: str = Field(
        "", description="The [models.NAME] that classifies this camera; empty = [model]."
    )
    classify: ClassifyConfig | None = Field(
        None, description="[classify] keys for this camera (the rest from [classify])."
    )
    publish: PublishConfig | None = Field(
        None, description="[publish] keys for this camera (the rest from [publish])."
    )
    collect: _CollectOverride | None = Field(
        None, description="[collect] keys for this camera (the rest from [collect])."
    )

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v in RESERVED_CAMERA_NAMES:
            raise ValueError(
                f"{v!r} is a word of the topic layout; a camera name is none of "
                + ", ".join(RESERVED_CAMERA_NAMES)
            )
        return v


class ReplayCamera(_CameraFields, ReplayCaptureConfig):
    pass


class Picamera2Camera(_CameraFields, Picamera2CaptureConfig):
    pass


class V4l2Camera(_CameraFields, V4l2CaptureConfig):
    pass


class StreamCamera(_CameraFields, StreamCaptureConfig):
    @property
    def credential(self) -> str:
        return f"camera_password_{self.name}"


class Imx500Camera(_CameraFields, Imx500CaptureConfig):
    pass


CameraConfig = Annotated[
    Annotated[ReplayCamera, Tag("replay")]
    | Annotated[Picamera2Camera, Tag("picamera2")]
    | Annotated[V4l2Camera, Tag("v4l2")]
    | Annotated[StreamCamera, Tag("stream")]
    | Annotated[Imx500Camera, Tag("imx500")],
    Discriminator(
        _capture_type,
        custom_error_type="invalid_capture_type",
        custom_error_message="invalid capture type; valid types: "
        + ", ".join(repr(t) for t in CAPTURE_TYPES),
    ),
]

_CAMERA_ONLY = tuple(_CameraFields.model_fields)


@dataclass(frozen=True)
class Camera:
    """One camera as the daemon runs it: its source and the sections in effect for it.
    ``name`` is None for the one camera of a [capture] config (whose topics and payloads
    carry no camera)."""

    name: str | None
    capture: Any  # one of the *CaptureConfig classes (a camera is one, plus its own keys)
    model: ModelConfig
    model_name: str  # "" = [model]; else the key of [models.NAME]
    classify: ClassifyConfig
    publish: PublishConfig
    collect: CollectConfig

    @property
    def label(self) -> str:
        """The camera's name in logs ("camera" for the one camera of [capture])."""
        return self.name or "camera"


def _merged(base: _S, override: BaseModel | None, cls: type[_S]) -> _S:
    if override is None:
        return base
    given = {k: getattr(override, k) for k in override.model_fields_set}
    return cls.model_validate({**base.model_dump(), **given}) if given else base


class LearnConfig(_Section):
    enabled: bool = Field(
        False,
        description="The Learn view and its API on the status page: label collected frames, "
        "train, deploy, roll back (needs web.listen and collect.dir).",
    )
    dataset: str = Field(
        "", description="Training photos, a folder per class; empty = $STATE_DIRECTORY/dataset."
    )
    models_dir: str = Field(
        "", description="Trained models and their reports; empty = $STATE_DIRECTORY/models."
    )
    max_mb: float = Field(
        1000.0, gt=0.0, description="Largest size of the dataset; labelling beyond it is refused."
    )
    keep_models: int = Field(
        5, ge=2, le=100, description="Trained models kept with their reports (the newest)."
    )
    recipe: str = Field(
        "head",
        min_length=1,
        description="How edged train trains: head = a new last layer on frozen features; "
        "deep = the last blocks too (the learn extra); auto = deep where it can run, else head.",
    )
    held_out: float = Field(
        0.2, gt=0.0, lt=1.0, description="Share of each class held out to score old and new model."
    )


class Config(_Section):
    device: DeviceConfig = Field(default_factory=DeviceConfig)
    capture: CaptureConfig = Field(default_factory=ReplayCaptureConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    pipeline: PipelineConfig = Field(default_factory=PipelineConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    web: WebConfig = Field(default_factory=WebConfig)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    commands: CommandsConfig = Field(default_factory=CommandsConfig)

    collect: CollectConfig = Field(default_factory=CollectConfig)
    learn: LearnConfig = Field(default_factory=LearnConfig)

    @model_validator(mode="after")
    def _check_learn(self) -> Config:
        if self.learn.enabled and not (self.web.listen and self.collect.dir):
            missing = " and ".join(
                k
                for k, v in (("web.listen", self.web.listen), ("collect.dir", self.collect.dir))
                if not v
            )
            raise ValueError(
                f"learn.enabled needs {missing}: the Learn view labels collected "
                "frames on the status page"
            )
        return self

    cameras: list[CameraConfig] = Field(
        default_factory=list,
        description="Cameras ([[cameras]]), each with the keys of [capture] and a name; "
        "instead of [capture], which is one camera.",
    )
    models: dict[str, ModelConfig] = Field(
        default_factory=dict,
        description="Further models ([models.NAME]) that a camera or a region names.",
    )

    @field_validator("models")
    @classmethod
    def _model_names(cls, v: dict[str, ModelConfig]) -> dict[str, ModelConfig]:
        bad = sorted(n for n in v if not re.match(CAMERA_NAME, n))
        if bad:
            raise ValueError(f"model names take a-z, 0-9, _ and - (at most 32): {bad}")
        return v

    def camera_problems(self) -> list[tuple[str, str, Any]]:
        """What the sections say of each other: (key path, message, bad value) for both
        [capture] and [[cameras]] given, repeated camera names, a model name without its
        [models.NAME], an AI camera's cpu_model under [[cameras]] (its model is the twin)
        and a camera's [collect] that is invalid once merged."""
        problems: list[tuple[str, str, Any]] = []
        if self.cameras and "capture" in self.model_fields_set:
            problems.append(BOTH_CAPTURE_AND_CAMERAS)
        if "cameras" in self.model_fields_set and not self.cameras:
            problems.append(("cameras", "empty: give at least one [[cameras]] table", _MISSING))
        names = [c.name for c in self.cameras]
        for i, cam in enumerate(self.cameras):
            if names.index(cam.name) != i:
                problems.append(
                    (f"cameras[{i}].name", "camera names must be unique; repeated", cam.name)
                )
        choices = ", ".join(self.models) or "none defined"
        wanted: list[tuple[str, str]] = [
            (f"capture.regions.{j}.model", r.model)
            for j, r in enumerate(getattr(self.capture, "regions", ()))
        ]
        for i, cam in enumerate(self.cameras):
            wanted.append((f"cameras[{i}].model", cam.model))
            wanted += [
                (f"cameras[{i}].regions.{j}.model", r.model) for j, r in enumerate(cam.regions)
            ]
            if getattr(cam, "cpu_model", ""):
                problems.append(
                    (
                        f"cameras[{i}].cpu_model",
                        "under [[cameras]] an AI camera's CPU twin is its model: give it "
                        'model = "NAME" with the twin in [models.NAME] (cpu_model is for '
                        "[capture])",
                        getattr(cam, "cpu_model", ""),
                    )
                )
            if cam.collect is not None:
                try:
                    _merged(self.collect, cam.collect, CollectConfig)
                except ValidationError as exc:
                    err = exc.errors(include_url=False)[0]
                    msg = str(err["msg"]).removeprefix("Value error, ")
                    problems.append((f"cameras[{i}].collect", msg, _MISSING))
        for key, name in wanted:
            if name and name not in self.models:
                problems.append((key, f"no [models.{name}]; models: {choices}", name))
        used = {name for _, name in wanted if name in self.models}
        if not self.cameras or any(not cam.model for cam in self.cameras):
            used.add("")
        problems += self._device_problems(sorted(used))
        return problems

    def _device_problems(self, used: list[str]) -> list[tuple[str, str, Any]]:
        """Models that may run on one Edge TPU device share its one worker, which opens the
        device once, with one set of ``edgetpu_options``: two sets for a device are an
        error naming both models."""
        problems: list[tuple[str, str, Any]] = []
        first: dict[tuple[str, str], str] = {}
        for name in used:
            model = self.model_for(name)
            if model.backend == "cpu":
                continue
            key = (model.edgetpu_library, model.edgetpu_device)
            if key not in first:
                clash = next(
                    (
                        other
                        for (lib, dev), other in first.items()
                        if lib == model.edgetpu_library
                        and _may_be_one_device(dev, model.edgetpu_device)
                        and _on_the_tpu(model)
                        and _on_the_tpu(self.model_for(other))
                    ),
                    None,
                )
                if clash is not None:
                    problems.append(_ambiguous_device(name, model, clash, self.model_for(clash)))
                first[key] = name
                continue
            other = self.model_for(first[key])
            if model.edgetpu_options != other.edgetpu_options:
                here = f"models.{name}" if name else "model"
                there = f"[models.{first[key]}]" if first[key] else "[model]"
                problems.append(
                    (
                        f"{here}.edgetpu_options",
                        f"{there} names Edge TPU device "
                        f"{model.edgetpu_device or '(the first found)'!r} too, with "
                        f"{other.edgetpu_options}: one device is opened once, with one set "
                        "of options; give both the same edgetpu_options or different "
                        "edgetpu_device values",
                        model.edgetpu_options,
                    )
                )
        return problems

    def model_for(self, name: str) -> ModelConfig:
        """[model] for "", else [models.NAME]."""
        return self.models[name] if name else self.model

    def camera_list(self) -> list[Camera]:
        """The cameras to run: those of [[cameras]], else the one camera of [capture]."""
        if not self.cameras:
            return [
                Camera(
                    None, self.capture, self.model, "", self.classify, self.publish, self.collect
                )
            ]
        return [
            Camera(
                cam.name,
                cam,
                self.model_for(cam.model),
                cam.model,
                _merged(self.classify, cam.classify, ClassifyConfig),
                _merged(self.publish, cam.publish, PublishConfig),
                _merged(self.collect, cam.collect, CollectConfig),
            )
            for cam in self.cameras
        ]


class ConfigError(Exception):
    """Every problem found in a configuration, each as (key path, message, bad value)."""

    def __init__(self, source: str, problems: list[tuple[str, str, Any]]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.source}: {len(self.problems)} problem(s)"]
        for loc, msg, value in self.problems:
            shown = "" if value is _MISSING else f" (got {value!r})"
            lines.append(f"  {loc}: {msg}{shown}")
        return "\n".join(lines)


_MISSING = object()
BOTH_CAPTURE_AND_CAMERAS = (
    "capture, cameras",
    "[capture] and [[cameras]] are both given: use [[cameras]] (one table per camera) or "
    "[capture] (one camera), not both",
    _MISSING,
)


def _parse_env_value(raw: str) -> Any:
    """Environment values are TOML literals when they parse as one, else plain strings."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, str], str]:
    """``{(section, key): variable name}`` for every ``EDGED_<SECTION>__<KEY>`` variable."""
    found: dict[tuple[str, str], str] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if section and key:
            found[(section, key)] = name
    return found


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``EDGED_<SECTION>__<KEY>=value`` variables onto the file's data."""
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for (section, key), name in env_overrides(environ).items():
        target = out.setdefault(section, {})
        if isinstance(target, dict):
            target[key] = _parse_env_value(environ[name])
    return out


def _locate(loc: tuple[int | str, ...]) -> str:
    """``capture.fps``, ``cameras[2].url``, ``cameras[0].regions.1.x``: a camera's index in
    brackets, as its table is written (the capture type's tag is left out)."""
    out = ""
    prev = None
    for p in loc:
        if p in CAPTURE_TYPES:
            continue
        if isinstance(p, int) and prev == "cameras":
            out += f"[{p}]"
        else:
            out += f".{p}" if out else str(p)
        prev = p
    return out or "(root)"


def _from_validation_error(
    source: str, exc: ValidationError, env: Mapping[tuple[str, str], str] | None = None
) -> ConfigError:
    problems: list[tuple[str, str, Any]] = []
    for err in exc.errors(include_url=False):
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif err["type"] == "literal_error":
            msg = f"invalid value; {msg.lower()}"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        value = err.get("input", _MISSING) if err["type"] != "missing" else _MISSING
        if isinstance(value, dict):
            value = _MISSING
        elif isinstance(value, str) and "://" in value:
            value = redact_url(value)  # never echo a password written into a URL
        where = _locate(err["loc"])
        parts = where.split(".")
        if len(parts) >= 2:
            variables = [v for k, v in (env or {}).items() if k == (parts[0], parts[1])]
        else:  # a whole section that does not exist
            variables = [v for k, v in (env or {}).items() if k[0] == parts[0]]
        if variables:
            where = f"{where} (from {', '.join('$' + v for v in variables)})"
        problems.append((where, msg, value))
    return ConfigError(source, problems)


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def file_problems(data: dict[str, Any]) -> list[tuple[str, str, Any]]:
    """Paths in the (raw) configuration that must exist and do not.  Works on the raw data,
    so that a missing file is reported together with every schema error."""
    problems: list[tuple[str, str, Any]] = []
    sections = {
        "model": ("path", "labels", "cpu_path"),
        "mqtt": ("password_file", "ca_file", "cert_file", "key_file"),
    }
    for name, keys in sections.items():
        section = _section(data, name)
        for key in keys:
            value = section.get(key)
            if isinstance(value, str) and value and not Path(value).is_file():
                problems.append((f"{name}.{key}", "no such file", value))
    models_dir = _section(data, "model").get("models_dir")
    if isinstance(models_dir, str) and models_dir and not Path(models_dir).is_dir():
        problems.append(("model.models_dir", "no such folder", models_dir))
    cameras = data.get("cameras")
    sources = [("capture", _section(data, "capture"))] + [
        (f"cameras[{i}]", c)
        for i, c in enumerate(cameras if isinstance(cameras, list) else [])
        if isinstance(c, dict)
    ]
    for where, capture in sources:
        paths = capture.get("paths")
        if capture.get("type", "replay") == "replay" and isinstance(paths, list):
            for i, value in enumerate(paths):
                if isinstance(value, str) and not Path(value).exists():
                    problems.append((f"{where}.paths.{i}", "does not exist", value))
    return problems


def describe_errors(model: type[BaseModel], exc: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem, as ``check-config`` prints them (key path, message, bad value),
    with the valid keys of ``model`` named for an unknown key."""
    lines = []
    for loc, msg, value in _from_validation_error(prefix or "<value>", exc).problems:
        path = f"{prefix}.{loc}" if prefix and loc != "(root)" else (prefix or loc)
        if msg == "unknown key":
            msg = f"unknown key; valid keys: {', '.join(model.model_fields)}"
        shown = "" if value is _MISSING else f" (got {value!r})"
        lines.append(f"{path}: {msg}{shown}")
    return lines


def parse_config(
    data: dict[str, Any],
    source: str = "<config>",
    env: Mapping[tuple[str, str], str] | None = None,
    *,
    check_files: bool = False,
) -> Config:
    """Validate ``data``; ``env`` names the variables that set some of its keys, so that
    their errors name the variable instead of the file.  ConfigError lists every problem
    (with ``check_files``, also the paths that do not exist)."""
    missing = file_problems(data) if check_files else []
    if "capture" in data and "cameras" in data:  # said at once, with the schema's errors
        missing.insert(0, BOTH_CAPTURE_AND_CAMERAS)
    try:
        cfg = Config.model_validate(data)
    except ValidationError as exc:
        error = _from_validation_error(source, exc, env)
        raise ConfigError(source, error.problems + missing) from None
    problems = [p for p in cfg.camera_problems() if p != BOTH_CAPTURE_AND_CAMERAS] + missing
    if problems:
        raise ConfigError(source, problems)
    return cfg


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    check_files: bool = False,
) -> Config:
    """Read the TOML file (a missing default file is an empty config) and the environment."""
    environ = os.environ if environ is None else environ
    explicit = path is not None
    cfg_path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    data: dict[str, Any] = {}
    if cfg_path.exists() or explicit:
        try:
            with cfg_path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(str(cfg_path), [("(file)", "no such file", _MISSING)]) from None
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(str(cfg_path), [("(file)", str(exc), _MISSING)]) from None
    return parse_config(
        apply_env(data, environ), str(cfg_path), env_overrides(environ), check_files=check_files
    )


def read_secret(path: str, credential: str, environ: Mapping[str, str] | None = None) -> str | None:
    """A secret from ``path`` or ``$CREDENTIALS_DIRECTORY/credential``; None when neither."""
    environ = os.environ if environ is None else environ
    candidates = [Path(path)] if path else []
    cred_dir = environ.get("CREDENTIALS_DIRECTORY")
    if not path and cred_dir:
        candidates.append(Path(cred_dir) / credential)
    for candidate in candidates:
        try:
            return candidate.read_text(encoding="utf-8").rstrip("\r\n")
        except FileNotFoundError:
            if path:
                raise
    return None


def _may_be_one_device(a: str, b: str) -> bool:
    """Two different ``edgetpu_device`` values that libedgetpu may resolve to one device:
    '' (the first found) and any other, or 'usb' (any USB one) and 'usb:N' (pci alike)."""
    if a == b:
        return False
    if not a or not b:
        return True
    return a.split(":")[0] == b.split(":")[0] and (":" not in a or ":" not in b)


def _on_the_tpu(model: ModelConfig) -> bool:
    """An Edge TPU model as far as the config tells: backend 'edgetpu', or 'auto' with a
    file named as the Edge TPU compiler names its output (``*_edgetpu.tflite``)."""
    return model.backend == "edgetpu" or (
        model.backend == "auto" and Path(model.path).stem.endswith("_edgetpu")
    )


def _ambiguous_device(
    name: str, model: ModelConfig, other_name: str, other: ModelConfig
) -> tuple[str, str, Any]:
    here = f"models.{name}" if name else "model"
    there = f"[models.{other_name}]" if other_name else "[model]"
    return (
        f"{here}.edgetpu_device",
        f"{there} names Edge TPU device {other.edgetpu_device or '(the first found)'!r} "
        f"and this model {model.edgetpu_device or '(the first found)'!r}: both may be the "
        "same Edge TPU, which one process opens at a time, so the second would run on the "
        "CPU; name the device the same way in both models, or each device by its index "
        "(usb:0, usb:1, pci:0)",
        model.edgetpu_device,
    )
