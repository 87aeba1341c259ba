"""Integer backward of the frozen ops between an adapter and the loss (docs/numerics.md §4b).

Every gradient is taken with respect to the *real* value of a tensor: ``dL/dy_real =
m * 2^e * s`` with int16 mantissas ``m``, a power-of-two exponent ``e`` and a static real
scale ``s`` fixed before training. Most ops are scale-free in real units (pooling, ADD, PAD,
CONCATENATION, QUANTIZE pass the real gradient through), so the backward is a reshuffle of
mantissas; a constant factor (the mean's ``1/count``, a requantizing RESHAPE's ``s_y/s_x``,
the largest weight scale of a convolution, a derivative table's ``2^-14``) moves into the
static scale (:func:`input_factors`) instead of costing a rounding. What cannot move there
(per-channel weight scale ratios, per-window counts) is one single-rounding rescale
(:func:`tinylora.ref.lora.rescale`). Results are int64 mantissas relative to the incoming
exponent; the caller normalizes them to 15 bits.

The output clamp comes first (:func:`clamp_mask`): a bound set by a fused activation passes
no gradient, a bound that is only int8 saturation passes the gradient that moves the value
back into range.
"""
from __future__ import annotations

import math

import numpy as np

from tinylora.errors import ScheduleError
from tinylora.ref import lora, quant
from tinylora.ref.layers import Layer, _padding_before
from tinylora.ref.pooling import pool_geometry

#: ops whose backward the trainer knows besides FULLY_CONNECTED / 1x1 CONV_2D / RESHAPE
FROZEN_BACKWARD = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN",
                   "ADD", "PAD", "PADV2", "CONCATENATION", "RESHAPE", "QUANTIZE", "LOGISTIC",
                   "HARD_SWISH")
DERIV_FRAC_BITS = 14          # HARD_SWISH derivative table: Q14 (|dy/dx| <= 1)
LOGISTIC_FRAC_BITS = 16       # sigmoid' = k (256 - k) / 2^16 with k = y + 128


def has_backward(layer: Layer) -> bool:
    return layer.kind in FROZEN_BACKWARD and layer.input_dtype == "INT8"


def reads_inputs(layer: Layer) -> bool:
    """Does the op's backward read its input activations (besides its output and gradient)?"""
    return layer.kind in ("MAX_POOL_2D", "HARD_SWISH")


def input_factors(layer: Layer, n_inputs: int) -> list[float]:
    """Per input slot: (static scale of the input gradient) / (static scale of the output's)."""
    kind = layer.kind
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
        return [float(np.max(layer.weights_q.scale.astype(np.float64)))]
    if kind == "AVERAGE_POOL_2D":
        return [1.0 / (layer.options["filter_height"] * layer.options["filter_width"])]
    if kind == "MEAN":
        full = (1,) + tuple(layer.input_shape)
        return [1.0 / math.prod(full[a] for a in layer.options["axes"])]
    if kind == "RESHAPE":
        return [float(layer.output_q.scale[0]) / float(layer.input_q.scale[0])]
    if kind == "LOGISTIC":
        return [2.0 ** -LOGISTIC_FRAC_BITS]
    if kind == "HARD_SWISH":
        return [2.0 ** -DERIV_FRAC_BITS]
    return [1.0] * n_inputs


def constants(layer: Layer, in_shapes: list[tuple]) -> dict:
    """The integer constants of one op's backward, fixed before training."""
    kind = layer.kind
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        c_out = layer.weights.shape[3 if kind == "DEPTHWISE_CONV_2D" else 0]
        s_w = np.broadcast_to(layer.weights_q.scale.astype(np.float64), (c_out,))
        pairs = [lora.multiplier(s / float(s_w.max()), "channel ratio") for s in s_w]
        return {"ratio": (np.array([q for q, _ in pairs], np.int64),
                          np.array([e for _, e in pairs], np.int64))}
    if kind == "AVERAGE_POOL_2D":
        o = layer.options
        full = o["filter_height"] * o["filter_width"]
        counts = _window_counts(layer)
        table = {n: lora.multiplier(full / n, "window count") for n in np.unique(counts)}
        return {"counts": counts, "ratio": table, "full": full}
    if kind == "CONCATENATION":
        return {"sizes": [s[layer.options["axis"] - 1] for s in in_shapes]}
    if kind == "HARD_SWISH":
        return {"lut": hard_swish_derivative_table(layer)}
    return {}


def hard_swish_derivative_table(layer: Layer) -> np.ndarray:
    """d hard_swish / dx at each int8 input code, Q14, round half away from zero:
    0 for x <= -3, 1 for x >= 3, (2x + 3) / 6 between (x real)."""
    s, zp = float(layer.input_q.scale[0]), int(layer.input_q.zero_point[0])
    x = (np.arange(-128, 128, dtype=np.float64) - zp) * s
    d = np.where(x <= -3, 0.0, np.where(x >= 3, 1.0, (2 * x + 3) / 6))
    v = d * (1 << DERIV_FRAC_BITS)
    return (np.sign(v) * np.floor(np.abs(v) + 0.5)).astype(np.int64)


def _window_counts(layer: Layer) -> np.ndarray:
    """Valid (unpadded) input elements of each output window, shape (oh, ow)."""
    o = layer.options
    h, w, _ = layer.input_shape
    sizes = []
    for size, f, s in ((h, o["filter_height"], o["stride_h"]), (w, o["filter_width"], o["stride_w"])):
        out, before = pool_geometry(size, f, s, o["padding"])
        lo = np.arange(out) * s - before
        sizes.append(np.minimum(lo + f, size) - np.maximum(lo, 0))
    return np.outer(sizes[0], sizes[1]).astype(np.int64)


# ------------------------------------------------------------------------- the clamp


def output_range(layer: Layer) -> tuple[int, int, bool, bool]:
    """(lo, hi, lo set by the activation, hi set by the activation) of an op's output clamp."""
    act = getattr(layer, "activation", "NONE") or "NONE"
    if layer.kind in ("LOGISTIC", "HARD_SWISH", "CONCATENATION", "PAD", "PADV2", "RESHAPE"):
        act = "NONE"
    lo, hi = quant.activation_range(act, float(layer.output_q.scale[0]),
                                    int(layer.output_q.zero_point[0]))
    return lo, hi, act != "NONE", act in ("RELU6", "RELU_N1_TO_1") and hi < 127


def clamp_mask(layer: Layer, y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The output clamp's gradient rule (the same as lora.output_gradient_mask's)."""
    if layer.kind in ("CONCATENATION", "PAD", "PADV2", "RESHAPE", "LOGISTIC", "HARD_SWISH"):
        return g      # bytes moved, or a derivative that already vanishes at the rails
    lo, hi, low_act, high_act = output_range(layer)
    block = ((y == lo) & (low_act | (g > 0))) | ((y == hi) & (high_act | (g < 0)))
    return np.where(block, 0, g)


# ------------------------------------------------------------------------- the ops


def input_gradients(layer: Layer, g: np.ndarray, xs: list, y: np.ndarray, k: dict) -> list:
    """Raw int64 input gradients (one per input slot, the incoming exponent) of one op, from
    its masked output gradient ``g`` (1, *output_shape), its int8 inputs and output."""
    kind = layer.kind
    if kind == "CONV_2D":
        return [_conv_input_grad(layer, g, k, depthwise=False)]
    if kind == "DEPTHWISE_CONV_2D":
        return [_conv_input_grad(layer, g, k, depthwise=True)]
    if kind == "AVERAGE_POOL_2D":
        return [_avg_pool_grad(layer, g, k)]
    if kind == "MAX_POOL_2D":
        return [_max_pool_grad(layer, g, xs[0])]
    if kind == "MEAN":
        return [_mean_grad(layer, g)]
    if kind == "ADD":
        return [_unbroadcast(g, shape) for shape in k["shapes"]]
    if kind in ("PAD", "PADV2"):
        return [_crop(layer, g)]
    if kind == "CONCATENATION":
        edges = np.cumsum(k["sizes"])[:-1]
        return list(np.split(g, edges, axis=layer.options["axis"]))
    if kind == "RESHAPE":
        return [g.reshape((1,) + tuple(layer.input_shape))]
    if kind == "QUANTIZE":
        return [g]
    if kind == "LOGISTIC":
        kk = y.astype(np.int64) + 128
        return [g * kk * (256 - kk)]
    if kind == "HARD_SWISH":
        return [g * k["lut"][xs[0].astype(np.int64) + 128]]
    raise ScheduleError(f"layer {layer.index} {kind}: tinylora has no backward for this op")


def _conv_input_grad(layer: Layer, g: np.ndarray, k: dict, depthwise: bool) -> np.ndarray:
    """The transposed convolution: each output gradient, rescaled by its channel's weight
    scale over the largest (single rounding), spread over the inputs its window read."""
    o = layer.options
    h, w, c_in = layer.input_shape
    oh, ow, _ = layer.output_shape
    kh, kw = layer.kernel
    gr = lora.rescale(g.astype(np.int64), *k["ratio"])
    pad_h = _padding_before(h, kh, o["stride_h"], o["dilation_h"], oh)
    pad_w = _padding_before(w, kw, o["stride_w"], o["dilation_w"], ow)
    need_h = max((oh - 1) * o["stride_h"] + (kh - 1) * o["dilation_h"] + 1, pad_h + h)
    need_w = max((ow - 1) * o["stride_w"] + (kw - 1) * o["dilation_w"] + 1, pad_w + w)
    dx = np.zeros((1, need_h, need_w, c_in), np.int64)
    wt = layer.weights.astype(np.int64)
    for i in range(kh):
        for j in range(kw):
            r0, c0 = i * o["dilation_h"], j * o["dilation_w"]
            if depthwise:
                part = (gr * wt[0, i, j]).reshape(1, oh, ow, c_in, -1).sum(axis=-1)
            else:
                part = gr @ wt[:, i, j, :]
            dx[:, r0:r0 + (oh - 1) * o["stride_h"] + 1:o["stride_h"],
               c0:c0 + (ow - 1) * o["stride_w"] + 1:o["stride_w"]] += part
    return dx[:, pad_h:pad_h + h, pad_w:pad_w + w]


def _pool_windows(layer: Layer):
    o = layer.options
    h, w, _ = layer.input_shape
    oh, ph = pool_geometry(h, o["filter_height"], o["stride_h"], o["padding"])
    ow, pw = pool_geometry(w, o["filter_width"], o["stride_w"], o["padding"])
    for oy in range(oh):
        y0 = oy * o["stride_h"] - ph
        for ox in range(ow):
            x0 = ox * o["stride_w"] - pw
            yield oy, ox, (slice(max(y0, 0), min(y0 + o["filter_height"], h)),
                           slice(max(x0, 0), min(x0 + o["filter_width"], w)))


def _avg_pool_grad(layer: Layer, g: np.ndarray, k: dict) -> np.ndarray:
    """Each window's gradient / its count, spread over the window. The static scale holds
    1/(filter area); a clipped window's (area / count) is one single-rounding rescale."""
    dx = np.zeros((1,) + tuple(layer.input_shape), np.int64)
    g = g.astype(np.int64)
    for oy, ox, (ys, xs) in _pool_windows(layer):
        n = int(k["counts"][oy, ox])
        v = g[:, oy, ox, :] if n == k["full"] else lora.rescale(g[:, oy, ox, :], *k["ratio"][n])
        dx[:, ys, xs, :] += v[:, None, None, :]
    return dx


def _max_pool_grad(layer: Layer, g: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Each window's gradient goes to its largest input (the first in row-major order on ties)."""
    dx = np.zeros((1,) + tuple(layer.input_shape), np.int64)
    c = layer.input_shape[2]
    for oy, ox, (ys, xs) in _pool_windows(layer):
        win = x[0, ys, xs, :].reshape(-1, c)
        pos = np.argmax(win, axis=0)
        wy, wx = np.divmod(pos, xs.stop - xs.start)
        np.add.at(dx, (0, ys.start + wy, xs.start + wx, np.arange(c)), g[0, oy, ox, :])
    return dx


def _mean_grad(layer: Layer, g: np.ndarray) -> np.ndarray:
    """The mean's gradient is its output gradient at every averaged position (1/count is static)."""
    full = (1,) + tuple(layer.input_shape)
    kept = tuple(1 if a in layer.options["axes"] else d for a, d in enumerate(full))
    return np.broadcast_to(g.reshape(kept), full).astype(np.int64)


def _unbroadcast(g: np.ndarray, shape: tuple) -> np.ndarray:
    """An ADD input's gradient: the output gradient summed over the axes it was broadcast on."""
    g = g.astype(np.int64)
    axes = tuple(a for a, (d, s) in enumerate(zip(g.shape, shape)) if s == 1 and d != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _crop(layer: Layer, g: np.ndarray) -> np.ndarray:
    pads = layer.options["paddings"][1:]
    sl = tuple(slice(b, b + d) for (b, _), d in zip(pads, layer.input_shape))
    return g[(slice(None),) + sl]


def merge(a: tuple[np.ndarray, int], b: tuple[np.ndarray, int]) -> tuple[np.ndarray, int]:
    """The sum of two gradients of one tensor (a residual fork), in the same static scale:
    both are brought to the larger exponent (rounding half away from zero), added in int64
    and normalized to 15 bits."""
    (ma, ea), (mb, eb) = a, b
    e = max(ea, eb)
    total = quant.rounding_divide_by_pot(ma.astype(np.int64), min(e - ea, 62)) + \
        quant.rounding_divide_by_pot(mb.astype(np.int64), min(e - eb, 62))
    m, en = lora.normalize(total)
    return m, e + en
