"""A real RTSP server for the tests: GStreamer's gst-rtsp-server serving H.264 (x264) made
from still photos, each shown for a number of frames, looped.

Runs under the system python3 (python3-gi, gir1.2-gst-rtsp-server-1.0,
gstreamer1.0-plugins-ugly), not the project's venv:

    python3 tests/servers/rtsp_server.py --port 8554 --path /cam --fps 10 \
        [--user u --password-file f] [--size 320x240] IMAGE [IMAGE ...]

Prints "ready" on stdout once it listens; SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/cam")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--frames-per-image", type=int, default=1)
    p.add_argument("--size", default="320x240")
    p.add_argument("--user", default="")
    p.add_argument("--password-file", default="")
    p.add_argument("images", nargs="+")
    args = p.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    # multifilesrc reads img00000.jpg, img00001.jpg, ...: one link per frame, looped
    workdir = tempfile.mkdtemp(prefix="edged-rtsp-")
    n = 0
    for image in args.images:
        for _ in range(args.frames_per_image):
            os.symlink(os.path.abspath(image), os.path.join(workdir, f"img{n:05d}.jpg"))
            n += 1

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( multifilesrc location={workdir}/img%05d.jpg loop=true "
        f"caps=image/jpeg,framerate={args.fps}/1 ! jpegdec ! videoconvert ! videoscale "
        f"! video/x-raw,width={width},height={height},format=I420 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} "
        "! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    if args.user:
        with open(args.password_file, encoding="utf-8") as fh:
            password = fh.read().strip()
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "user")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(args.user, password), token)
        server.set_auth(auth)
        perms = GstRtspServer.RTSPPermissions()
        perms.add_permission_for_role("user", "media.factory.access", True)
        perms.add_permission_for_role("user", "media.factory.construct", True)
        factory.set_permissions(perms)
    server.get_mount_points().add_factory(args.path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on port {args.port}", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, loop.quit)
    print("ready", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
