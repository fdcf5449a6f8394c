#!/usr/bin/env python3
"""bench/pipeline.py's table for this tree beside the same table for an earlier commit, in
one run: the two trees' benches alternate (``--times`` each, the earlier first), so that the
machine's load weighs on both alike, and each figure is the median of its runs.

The earlier commit is checked out with ``git worktree add`` into a temporary folder and run
with this venv (its own ``bench/pipeline.py`` on its own ``edged``), then removed.

    python bench/against.py d3bb80f [--times 2] [--rounds 1] [--frames 200]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROW = re.compile(r"^(?P<measure>[^|]+?)\s*\|\s*(?P<goal>[^|]*?)\s*\|\s*(?P<figure>[^|]*?)\s*\|")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def table(tree: Path, rounds: int, frames: int) -> dict[str, tuple[str, float]]:
    """``{measure: (goal, figure)}`` for the numeric rows of ``tree``'s bench/pipeline.py."""
    env = dict(os.environ, PYTHONPATH=str(tree))  # `edged run` children import this tree
    out = subprocess.run(
        [sys.executable, "bench/pipeline.py", "--rounds", str(rounds), "--frames", str(frames)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench/pipeline.py in {tree} failed:\n{out.stderr[-2000:]}")
    rows: dict[str, tuple[str, float]] = {}
    for line in out.stdout.splitlines():
        m = ROW.match(line)
        if m and NUMBER.match(m["figure"]):
            rows[m["measure"].strip()] = (m["goal"], float(m["figure"]))
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("ref", help="the earlier commit (e.g. main as it was before a change)")
    ap.add_argument("--times", type=int, default=2, help="runs of each tree, alternating")
    ap.add_argument("--rounds", type=int, default=1, help="bench/pipeline.py --rounds")
    ap.add_argument("--frames", type=int, default=200, help="bench/pipeline.py --frames")
    args = ap.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "ref"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "-q", str(old), args.ref], cwd=ROOT, check=True
        )
        try:
            runs: dict[str, list[dict[str, tuple[str, float]]]] = {"ref": [], "this": []}
            for i in range(args.times):
                for name, tree in (("ref", old), ("this", ROOT)):
                    print(f"run {i + 1}/{args.times}: {name}", file=sys.stderr, flush=True)
                    runs[name].append(table(tree, args.rounds, args.frames))
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, check=False
            )
    measures = [m for m in runs["this"][0] if all(m in r for r in runs["ref"] + runs["this"])]
    print(
        f"bench/pipeline.py, {args.ref} against this tree: {args.times} alternating runs of each "
        f"({args.rounds} round(s), {args.frames} frames), medians; load average {load:.1f} "
        f"before, {os.getloadavg()[0]:.1f} after"
    )
    print(f"| measure | goal | {args.ref} | this tree | this / {args.ref} |")
    print("| --- | --- | --- | --- | --- |")
    for m in measures:
        goal = runs["this"][0][m][0]
        a = statistics.median(r[m][1] for r in runs["ref"])
        b = statistics.median(r[m][1] for r in runs["this"])
        ratio = f"{b / a:.3f}" if a else "-"
        print(f"| {m} | {goal} | {a:g} | {b:g} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
