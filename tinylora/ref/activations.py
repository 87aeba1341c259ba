"""LOGISTIC and HARD_SWISH (int8), bit-exact with TFLM's reference kernels (gemmlowp fixed
point; int16 fixed point for HARD_SWISH)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinylora.errors import InputError
from tinylora.ref.qparams import Quant, i64, int8
from tinylora.ref.quant import INT32_MAX, quantize_multiplier, requantize, rounding_divide_by_pot, wrap_int32
from tinylora.ref.softmax import exp_on_negative_values, one_over_one_plus_x_for_x_in_0_1

_LOGISTIC_INPUT_INTEGER_BITS = 4


@dataclass(frozen=True)
class LogisticParams:
    input_multiplier: int
    input_left_shift: int
    input_range_radius: int


def logistic_params(q_in: Quant) -> LogisticParams:
    """TFLM's int8 LOGISTIC constants: the input rescaled to Q4.27 by a multiplier from
    frexp(s_in * 2^27) (rounded half away from zero, no renormalisation), and the radius
    beyond which the output saturates: floor(15 * 2^27 / 2^left_shift)."""
    real = q_in.scale * float(1 << (31 - _LOGISTIC_INPUT_INTEGER_BITS))
    q, shift = math.frexp(real)
    mult = math.floor(q * 2**31 + 0.5)
    if mult >= 2**31:
        raise InputError(f"LOGISTIC input scale {q_in.scale!r} rounds to a multiplier of 2^31, "
                         "which TFLM cannot represent; nudge the scale")
    radius = math.floor(((1 << _LOGISTIC_INPUT_INTEGER_BITS) - 1)
                        * float(1 << (31 - _LOGISTIC_INPUT_INTEGER_BITS)) / float(2.0**shift))
    return LogisticParams(int(mult), int(shift), int(radius))


def _logistic_q0(a):
    """gemmlowp logistic of a Q4 raw value; result Q0 raw (1.0 saturates to INT32_MAX)."""
    a = i64(a)
    abs_a = np.where(a > 0, a, -a)
    pos = one_over_one_plus_x_for_x_in_0_1(exp_on_negative_values(-abs_a,
                                                                  _LOGISTIC_INPUT_INTEGER_BITS))
    neg = wrap_int32(INT32_MAX - pos)
    return np.where(a == 0, 1 << 30, np.where(a > 0, pos, neg))


def logistic(x, q_in: Quant) -> np.ndarray:
    """LOGISTIC int8 (output scale 1/256, zero point -128, which TFLM requires):
    inputs at or beyond the radius saturate to -128/127; others are rescaled to Q4.27
    (double rounding), passed through gemmlowp's fixed-point logistic, and the Q0.31 result
    is rounded to 8 fractional bits (RoundingDivideByPOT by 23) and offset by -128."""
    p = logistic_params(q_in)
    d = i64(x) - q_in.zero_point
    q4 = requantize(d, p.input_multiplier, p.input_left_shift)
    y = rounding_divide_by_pot(_logistic_q0(q4), 31 - 8) - 128
    y = np.where(d <= -p.input_range_radius, -128, np.where(d >= p.input_range_radius, 127, y))
    return int8(y)


# --------------------------------------------------------------------------- hard swish

INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1


@dataclass(frozen=True)
class HardSwishParams:
    output_multiplier: int    # int16 fixed point
    output_exponent: int      # <= 0
    reluish_multiplier: int   # int16 fixed point
    reluish_exponent: int


def _downscale_to_int16(m32: int) -> int:
    """TFLite's DownScaleInt32ToInt16Multiplier: (m + 2^15) >> 16, saturating at INT16_MAX."""
    if m32 >= INT32_MAX - (1 << 15):
        return INT16_MAX
    return (m32 + (1 << 15)) >> 16


def hard_swish_params(q_in: Quant, q_out: Quant) -> HardSwishParams:
    """TFLM's int8 HARD_SWISH constants, from float32 arithmetic on the scales:
    hires = float32(s_in / 128); output multiplier hires / s_out and "reluish" multiplier
    hires / (3 / 32768), each quantized to 32 bits then rounded to 16."""
    f32 = np.float32
    hires = f32(1.0 / 128.0) * f32(q_in.scale)
    om, oe = quantize_multiplier(float(hires / f32(q_out.scale)))
    rm, re_ = quantize_multiplier(float(hires / (f32(3.0) / f32(32768.0))))
    if oe > 0:
        raise InputError(f"HARD_SWISH needs s_in / (128 * s_out) < 1; got scales in "
                         f"{q_in.scale:g}, out {q_out.scale:g} (TFLM refuses this model)")
    return HardSwishParams(_downscale_to_int16(om), oe, _downscale_to_int16(rm), re_)


def _srdhm16(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul on int16 (ties toward +infinity)."""
    a, b = i64(a), i64(b)
    return np.where((a == INT16_MIN) & (b == INT16_MIN), INT16_MAX, (a * b + (1 << 14)) >> 15)


def _sdhm16(a, b):
    """TFLite's SaturatingDoublingHighMul on int16: (a*b) / 2^15 truncated toward zero."""
    a, b = i64(a), i64(b)
    p = a * b
    return np.where((a == INT16_MIN) & (b == INT16_MIN), INT16_MAX,
                    np.sign(p) * (np.abs(p) >> 15))


def _sat_shl16(x, n: int):
    return np.clip(i64(x) * (1 << n), INT16_MIN, INT16_MAX)


def _wrap16(x):
    return ((i64(x) + 2**15) & 0xFFFF) - 2**15


def hard_swish(x, q_in: Quant, q_out: Quant) -> np.ndarray:
    """HARD_SWISH int8 (TFLite's reference, in int16 fixed point):
    v = (x - zp_in) * 2^7; y_pre = srdhm16(v, m_out); r = v rescaled by the reluish multiplier
    to [-1, 1] in Q15 (saturating), mapped to [0, 1]: (r + 2^15) >> 1; y = RDBP(sdhm16(r, y_pre),
    -e_out) + zp_out, saturated to int8."""
    p = hard_swish_params(q_in, q_out)
    v = (i64(x) - q_in.zero_point) * (1 << 7)
    pre = _srdhm16(v, p.output_multiplier)
    r = v
    if p.reluish_exponent > 0:
        r = _sat_shl16(r, p.reluish_exponent - 1)
    r = _srdhm16(r, p.reluish_multiplier)
    if p.reluish_exponent > 0:
        r = _sat_shl16(r, 1)
    if p.reluish_exponent < 0:
        r = rounding_divide_by_pot(r, -p.reluish_exponent)
    r = (r + (1 << 15)) >> 1
    y = _wrap16(rounding_divide_by_pot(_sdhm16(r, pre), -p.output_exponent) + q_out.zero_point)
    return int8(y)
