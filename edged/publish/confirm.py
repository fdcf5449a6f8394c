"""State verification: a new label becomes the confirmed state only after ``frames``
consecutive classified frames agree on it with a top-1 score of at least ``min_score``.

A flickering scene then gives no flapping state.  With ``frames = 1`` every label above
``min_score`` is confirmed at once (no verification).
"""

from __future__ import annotations

from edged.classify import Classification


class Confirmer:
    def __init__(self, frames: int, min_score: float = 0.0) -> None:
        if frames < 1:
            raise ValueError(f"confirm frames must be >= 1, not {frames}")
        self.frames = frames
        self.min_score = min_score
        self.confirmed: str | None = None
        self._candidate: str | None = None
        self._count = 0

    def update(self, result: Classification) -> bool:
        """Take one frame's classification; True when it changed the confirmed label."""
        top = result.top1
        label = top.label if top is not None and top.score >= self.min_score else None
        if label is None:
            self._candidate, self._count = None, 0
            return False
        if label == self._candidate:
            self._count += 1
        else:
            self._candidate, self._count = label, 1
        if self._count >= self.frames and label != self.confirmed:
            self.confirmed = label
            return True
        return False
