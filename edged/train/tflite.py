"""Read and write TFLite classifiers with the runtime's own schema module (object API).

A base model is a full-integer image classifier whose output is produced by a final
``FULLY_CONNECTED`` layer, optionally followed by ``SOFTMAX``.  From it this module derives:

* the feature model: the same graph whose output is the classifier's input tensor;
* a head model: just the classifier (features in, probabilities out), to score a trained
  head with the runtime's own int8 kernels;
* the output model: the base graph with the classifier replaced by a trained one, its
  labels embedded as TFLite metadata plus an appended zip, like the bundled model.

Nothing here patches bytes: models are unpacked to ``ModelT``, edited and packed again.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edged.infer.flatbuf import input_normalization

LABELS_NAME = "labels.txt"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
METADATA_NAME = b"TFLITE_METADATA"


class BaseModelError(ValueError):
    """A base model that ``edged train`` cannot build on."""


def schema() -> Any:
    """The runtime's generated schema module (object API).  ai-edge-litert ships it;
    tflite-runtime 2.14, the legacy runtime, does not."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:
        raise BaseModelError(
            "edged train reads and writes models with ai-edge-litert's schema module: "
            f"install ai-edge-litert (pip install ai-edge-litert) ({exc})"
        ) from exc
    return schema_py_generated


def read_model(data: bytes) -> Any:
    """Unpack a ``.tflite`` flatbuffer into a mutable ``ModelT``."""
    s = schema()
    return s.ModelT.InitFromPackedBuf(bytearray(data), 0)


def write_model(model: Any) -> bytes:
    """Pack a ``ModelT``; every buffer's data starts on a 16-byte boundary."""
    import flatbuffers

    class AlignedBuilder(flatbuffers.Builder):  # type: ignore[misc]
        head: int

        def CreateNumpyVector(self, x: npt.NDArray[Any]) -> int:  # the flatbuffers method
            if x.dtype != np.uint8 or x.ndim != 1:
                return int(super().CreateNumpyVector(x))
            self.StartVector(1, x.size, 16)
            payload = x.tobytes()
            self.head = self.head - len(payload)
            self.Bytes[self.head : self.head + len(payload)] = payload
            self.vectorNumElems = x.size
            return int(self.EndVector())

    builder = AlignedBuilder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _op_name(model: Any, op: Any) -> str:
    s = schema()
    code = model.operatorCodes[op.opcodeIndex]
    value = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
    for name, v in vars(s.BuiltinOperator).items():
        if not name.startswith("_") and v == value:
            return str(name)
    return f"op{value}"


def _type_name(value: int) -> str:
    for name, v in vars(schema().TensorType).items():
        if not name.startswith("_") and v == value:
            return str(name)
    return str(value)


def _data(model: Any, tensor: Any, dtype: Any) -> npt.NDArray[Any]:
    raw = model.buffers[tensor.buffer].data
    if raw is None:
        return np.zeros(0, dtype=dtype)
    return np.frombuffer(np.asarray(raw, dtype=np.uint8).tobytes(), dtype=dtype)


def _bytes(values: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    little = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<"))
    return np.frombuffer(little.tobytes(), dtype=np.uint8).copy()


def _quant(model: Any, scales: Iterable[float], zero_points: Iterable[int], dim: int = 0) -> Any:
    q = schema().QuantizationParametersT()
    q.scale = [float(s) for s in scales]
    q.zeroPoint = [int(z) for z in zero_points]
    q.quantizedDimension = dim
    return q


@dataclass(frozen=True)
class Classifier:
    """Where a base model's final classifier is, and what its input looks like."""

    fc_op: int
    softmax_op: int | None
    features: int  # tensor index: the FULLY_CONNECTED input
    weights: int
    bias: int
    logits: int
    output: int
    feature_size: int
    feature_scale: float
    feature_zero_point: int
    base_classes: int

    def dequantize(self, q: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        zp = np.float32(self.feature_zero_point)
        return (q.astype(np.float32) - zp) * np.float32(self.feature_scale)


def find_classifier(model: Any, name: str = "model") -> Classifier:
    """The final classifier of a full-integer image classifier, or :class:`BaseModelError`
    saying what the model has instead."""
    s = schema()
    if len(model.subgraphs) != 1:
        raise BaseModelError(f"{name} has {len(model.subgraphs)} subgraphs; expected one")
    g = model.subgraphs[0]
    if len(g.outputs) != 1:
        raise BaseModelError(
            f"{name} has {len(g.outputs)} outputs; a classifier has one [1, classes] output"
        )
    producer = {o: i for i, op in enumerate(g.operators) for o in op.outputs}
    out = int(g.outputs[0])
    out_shape = list(g.tensors[out].shape)
    if out not in producer:
        raise BaseModelError(f"{name}: no operator produces the output tensor")
    last = producer[out]
    softmax: int | None = None
    fc = last
    if _op_name(model, g.operators[last]) == "SOFTMAX":
        softmax = last
        fc_input = int(g.operators[last].inputs[0])
        fc = producer.get(fc_input, -1)
    found = _op_name(model, g.operators[fc]) if fc >= 0 else "nothing"
    if found != "FULLY_CONNECTED":
        what = _op_name(model, g.operators[last])
        raise BaseModelError(
            f"{name} has no recognisable final classifier: its output {out_shape} comes from "
            f"{what}{' after ' + found if softmax is not None else ''}; expected "
            "FULLY_CONNECTED, optionally followed by SOFTMAX, producing [1, classes]"
        )
    op = g.operators[fc]
    if len(op.inputs) < 3 or op.inputs[2] < 0:
        raise BaseModelError(f"{name}: the final FULLY_CONNECTED layer has no bias")
    feats, weights, bias = (int(i) for i in op.inputs[:3])
    logits = int(op.outputs[0])
    wt = g.tensors[weights]
    ft = g.tensors[feats]
    if len(out_shape) != 2 or out_shape[0] != 1 or out_shape[1] < 2:
        raise BaseModelError(f"{name}: output shape {out_shape} is not a class vector [1, classes]")
    if model.buffers[wt.buffer].data is None or len(list(wt.shape)) != 2:
        raise BaseModelError(f"{name}: the final layer's weights are not a constant matrix")
    int8 = s.TensorType.INT8
    if ft.type != int8 or wt.type != int8 or g.tensors[out].type != int8:
        raise BaseModelError(
            f"{name} is not a full-integer model (features {_type_name(ft.type)}, weights "
            f"{_type_name(wt.type)}, output {_type_name(g.tensors[out].type)}); "
            "edged train needs an int8 base like the bundled model"
        )
    fq = ft.quantization
    if fq is None or fq.scale is None or len(fq.scale) != 1:
        raise BaseModelError(f"{name}: the classifier's input tensor is not quantized per tensor")
    size = int(ft.shape[-1])
    if int(wt.shape[1]) != size:
        raise BaseModelError(f"{name}: weights {list(wt.shape)} do not match features {size}")
    return Classifier(
        fc_op=fc,
        softmax_op=softmax,
        features=feats,
        weights=weights,
        bias=bias,
        logits=logits,
        output=out,
        feature_size=size,
        feature_scale=float(fq.scale[0]),
        feature_zero_point=int(fq.zeroPoint[0]) if fq.zeroPoint is not None else 0,
        base_classes=int(wt.shape[0]),
    )


def drop_unused(model: Any) -> None:
    """Remove the tensors, buffers and operator codes that no operator uses any more."""
    for graph_index, graph in enumerate(model.subgraphs):
        used = set(graph.inputs) | set(graph.outputs)
        for op in graph.operators:
            used |= {i for i in op.inputs if i >= 0} | set(op.outputs)
            used |= set(op.intermediates if op.intermediates is not None else [])
        keep = sorted(used)
        remap = {old: new for new, old in enumerate(keep)}
        kept_buffers = {graph.tensors[i].buffer for i in keep}
        for i, tensor in enumerate(graph.tensors):
            if i not in remap and tensor.buffer not in kept_buffers and tensor.buffer:
                model.buffers[tensor.buffer].data = None
        graph.tensors = [graph.tensors[i] for i in keep]
        graph.inputs = [remap[i] for i in graph.inputs]
        graph.outputs = [remap[i] for i in graph.outputs]
        for op in graph.operators:
            op.inputs = [remap[i] if i >= 0 else i for i in op.inputs]
            op.outputs = [remap[i] for i in op.outputs]
            if op.intermediates is not None and len(op.intermediates):
                op.intermediates = [remap[i] for i in op.intermediates]
        for sig in model.signatureDefs or []:
            if sig.subgraphIndex == graph_index:
                for item in list(sig.inputs or []) + list(sig.outputs or []):
                    item.tensorIndex = remap[item.tensorIndex]
    used_codes = sorted({op.opcodeIndex for g in model.subgraphs for op in g.operators})
    code_remap = {old: new for new, old in enumerate(used_codes)}
    model.operatorCodes = [model.operatorCodes[i] for i in used_codes]
    for graph in model.subgraphs:
        for op in graph.operators:
            op.opcodeIndex = code_remap[op.opcodeIndex]
    _compact_buffers(model)


def _compact_buffers(model: Any) -> None:
    """Drop the empty buffers: every tensor without data points at buffer 0 (the empty
    sentinel), the others are renumbered in order."""
    new_index = [0] * len(model.buffers)
    buffers = [schema().BufferT()]
    for k, buffer in enumerate(model.buffers):
        if buffer.data is not None or buffer.size:
            new_index[k] = len(buffers)
            buffers.append(buffer)
    model.buffers = buffers
    for graph in model.subgraphs or []:
        for tensor in graph.tensors or []:
            tensor.buffer = new_index[tensor.buffer]
    for entry in model.metadata or []:
        entry.buffer = new_index[entry.buffer]


@dataclass(frozen=True)
class QuantizedHead:
    """A trained classifier layer in the base's integer form."""

    weights: npt.NDArray[np.int8]  # [classes, features], symmetric per output channel
    weight_scales: npt.NDArray[np.float32]  # [classes]
    bias: npt.NDArray[np.int32]  # [classes], scale = feature_scale * weight_scale
    logit_scale: float
    logit_zero_point: int

    @property
    def classes(self) -> int:
        return int(self.weights.shape[0])


def _set_shape(tensor: Any, shape: Sequence[int]) -> None:
    tensor.shape = list(shape)
    if tensor.shapeSignature is not None and len(tensor.shapeSignature):
        sig = list(tensor.shapeSignature)
        tensor.shapeSignature = [sig[i] if sig[i] < 0 else shape[i] for i in range(len(shape))]


def _install_head(model: Any, c: Classifier, head: QuantizedHead) -> None:
    g = model.subgraphs[0]
    n = head.classes
    s = schema()
    wt, bt = g.tensors[c.weights], g.tensors[c.bias]
    # fresh buffers: the base's may be shared with other tensors
    for tensor, values in ((wt, head.weights), (bt, head.bias)):
        buf = s.BufferT()
        buf.data = _bytes(values.reshape(-1))
        model.buffers.append(buf)
        tensor.buffer = len(model.buffers) - 1
    _set_shape(wt, [n, c.feature_size])
    wt.quantization = _quant(model, head.weight_scales, [0] * n, 0)
    _set_shape(bt, [n])
    bt.type = s.TensorType.INT32
    bt.quantization = _quant(
        model, [c.feature_scale * float(w) for w in head.weight_scales], [0] * n, 0
    )
    lt = g.tensors[c.logits]
    _set_shape(lt, [1, n])
    lt.quantization = _quant(model, [head.logit_scale], [head.logit_zero_point])
    if c.softmax_op is not None:
        _set_shape(g.tensors[c.output], [1, n])


class BaseModel:
    """A base classifier: its bytes, its ``ModelT`` and its final classifier."""

    def __init__(self, data: bytes, name: str = "base model") -> None:
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise BaseModelError(f"{name} is not a TFLite model (no 'TFL3' identifier)")
        self.data = data
        self.name = name
        try:
            model = read_model(data)
        except Exception as exc:  # a corrupt flatbuffer fails anywhere in the generated code
            raise BaseModelError(f"{name} is truncated or corrupt: {exc}") from exc
        self.classifier = find_classifier(model, name)
        self.normalization = self._normalization(model)

    def _fresh(self) -> Any:
        return read_model(self.data)

    @staticmethod
    def _normalization(model: Any) -> tuple[float, float] | None:
        for entry in model.metadata or []:
            if entry.name == METADATA_NAME:
                raw = model.buffers[entry.buffer].data
                if raw is not None:
                    return input_normalization(np.asarray(raw, dtype=np.uint8).tobytes())
        return None

    def feature_model(self) -> bytes:
        """The base graph up to the classifier's input: its output is the feature vector.
        The input and its metadata (normalization) are unchanged."""
        model = self._fresh()
        c = self.classifier
        g = model.subgraphs[0]
        drop = {c.fc_op} | ({c.softmax_op} if c.softmax_op is not None else set())
        g.operators = [op for i, op in enumerate(g.operators) if i not in drop]
        g.outputs = [c.features]
        model.signatureDefs = []
        drop_unused(model)
        return write_model(model)

    def head_model(self, head: QuantizedHead) -> bytes:
        """Only the classifier: int8 features in, the output (softmax) out."""
        model = self._fresh()
        c = self.classifier
        g = model.subgraphs[0]
        _install_head(model, c, head)
        keep = [c.fc_op] + ([c.softmax_op] if c.softmax_op is not None else [])
        g.operators = [g.operators[i] for i in keep]
        g.inputs = [c.features]
        g.outputs = [c.output]
        model.signatureDefs = []
        model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME]
        drop_unused(model)
        return write_model(model)

    def with_head(
        self, head: QuantizedHead, labels: Sequence[str], metadata: bytes | None = None
    ) -> bytes:
        """The base with its classifier replaced, labels embedded like the bundled model."""
        model = self._fresh()
        _install_head(model, self.classifier, head)
        s = schema()
        model.metadata = [m for m in (model.metadata or []) if m.name != METADATA_NAME]
        if metadata is not None:
            buf = s.BufferT()
            buf.data = np.frombuffer(metadata, dtype=np.uint8).copy()
            model.buffers.append(buf)
            entry = s.MetadataT()
            entry.name = METADATA_NAME
            entry.buffer = len(model.buffers) - 1
            model.metadata.append(entry)
        drop_unused(model)
        return append_labels(write_model(model), labels)


def labels_text(labels: Sequence[str]) -> str:
    return "".join(f"{label}\n" for label in labels)


def append_labels(data: bytes, labels: Sequence[str]) -> bytes:
    """Append the zip holding ``labels.txt`` that TFLite metadata associates with the output."""
    out = io.BytesIO(data)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
        info = zipfile.ZipInfo(LABELS_NAME, date_time=ZIP_DATE)
        info.external_attr = 0o644 << 16
        zf.writestr(info, labels_text(labels))
    return out.getvalue()


def op_names(data: bytes) -> list[str]:
    """The operators of a model's first subgraph, in order (for checks and tests)."""
    model = read_model(data)
    return [_op_name(model, op) for op in model.subgraphs[0].operators]
