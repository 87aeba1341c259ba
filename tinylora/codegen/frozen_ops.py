"""The calls of issue 11's ops (``firmware/include/tl_ops.h``) for the generated forward.

:func:`op_step` turns one frozen layer of those ops into a step dict that
``templates/c/frozen_ops.j2`` prints: the call, its parameter struct (values computed here by
the same ``*_params`` functions the numpy reference runs), its dims and, where the op has
constant operands (an ADD's constant addend, a CONCATENATION's axis sizes), the const arrays.
Every op's ``form`` names the shape of its call:

``pool``     ``call(ctx, &params, &input_dims, src, &output_dims, dst)``  (pooling: ``ctx`` the
             library's kernel scratch, a ``tl_context``, or NULL)
``tensor``   ``call(&params, &input_dims, src, &output_dims, dst)``  (PAD)
``add``      ``tl_add_s8(&params, &input_dims, src[0], &input2_dims, src[1], &output_dims, dst)``
``mean``     ``tl_mean_s8(&params, &input_dims, src, dst)``
``concat``   ``tl_concat_s8(&params, inputs, dst)`` with ``inputs = {src...}``
``count``    ``call(&params, count, src, dst)``  (QUANTIZE, DEQUANTIZE, LOGISTIC, HARD_SWISH)
``copy``     ``tl_reshape_s8(count, src, dst)``  (a RESHAPE that must move its bytes)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinylora.codegen import c_array_rows, c_comment
from tinylora.errors import ModelError
from tinylora.ref import activations, arith, pooling, tensor_ops
from tinylora.ref.qparams import Quant
from tinylora.ref.quant import activation_range

__all__ = ["OPS", "op_step", "dims4"]

#: ops :func:`op_step` generates (besides the FC / conv / softmax of tinylora.codegen.frozen)
OPS = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "PAD", "PADV2", "MEAN", "CONCATENATION",
       "QUANTIZE", "DEQUANTIZE", "LOGISTIC", "HARD_SWISH", "RESHAPE")


@dataclass
class _Array:
    name: str
    ctype: str
    values: np.ndarray
    comment: str

    @property
    def size(self) -> int:
        return int(self.values.size)

    def context(self) -> dict:
        return {"name": self.name, "ctype": self.ctype, "size": self.size,
                "rows": c_array_rows(self.values), "comment": c_comment(self.comment)}


def dims4(shape_with_batch) -> dict:
    """An NHWC ``tl_dims`` initializer of a tensor shape (batch first), 1s on the left."""
    full = tuple(int(d) for d in shape_with_batch)
    if len(full) > 4:
        raise ModelError(f"a tensor of shape {list(full)} has more than 4 dimensions; the C "
                         "kernels take at most 4 (N, H, W, C)")
    n, h, w, c = (1,) * (4 - len(full)) + full
    return {"n": n, "h": h, "w": w, "c": c}


def _q(qp) -> Quant:
    return Quant(float(qp.scale[0]), int(qp.zero_point[0]))


def _c_float(v: float) -> str:
    """A float32 value as an exact C literal (hex float)."""
    return f"{float(np.float32(v)).hex()}f"


def _act(layer) -> tuple[int, int]:
    q = _q(layer.output_q)
    return activation_range(layer.activation, q.scale, q.zero_point)


def _pool(layer, shapes, arrays, tag) -> dict:
    o = layer.options
    h, w, _ = layer.input_shape
    _, pad_h = pooling.pool_geometry(h, o["filter_height"], o["stride_h"], o["padding"])
    _, pad_w = pooling.pool_geometry(w, o["filter_width"], o["stride_w"], o["padding"])
    lo, hi = _act(layer)
    call = "tl_avg_pool_s8" if layer.kind == "AVERAGE_POOL_2D" else "tl_max_pool_s8"
    params = {"stride_h": o["stride_h"], "stride_w": o["stride_w"],
              "filter_h": o["filter_height"], "filter_w": o["filter_width"],
              "pad_h": pad_h, "pad_w": pad_w, "act_min": lo, "act_max": hi}
    return {"form": "pool", "call": call, "params_type": "tl_pool_params", "params": params}


def _pad(layer, shapes, arrays, tag) -> dict:
    pads = [(0, 0)] * (4 - len(layer.options["paddings"])) + list(layer.options["paddings"])
    params = {"before_n": pads[0][0], "before_h": pads[1][0], "before_w": pads[2][0],
              "before_c": pads[3][0], "pad_value": layer.options["pad_value"]}
    return {"form": "tensor", "call": "tl_pad_s8", "params_type": "tl_pad_params",
            "params": params}


def _add(layer, shapes, arrays, tag) -> dict:
    q1, q2 = (_q(q) for q in layer.options["input_qs"])
    qo = _q(layer.output_q)
    p = arith.add_params(q1, q2, qo)
    lo, hi = _act(layer)
    params = {"input1_offset": -q1.zero_point, "input1_multiplier": p.input1_multiplier,
              "input1_shift": p.input1_shift, "input2_offset": -q2.zero_point,
              "input2_multiplier": p.input2_multiplier, "input2_shift": p.input2_shift,
              "left_shift": p.left_shift, "output_offset": qo.zero_point,
              "output_multiplier": p.output_multiplier, "output_shift": p.output_shift,
              "act_min": lo, "act_max": hi}
    step = {"form": "add", "call": "tl_add_s8", "params_type": "tl_add_params", "params": params}
    const = layer.options.get("constant")
    if len(layer.inputs) == 1 and const is not None:
        name = f"{tag}_addend"
        arrays.append(_Array(name, "int8_t", np.asarray(const, np.int64),
                             f"ADD constant operand {list(const.shape)}"))
        step.update(constant=name, input2_dims=dims4(const.shape))
    else:
        step.update(constant=None, input2_dims=dims4((1,) + shapes[layer.inputs[1]]))
    return step


def _mean(layer, shapes, arrays, tag) -> dict:
    if tuple(layer.options["axes"]) != (1, 2) or len(layer.input_shape) != 3:
        raise ModelError(f"op {layer.index} MEAN over axes {list(layer.options['axes'])} of a "
                         f"{list(layer.input_shape)} tensor: the C kernel averages over H and W "
                         "of an [H, W, C] tensor only (global average pooling)")
    h, w, _ = layer.input_shape
    q_in, q_out = _q(layer.input_q), _q(layer.output_q)
    m, e = arith.mean_params(q_in, q_out, h * w)
    params = {"input_offset": -q_in.zero_point, "output_offset": q_out.zero_point,
              "multiplier": m, "shift": e}
    return {"form": "mean", "call": "tl_mean_s8", "params_type": "tl_mean_params",
            "params": params}


def _concat(layer, shapes, arrays, tag) -> dict:
    axis = int(layer.options["axis"])
    full = (1,) + tuple(layer.output_shape)
    sizes = [((1,) + shapes[t])[axis] for t in layer.inputs]
    name = f"{tag}_axis_sizes"
    arrays.append(_Array(name, "int32_t", np.asarray(sizes, np.int64),
                         f"CONCATENATION sizes along axis {axis}"))
    params = {"num_inputs": len(sizes), "axis_size": name,
              "outer": int(np.prod(full[:axis])), "inner": int(np.prod(full[axis + 1:]))}
    return {"form": "concat", "call": "tl_concat_s8", "params_type": "tl_concat_params",
            "params": params}


def _elementwise(layer, shapes, arrays, tag) -> dict:
    kind = layer.kind
    uint8_end = "UINT8" in (layer.input_dtype, layer.output_dtype)
    q_in = None if uint8_end or layer.input_dtype == "FLOAT32" else _q(layer.input_q)
    q_out = None if uint8_end or layer.output_dtype == "FLOAT32" else _q(layer.output_q)
    if kind == "QUANTIZE" and layer.options["from_float"]:
        call, ptype = "tl_quantize_f32_s8", "tl_float_quant"
        params = {"scale": _c_float(q_out.scale), "zero_point": q_out.zero_point}
    elif kind == "DEQUANTIZE":
        call, ptype = "tl_dequantize_s8_f32", "tl_float_quant"
        params = {"scale": _c_float(q_in.scale), "zero_point": q_in.zero_point}
    elif kind == "QUANTIZE":   # int8 -> int8, or a uint8 end (its zero point in [0, 255])
        z_in, z_out = int(layer.input_q.zero_point[0]), int(layer.output_q.zero_point[0])
        m, e = tensor_ops.ends_params(layer.input_q, layer.output_q)
        call = {"UINT8": "tl_quantize_u8_s8"}.get(layer.input_dtype, "tl_quantize_s8")
        call = "tl_quantize_s8_u8" if layer.output_dtype == "UINT8" else call
        ptype = "tl_quantize_params"
        params = {"input_offset": -z_in, "output_offset": z_out, "multiplier": m, "shift": e}
    elif kind == "LOGISTIC":
        p = activations.logistic_params(q_in)
        call, ptype = "tl_logistic_s8", "tl_logistic_params"
        params = {"input_offset": -q_in.zero_point, "input_multiplier": p.input_multiplier,
                  "input_left_shift": p.input_left_shift,
                  "input_range_radius": p.input_range_radius}
    else:  # HARD_SWISH
        p = activations.hard_swish_params(q_in, q_out)
        call, ptype = "tl_hard_swish_s8", "tl_hard_swish_params"
        params = {"input_offset": -q_in.zero_point, "output_offset": q_out.zero_point,
                  "output_multiplier": p.output_multiplier, "output_exponent": p.output_exponent,
                  "reluish_multiplier": p.reluish_multiplier,
                  "reluish_exponent": p.reluish_exponent}
    return {"form": "count", "call": call, "params_type": ptype, "params": params}


def _reshape(layer, shapes, arrays, tag) -> dict:
    return {"form": "copy", "call": "tl_reshape_s8", "params_type": "", "params": {}}


_STEPS = {"AVERAGE_POOL_2D": _pool, "MAX_POOL_2D": _pool, "PAD": _pad, "PADV2": _pad,
          "ADD": _add, "MEAN": _mean, "CONCATENATION": _concat, "QUANTIZE": _elementwise,
          "DEQUANTIZE": _elementwise, "LOGISTIC": _elementwise, "HARD_SWISH": _elementwise,
          "RESHAPE": _reshape}
assert set(_STEPS) == set(OPS)


def op_step(layer, shapes: dict, arrays: list, tag: str) -> dict:
    """The step dict of one layer of :data:`OPS`; ``shapes``: tensor -> shape (no batch) of
    every activation tensor; const arrays the call needs are appended to ``arrays``."""
    step = _STEPS[layer.kind](layer, shapes, arrays, tag)
    step.update(input_dims=dims4((1,) + tuple(layer.input_shape)),
                output_dims=dims4((1,) + tuple(layer.output_shape)),
                count=int(np.prod(layer.output_shape)))
    return step
