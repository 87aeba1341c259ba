"""Trainer -> C: the backward of the frozen ops of a DAG and the delivery of each input
gradient to its source (``firmware/include/tl_backward.h``).

For a schedule op ``backward[i]`` of a layer without LoRA math (CONV_2D, DEPTHWISE_CONV_2D,
pooling, MEAN, ADD, PAD, CONCATENATION, a requantizing RESHAPE, QUANTIZE, LOGISTIC,
HARD_SWISH) :func:`frozen_backward_op` gives the calls of the op: the output clamp's mask
(:func:`tinylora.ref.backward_ops.clamp_mask`), then per input slot whose source needs a
gradient the op's kernel, written into the lifetime of ``grad<p>`` the arena plan starts
there. :func:`delivery` adds, for any backward op (chain ops too), what
:meth:`tinylora.ref.executor.StepExecutor._deliver` does after: a fork contribution's
rescale to the fork's static scale and the merge with what an earlier consumer wrote.

Each call is a dict ``{"fn", "args"}`` and each parameter struct ``{"ctype", "name",
"fields"}``; the template ``train_step.c.j2`` prints them as they are. Every constant comes
from the trainer (``bw_consts``, ``merge_ratio``), so the C computes what numpy computes.
"""
from __future__ import annotations

import math

import numpy as np

from tinylora.codegen import c_int
from tinylora.codegen.frozen_ops import _Array, dims4
from tinylora.errors import ConfigError
from tinylora.ref import backward_ops
from tinylora.ref.dag import MERGE_GUARD_BITS
from tinylora.ref.layers import _padding_before
from tinylora.ref.pooling import pool_geometry
from tinylora.ref.schedule import BufferName, act

__all__ = ["CTYPE", "at", "frozen_backward_op", "delivery"]

CTYPE = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
         "uint8": "uint8_t", "float32": "float"}   # the last two: a model's own input end
INT32_LIMIT = 1 << 31
GRAD_PEAK = 1 << 15            # |15-bit mantissa| <= 2^15 after a rescale by at most 1


def at(b) -> str:
    """The C expression of a buffer lifetime's address in the arena."""
    return f"TL_AT({CTYPE[b.dtype]}, {b.offset})"


def _call(fn: str, *args) -> dict:
    return {"fn": fn, "args": [str(a) for a in args]}


def _struct(ctype: str, name: str, fields: dict) -> dict:
    return {"ctype": ctype, "name": name, "fields": list(fields.items())}


def _dims(name: str, d: dict) -> dict:
    return _struct("tl_dims", name, d)


def _size(shape) -> int:
    return int(np.prod(shape))


# ----------------------------------------------------------------------------- delivery


def _previous(life, name: str, t: int):
    """The lifetime of ``name`` an earlier consumer wrote, last read at op ``t``."""
    return next(b for b in life.scratch[name] if b.first < t <= b.last)


def delivery(sp, life, t: int, op, slot: int, p: int, seen: set) -> tuple[str, str, list]:
    """(grad_in address, exponent variable, calls after the kernel) of input ``slot`` of
    ``backward[op.layer]``, whose source is layer ``p``. New exponent variables go to
    ``sp.exponents``."""
    i = op.layer
    name = BufferName.grad(p)
    if p in seen:
        raise ConfigError(f"layer {i} reads layer {p}'s output twice; the C generator sums a "
                          "fork's gradients across ops only: choose targets above layer "
                          f"{i}")
    seen.add(p)
    merge = name in op.reads
    var = f"exp_grad{p}_{t}" if merge else f"exp_grad{p}"
    if var not in sp.exponents:
        sp.exponents.append(var)
    dst = at(life.write(name, t))
    n = _size(sp.trainer.model.layers[p].output_shape)
    calls = []
    ratio = sp.trainer.merge_ratio.get((i, slot))
    if ratio is not None:
        calls.append(_call("tl_grad_rescale_s16", f"{n}", c_int(ratio[0]), c_int(ratio[1]),
                           MERGE_GUARD_BITS, dst, f"&{var}"))
    if merge:
        old = at(_previous(life, name, t))
        calls.append(_call("tl_grad_merge_s16", f"{n}", old, f"exp_grad{p}", dst, var,
                           f"&exp_grad{p}"))
    return dst, var, calls


# ----------------------------------------------------------------------------- frozen ops


def _clamp(layer, grad: str, output: str) -> tuple[list, list]:
    if layer.kind in ("CONCATENATION", "PAD", "PADV2", "RESHAPE", "LOGISTIC", "HARD_SWISH"):
        return [], []   # the same rule as backward_ops.clamp_mask: nothing to mask
    lo, hi, low_act, high_act = backward_ops.output_range(layer)
    fields = {"act_min": lo, "act_max": hi, "act_min_is_activation": int(low_act),
              "act_max_is_activation": int(high_act)}
    return ([_struct("tl_clamp_params", "clamp", fields)],
            [_call("tl_clamp_mask_s16", "&clamp", _size(layer.output_shape), output, grad)])


def _conv(sp, layer, k) -> tuple[dict, str]:
    o = layer.options
    h, w, c_in = layer.input_shape
    oh, ow, c_out = layer.output_shape
    kh, kw = layer.kernel
    depthwise = layer.kind == "DEPTHWISE_CONV_2D"
    if depthwise and kh * kw * o["depth_multiplier"] >= 512:
        raise ConfigError(f"layer {layer.index} DEPTHWISE_CONV_2D: a {kh}x{kw} kernel with depth "
                          f"multiplier {o['depth_multiplier']} could pass the C backward's 32-bit "
                          f"sums; choose targets above layer {layer.index}")
    tag = f"{sp.prefix}_l{layer.index}"
    q, s = k["ratio"]
    sp.arrays.append(_Array(f"{tag}_bw_multiplier", "int32_t", np.asarray(q, np.int64),
                            f"input-gradient channel ratios s_w[c] / max s_w [{c_out}] (Q31)"))
    sp.arrays.append(_Array(f"{tag}_bw_shift", "int32_t", np.asarray(s, np.int64),
                            f"input-gradient channel ratio shifts [{c_out}]"))
    fields = {"in_h": h, "in_w": w, "in_c": c_in, "out_h": oh, "out_w": ow, "out_c": c_out,
              "kernel_h": kh, "kernel_w": kw, "stride_h": o["stride_h"], "stride_w": o["stride_w"],
              "dilation_h": o["dilation_h"], "dilation_w": o["dilation_w"],
              "pad_h": _padding_before(h, kh, o["stride_h"], o["dilation_h"], oh),
              "pad_w": _padding_before(w, kw, o["stride_w"], o["dilation_w"], ow),
              "depth_multiplier": o.get("depth_multiplier", 1) if depthwise else 1,
              "weights": f"{tag}_weights",
              "ratio": f"{{ {tag}_bw_multiplier, {tag}_bw_shift }}"}
    fn = "tl_depthwise_conv_backward_s16" if depthwise else "tl_conv_backward_s16"
    return _struct("tl_conv_backward_params", "params", fields), fn


def _pool(sp, layer, k) -> dict:
    o = layer.options
    h, w, c = layer.input_shape
    oh, pad_h = pool_geometry(h, o["filter_height"], o["stride_h"], o["padding"])
    ow, pad_w = pool_geometry(w, o["filter_width"], o["stride_w"], o["padding"])
    cover = math.ceil(o["filter_height"] / o["stride_h"]) * math.ceil(o["filter_width"] / o["stride_w"])
    ratios = sorted(n for n in k.get("ratio", {}) if n != k.get("full"))
    worst = max([1.0] + [k["full"] / n for n in ratios])
    if (GRAD_PEAK * worst + 1) * cover >= INT32_LIMIT:
        raise ConfigError(f"layer {layer.index} {layer.kind}: its windows overlap so much that "
                          "the C backward's 32-bit sums could overflow; choose targets above "
                          f"layer {layer.index}")
    fields = {"in_h": h, "in_w": w, "channels": c, "out_h": oh, "out_w": ow,
              "filter_h": o["filter_height"], "filter_w": o["filter_width"],
              "stride_h": o["stride_h"], "stride_w": o["stride_w"], "pad_h": pad_h, "pad_w": pad_w,
              "n_ratios": len(ratios), "ratio_count": "NULL", "ratio_multiplier": "NULL",
              "ratio_shift": "NULL"}
    if ratios:
        tag = f"{sp.prefix}_l{layer.index}_bw"
        for key, values in (("count", ratios), ("multiplier", [k["ratio"][n][0] for n in ratios]),
                            ("shift", [k["ratio"][n][1] for n in ratios])):
            sp.arrays.append(_Array(f"{tag}_{key}", "int32_t", np.asarray(values, np.int64),
                                    f"clipped windows' {key}s (area / count rescale)"))
            fields[f"ratio_{key}"] = f"{tag}_{key}"
    return _struct("tl_pool_backward_params", "params", fields)


def _slot_kernel(sp, life, t, layer, slot: int, grad: str, exp: str, dst: str, var: str):
    """(structs, call) of the kernel writing input ``slot``'s gradient."""
    i, kind = layer.index, layer.kind
    k = sp.trainer.bw_consts[i]
    out = dims4((1,) + tuple(layer.output_shape))
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        params, fn = _conv(sp, layer, k)
        dx = at(life.write(BufferName.dx(i), t))
        return [params], _call(fn, "&params", grad, exp, dx, dst, f"&{var}")
    if kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        dx = at(life.write(BufferName.dx(i), t))
        if kind == "AVERAGE_POOL_2D":
            return [_pool(sp, layer, k)], _call("tl_avg_pool_backward_s16", "&params", grad, exp,
                                                dx, dst, f"&{var}")
        src = at(life.read(act(sp.trainer.srcs[i][0]), t))
        return [_pool(sp, layer, {})], _call("tl_max_pool_backward_s16", "&params", src, grad,
                                             exp, dx, dst, f"&{var}")
    if kind == "MEAN":
        h, w, c = layer.input_shape
        return [], _call("tl_mean_backward_s16", h * w, c, grad, exp, dst, f"&{var}")
    if kind == "ADD":
        shape = dims4(k["shapes"][slot])
        return ([_dims("out_dims", out), _dims(f"in{slot}_dims", shape)],
                _call("tl_add_backward_s16", "&out_dims", f"&in{slot}_dims", grad, exp, dst, f"&{var}"))
    if kind == "LOGISTIC":
        return [], _call("tl_logistic_backward_s16", _size(layer.output_shape),
                         at(life.read(act(i), t)), grad, exp, dst, f"&{var}")
    if kind == "HARD_SWISH":
        lut = f"{sp.prefix}_l{i}_bw_lut"
        sp.arrays.append(_Array(lut, "int16_t", np.asarray(k["lut"], np.int64),
                                "HARD_SWISH derivative at each int8 input code (Q14)"))
        src = at(life.read(act(sp.trainer.srcs[i][0]), t))
        return [], _call("tl_hard_swish_backward_s16", _size(layer.output_shape), src, lut, grad,
                         exp, dst, f"&{var}")
    return _slice(layer, k, slot, grad, exp, dst, var)


def _slice(layer, k, slot, grad, exp, dst, var):
    """PAD's crop, a CONCATENATION input's part, RESHAPE / QUANTIZE's whole gradient."""
    kind = layer.kind
    if kind in ("PAD", "PADV2"):
        out = dims4((1,) + tuple(layer.output_shape))
        box = dims4((1,) + tuple(layer.input_shape))
        pads = [0] * (5 - len(layer.options["paddings"])) + [b for b, _ in layer.options["paddings"][1:]]
        begin = dict(zip("nhwc", pads[-4:]))
    elif kind == "CONCATENATION":
        full = (1,) + tuple(layer.output_shape)
        axis = int(layer.options["axis"]) + 4 - len(full)
        out, box = dims4(full), dims4(k["shapes"][slot])
        begin = dict(zip("nhwc", [0, 0, 0, 0]))
        begin["nhwc"[axis]] = int(sum(k["sizes"][:slot]))
    elif kind in ("RESHAPE", "QUANTIZE"):
        n = _size(layer.output_shape)
        out = box = {"n": 1, "h": 1, "w": 1, "c": n}
        begin = dict(zip("nhwc", [0, 0, 0, 0]))
    else:   # pragma: no cover - backward_ops.FROZEN_BACKWARD has no other ops
        raise ConfigError(f"layer {layer.index} {kind}: no C backward for this op")
    return ([_dims("out_dims", out), _dims(f"in{slot}_dims", box), _dims(f"begin{slot}", begin)],
            _call("tl_slice_backward_s16", "&out_dims", f"&in{slot}_dims", f"&begin{slot}", grad,
                  exp, dst, f"&{var}"))


def frozen_backward_op(sp, life, t: int, op, comment: str) -> dict:
    """The ``calls`` op of ``backward[i]`` for a frozen op of backward_ops.FROZEN_BACKWARD."""
    tr = sp.trainer
    layer = tr.model.layers[op.layer]
    grad, exp = at(life.read(BufferName.grad(op.layer), t)), f"exp_grad{op.layer}"
    structs, calls = _clamp(layer, grad, at(life.read(act(op.layer), t)))
    seen: set = set()
    for slot, p in tr._slots(op.layer):
        dst, var, after = delivery(sp, life, t, op, slot, p, seen)
        more, call = _slot_kernel(sp, life, t, layer, slot, grad, exp, dst, var)
        structs += [s for s in more if s["name"] not in {x["name"] for x in structs}]
        calls += [call] + after
    return {"kind": "calls", "comment": comment, "structs": structs, "calls": calls}
