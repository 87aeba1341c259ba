"""Fixed-point primitives: the one rounding helper everything else uses.

This module is the arithmetic of the specification. Every function works on
numpy integer arrays (vectorised) and uses only int64 products, additions,
bitwise ands and arithmetic right shifts (``>>``, a floor shift), never float
or ``//`` on the data path. Floats appear only in :func:`quantize_multiplier`,
which turns a real scale into an integer constant *before* anything runs.

Rounding, stated once:

* ``quantize_multiplier``: round half away from zero (C's ``round``).
* ``srdhm`` (saturating rounding doubling high multiply): ``(a*b + 2^30) >> 31``,
  ties toward +infinity; the single overflow case ``INT32_MIN * INT32_MIN``
  saturates to ``INT32_MAX``.
* ``rounding_divide_by_pot``: ties away from zero.
* ``requantize`` ("double rounding", TFLM/CMSIS-NN/ESP-NN default):
  ``rounding_divide_by_pot(srdhm(x << left, q), right)``. The left shift wraps
  modulo 2^32, as the int32 arithmetic of the devices does.
* ``requantize(..., rounding="single")``: one rounding of the exact 64-bit
  product, ``(x*q + 2^(30-shift)) >> (31-shift)`` (ties toward +infinity), the
  rule of LiteRT >= 1.3's reference FULLY_CONNECTED.
"""
from __future__ import annotations

import math

import numpy as np

from tinylora.errors import InputError

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

#: The two requantization rounding rules.
ROUNDINGS = ("double", "single")


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def wrap_int32(x) -> np.ndarray:
    """Reduce int64 values modulo 2^32 into int32 range (two's complement wrap)."""
    x = _i64(x)
    return ((x + 2**31) & 0xFFFFFFFF) - 2**31


def saturate(x, lo: int, hi: int) -> np.ndarray:
    """Clamp to [lo, hi] (the only saturation primitive)."""
    return np.clip(_i64(x), lo, hi)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Real multiplier -> (q_fixed int32, shift) with real ~= q_fixed * 2^(shift-31).

    ``shift > 0`` means a left shift. Half away from zero; a multiplier whose
    exponent is below -31 becomes (0, 0); zero gives (0, 0).
    """
    real = float(real)
    if not math.isfinite(real) or real < 0:
        raise InputError(f"multiplier must be finite and >= 0, got {real!r}")
    if real == 0.0:
        return 0, 0
    q, e = math.frexp(real)  # real = q * 2^e, q in [0.5, 1)
    q_fixed = math.floor(q * 2**31 + 0.5)  # q > 0: floor(v + 0.5) is half away from zero
    if q_fixed == 2**31:
        q_fixed //= 2
        e += 1
    if e < -31:
        return 0, 0
    return int(q_fixed), int(e)


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """Vector form of :func:`quantize_multiplier`: (int32 multipliers, int32 shifts)."""
    pairs = [quantize_multiplier(r) for r in np.asarray(reals, dtype=np.float64).ravel()]
    mult = np.array([p[0] for p in pairs], dtype=np.int32)
    shift = np.array([p[1] for p in pairs], dtype=np.int32)
    return mult, shift


def real_multipliers(in_scale, w_scales, out_scale) -> np.ndarray:
    """The real output multipliers as TFLM forms them: double(in) * double(w[c]) / double(out).

    Measured against the tflite-micro interpreter for per-channel and per-tensor weights, in
    FULLY_CONNECTED and CONV_2D alike (a float32 product first, as older TFLite code did for
    per-tensor layers, disagrees with it; see tests/test_oracles.py)."""
    w = np.asarray(w_scales, dtype=np.float32).astype(np.float64)
    return float(np.float32(in_scale)) * w / float(np.float32(out_scale))


def srdhm(a, b) -> np.ndarray:
    """Saturating rounding doubling high multiply of int32 values (int64 result in int32 range)."""
    a = _i64(a)
    b = _i64(b)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    high = (a * b + (1 << 30)) >> 31
    return np.where(overflow, INT32_MAX, high)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """x / 2^exponent rounded half away from zero; exponent in [0, 31]."""
    x = _i64(x)
    exponent = _i64(exponent)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def saturating_left_shift(x, exponent: int) -> np.ndarray:
    """x * 2^exponent saturated to int32 (gemmlowp's SaturatingRoundingMultiplyByPOT, exponent > 0)."""
    x = _i64(x)
    threshold = (1 << (31 - exponent)) - 1
    out = x << exponent
    out = np.where(x > threshold, INT32_MAX, out)
    return np.where(x < -threshold, INT32_MIN, out)


def requantize(acc, multiplier, shift, rounding: str = "double") -> np.ndarray:
    """Scale int32 values by q_fixed * 2^(shift-31): the one rounding helper.

    ``multiplier``/``shift`` broadcast against ``acc`` (per-channel along the last
    axis). The result is int64 holding an int32 value.

    * ``"double"``: TFLM's two roundings (srdhm, then a rounding right shift);
      ``shift`` in [-31, 30]. Frozen base layers use this, bit-exact with TFLM.
    * ``"single"``: one rounding of the exact 64-bit product, half toward +infinity,
      saturated to int32, for any ``shift`` (a shift past the product's bits gives 0).
      LiteRT's reference FULLY_CONNECTED and every training-time rescale use this.
    """
    acc = _i64(acc)
    multiplier = _i64(multiplier)
    shift = _i64(shift)
    if rounding == "double":
        left = np.maximum(shift, 0)
        right = np.maximum(-shift, 0)
        return rounding_divide_by_pot(srdhm(wrap_int32(acc << left), multiplier), right)
    if rounding == "single":
        return _single_rounding(acc, multiplier, shift)
    raise InputError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")


def _single_rounding(acc, multiplier, shift) -> np.ndarray:
    prod = acc * multiplier  # |acc|, |multiplier| <= 2^31: exact in int64
    total = 31 - shift       # the right shift; <= 0 means a left shift
    right = np.clip(total, 1, 62)
    down = (prod + (np.int64(1) << (right - 1))) >> right
    down = np.where(total > 62, 0, down)
    left = np.clip(-total, 0, 32)
    limit = np.int64(INT32_MAX) >> left
    up = np.where(prod > limit, INT32_MAX, np.where(prod < -limit - 1, INT32_MIN,
                                                    np.clip(prod, -limit - 1, limit) << left))
    return saturate(np.where(total >= 1, down, up), INT32_MIN, INT32_MAX)


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """The int8 clamp of a fused activation (TFLite's CalculateActivationRangeQuantized)."""
    lo, hi = -128, 127
    if activation == "NONE":
        return lo, hi
    if activation == "RELU":
        return max(lo, zero_point), hi
    if activation == "RELU6":
        return max(lo, zero_point), min(hi, zero_point + _quantize_f32(6.0, scale))
    if activation == "RELU_N1_TO_1":
        return (max(lo, zero_point + _quantize_f32(-1.0, scale)),
                min(hi, zero_point + _quantize_f32(1.0, scale)))
    raise InputError(f"unsupported fused activation {activation!r}")


def _quantize_f32(value: float, scale: float) -> int:
    """round(value / scale) as TFLite computes it: a float32 division, half away from zero."""
    v = float(np.float32(value) / np.float32(scale))
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def requantize_to_int8(acc, multiplier, shift, zero_point: int, act_min: int, act_max: int,
                       rounding: str = "double") -> np.ndarray:
    """Requantize, add the output zero point and clamp: the tail of every int8 kernel."""
    y = requantize(acc, multiplier, shift, rounding) + zero_point
    return saturate(y, act_min, act_max).astype(np.int8)
