"""Frozen int8 layers: each one validates its TFLite op and runs it bit-exactly.

Every kernel follows the same shape as TFLM's reference int8 kernels:
accumulate ``(x - input_zero_point) * w`` in 32 bits (wrapping), add the int32
bias, :func:`~tinylora.ref.quant.requantize` with the per-channel multiplier and
shift, add the output zero point and clamp to the fused activation's range.
All arrays are batched: the leading axis is the sample.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass, field

import numpy as np

from tinylora.errors import ModelError
from tinylora.ref import quant
from tinylora.ref.qparams import fold_weight_signs, quantize_multiplier_signed
from tinylora.ref.softmax import softmax_int8, softmax_params
from tinylora.tflite.reader import Graph, Op, Tensor

#: Largest activation tensor tinylora will run (elements per sample), to refuse absurd files.
MAX_ELEMENTS = 1 << 24
SUPPORTED_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE", "SOFTMAX")
SUPPORTED_ACTIVATIONS = ("NONE", "RELU", "RELU6")


@dataclass
class QuantParams:
    """Affine quantization: real = scale * (q - zero_point); arrays hold one entry per channel."""
    scale: np.ndarray
    zero_point: np.ndarray

    def __repr__(self) -> str:
        if self.scale.size == 1:
            return f"scale={float(self.scale[0]):.6g} zp={int(self.zero_point[0])}"
        return (f"per-channel({self.scale.size}) scale={float(self.scale.min()):.3g}.."
                f"{float(self.scale.max()):.3g}")


@dataclass
class Layer(abc.ABC):
    """One op of the model. ``input_shape``/``output_shape`` exclude the batch dimension."""
    index: int
    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    input_q: QuantParams
    output_q: QuantParams
    activation: str = "NONE"
    weights: np.ndarray | None = None
    weights_q: QuantParams | None = None
    bias: np.ndarray | None = None
    multiplier: np.ndarray | None = None
    shift: np.ndarray | None = None
    act_min: int = -128
    act_max: int = 127
    options: dict = field(default_factory=dict)
    inputs: tuple[int, ...] = ()    # activation tensors read (indices in the .tflite graph)
    output: int = -1                # the tensor written
    input_dtype: str = "INT8"       # "FLOAT32" only at a model's QUANTIZE input
    output_dtype: str = "INT8"      # "FLOAT32" only at a model's DEQUANTIZE output

    @property
    def macs(self) -> int:
        return 0

    def forward(self, x: np.ndarray, rounding: str = "double") -> np.ndarray:
        """int8 (N, *input_shape) -> int8 (N, *output_shape)."""
        return self.run([x], rounding)

    def run(self, xs: list, rounding: str = "double") -> np.ndarray:
        """The op on its activation inputs (one array per tensor of ``inputs``)."""
        return self.forward(xs[0], rounding)

    def _finish(self, acc: np.ndarray, rounding: str) -> np.ndarray:
        acc = quant.wrap_int32(acc if self.bias is None else acc + self.bias)
        return quant.requantize_to_int8(acc, self.multiplier, self.shift,
                                        int(self.output_q.zero_point[0]),
                                        self.act_min, self.act_max, rounding)


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer matmul through float64 BLAS: exact while |sums| < 2^53 (int8 products, depth < 2^37)."""
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


class FullyConnected(Layer):
    @property
    def depth(self) -> int:
        return self.weights.shape[1]

    @property
    def macs(self) -> int:
        return int(np.prod(self.input_shape)) * self.weights.shape[0]

    def forward(self, x, rounding="double"):
        n = x.shape[0]
        rows = x.reshape(-1, self.depth).astype(np.int64) - int(self.input_q.zero_point[0])
        acc = _exact_matmul(rows, self.weights.T.astype(np.int64) - int(self.weights_q.zero_point[0]))
        return self._finish(acc, rounding).reshape((n,) + self.output_shape)


class Conv2D(Layer):
    """CONV_2D (OHWI filter) and DEPTHWISE_CONV_2D ([1,KH,KW,C] filter) share the geometry."""

    @property
    def kernel(self) -> tuple[int, int]:
        return self.weights.shape[1], self.weights.shape[2]

    @property
    def macs(self) -> int:
        oh, ow, oc = self.output_shape
        kh, kw = self.kernel
        per_output = kh * kw * (self.input_shape[2] if self.kind == "CONV_2D" else 1)
        return oh * ow * oc * per_output

    def _patches(self, x: np.ndarray):
        """Yield (kh, kw, window) with window[n, oh, ow, c] = padded input at that tap."""
        o = self.options
        n, h, w, c = x.shape
        oh, ow, _ = self.output_shape
        pad_h = _padding_before(h, self.kernel[0], o["stride_h"], o["dilation_h"], oh)
        pad_w = _padding_before(w, self.kernel[1], o["stride_w"], o["dilation_w"], ow)
        eff_h = (self.kernel[0] - 1) * o["dilation_h"] + 1
        eff_w = (self.kernel[1] - 1) * o["dilation_w"] + 1
        need_h = max((oh - 1) * o["stride_h"] + eff_h, pad_h + h)
        need_w = max((ow - 1) * o["stride_w"] + eff_w, pad_w + w)
        padded = np.zeros((n, need_h, need_w, c), np.int64)  # zero in the offset domain
        padded[:, pad_h:pad_h + h, pad_w:pad_w + w] = x.astype(np.int64) - int(self.input_q.zero_point[0])
        for i in range(self.kernel[0]):
            for j in range(self.kernel[1]):
                r0, c0 = i * o["dilation_h"], j * o["dilation_w"]
                yield i, j, padded[:, r0:r0 + (oh - 1) * o["stride_h"] + 1:o["stride_h"],
                                   c0:c0 + (ow - 1) * o["stride_w"] + 1:o["stride_w"]]

    def forward(self, x, rounding="double"):
        w = self.weights.astype(np.int64)
        if self.kind == "CONV_2D":
            cols = np.concatenate([p for _, _, p in self._patches(x)], axis=-1)  # (n,oh,ow,KH*KW*C)
            acc = _exact_matmul(cols, w.reshape(w.shape[0], -1).T)
        else:
            mult = self.options["depth_multiplier"]
            acc = 0
            for i, j, p in self._patches(x):
                acc = acc + (np.repeat(p, mult, axis=-1) if mult > 1 else p) * w[0, i, j]
        return self._finish(acc, rounding)


class Reshape(Layer):
    def forward(self, x, rounding="double"):
        return x.reshape((x.shape[0],) + self.output_shape)


class Softmax(Layer):
    def forward(self, x, rounding="double"):
        return softmax_int8(x, *self.options["params"])


def _padding_before(size: int, k: int, stride: int, dilation: int, out: int) -> int:
    eff = (k - 1) * dilation + 1
    return max((out - 1) * stride + eff - size, 0) // 2


def _out_size(size: int, k: int, stride: int, dilation: int, padding: str) -> int:
    eff = (k - 1) * dilation + 1
    if padding == "SAME":
        return (size + stride - 1) // stride
    return (size + stride - eff) // stride


# --------------------------------------------------------------------------- building


class _Checker:
    """Raises ModelError messages that name the op, its index and the fix."""

    def __init__(self, op: Op):
        self.op = op

    def fail(self, problem: str, fix: str = "") -> None:
        msg = f"op {self.op.index} {self.op.name}: {problem}"
        raise ModelError(msg + (f"; {fix}" if fix else ""))

    def require(self, cond: bool, problem: str, fix: str = "") -> None:
        if not cond:
            self.fail(problem, fix)


INT8_FIX = ("convert with full-integer int8 quantization (optimizations=[tf.lite.Optimize.DEFAULT], "
            "a representative_dataset, supported_ops=[tf.lite.OpsSet.TFLITE_BUILTINS_INT8], "
            "inference_input_type=tf.int8, inference_output_type=tf.int8)")


def _activation_tensor(ck: _Checker, t: Tensor | None, role: str) -> tuple[tuple[int, ...], QuantParams]:
    ck.require(t is not None, f"its {role} tensor is missing")
    if t.dtype == "INT16":
        ck.fail(f"{role} tensor {t.name!r} has int16 activations (16x8 quantization), which "
                "tinylora does not support", "convert with int8 activations")
    if t.dtype != "INT8":
        ck.fail(f"{role} tensor {t.name!r} is {t.dtype}; tinylora runs int8 activations only", INT8_FIX)
    ck.require(t.quantized, f"{role} tensor {t.name!r} is int8 but has no quantization parameters",
               INT8_FIX)
    ck.require(len(t.shape) >= 1 and t.shape[0] == 1 and all(d > 0 for d in t.shape),
               f"{role} tensor {t.name!r} has shape {list(t.shape)}; tinylora needs a static shape "
               "with batch 1", "build the Keras Input with batch_size=1")
    ck.require(math.prod(t.shape) <= MAX_ELEMENTS,
               f"{role} tensor {t.name!r} has {math.prod(t.shape)} elements, "
               f"more than the {MAX_ELEMENTS} tinylora supports")
    q = _quant(ck, t, role, per_channel=False)
    return tuple(t.shape[1:]), q


def _quant(ck: _Checker, t: Tensor, role: str, per_channel: bool, channels: int = 1) -> QuantParams:
    scale, zp = t.scale, t.zero_point
    if not per_channel:
        ck.require(scale.size == 1, f"{role} tensor {t.name!r} has {scale.size} scales; "
                   "activations need one (per-tensor) scale")
    else:
        ck.require(scale.size in (1, channels), f"{role} tensor {t.name!r} has {scale.size} scales "
                   f"for {channels} channels")
    ok = (scale != 0) if per_channel else (scale > 0)  # weights' signs fold (_fold_signs)
    ck.require(bool(np.all(np.isfinite(scale)) and np.all(ok)),
               f"{role} tensor {t.name!r} has a scale that is not a "
               f"{'nonzero' if per_channel else 'positive'} finite number")
    ck.require(zp.size in (1, scale.size), f"{role} tensor {t.name!r} has {zp.size} zero points "
               f"for {scale.size} scales")
    ck.require(bool(np.all((zp >= -128) & (zp <= 127))),
               f"{role} tensor {t.name!r} has a zero point outside [-128, 127]")
    return QuantParams(scale.astype(np.float32), np.broadcast_to(zp, scale.shape).astype(np.int64))


def _weights(ck: _Checker, t: Tensor | None, shape_rank: int, qdim: int, channels: int):
    ck.require(t is not None and t.data is not None, "its weights are not a constant tensor",
               "tinylora freezes the base model: weights must be constants in the file")
    ck.require(t.dtype == "INT8", f"weights {t.name!r} are {t.dtype}, not int8", INT8_FIX)
    ck.require(len(t.shape) == shape_rank and all(d > 0 for d in t.shape),
               f"weights {t.name!r} have shape {list(t.shape)}, expected rank {shape_rank}")
    ck.require(t.data.size == math.prod(t.shape),
               f"weights {t.name!r} hold {t.data.size} values for shape {list(t.shape)}: corrupt file")
    ck.require(t.quantized, f"weights {t.name!r} have no quantization parameters", INT8_FIX)
    q = _quant(ck, t, "weights", per_channel=True, channels=channels)
    if q.scale.size > 1:
        ck.require(t.quantized_dimension == qdim, f"weights {t.name!r} are quantized along "
                   f"dimension {t.quantized_dimension}; expected {qdim}")
    return t.data.reshape(t.shape), q


def _bias(ck: _Checker, t: Tensor | None, channels: int):
    if t is None:
        return None
    ck.require(t.data is not None, f"bias {t.name!r} is not a constant tensor")
    ck.require(t.dtype == "INT32", f"bias {t.name!r} is {t.dtype}; int8 kernels need int32 bias",
               INT8_FIX)
    ck.require(t.data.size == channels, f"bias {t.name!r} has {t.data.size} values for "
               f"{channels} output channels")
    return t.data.astype(np.int64)


def _requant_constants(ck: _Checker, in_q: QuantParams, w_q: QuantParams, out_q: QuantParams,
                       channels: int):
    ws = np.broadcast_to(w_q.scale, (channels,))
    reals = quant.real_multipliers(in_q.scale[0], ws, out_q.scale[0])
    if (reals < 0).any():
        pairs = [quantize_multiplier_signed(r) for r in reals]
        mult, shift = np.array([m for m, _ in pairs]), np.array([e for _, e in pairs])
    else:
        mult, shift = quant.quantize_multipliers(reals)
    ck.require(bool(np.all(shift <= 30)), "a requantization multiplier is 2^30 or more",
               "the output scale is far smaller than input*weight scale: the file is corrupt")
    return (np.broadcast_to(mult, (channels,)).astype(np.int64),
            np.broadcast_to(shift, (channels,)).astype(np.int64))


def _activation(ck: _Checker, op: Op, out_q: QuantParams) -> tuple[str, int, int]:
    act = op.options.get("activation", "NONE")
    ck.require(act in SUPPORTED_ACTIVATIONS, f"fused activation {act} is not supported",
               f"use one of {', '.join(SUPPORTED_ACTIVATIONS)}")
    lo, hi = quant.activation_range(act, float(out_q.scale[0]), int(out_q.zero_point[0]))
    ck.require(lo <= hi, f"fused {act} has an empty output range for this output quantization")
    return act, lo, hi


def build_layer(graph: Graph, op: Op) -> Layer:
    """Validate one op and return its executable layer (ModelError names what is wrong)."""
    ck = _Checker(op)
    ck.require(op.name in SUPPORTED_OPS, f"operator {op.name} is not a chain op",
               "build other ops with tinylora.ref.graph.build_node")
    ck.require(len(op.inputs) >= 1 and len(op.outputs) == 1,
               f"has {len(op.inputs)} inputs and {len(op.outputs)} outputs")
    inp = graph.tensor(op.inputs[0], f"op {op.index} {op.name} input")
    out = graph.tensor(op.outputs[0], f"op {op.index} {op.name} output")
    in_shape, in_q = _activation_tensor(ck, inp, "input")
    out_shape, out_q = _activation_tensor(ck, out, "output")
    common = dict(index=op.index, name=out.name, kind=op.name, input_shape=in_shape,
                  output_shape=out_shape, input_q=in_q, output_q=out_q, options=dict(op.options))
    builder = {"FULLY_CONNECTED": _build_fc, "CONV_2D": _build_conv,
               "DEPTHWISE_CONV_2D": _build_conv, "RESHAPE": _build_reshape,
               "SOFTMAX": _build_softmax}[op.name]
    return builder(ck, graph, op, common)


def _tensor_at(graph: Graph, op: Op, i: int, what: str):
    return graph.tensor(op.inputs[i], f"op {op.index} {op.name} {what}") if len(op.inputs) > i else None


def _build_fc(ck, graph, op, common):
    ck.require(op.options.get("weights_format", 0) == 0, "shuffled weights format is not supported")
    ck.require(len(op.inputs) >= 2, "has no weights input")
    w_t = _tensor_at(graph, op, 1, "weights")
    ck.require(w_t is not None and len(w_t.shape) == 2, "weights must be a 2-D [out, in] tensor")
    channels, depth = w_t.shape
    weights, w_q = _weights(ck, w_t, 2, 0, channels)
    bias = _bias(ck, _tensor_at(graph, op, 2, "bias"), channels)
    n_in = int(np.prod(common["input_shape"]))
    ck.require(depth > 0 and n_in % depth == 0, f"input of {n_in} values does not split into rows of "
               f"{depth} (the weights' depth)")
    rows = n_in // depth
    n_out = int(np.prod(common["output_shape"]))
    ck.require(n_out == rows * channels, f"output tensor holds {n_out} values; expected "
               f"{rows}x{channels}")
    return _weighted(FullyConnected, ck, op, common, weights, w_q, bias, channels)


def _weighted(cls, ck, op, common, weights, w_q, bias, channels, axis=0) -> Layer:
    """A layer with weights: its fused activation's clamp and its requantization constants."""
    act, lo, hi = _activation(ck, op, common["output_q"])
    weights, scale, zp, bias, signed = fold_weight_signs(weights, w_q.scale, w_q.zero_point,
                                                         bias, channels, axis)
    w_q = QuantParams(scale, zp)
    if signed:
        common["options"]["signed_multipliers"] = True
    mult, shift = _requant_constants(ck, common["input_q"], w_q, common["output_q"], channels)
    return cls(**common, activation=act, weights=weights, weights_q=w_q, bias=bias,
               multiplier=mult, shift=shift, act_min=lo, act_max=hi)


def _build_conv(ck, graph, op, common):
    o = op.options
    for key in ("stride_h", "stride_w", "dilation_h", "dilation_w"):
        ck.require(1 <= o[key] <= 64, f"{key} = {o[key]} is out of range")
    ck.require(o["padding"] in ("SAME", "VALID"), f"padding {o['padding']} is not supported")
    ck.require(len(common["input_shape"]) == 3 and len(common["output_shape"]) == 3,
               "input and output must be [1, H, W, C] tensors")
    h, w, c = common["input_shape"]
    depthwise = op.name == "DEPTHWISE_CONV_2D"
    w_t = _tensor_at(graph, op, 1, "weights")
    ck.require(w_t is not None and len(w_t.shape) == 4, "weights must be a 4-D tensor")
    channels = w_t.shape[3] if depthwise else w_t.shape[0]
    weights, w_q = _weights(ck, w_t, 4, 3 if depthwise else 0, channels)
    if depthwise:
        mult = o["depth_multiplier"]
        ck.require(weights.shape[0] == 1, f"depthwise weights have shape {list(weights.shape)}; "
                   "expected [1, KH, KW, C]")
        ck.require(mult >= 1 and channels == c * mult, f"{channels} output channels for {c} "
                   f"input channels with depth multiplier {mult}")
    else:
        ck.require(weights.shape[3] == c, f"weights expect {weights.shape[3]} input channels, "
                   f"the input has {c}", "grouped convolutions are not supported")
    bias = _bias(ck, _tensor_at(graph, op, 2, "bias"), channels)
    kh, kw = weights.shape[1], weights.shape[2]
    expect = (_out_size(h, kh, o["stride_h"], o["dilation_h"], o["padding"]),
              _out_size(w, kw, o["stride_w"], o["dilation_w"], o["padding"]), channels)
    ck.require(expect == common["output_shape"] and min(expect) > 0,
               f"output shape {list(common['output_shape'])} does not match the {o['padding']} "
               f"convolution's {list(expect)}")
    return _weighted(Conv2D, ck, op, common, weights, w_q, bias, channels, 3 if depthwise else 0)


def _build_reshape(ck, graph, op, common):
    ck.require(int(np.prod(common["input_shape"])) == int(np.prod(common["output_shape"])),
               f"reshapes {list(common['input_shape'])} to {list(common['output_shape'])}: "
               "the element counts differ")
    # TFLM copies the bytes even when the output's quantization differs (it then reads the
    # same values at the output's scale); the trainer refuses such a reshape in its backward
    common["options"]["requantizes"] = not (
        np.array_equal(common["input_q"].scale, common["output_q"].scale)
        and np.array_equal(common["input_q"].zero_point, common["output_q"].zero_point))
    return Reshape(**common)


def _build_softmax(ck, graph, op, common):
    out_q = common["output_q"]
    ck.require(int(out_q.zero_point[0]) == -128 and float(out_q.scale[0]) == 1 / 256,
               f"output quantization is {out_q}; int8 softmax writes scale 1/256, zero point -128")
    ck.require(common["input_shape"] == common["output_shape"], "input and output shapes differ")
    depth = common["input_shape"][-1] if common["input_shape"] else 1
    ck.require(depth < 512, f"softmax over {depth} values: TFLM's int8 softmax overflows its "
               "Q12 sum of exponentials at 512 (the interpreter aborts)",
               "keep classifiers under 512 classes or leave the softmax off the model")
    beta = float(op.options.get("beta", 0.0))
    ck.require(np.isfinite(beta) and beta > 0, f"beta = {beta} must be a positive number")
    try:
        params = softmax_params(float(common["input_q"].scale[0]), beta)
    except ValueError as e:
        ck.fail(f"cannot quantize beta*input_scale ({e})")
    common["options"]["params"] = params
    return Softmax(**common)
