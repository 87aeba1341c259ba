"""ADD (with TFLM's int8 input/output rescaling) and MEAN over axes (int8), bit-exact with
TFLM's reference kernels."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinylora.errors import InputError
from tinylora.ref.qparams import Quant, i64, int8
from tinylora.ref.quant import activation_range, quantize_multiplier, requantize, wrap_int32


@dataclass(frozen=True)
class AddParams:
    left_shift: int
    input1_multiplier: int
    input1_shift: int
    input2_multiplier: int
    input2_shift: int
    output_multiplier: int
    output_shift: int


def add_params(q1: Quant, q2: Quant, qo: Quant) -> AddParams:
    """TFLM's int8 ADD constants: both inputs rescaled to a common scale 2*max(s1, s2) with
    20 bits of headroom, the sum rescaled to the output. Multipliers in double precision."""
    left_shift = 20
    twice_max = 2.0 * max(q1.scale, q2.scale)
    m1 = quantize_multiplier(q1.scale / twice_max)
    m2 = quantize_multiplier(q2.scale / twice_max)
    mo = quantize_multiplier(twice_max / ((1 << left_shift) * qo.scale))
    for name, (_, e) in (("input 1", m1), ("input 2", m2), ("output", mo)):
        if e > 0:
            raise InputError(f"ADD {name} multiplier must be < 1 (TFLM's "
                             "QuantizeMultiplierSmallerThanOneExp); the output scale is "
                             f"{qo.scale:g}, too small for inputs of scale "
                             f"{max(q1.scale, q2.scale):g}")
    return AddParams(left_shift, m1[0], m1[1], m2[0], m2[1], mo[0], mo[1])


def add(x1, q1: Quant, x2, q2: Quant, qo: Quant, activation: str = "NONE") -> np.ndarray:
    """ADD (int8, numpy broadcasting as TFLM's 6-D broadcast):
    s_i = requantize((x_i - zp_i) << 20, m_i, e_i); y = requantize(s_1 + s_2, m_o, e_o) + zp_o,
    clamped to the fused activation range. Every requantize is double rounding."""
    p = add_params(q1, q2, qo)
    a = (i64(x1) - q1.zero_point) * (1 << p.left_shift)
    b = (i64(x2) - q2.zero_point) * (1 << p.left_shift)
    sa = requantize(a, p.input1_multiplier, p.input1_shift)
    sb = requantize(b, p.input2_multiplier, p.input2_shift)
    raw = requantize(wrap_int32(sa + sb), p.output_multiplier, p.output_shift) + qo.zero_point
    lo, hi = activation_range(activation, qo.scale, qo.zero_point)
    return int8(np.clip(raw, lo, hi))




def mean_params(q_in: Quant, q_out: Quant, count: int) -> tuple[int, int]:
    """The (multiplier, shift) TFLM's QuantizedMeanOrSum uses for a mean over ``count``
    values: QuantizeMultiplier(s_in / s_out) (double), then folded 1/count:
    k = min(floor(log2 count), 32, 31 + shift); m' = (m << k) // count; shift' = shift - k."""
    m, e = quantize_multiplier(q_in.scale / q_out.scale)
    k = min(int(count).bit_length() - 1, 32, 31 + e)
    return int((m << k) // count), e - k


def mean(x, axes, q_in: Quant, q_out: Quant, keep_dims: bool = True) -> np.ndarray:
    """MEAN over ``axes`` (TFLM's int8 QuantizedMeanOrSum):
    requantize(sum - zp_in * count, m', shift') + zp_out, saturated to int8, with
    (m', shift') from :func:`mean_params` (double rounding). No fused activation.

    The same arithmetic holds when input and output share their quantization: measured, the
    tflite-micro reference does not take the plain ``sum / count`` (truncating) shortcut that
    some TFLM sources show for that case."""
    x = i64(x)
    axes = tuple(sorted({int(a) % x.ndim for a in np.atleast_1d(axes)}))
    count = int(np.prod([x.shape[a] for a in axes]))
    if count < 1:
        raise InputError(f"MEAN over axes {axes} of shape {x.shape} averages nothing")
    total = x.sum(axis=axes, keepdims=keep_dims)
    m, s = mean_params(q_in, q_out, count)
    y = requantize(wrap_int32(total - q_in.zero_point * count), m, s) + q_out.zero_point
    return int8(y)
