#!/usr/bin/env python3
"""What the write-ahead event spool costs an SD card: bytes written and fsyncs per second at
30 events/s, for the store edged uses (SQLite in WAL mode, ``synchronous=FULL``, group commit
every 200 ms: ``edged.publish.spool.Spool``) and for the alternative, an append-only segment
log with CRC-framed records, acknowledgements appended as records and one ``fdatasync`` per
group commit (written here, only for the comparison).

Both stores see the same workload: 30 real-sized events per simulated second (the JSON edged
publishes, top-5), committed in groups of 200 ms; the broker acknowledges each group before
the next one, so every commit also removes the previous group.  The run is not paced (the
disk work is the same; only the figures per simulated second are reported).  Each store runs
in a child process under ``strace -f -c`` so that fsync and fdatasync calls made inside SQLite
are counted; bytes are the child's ``/proc/self/io`` (``wchar``: bytes handed to write(2);
``write_bytes``: bytes sent to the block layer).

    python bench/spool.py [--seconds 120] [--rate 30] [--window 0.2] [--dir /var/tmp]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sample_event(seq: int) -> bytes:
    labels = ["macaw", "toucan", "lorikeet", "bee eater", "hummingbird"]
    return json.dumps(
        {
            "schema": "edged.event/1",
            "device": "cam-0001",
            "run_id": "5b0e8f0c-6a43-4a59-9a3c-2d1f7e9b8c11",
            "seq": seq,
            "ts": "2026-11-27T09:00:00.000Z",
            "frame": seq,
            "source": "/var/lib/edged/frames/frame-000123.jpg",
            "label": "macaw",
            "label_id": 88,
            "score": 0.97266,
            "top_k": [
                {"label": label, "label_id": 88 + i, "score": round(0.97 / (i + 1), 5)}
                for i, label in enumerate(labels)
            ],
            "ambiguous": False,
            "model": "mobilenet_v2_1.0_224_quant.tflite",
            "backend": "cpu",
            "inference_ms": 31.123,
        },
        separators=(",", ":"),
    ).encode()


class SegmentLog:
    """Append-only log: records ``[u32 length][u32 crc32][kind][body]``; acknowledgements are
    records too; a segment is deleted when every event in it is acknowledged."""

    SEGMENT_BYTES = 1 << 20

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.segment = 0
        self.unacked: dict[int, set[int]] = {}  # segment -> event ids
        self.where: dict[int, int] = {}
        self._open_segment()

    def _open_segment(self) -> None:
        self.segment += 1
        self.fh = open(self.dir / f"{self.segment:08d}.log", "ab", buffering=0)  # noqa: SIM115
        self.size = 0
        self.unacked[self.segment] = set()

    def _record(self, kind: bytes, body: bytes) -> bytes:
        data = kind + body
        return struct.pack("<II", len(data), zlib.crc32(data)) + data

    def commit(self, events: list[tuple[int, bytes]], acks: list[int]) -> None:
        out = [self._record(b"E", struct.pack("<Q", i) + p) for i, p in events]
        if acks:
            out.append(self._record(b"A", struct.pack(f"<{len(acks)}Q", *acks)))
        blob = b"".join(out)
        self.fh.write(blob)
        os.fdatasync(self.fh.fileno())
        self.size += len(blob)
        for i, _ in events:
            self.unacked[self.segment].add(i)
            self.where[i] = self.segment
        for i in acks:
            seg = self.where.pop(i)
            self.unacked[seg].discard(i)
            if seg != self.segment and not self.unacked[seg]:
                (self.dir / f"{seg:08d}.log").unlink()
                del self.unacked[seg]
        if self.size >= self.SEGMENT_BYTES:
            self.fh.close()
            self._open_segment()


def io_counters() -> dict[str, int]:
    with open("/proc/self/io") as fh:
        return {k: int(v) for k, v in (line.split(": ") for line in fh)}


def workload(store: str, directory: Path, seconds: int, rate: int, window: float) -> None:
    per_commit = round(rate * window)
    commits = round(seconds / window)
    if store == "sqlite":
        from edged.publish.spool import Spool

        spool = Spool(directory / "events.db", max_bytes=64 << 20, max_rows=10000)
    else:
        log = SegmentLog(directory / "segments")
    before = io_counters()
    t0 = time.perf_counter()
    seq = 0
    last: list[int] = []
    for _ in range(commits):
        batch = []
        for _ in range(per_commit):
            seq += 1
            batch.append((seq, sample_event(seq)))
        if store == "sqlite":
            spool.ack(last)
            last = [spool.add("events", p, 1).id for _, p in batch]
            spool.commit()
        else:
            log.commit(batch, last)
            last = [i for i, _ in batch]
    wall = time.perf_counter() - t0
    after = io_counters()
    print(
        json.dumps(
            {
                "wchar": after["wchar"] - before["wchar"],
                "write_bytes": after["write_bytes"] - before["write_bytes"],
                "events": seq,
                "commit_ms": 1000 * wall / commits,
            }
        )
    )


def measure(store: str, args: argparse.Namespace) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix=f"edged-spool-{store}-", dir=args.dir))
    trace = directory / "strace.txt"
    cmd = [
        sys.executable,
        __file__,
        "--child",
        store,
        "--seconds",
        str(args.seconds),
        "--rate",
        str(args.rate),
        "--window",
        str(args.window),
        "--dir",
        str(directory),
    ]
    strace = shutil.which("strace")
    if strace:
        cmd = [strace, "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(trace), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    fsyncs = 0
    if strace:
        for line in trace.read_text().splitlines():
            parts = line.split()
            if parts and parts[-1] in ("fsync", "fdatasync"):
                fsyncs += int(parts[3])
    result["fsyncs"] = fsyncs if strace else float("nan")
    shutil.rmtree(directory)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=120, help="simulated seconds")
    parser.add_argument("--rate", type=int, default=30, help="events per second")
    parser.add_argument("--window", type=float, default=0.2, help="group commit window (s)")
    parser.add_argument("--dir", default="/var/tmp", help="a directory on a real disk")
    parser.add_argument("--child", choices=["sqlite", "segments"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        workload(args.child, Path(args.dir), args.seconds, args.rate, args.window)
        return
    print(
        f"{args.rate} events/s, group commit every {args.window * 1000:.0f} ms, "
        f"{args.seconds} s simulated, event {len(sample_event(1))} bytes, in {args.dir}"
    )
    print(f"{'store':<34}{'KB/s written':>14}{'to disk KB/s':>14}{'fsyncs/s':>10}{'ms/commit':>11}")
    results = {}
    for store, name in (("sqlite", "SQLite WAL (edged)"), ("segments", "append-only segment log")):
        r = measure(store, args)
        results[store] = r
        print(
            f"{name:<34}{r['wchar'] / args.seconds / 1024:>14.1f}"
            f"{r['write_bytes'] / args.seconds / 1024:>14.1f}"
            f"{r['fsyncs'] / args.seconds:>10.1f}{r['commit_ms']:>11.2f}"
        )
    s, g = results["sqlite"], results["segments"]
    payload = s["events"] * len(sample_event(1)) / args.seconds / 1024
    print(f"event payload alone: {payload:.1f} KB/s")
    print(
        f"SQLite / segment log: bytes written x{s['wchar'] / g['wchar']:.2f}, "
        f"fsyncs x{s['fsyncs'] / max(g['fsyncs'], 1):.2f}"
    )


if __name__ == "__main__":
    main()
