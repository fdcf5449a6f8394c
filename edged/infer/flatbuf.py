"""A minimal, bounds-checked FlatBuffers reader: just enough of the TFLite model schema and
of the TFLite metadata schema to find custom operators, embedded metadata and normalization.

Field ids follow tensorflow/lite/schema/schema.fbs and
tensorflow_lite_support/metadata/metadata_schema.fbs.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class FlatbufferError(ValueError):
    """The bytes are not a well-formed flatbuffer (truncated or corrupt)."""


@dataclass(frozen=True)
class Table:
    buf: bytes
    pos: int

    def _u32(self, at: int) -> int:
        if at < 0 or at + 4 > len(self.buf):
            raise FlatbufferError(f"offset {at} is outside the {len(self.buf)}-byte buffer")
        return int(struct.unpack_from("<I", self.buf, at)[0])

    def _field(self, field_id: int) -> int | None:
        buf = self.buf
        if self.pos + 4 > len(buf):
            raise FlatbufferError("table outside the buffer")
        vtable = self.pos - struct.unpack_from("<i", buf, self.pos)[0]
        if vtable < 0 or vtable + 4 > len(buf):
            raise FlatbufferError("vtable outside the buffer")
        vt_size = struct.unpack_from("<H", buf, vtable)[0]
        slot = 4 + 2 * field_id
        if slot + 2 > vt_size:
            return None
        off = int(struct.unpack_from("<H", buf, vtable + slot)[0])
        return self.pos + off if off else None

    def scalar(self, field_id: int, fmt: str, default: int | float = 0) -> int | float:
        at = self._field(field_id)
        if at is None:
            return default
        if at + struct.calcsize(fmt) > len(self.buf):
            raise FlatbufferError("scalar outside the buffer")
        value: int | float = struct.unpack_from("<" + fmt, self.buf, at)[0]
        return value

    def _indirect(self, field_id: int) -> int | None:
        at = self._field(field_id)
        return None if at is None else at + self._u32(at)

    def table(self, field_id: int) -> Table | None:
        at = self._indirect(field_id)
        return None if at is None else Table(self.buf, at)

    def string(self, field_id: int) -> str | None:
        at = self._indirect(field_id)
        if at is None:
            return None
        n = self._u32(at)
        if at + 4 + n > len(self.buf):
            raise FlatbufferError("string outside the buffer")
        return self.buf[at + 4 : at + 4 + n].decode("utf-8", "replace")

    def _vector(self, field_id: int, elem: int) -> tuple[int, int]:
        at = self._indirect(field_id)
        if at is None:
            return 0, 0
        n = self._u32(at)
        if at + 4 + n * elem > len(self.buf):
            raise FlatbufferError("vector outside the buffer")
        return at + 4, n

    def tables(self, field_id: int) -> list[Table]:
        start, n = self._vector(field_id, 4)
        return [Table(self.buf, start + 4 * i + self._u32(start + 4 * i)) for i in range(n)]

    def floats(self, field_id: int) -> list[float]:
        start, n = self._vector(field_id, 4)
        return [float(x) for x in struct.unpack_from(f"<{n}f", self.buf, start)]

    def ints(self, field_id: int) -> list[int]:
        start, n = self._vector(field_id, 4)
        return [int(x) for x in struct.unpack_from(f"<{n}i", self.buf, start)]

    def bytes_(self, field_id: int) -> bytes:
        start, n = self._vector(field_id, 1)
        return self.buf[start : start + n]


def root(buf: bytes, identifier: bytes | None = None) -> Table:
    if len(buf) < 8:
        raise FlatbufferError(f"only {len(buf)} bytes")
    if identifier is not None and buf[4:8] != identifier:
        raise FlatbufferError(f"file identifier {buf[4:8]!r}, expected {identifier!r}")
    return Table(buf, int(struct.unpack_from("<I", buf, 0)[0]))


# tflite schema: Model fields
MODEL_OPERATOR_CODES, MODEL_SUBGRAPHS, MODEL_BUFFERS, MODEL_METADATA = 1, 2, 4, 6
OPCODE_CUSTOM_CODE = 1
METADATA_NAME, METADATA_BUFFER = 0, 1
BUFFER_DATA, BUFFER_OFFSET, BUFFER_SIZE = 0, 1, 2


SUBGRAPH_TENSORS, SUBGRAPH_INPUTS = 0, 1
TENSOR_SHAPE, TENSOR_TYPE = 0, 1
TENSOR_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 9: "int8"}


def input_tensor(model: Table) -> tuple[list[int], str]:
    """Shape and element type of the first subgraph's first input."""
    subgraphs = model.tables(MODEL_SUBGRAPHS)
    if not subgraphs:
        raise FlatbufferError("no subgraph")
    tensors, inputs = subgraphs[0].tables(SUBGRAPH_TENSORS), subgraphs[0].ints(SUBGRAPH_INPUTS)
    if not inputs or not 0 <= inputs[0] < len(tensors):
        raise FlatbufferError("no input tensor")
    tensor = tensors[inputs[0]]
    kind = int(tensor.scalar(TENSOR_TYPE, "b"))
    return tensor.ints(TENSOR_SHAPE), TENSOR_TYPES.get(kind, f"type {kind}")


def custom_ops(model: Table) -> list[str]:
    return [c for t in model.tables(MODEL_OPERATOR_CODES) if (c := t.string(OPCODE_CUSTOM_CODE))]


def metadata_buffer(model: Table, name: str) -> bytes | None:
    """The bytes of the model buffer that the metadata entry ``name`` points at."""
    for entry in model.tables(MODEL_METADATA):
        if entry.string(METADATA_NAME) != name:
            continue
        index = int(entry.scalar(METADATA_BUFFER, "I"))
        buffers = model.tables(MODEL_BUFFERS)
        if index >= len(buffers):
            raise FlatbufferError(f"metadata buffer {index} does not exist")
        buffer = buffers[index]
        data = buffer.bytes_(BUFFER_DATA)
        if data:
            return data
        offset, size = int(buffer.scalar(BUFFER_OFFSET, "Q")), int(buffer.scalar(BUFFER_SIZE, "Q"))
        if offset and offset + size <= len(model.buf):
            return model.buf[offset : offset + size]
        return None
    return None


# metadata schema: ModelMetadata.subgraph_metadata(3) -> SubGraphMetadata.input_tensor_metadata(2)
# -> TensorMetadata.process_units(4) -> ProcessUnit{options_type(0), options(1)}
# -> NormalizationOptions{mean(0), std(1)} (union tag 1)
_NORMALIZATION_OPTIONS = 1


def input_normalization(meta: bytes) -> tuple[float, float] | None:
    """(mean, std) of the first input's NormalizationOptions, when the metadata has them."""
    top = root(meta, b"M001")
    for subgraph in top.tables(3):
        for tensor in subgraph.tables(2)[:1]:
            for unit in tensor.tables(4):
                if int(unit.scalar(0, "B")) != _NORMALIZATION_OPTIONS:
                    continue
                options = unit.table(1)
                if options is None:
                    continue
                mean, std = options.floats(0), options.floats(1)
                if mean and std:
                    return mean[0], std[0]
    return None
