"""Which classifications become events (the publish policy) and what an event says."""

from __future__ import annotations

import json
from typing import Any

from edged.classify import Classification
from edged.wire import EVENT_SCHEMA, ClassifiedFile, ClassScore, utc_now

_compact = json.JSONEncoder(separators=(",", ":")).encode


class PublishPolicy:
    """every_frame, on_change (top-1 label changed) or interval, with a minimum score."""

    def __init__(self, policy: str, interval_s: float, min_score: float) -> None:
        self.policy = policy
        self.interval_s = interval_s
        self.min_score = min_score
        self._last_label: str | None = None
        self._last_at = float("-inf")

    def should_publish(self, result: Classification, now: float) -> bool:
        top = result.top1
        if top is None or top.score < self.min_score:
            return False
        if self.policy == "on_change" and top.label == self._last_label:
            return False
        if self.policy == "interval" and now - self._last_at < self.interval_s:
            return False
        self._last_label = top.label
        self._last_at = now
        return True


def classified_fields(
    result: Classification, *, model: str, backend: str, inference_ms: float
) -> dict[str, Any]:
    """The :class:`~edged.wire.Classified` fields of one classification."""
    top = result.top1
    return {
        "label": top.label if top else None,
        "label_id": top.id if top else None,
        "score": round(top.score, 5) if top else None,
        "top_k": [
            ClassScore(label=c.label, label_id=c.id, score=round(c.score, 5)) for c in result.top_k
        ],
        "ambiguous": result.ambiguous,
        "model": model,
        "backend": backend,
        "inference_ms": round(inference_ms, 3),
    }


def event_json(
    *,
    device: str,
    seq: int,
    frame: int,
    source: str,
    result: Classification,
    model: str,
    backend: str,
    inference_ms: float,
) -> bytes:
    """An :class:`~edged.wire.Event` as published: byte for byte its ``to_json()``, without
    building and dumping a pydantic model (the daemon sends one per frame)."""
    top = result.top1
    return _compact(
        {
            "schema": EVENT_SCHEMA,
            "device": device,
            "label": top.label if top else None,
            "label_id": top.id if top else None,
            "score": round(top.score, 5) if top else None,
            "top_k": [
                {"label": c.label, "label_id": c.id, "score": round(c.score, 5)}
                for c in result.top_k
            ],
            "ambiguous": result.ambiguous,
            "model": model,
            "backend": backend,
            "inference_ms": round(inference_ms, 3),
            "seq": seq,
            "ts": utc_now(),
            "frame": frame,
            "source": source,
        }
    ).encode()


def classified_file(
    file: str, result: Classification, *, model: str, backend: str, inference_ms: float
) -> ClassifiedFile:
    """One row of ``edged classify --json``."""
    return ClassifiedFile(
        file=file,
        **classified_fields(result, model=model, backend=backend, inference_ms=inference_ms),
    )
