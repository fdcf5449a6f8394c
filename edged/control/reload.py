"""Loading a model beside the running one and proving it works before the swap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from edged.classify import Classification
from edged.classify.topk import dequantize
from edged.config import ClassifyConfig, ModelConfig
from edged.control.request import CommandError
from edged.engine import Engine, open_engine
from edged.infer.model import ModelError
from edged.preprocess.image import ImageError, load_image

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def test_image() -> npt.NDArray[np.uint8]:
    """A bundled photo, for when no frame has been captured yet."""
    return load_image(sorted(SAMPLES.glob("*.jpg"))[0])


def load_checked(
    model: ModelConfig, classify: ClassifyConfig, image: npt.NDArray[np.uint8] | None
) -> tuple[Engine, Classification]:
    """Open ``model`` and classify ``image`` (or a bundled photo) with it; CommandError with
    the reason when it cannot load or gives no usable scores.  The caller owns the engine."""
    try:
        engine = open_engine(model, classify)
    except ModelError as exc:
        raise CommandError(f"model not loaded, the running model stays: {exc}") from None
    except (OSError, RuntimeError, ValueError) as exc:
        raise CommandError(
            f"model {model.path!r} not loaded, the running model stays: {exc}"
        ) from None
    try:
        frame = image if image is not None else test_image()
        tensor = engine.preprocess(frame)
        raw, out, _backend, _ms = engine.backend.infer(tensor)
        scores = dequantize(raw, out.scale, out.zero_point)
        if not np.isfinite(scores).all():
            raise CommandError(
                f"model {engine.model.name} gives non-finite scores on a test frame; "
                "the running model stays"
            )
        result = engine.classifier(raw, out.scale, out.zero_point)
    except CommandError:
        engine.close()
        raise
    except (ImageError, ModelError, OSError, RuntimeError, ValueError) as exc:
        engine.close()
        raise CommandError(
            f"model {engine.model.name} failed on a test frame, the running model stays: {exc}"
        ) from None
    return engine, result
