"""Scores to classes.  Pure functions and small immutable types; no device access."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edged.config import ClassifyConfig

BACKGROUND = "background"


@dataclass(frozen=True)
class Class:
    id: int
    label: str
    score: float

    def as_dict(self) -> dict[str, object]:
        return {"label": self.label, "label_id": self.id, "score": round(self.score, 5)}


@dataclass(frozen=True)
class Classification:
    top_k: tuple[Class, ...]
    ambiguous: bool

    @property
    def top1(self) -> Class | None:
        return self.top_k[0] if self.top_k else None


@dataclass(frozen=True)
class Labels:
    """Class names by output index.  ``background`` is the index of a background class
    (index 0 of the 1001-class ImageNet models), which is never reported."""

    names: tuple[str, ...]
    background: int | None = None
    source: str = "indices"

    @classmethod
    def build(cls, names: Sequence[str] | None, classes: int, source: str, model: str) -> Labels:
        if not names:
            return cls(tuple(str(i) for i in range(classes)), None, "indices")
        names = list(names)
        if len(names) == classes - 1 and names[0].lower() != BACKGROUND:
            # A 1000-line ImageNet file for a 1001-output model: the first output is background.
            names.insert(0, BACKGROUND)
        if len(names) != classes:
            raise ValueError(
                f"{source} has {len(names)} labels but {model} outputs {classes} classes"
            )
        background = 0 if names[0].strip().lower() == BACKGROUND else None
        return cls(tuple(names), background, source)

    def __len__(self) -> int:
        return len(self.names)


def dequantize(
    raw: npt.NDArray[np.generic], scale: float, zero_point: int
) -> npt.NDArray[np.float32]:
    if raw.dtype.kind in "iu":
        scale, zero_point = _quantization(raw, scale, zero_point)
        return (raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return raw.astype(np.float32, copy=False)


def _quantization(raw: npt.NDArray[np.generic], scale: float, zero_point: int) -> tuple[float, int]:
    """An integer output's (scale, zero point); a model that gives none (scale 0) is
    taken as a softmax over the type's whole range."""
    if scale > 0:
        return scale, zero_point
    return (1 / 256, 0) if raw.dtype == np.uint8 else (1 / 256, -128)


def _as_probabilities(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Logits become probabilities (softmax); probabilities pass unchanged."""
    total = float(scores.sum())
    if scores.min() >= -1e-3 and total <= 1.05:
        return scores
    e = np.exp(scores - scores.max())
    probs: npt.NDArray[np.float32] = (e / e.sum()).astype(np.float32)
    return probs


class Classifier:
    """Turns an output vector into a :class:`Classification` under a :class:`ClassifyConfig`."""

    def __init__(self, labels: Labels, cfg: ClassifyConfig) -> None:
        self.labels = labels
        self.cfg = cfg
        excluded = np.zeros(len(labels), dtype=bool)
        if labels.background is not None:
            excluded[labels.background] = True
        lowered = [n.lower() for n in labels.names]
        if cfg.allow:
            allowed = {a.lower() for a in cfg.allow}
            excluded |= np.array([not _matches(n, allowed) for n in lowered])
        if cfg.deny:
            denied = {d.lower() for d in cfg.deny}
            excluded |= np.array([_matches(n, denied) for n in lowered])
        self._excluded = excluded if excluded.any() else None
        # the classes that may be reported, ascending (None: all of them)
        self._kept = None if self._excluded is None else np.flatnonzero(~excluded)

    def __call__(
        self, raw: npt.NDArray[np.generic], scale: float = 0.0, zero_point: int = 0
    ) -> Classification:
        k = min(max(self.cfg.top_k, 2), raw.size)
        quantized = self._quantized(raw, scale, zero_point, k)
        if quantized is not None:
            candidates = quantized
        else:
            scores = _as_probabilities(dequantize(raw, scale, zero_point))
            if self._excluded is not None:
                scores = np.where(self._excluded, np.float32(-1.0), scores)
            idx = _top(scores, k)
            candidates = [(int(i), float(scores[i])) for i in idx if scores[i] >= 0.0]
        return self._classification(candidates)

    def _quantized(
        self, raw: npt.NDArray[np.generic], scale: float, zero_point: int, k: int
    ) -> list[tuple[int, float]] | None:
        """The candidates of an integer output that already holds probabilities (a
        quantized softmax), ranked on the integers themselves: dequantizing is increasing,
        so the order (ties included) is the same as on the scores, and only the winners are
        dequantized, exactly as :func:`dequantize` does.  None for anything else (float
        outputs, logits): the general path."""
        if raw.dtype.kind not in "iu":
            return None
        scale, zero_point = _quantization(raw, scale, zero_point)
        lowest = (int(raw.min()) - zero_point) * scale
        total = (int(raw.sum()) - raw.size * zero_point) * scale
        if lowest < -1e-3 or total > 1.05:
            return None  # logits: softmax on the general path
        kept = self._kept
        values = raw if kept is None else raw[kept]
        if values.dtype.itemsize == 1:  # ~ reverses the order: a stable radix sort, O(n)
            idx = np.invert(values).argsort(kind="stable")[:k]
        else:
            idx = _top(values.astype(np.int64), min(k, values.size))
        if kept is not None:
            idx = kept[idx]
        scores = dequantize(raw[idx], scale, zero_point)
        return [(i, s) for i, s in zip(idx.tolist(), scores.tolist(), strict=True) if s >= 0.0]

    def _classification(self, candidates: list[tuple[int, float]]) -> Classification:
        first = candidates[0][1] if candidates else 0.0
        second = candidates[1][1] if len(candidates) > 1 else 0.0
        ambiguous = (
            first < self.cfg.ambiguity_threshold or first - second < self.cfg.ambiguity_margin
        )
        # a reported class scores at least min_score, and more than nothing: with allow set,
        # a frame whose allowed classes all score zero reports no class (and no event)
        top = tuple(
            Class(i, self.labels.names[i], s)
            for i, s in candidates[: self.cfg.top_k]
            if s >= self.cfg.min_score and s > 0.0
        )
        return Classification(top, ambiguous)


def _top(scores: npt.NDArray[Any], k: int) -> npt.NDArray[np.intp]:
    """The indices of the ``k`` highest scores, highest first; equal scores (common in a
    quantized output) rank the lower class id first, as argmax does.  That is a stable sort
    of every score cut at ``k``, computed on the few scores above the k-th highest, then
    the k-th's ties by class id (a stable sort of 1000 float scores costs about 50 us, this
    about a fifth, however many scores tie)."""
    # the arrays' own methods: numpy's module functions add a Python layer to each call
    if scores.size <= 4 * k:
        return (-scores).argsort(kind="stable")[:k]
    # numpy's partition slows down tenfold on many equal scores; its (vectorised) sort not
    kth = np.sort(scores)[scores.size - k]
    above = (scores > kth).nonzero()[0]  # fewer than k, ascending class ids
    ranked: npt.NDArray[np.intp] = above[(-scores[above]).argsort(kind="stable")]
    if ranked.size < k:  # then the k-th score's ties, lowest class ids first
        ties = (scores == kth).nonzero()[0][: k - ranked.size]
        ranked = np.concatenate((ranked, ties))
    return ranked


def _matches(name: str, wanted: set[str]) -> bool:
    """A label matches by its full text or any of its comma-separated names."""
    return name in wanted or any(part.strip() in wanted for part in name.split(","))
