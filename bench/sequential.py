#!/usr/bin/env python3
"""The plain sequential loop a user would write (TF's Raspberry Pi classification example,
AWS Greengrass's image classification component): decode, resize, invoke, top-k, publish,
one frame after the other in one thread.  bench/pipeline.py compares the daemon with it.

    python bench/sequential.py --broker mqtt://127.0.0.1:1883 --frames 300 IMAGE_DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from ai_edge_litert.interpreter import Interpreter
from paho.mqtt.enums import CallbackAPIVersion
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "models" / "efficientnet_lite0_int8.tflite"


def run(images: list[Path], model: Path, threads: int, frames: int, host: str, port: int) -> float:
    """Classify and publish ``frames`` frames (cycling over ``images``); returns frames/s."""
    interpreter = Interpreter(model_path=str(model), num_threads=threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = interpreter.get_output_details()[0]
    height, width = int(inp["shape"][1]), int(inp["shape"][2])
    in_scale, in_zero = inp["quantization"]
    out_scale, out_zero = out["quantization"]

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sequential-loop")
    client.connect(host, port)
    client.loop_start()

    def classify(path: Path) -> dict[str, object]:
        image = Image.open(path).convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32)
        normalized = (pixels - 127.0) / 128.0
        quantized = np.clip(np.round(normalized / in_scale + in_zero), -128, 127)
        interpreter.set_tensor(inp["index"], quantized.astype(inp["dtype"])[np.newaxis])
        interpreter.invoke()
        raw = interpreter.get_tensor(out["index"])[0]
        scores = (raw.astype(np.float32) - out_zero) * out_scale
        top = np.argsort(-scores, kind="stable")[:5]
        return {
            "label_id": int(top[0]),
            "score": float(scores[top[0]]),
            "top_k": [{"label_id": int(i), "score": float(scores[i])} for i in top],
            "source": path.name,
            "ts": time.time(),
        }

    for i in range(10):  # warm-up
        classify(images[i % len(images)])
    start = time.perf_counter()
    for i in range(frames):
        result = classify(images[i % len(images)])
        client.publish("bench/sequential/events", json.dumps(result), qos=1)
    elapsed = time.perf_counter() - start
    client.loop_stop()
    client.disconnect()
    return frames / elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("images", type=Path)
    ap.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    ap.add_argument("--model", type=Path, default=BUNDLED)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    host, _, port = args.broker.removeprefix("mqtt://").partition(":")
    images = sorted(p for p in args.images.iterdir() if p.is_file())
    fps = run(images, args.model, args.threads, args.frames, host, int(port or 1883))
    print(f"{fps:.1f} frames/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
