#!/usr/bin/env python3
"""fsyncs per second of ``edged run`` with an event spool on disk: the daemon replays the
sample photos paced at 30 frames/s, publishing every event at QoS 1 to a local mosquitto,
under ``strace -f -c -e trace=fsync,fdatasync`` for ``--seconds``.  ``--tree DIR`` runs
another checkout of edged (with this one's venv) for a before/after comparison.

    python bench/fsyncs.py [--seconds 20] [--tree DIR]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import Mosquitto  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--tree", type=Path, default=ROOT, help="the edged checkout to run")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        broker = Mosquitto(tmp).start()
        try:
            config = tmp / "edged.toml"
            config.write_text(
                '[device]\nid = "fsyncs"\n[capture]\ntype = "replay"\nloop = true\nfps = 30\n'
                f'[mqtt]\nurl = "{broker.url}"\nspool_file = "{tmp / "events.db"}"\n'
            )
            counts = tmp / "strace.txt"
            cmd = [sys.executable, "-m", "edged", "run", "--config", str(config)]
            trace = ["strace", "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(counts)]
            proc = subprocess.Popen(
                trace + cmd,
                cwd=args.tree,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started = time.monotonic()
            time.sleep(args.seconds)
            subprocess.run(["pkill", "-TERM", "-P", str(proc.pid)], check=False)  # edged
            proc.wait(30)
            ran = time.monotonic() - started
            calls = sum(
                int(m.group(1))
                for m in re.finditer(
                    r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?f\w*sync$",
                    counts.read_text(),
                    re.M,
                )
            )
        finally:
            broker.stop()
    print(
        f"edged fsyncs: {args.tree}: {calls} fsync/fdatasync calls in {ran:.1f} s, "
        f"{calls / ran:.1f} per second (start and stop included)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
