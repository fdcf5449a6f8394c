"""Which classifications become events (the publish policy) and what an event says."""

from __future__ import annotations

import json
from typing import Any

from edged.classify import Classification
from edged.publish.confirm import Confirmer
from edged.wire import EVENT_SCHEMA, ClassifiedFile, ClassScore, utc_now

_compact = json.JSONEncoder(separators=(",", ":")).encode


class PublishPolicy:
    """every_frame, on_change or interval, with a minimum score, for one region (or the
    whole frame).

    ``on_change`` publishes when the *confirmed* label changes: with ``confirm_frames`` = N
    a new label must be the top-1 of N consecutive frames, each at least ``min_score``
    (N = 1: every change of the top-1 label).  ``every_frame`` and ``interval`` publish
    the raw classification; ``confirmed`` is the confirmed label all the same.
    """

    def __init__(
        self, policy: str, interval_s: float, min_score: float, confirm_frames: int = 1
    ) -> None:
        self.policy = policy
        self.interval_s = interval_s
        self.min_score = min_score
        self._confirmer = Confirmer(confirm_frames, min_score)
        self._last_at = float("-inf")

    @property
    def confirmed(self) -> str | None:
        return self._confirmer.confirmed

    def should_publish(self, result: Classification, now: float) -> bool:
        changed = self._confirmer.update(result)
        top = result.top1
        if top is None or top.score < self.min_score:
            return False
        if self.policy == "on_change" and not changed:
            return False
        if self.policy == "interval" and now - self._last_at < self.interval_s:
            return False
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
    run_id: str,
    seq: int,
    frame: int,
    source: str,
    result: Classification,
    model: str,
    backend: str,
    inference_ms: float,
    region: str | None = None,
    confirmed_label: str | None = None,
    camera: str | None = None,
) -> bytes:
    """An :class:`~edged.wire.Event` as published: byte for byte its ``to_json()``, without
    building and dumping a pydantic model (the daemon sends one per frame).  ``camera``
    None (the one camera of a [capture] config) leaves the field out."""
    top = result.top1
    data: dict[str, Any] = {
        "schema": EVENT_SCHEMA,
        "device": device,
        "label": top.label if top else None,
        "label_id": top.id if top else None,
        "score": round(top.score, 5) if top else None,
        "top_k": [
            {"label": c.label, "label_id": c.id, "score": round(c.score, 5)} for c in result.top_k
        ],
        "ambiguous": result.ambiguous,
        "model": model,
        "backend": backend,
        "inference_ms": round(inference_ms, 3),
        "run_id": run_id,
        **({"camera": camera} if camera is not None else {}),
        "seq": seq,
        "ts": utc_now(),
        "frame": frame,
        "source": source,
        "region": region,
        "confirmed_label": confirmed_label,
    }
    return _compact(data).encode()


def classified_file(
    file: str, result: Classification, *, model: str, backend: str, inference_ms: float
) -> ClassifiedFile:
    """One row of ``edged classify --json``."""
    return ClassifiedFile(
        file=file,
        **classified_fields(result, model=model, backend=backend, inference_ms=inference_ms),
    )
