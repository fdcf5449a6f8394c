"""The training report on a terminal, and the progress bar while it is made."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from edged.train.pipeline import Progress as TrainProgress

PHASES = {
    "scan": "reading the folder and the base model",
    "features": "features",
    "fit": "choosing L2 and fitting the head",
    "int8": "quantizing and scoring the int8 head",
    "write": "writing the model",
    "views": "deep: random views through the frozen layers",
    "train": "deep: training the last blocks (epochs)",
    "calibrate": "deep: calibrating the int8 model",
    "convert": "deep: converting to int8 TFLite",
}


class RichProgress(TrainProgress):
    """A rich progress bar on stderr: one bar for the images, a line per phase."""

    def __init__(self, console: Console | None = None) -> None:
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=True,
        )
        self.task: Any = None
        self.bar.start()

    def phase(self, name: str, total: int | None = None) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(PHASES.get(name, name), total=total or 1)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, n)

    def done(self) -> None:
        self.bar.stop()


def render(report: dict[str, Any], console: Console) -> None:
    classes: list[str] = report["classes"]
    table = Table(title="images per class")
    for col in ("class", "images", "skipped"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for c in classes:
        counts = report["images"][c]
        table.add_row(c, str(counts["used"]), str(counts["skipped"]) if counts["skipped"] else "")
    console.print(table)
    val = report["validation"]
    recipe = report.get("recipe", "head")
    why = f" ({report['recipe_reason']})" if report.get("recipe_reason") else ""
    console.print(f"recipe: [bold]{recipe}[/bold]{why}")
    floating = (
        f", {val['accuracy_float']:.1%} float head" if val.get("accuracy_float") is not None else ""
    )
    l2 = f"; L2 = {report['l2']:g}" if report.get("l2") is not None else ""
    console.print(
        f"held-out accuracy: [bold]{val['accuracy_int8']:.1%}[/bold] int8{floating}, "
        f"on {val['images']} images ({val['method']}){l2}"
    )
    matrix = Table(title="confusion matrix (rows: true class, columns: predicted, int8)")
    matrix.add_column("")
    for c in classes:
        matrix.add_column(c, justify="right")
    for c, row in zip(classes, val["confusion_matrix"], strict=True):
        matrix.add_row(c, *(str(v) if v else "." for v in row))
    console.print(matrix)
    feats = report["features"]
    timings = report["timings_s"]
    console.print(
        "time: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
        + f" (features: {feats['computed']} computed, {feats['cached']} from the cache)"
    )
    console.print(
        f"wrote {report['model']} ({report['size_bytes'] / 1e6:.1f} MB, sha256 "
        f"{report['sha256']}) and {report['manifest']}"
    )
