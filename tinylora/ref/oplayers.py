"""Frozen layers of the ops issue 11 adds: pooling, ADD, PAD/PADV2, MEAN, CONCATENATION,
QUANTIZE, DEQUANTIZE, LOGISTIC, HARD_SWISH. Each validates its TFLite op (ModelError names the
op, its index and the fix) and runs the op-family reference (:mod:`tinylora.ref.pooling`,
``arith``, ``tensor_ops``, ``activations``), bit-exact with TFLM.

Layers read one or more activation tensors (``Layer.inputs``, tensor indices); constant
operands (paddings, axes, a constant addend) are held by the layer. Arrays carry the batch axis
first; axis numbers in the file count the batch axis too, so they apply unchanged.
"""
from __future__ import annotations

import math

import numpy as np

from tinylora.errors import ModelError
from tinylora.ref import activations, arith, pooling, tensor_ops
from tinylora.ref.layers import INT8_FIX, MAX_ELEMENTS, Layer, QuantParams, _Checker, _quant
from tinylora.ref.qparams import Quant
from tinylora.tflite.reader import Graph, Op, Tensor

NEW_OPS = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "PAD", "PADV2", "MEAN", "CONCATENATION",
           "QUANTIZE", "DEQUANTIZE", "LOGISTIC", "HARD_SWISH")
FLOAT_Q = QuantParams(np.ones(1, np.float32), np.zeros(1, np.int64))  # a float32 end: real value


def _q(qp: QuantParams) -> Quant:
    return Quant(float(qp.scale[0]), int(qp.zero_point[0]))


class Pool2D(Layer):
    def forward(self, x, rounding="double"):
        o = self.options
        fn = pooling.average_pool_2d if self.kind == "AVERAGE_POOL_2D" else pooling.max_pool_2d
        return fn(x, (o["filter_height"], o["filter_width"]), (o["stride_h"], o["stride_w"]),
                  o["padding"], _q(self.output_q), self.activation)


class Add(Layer):
    def run(self, xs, rounding="double"):
        a, b = (list(xs) + [self.options["constant"]])[:2]
        q1, q2 = self.options["input_qs"]
        return arith.add(a, _q(q1), b, _q(q2), _q(self.output_q), self.activation)


class Pad(Layer):
    def forward(self, x, rounding="double"):
        return tensor_ops.pad(x, self.options["paddings"], self.options["pad_value"])


class Mean(Layer):
    def forward(self, x, rounding="double"):
        return arith.mean(x, self.options["axes"], _q(self.input_q), _q(self.output_q),
                          self.options["keep_dims"])


class Concatenation(Layer):
    def run(self, xs, rounding="double"):
        return tensor_ops.concatenation(xs, self.options["axis"])


class Quantize(Layer):
    def forward(self, x, rounding="double"):
        if self.options["from_float"]:
            return tensor_ops.quantize_float(x, _q(self.output_q))
        if "UINT8" in (self.input_dtype, self.output_dtype):
            return tensor_ops.requantize_ends(x, self.input_q, self.output_q, self.output_dtype)
        return tensor_ops.requantize_int8(x, _q(self.input_q), _q(self.output_q))


class Dequantize(Layer):
    def forward(self, x, rounding="double"):
        return tensor_ops.dequantize(x, _q(self.input_q))


class Logistic(Layer):
    def forward(self, x, rounding="double"):
        return activations.logistic(x, _q(self.input_q))


class HardSwish(Layer):
    def forward(self, x, rounding="double"):
        return activations.hard_swish(x, _q(self.input_q), _q(self.output_q))


# --------------------------------------------------------------------------- building


def tensor_io(ck: _Checker, t: Tensor | None, role: str, floats: bool = False,
              uint8: bool = False):
    """(shape without batch, QuantParams, dtype) of an activation tensor; float32 only where
    ``floats`` (a QUANTIZE input or a DEQUANTIZE output: a model's float end), uint8 only
    where ``uint8`` (a QUANTIZE input or output: a model converted with uint8 ends)."""
    ck.require(t is not None, f"its {role} tensor is missing")
    if t.dtype == "INT16":
        ck.fail(f"{role} tensor {t.name!r} has int16 activations (16x8 quantization), which "
                "tinylora does not support", "convert with int8 activations")
    ok = ("INT8",) + (("FLOAT32",) if floats else ()) + (("UINT8",) if uint8 else ())
    ck.require(t.dtype in ok, f"{role} tensor {t.name!r} is {t.dtype}; tinylora runs int8 "
               "activations (float32 or uint8 only at a model's QUANTIZE/DEQUANTIZE ends)",
               INT8_FIX)
    ck.require(len(t.shape) >= 1 and t.shape[0] == 1 and all(d > 0 for d in t.shape),
               f"{role} tensor {t.name!r} has shape {list(t.shape)}; tinylora needs a static shape "
               "with batch 1", "build the Keras Input with batch_size=1")
    ck.require(math.prod(t.shape) <= MAX_ELEMENTS, f"{role} tensor {t.name!r} has "
               f"{math.prod(t.shape)} elements, more than the {MAX_ELEMENTS} tinylora supports")
    if t.dtype == "FLOAT32":
        return tuple(t.shape[1:]), FLOAT_Q, "FLOAT32"
    ck.require(t.quantized, f"{role} tensor {t.name!r} is {t.dtype.lower()} but has no "
               "quantization parameters", INT8_FIX)
    if t.dtype == "UINT8":
        ck.require(t.scale.size == 1 and bool(np.all(np.isfinite(t.scale) & (t.scale > 0)))
                   and t.zero_point.size == 1 and 0 <= int(t.zero_point[0]) <= 255,
                   f"{role} tensor {t.name!r} (uint8) needs one positive scale and a zero "
                   "point in [0, 255]")
        return tuple(t.shape[1:]), QuantParams(t.scale.astype(np.float32),
                                               t.zero_point.astype(np.int64)), "UINT8"
    return tuple(t.shape[1:]), _quant(ck, t, role, per_channel=False), "INT8"


def _const(ck: _Checker, graph: Graph, op: Op, i: int, what: str) -> np.ndarray:
    t = graph.tensor(op.inputs[i], f"op {op.index} {op.name} {what}") if len(op.inputs) > i else None
    ck.require(t is not None and t.data is not None, f"its {what} is not a constant tensor",
               "tinylora needs the shapes fixed in the file")
    return t.data.reshape(t.shape) if t.shape else t.data


def _same_q(a: QuantParams, b: QuantParams) -> bool:
    return bool(np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point))


def _act(ck: _Checker, op: Op, key: str = "activation") -> str:
    act = op.options.get(key, "NONE")
    ck.require(act in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"),
               f"fused activation {act} is not supported", "use NONE, RELU or RELU6")
    return act


def build_new_layer(graph: Graph, op: Op, common: dict, ck: _Checker) -> Layer:
    """The layer of one issue-11 op; ``common`` holds index/name/kind/shapes/quantizations."""
    return _BUILDERS[op.name](ck, graph, op, common)


def _build_pool(ck, graph, op, common):
    o = op.options
    ck.require(len(common["input_shape"]) == 3, "input must be a [1, H, W, C] tensor")
    ck.require(o["padding"] in ("SAME", "VALID"), f"padding {o['padding']} is not supported")
    ck.require(_same_q(common["input_q"], common["output_q"]), "input and output quantization "
               "differ; TFLM's int8 pooling requires them equal", "re-convert the model")
    h, w, c = common["input_shape"]
    try:
        oh, _ = pooling.pool_geometry(h, o["filter_height"], o["stride_h"], o["padding"])
        ow, _ = pooling.pool_geometry(w, o["filter_width"], o["stride_w"], o["padding"])
    except ValueError as e:
        ck.fail(str(e))
    ck.require((oh, ow, c) == common["output_shape"], f"output shape "
               f"{list(common['output_shape'])} does not match the pooling's {[oh, ow, c]}")
    return Pool2D(**common, activation=_act(ck, op))


def _build_add(ck, graph, op, common):
    ck.require(len(op.inputs) == 2, f"has {len(op.inputs)} inputs; ADD takes 2")
    qs, shapes, const = [], [], None
    for i in range(2):
        t = graph.tensor(op.inputs[i], f"op {op.index} ADD input {i}")
        if t is not None and t.data is not None and i == 1:
            ck.require(t.dtype == "INT8" and t.quantized, "its constant operand is not int8")
            const = t.data.reshape(t.shape)
            qs.append(_quant(ck, t, "constant", per_channel=False))
            shapes.append(tuple(t.shape))
            continue
        shape, q, _ = tensor_io(ck, t, f"input {i}")
        qs.append(q)
        shapes.append((1,) + shape)
    try:
        shape = np.broadcast_shapes(shapes[0], shapes[1])
    except ValueError:
        ck.fail(f"input shapes {list(shapes[0])} and {list(shapes[1])} do not broadcast")
    ck.require(tuple(shape) == (1,) + common["output_shape"], f"output shape "
               f"{list(common['output_shape'])} is not the broadcast {list(shape[1:])}")
    try:
        arith.add_params(_q(qs[0]), _q(qs[1]), _q(common["output_q"]))
    except ValueError as e:
        ck.fail(str(e))
    common["options"].update(input_qs=qs, constant=const)
    return Add(**common, activation=_act(ck, op))


def _build_pad(ck, graph, op, common):
    pads = _const(ck, graph, op, 1, "paddings").astype(np.int64)
    rank = len(common["input_shape"]) + 1
    ck.require(pads.shape == (rank, 2) and bool((pads >= 0).all()), f"paddings of shape "
               f"{list(pads.shape)} with values {pads.tolist()}; expected [{rank}, 2], >= 0")
    ck.require(not pads[0].any(), "pads the batch axis", "pad only H, W and C")
    ck.require(_same_q(common["input_q"], common["output_q"]), "input and output quantization "
               "differ; TFLM's int8 PAD requires them equal", "re-convert the model")
    value = int(common["output_q"].zero_point[0])
    if op.name == "PADV2" and len(op.inputs) > 2:
        value = int(_const(ck, graph, op, 2, "constant value").reshape(-1)[0])
    expect = tuple(d + int(b) + int(a) for d, (b, a) in zip(common["input_shape"], pads[1:]))
    ck.require(expect == common["output_shape"], f"output shape {list(common['output_shape'])} "
               f"is not the padded {list(expect)}")
    common["options"].update(paddings=[tuple(p) for p in pads.tolist()], pad_value=value)
    return Pad(**common)


def _build_mean(ck, graph, op, common):
    rank = len(common["input_shape"]) + 1
    axes = sorted({int(a) % rank for a in np.atleast_1d(_const(ck, graph, op, 1, "axes"))})
    ck.require(0 not in axes, "averages over the batch axis", "average over H and W only")
    keep = bool(op.options.get("keep_dims", False))
    full = (1,) + common["input_shape"]
    expect = tuple(1 if i in axes else d for i, d in enumerate(full)) if keep else \
        tuple(d for i, d in enumerate(full) if i not in axes)
    ck.require(expect[1:] == common["output_shape"], f"output shape "
               f"{list(common['output_shape'])} is not the mean's {list(expect[1:])}")
    common["options"].update(axes=tuple(axes), keep_dims=keep)
    return Mean(**common)


def _build_concat(ck, graph, op, common):
    ck.require(op.options.get("activation", "NONE") == "NONE", "has a fused activation",
               "TFLM's int8 CONCATENATION has none: re-convert the model")
    shapes, qs = [], []
    for i in range(len(op.inputs)):
        shape, q, _ = tensor_io(ck, graph.tensor(op.inputs[i], f"op {op.index} input {i}"),
                                f"input {i}")
        shapes.append(shape)
        qs.append(q)
    bad = [i for i, q in enumerate(qs) if not _same_q(q, common["output_q"])]
    ck.require(not bad, f"inputs {bad} are quantized differently from the output (TFLM refuses "
               "such a model)", "insert a QUANTIZE op before those inputs or re-convert")
    rank = len(common["input_shape"]) + 1
    axis = int(op.options.get("axis", 0)) % rank
    ck.require(axis != 0, "concatenates along the batch axis")
    total = sum(s[axis - 1] for s in shapes)
    expect = tuple(total if i == axis - 1 else d for i, d in enumerate(shapes[0]))
    ck.require(expect == common["output_shape"] and all(len(s) == len(expect) for s in shapes),
               f"output shape {list(common['output_shape'])} is not the concatenation's")
    common["options"].update(axis=axis)
    return Concatenation(**common)


def _build_quantize(ck, graph, op, common):
    ends = (common["input_dtype"], common["output_dtype"])
    ck.require(ends in (("FLOAT32", "INT8"), ("INT8", "INT8"), ("UINT8", "INT8"),
                        ("INT8", "UINT8")), f"converts {ends[0]} to {ends[1]}",
               "tinylora quantizes float32 or uint8 to int8, int8 to int8 or uint8")
    common["options"]["from_float"] = common["input_dtype"] == "FLOAT32"
    ck.require(common["input_shape"] == common["output_shape"], "input and output shapes differ")
    return Quantize(**common)


def _build_dequantize(ck, graph, op, common):
    ck.require(common["input_dtype"] == "INT8" and common["output_dtype"] == "FLOAT32",
               "tinylora dequantizes int8 to float32 only")
    ck.require(common["input_shape"] == common["output_shape"], "input and output shapes differ")
    return Dequantize(**common)


def _build_logistic(ck, graph, op, common):
    out = common["output_q"]
    ck.require(float(out.scale[0]) == 1 / 256 and int(out.zero_point[0]) == -128,
               f"output quantization is {out}; TFLM's int8 LOGISTIC writes scale 1/256, zero "
               "point -128", "re-convert the model")
    try:
        activations.logistic_params(_q(common["input_q"]))
    except ValueError as e:
        ck.fail(str(e))
    return Logistic(**common)


def _build_hard_swish(ck, graph, op, common):
    try:
        activations.hard_swish_params(_q(common["input_q"]), _q(common["output_q"]))
    except ValueError as e:
        ck.fail(str(e))
    return HardSwish(**common)


_BUILDERS = {"AVERAGE_POOL_2D": _build_pool, "MAX_POOL_2D": _build_pool, "ADD": _build_add,
             "PAD": _build_pad, "PADV2": _build_pad, "MEAN": _build_mean,
             "CONCATENATION": _build_concat, "QUANTIZE": _build_quantize,
             "DEQUANTIZE": _build_dequantize, "LOGISTIC": _build_logistic,
             "HARD_SWISH": _build_hard_swish}
assert set(_BUILDERS) == set(NEW_OPS)
__all__ = ["NEW_OPS", "FLOAT_Q", "build_new_layer", "tensor_io", "ModelError"]
