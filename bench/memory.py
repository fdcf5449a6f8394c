#!/usr/bin/env python3
"""Where the daemon's resident memory goes.

1. ``edged run`` as a process (the bundled model, the sample photos replayed at 30 frames/s,
   events to a local mosquitto), read after ``--settle`` seconds from
   ``/proc/PID/smaps``: RSS by mapping (a shared library by its package, the model file,
   the heap, other anonymous memory), anonymous against file-backed.
2. The same path step by step in a fresh interpreter: the RSS each import and each
   start-up step adds, in the order the daemon takes them.

    python bench/memory.py [--settle 20]
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import Mosquitto  # noqa: E402

STEPS = """
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
steps = [("python itself", rss())]
def step(name):
    steps.append((name, rss()))
import numpy
step("numpy")
import PIL.Image
step("Pillow")
import paho.mqtt.client
step("paho-mqtt (with ssl)")
import pydantic
class _Probe(pydantic.BaseModel):
    x: int = 0
step("pydantic (its machinery, built by a first model)")
import edged.config
step("edged.config (the config models)")
from edged.infer.runtime import get_runtime
get_runtime()
step("the TFLite runtime (ai-edge-litert)")
import edged.app, edged.cli
step("the rest of edged's daemon path")
from edged.engine import open_engine
cfg = edged.config.parse_config({})
engine = open_engine(cfg.model, cfg.classify)
step("the bundled model, opened (XNNPACK's packed weights, tensor arena)")
print(json.dumps(steps))
"""


def by_mapping(pid: int) -> tuple[dict[str, float], dict[str, float]]:
    """(MB by mapping group, MB by kind) of a running process."""
    groups: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    name = "[anon]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and not parts[0].endswith(":"):
            path = parts[5] if len(parts) > 5 else "[anon]"
            if "site-packages/" in path:
                name = path.split("site-packages/")[1].split("/")[0]
            elif path.startswith("/"):
                name = Path(path).name
            else:
                name = path
        elif parts and parts[0] == "Rss:":
            kb = int(parts[1])
            groups[name] += kb
            kinds["anonymous" if name.startswith("[") else "file-backed"] += kb
    return (
        {k: v / 1024 for k, v in groups.most_common()},
        {k: v / 1024 for k, v in kinds.items()},
    )


def daemon_mappings(settle: float) -> tuple[dict[str, float], dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        broker = Mosquitto(Path(tmp)).start()
        try:
            config = Path(tmp) / "edged.toml"
            config.write_text(
                '[device]\nid = "memory"\n'
                '[capture]\ntype = "replay"\nloop = true\nfps = 30\n'
                f'[mqtt]\nurl = "{broker.url}"\n'
            )
            proc = subprocess.Popen(
                [sys.executable, "-m", "edged", "run", "--config", str(config)],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(settle)
                if proc.poll() is not None:
                    raise SystemExit(f"edged run exited with {proc.returncode}")
                return by_mapping(proc.pid)
            finally:
                proc.terminate()
                proc.wait(30)
        finally:
            broker.stop()


def import_steps() -> list[tuple[str, float]]:
    out = subprocess.run(
        [sys.executable, "-c", STEPS], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    return [(name, mb) for name, mb in json.loads(out.splitlines()[-1])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--settle", type=float, default=20.0, help="s of running before reading")
    args = ap.parse_args()
    groups, kinds = daemon_mappings(args.settle)
    total = sum(groups.values())
    print(f"edged run after {args.settle:g} s: RSS {total:.1f} MB")
    for kind, mb in sorted(kinds.items()):
        print(f"  {kind:<12} {mb:6.1f} MB")
    print("by mapping (>= 0.5 MB):")
    for name, mb in groups.items():
        if mb >= 0.5:
            print(f"  {mb:6.1f} MB  {name}")
    print("\nthe daemon's path, step by step in a fresh interpreter (RSS added):")
    previous = 0.0
    for name, mb in import_steps():
        print(f"  {mb - previous:+6.1f} MB  = {mb:5.1f} MB  {name}")
        previous = mb


if __name__ == "__main__":
    main()
