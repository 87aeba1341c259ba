"""Fixed-point softmax, exactly as TFLM / CMSIS-NN / ESP-NN compute int8 softmax.

Q-formats are written Qm for a signed 32-bit value with m integer bits (raw / 2^(31-m)).
The input differences (x - max) are scaled into Q5 (5 integer bits), exponentiated
with a Taylor polynomial on [-1/4, 0) and a barrel shifter of exp(-2^k) constants,
summed in Q12, inverted by Newton-Raphson in Q2, and the output written with zero
point -128 and scale 1/256. All constants below are derived from their real values
(round half away from zero of value * 2^31), not typed in.
"""
from __future__ import annotations

import math

import numpy as np

from tinylora.errors import InputError
from tinylora.ref.quant import (
    INT32_MAX,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_left_shift,
    srdhm,
    wrap_int32,
)

SCALED_DIFF_INTEGER_BITS = 5
ACCUM_INTEGER_BITS = 12


def _q31(value: float) -> int:
    """A real in (-1, 1) as a Q0 raw value (round half away from zero)."""
    return int(math.copysign(math.floor(abs(value) * 2**31 + 0.5), value))


def _q(value: float, integer_bits: int) -> int:
    return int(math.copysign(math.floor(abs(value) * 2**(31 - integer_bits) + 0.5), value))


EXP_MINUS_ONE_EIGHTH = _q31(math.exp(-1 / 8))
ONE_THIRD = _q31(1 / 3)
#: exp(-2^k) for k = -2 .. 4, the barrel shifter's multipliers.
EXP_BARREL = [(k, _q31(math.exp(-(2.0**k)))) for k in range(-2, 5)]
FORTY_EIGHT_OVER_17_Q2 = _q(48 / 17, 2)
NEG_THIRTY_TWO_OVER_17_Q2 = _q(-32 / 17, 2)


def _mul(a, b):
    return srdhm(a, b)


def _add(a, b):
    return wrap_int32(np.asarray(a, np.int64) + b)


def exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """exp(a) for Q0 a in [-1/4, 0): Taylor expansion around -1/8. Q0 -> Q0."""
    x = _add(a, 1 << 28)  # a + 1/8
    x2 = _mul(x, x)
    x3 = _mul(x2, x)
    x4 = _mul(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(_add(_mul(_add(x4_over_4, x3), ONE_THIRD), x2), 1)
    return _add(EXP_MINUS_ONE_EIGHTH, _mul(EXP_MINUS_ONE_EIGHTH, _add(x, poly)))


def exp_on_negative_values(a, integer_bits: int = SCALED_DIFF_INTEGER_BITS):
    """exp(a) for a <= 0 given in Q`integer_bits`; result in Q0."""
    a = np.asarray(a, np.int64)
    frac_bits = 31 - integer_bits
    one_quarter = 1 << (frac_bits - 2)
    a_mod_quarter_minus_quarter = _add(a & (one_quarter - 1), -one_quarter)
    result = exp_on_interval_between_negative_one_quarter_and_0_excl(
        saturating_left_shift(a_mod_quarter_minus_quarter, integer_bits))
    remainder = _add(a_mod_quarter_minus_quarter, -a)
    for k, multiplier in EXP_BARREL:
        if integer_bits > k:
            bit = 1 << (frac_bits + k)
            result = np.where(remainder & bit, _mul(result, multiplier), result)
    if integer_bits > 5:
        result = np.where(a < -(1 << (36 - integer_bits)), 0, result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_for_x_in_0_1(a):
    """1 / (1 + a) for Q0 a in [0, 1): Newton-Raphson in Q2. Q0 -> Q0."""
    a = np.asarray(a, np.int64)
    s = a + INT32_MAX
    # gemmlowp's RoundingHalfSum(a, One): (a + b + sign) / 2, truncating toward zero
    half_denominator = np.where(s >= 0, (s + 1) >> 1, -((1 - s) >> 1))
    x = _add(FORTY_EIGHT_OVER_17_Q2, _mul(half_denominator, NEG_THIRTY_TWO_OVER_17_Q2))
    one_q2 = 1 << 29
    for _ in range(3):
        half_denominator_times_x = _mul(half_denominator, x)
        one_minus = _add(one_q2, -half_denominator_times_x)
        x = _add(x, saturating_left_shift(_mul(x, one_minus), 2))
    return saturating_left_shift(x, 1)


def _count_leading_zeros32(x):
    """Leading zero bits of x as an unsigned 32-bit value (32 for zero)."""
    x = np.asarray(x, np.int64) & 0xFFFFFFFF
    zero = x == 0
    n = np.zeros(x.shape, np.int64)
    for s in (16, 8, 4, 2, 1):
        small = x < (1 << (32 - s))
        n = np.where(small, n + s, n)
        x = np.where(small, x << s, x)
    return np.where(zero, 32, n)


def reciprocal(sum_of_exps, integer_bits: int = ACCUM_INTEGER_BITS):
    """(1/sum as Q0 raw, num_bits_over_unit) for a positive Q`integer_bits` sum."""
    headroom_plus_one = _count_leading_zeros32(sum_of_exps)
    num_bits_over_unit = integer_bits - headroom_plus_one
    shifted = ((np.asarray(sum_of_exps, np.int64) << headroom_plus_one) & 0xFFFFFFFF) - (1 << 31)
    return one_over_one_plus_x_for_x_in_0_1(wrap_int32(shifted)), num_bits_over_unit


def softmax_params(input_scale: float, beta: float) -> tuple[int, int, int]:
    """(input_multiplier, input_left_shift, diff_min) as TFLM prepares int8 softmax."""
    real = min(float(beta) * float(np.float32(input_scale)) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)),
               float(2**31 - 1))
    multiplier, shift = quantize_multiplier(real)
    if shift < 0:
        raise InputError(f"softmax input multiplier {real} is below one")
    radius = ((1 << SCALED_DIFF_INTEGER_BITS) - 1) * (1 << (31 - SCALED_DIFF_INTEGER_BITS)) / (1 << shift)
    return multiplier, shift, -int(math.floor(radius))


def softmax_int8(x, input_multiplier: int, input_left_shift: int, diff_min: int) -> np.ndarray:
    """int8 softmax over the last axis; output zero point -128, scale 1/256."""
    x = np.asarray(x, np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    valid = diff >= diff_min
    scaled = srdhm(wrap_int32(diff * (1 << input_left_shift)), input_multiplier)
    exps = exp_on_negative_values(scaled)
    sum_of_exps = wrap_int32(np.where(valid, rounding_divide_by_pot(exps, ACCUM_INTEGER_BITS), 0)
                             .sum(axis=-1, keepdims=True))
    inv, num_bits_over_unit = reciprocal(sum_of_exps)
    unsat = rounding_divide_by_pot(_mul(inv, exps), num_bits_over_unit + 31 - 8)
    out = np.clip(unsat - 128, -128, 127)
    return np.where(valid, out, -128).astype(np.int8)
