"""TFLite metadata for an image classifier (schema: tflite-support ``metadata_schema.fbs``,
identifier ``M001``), written with the plain ``flatbuffers`` builder.

The ``tflite-support`` package is not used: its last release pins ``protobuf<4``, while the
runtime comes with a newer one.  Field slots are those of ``metadata_schema.fbs`` 1.5.0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

LABELS_NAME = "labels.txt"


class MetadataWriter:
    """Just enough of the metadata schema for an image classifier."""

    CONTENT_FEATURE, CONTENT_IMAGE = 1, 2  # ContentProperties union
    NORMALIZATION = 1  # ProcessUnitOptions union
    RGB = 1  # ColorSpaceType
    TENSOR_AXIS_LABELS = 2  # AssociatedFileType

    def __init__(self) -> None:
        import flatbuffers

        self.b = flatbuffers.Builder(1024)

    def string(self, text: str) -> int:
        return int(self.b.CreateString(text))

    def floats(self, values: Iterable[float]) -> int:
        return int(self.b.CreateNumpyVector(np.asarray(list(values), dtype="<f4")))

    def tables(self, offsets: Sequence[int]) -> int:
        self.b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            self.b.PrependUOffsetTRelative(off)
        return int(self.b.EndVector())

    def table(
        self,
        slots: int,
        offsets: dict[int, int] | None = None,
        bytes_: dict[int, int] | None = None,
    ) -> int:
        self.b.StartObject(slots)
        for slot, off in (offsets or {}).items():
            self.b.PrependUOffsetTRelativeSlot(slot, off, 0)
        for slot, value in (bytes_ or {}).items():
            self.b.PrependUint8Slot(slot, value, 0)
        return int(self.b.EndObject())

    def associated_file(self, name: str, description: str, kind: int) -> int:
        n, d = self.string(name), self.string(description)
        return self.table(5, {0: n, 1: d}, {2: kind})

    def normalization(self, mean: float, std: float) -> int:
        m, s = self.floats([mean]), self.floats([std])
        options = self.table(2, {0: m, 1: s})
        return self.table(2, {1: options}, {0: self.NORMALIZATION})

    def stats(self, low: float, high: float) -> int:
        hi, lo = self.floats([high]), self.floats([low])
        return self.table(2, {0: hi, 1: lo})

    def tensor(
        self,
        name: str,
        description: str,
        content: int,
        process_units: int | None,
        stats: int | None,
        files: int | None,
    ) -> int:
        n, d = self.string(name), self.string(description)
        offsets = {0: n, 1: d, 3: content}
        if process_units is not None:
            offsets[4] = process_units
        if stats is not None:
            offsets[5] = stats
        if files is not None:
            offsets[6] = files
        return self.table(7, offsets)

    def finish(self, root: int) -> bytes:
        self.b.Finish(root, file_identifier=b"M001")
        return bytes(self.b.Output())


@dataclass(frozen=True)
class ClassifierMetadata:
    name: str
    description: str
    input_description: str
    output_description: str
    mean: float
    std: float
    input_range: tuple[float, float]
    author: str
    license: str
    version: str = "1"


def classifier_metadata(meta: ClassifierMetadata) -> bytes:
    """A ``TFLITE_METADATA`` buffer: an RGB image input with its normalization, and a
    probability output whose labels are the associated ``labels.txt``."""
    w = MetadataWriter()
    image_props = w.table(2, bytes_={0: w.RGB})
    image_content = w.table(3, {1: image_props}, {0: w.CONTENT_IMAGE})
    norm = w.tables([w.normalization(meta.mean, meta.std)])
    in_stats = w.stats(*meta.input_range)
    image = w.tensor("image", meta.input_description, image_content, norm, in_stats, None)
    feature_props = w.table(0)
    prob_content = w.table(3, {1: feature_props}, {0: w.CONTENT_FEATURE})
    labels = w.tables(
        [
            w.associated_file(
                LABELS_NAME,
                "Labels for categories that the model can recognize.",
                w.TENSOR_AXIS_LABELS,
            )
        ]
    )
    probability = w.tensor("probability", meta.output_description, prob_content, None, None, labels)
    inputs, outputs = w.tables([image]), w.tables([probability])
    subgraph = w.table(10, {2: inputs, 3: outputs})
    subgraphs = w.tables([subgraph])
    fields = {
        0: w.string(meta.name),
        1: w.string(meta.description),
        2: w.string(meta.version),
        3: subgraphs,
        4: w.string(meta.author),
        5: w.string(meta.license),
        7: w.string("1.0.0"),
    }
    return w.finish(w.table(8, fields))
