"""``edged train``: a folder of photos (a folder per class) becomes an int8 model, and
``edged capture``: frames from the configured source saved as training photos."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edged.commands.common import EXIT_ERROR, EXIT_OK, add_config, load


def cmd_train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from edged.train import TrainError, TrainOptions, train
    from edged.train.deep import DeepParams
    from edged.train.features import default_cache_dir
    from edged.train.report import RichProgress, render

    model_cfg = load(args).model
    try:
        deep = DeepParams() if args.epochs is None else DeepParams(epochs=args.epochs)
    except ValueError as exc:
        print(f"edged train: --epochs: {exc}", file=sys.stderr)
        return EXIT_ERROR
    opts = TrainOptions(
        data_dir=args.data_dir,
        out=args.out,
        base=args.base,
        val=args.val,
        augment=args.augment,
        model=model_cfg,
        cache_dir=None if args.no_cache else (args.cache or default_cache_dir()),
        recipe=args.recipe,
        deep=deep,
    )
    progress = None if args.json or not sys.stderr.isatty() else RichProgress()
    try:
        report = train(opts, progress)
    except TrainError as exc:
        if progress is not None:
            progress.done()
        print(f"edged train: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        render(report, Console())
    return EXIT_OK


def cmd_capture(args: argparse.Namespace) -> int:
    from edged.train.capture import CaptureError, capture

    cfg = load(args)
    try:
        saved = capture(cfg, args.dir, args.label, args.count, args.interval)
    except CaptureError as exc:
        print(f"edged capture: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"saved {len(saved)} frame(s) to {args.dir / args.label}")
    return EXIT_OK if len(saved) == args.count else EXIT_ERROR


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "train",
        help="retrain the model's last layer on your own photos (a folder per class)",
        description="Train a new last layer on DATA_DIR (one folder of images per class, the "
        "folder name being the label) and write a full-integer model that edged runs as is.",
    )
    p.add_argument("data_dir", type=Path, metavar="DATA_DIR")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="MODEL.tflite")
    p.add_argument(
        "--base", type=Path, default=None, help="int8 base model (default: the bundled one)"
    )
    p.add_argument(
        "--val",
        type=float,
        default=0.2,
        metavar="FRACTION",
        help="share of each class held out to choose L2 and measure accuracy (default 0.2; "
        "k-fold instead when a class has fewer than 20 images)",
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add mirrored and cropped copies of the training images (default: on)",
    )
    p.add_argument(
        "--recipe",
        default="head",
        help="how to train: head = a new last layer on the base model's frozen features "
        "(default); deep = the last blocks too, with augmentation (needs the learn extra: "
        "pip install 'edged[learn]'); auto = deep where it can run, else head",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="N",
        help="deep recipe: passes over the photos (default 25)",
    )
    p.add_argument("--cache", type=Path, default=None, help="feature cache folder")
    p.add_argument("--no-cache", action="store_true", help="compute every feature afresh")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_config(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "capture",
        help="save frames from the configured source as training photos",
        description="Save COUNT frames from the configured capture source as JPEG files in "
        "DIR/LABEL/, for edged train.",
    )
    p.add_argument("dir", type=Path, metavar="DIR")
    p.add_argument("--label", required=True, help="class name: the folder the frames go to")
    p.add_argument("--count", type=int, required=True, metavar="N")
    p.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between frames (1)"
    )
    add_config(p)
    p.set_defaults(func=cmd_capture)
