"""Int8 reference of the ops issue 11 adds, bit-exact with TFLM's int8 reference kernels.

Standalone for now (it will move into the package's op layer). Written like the spec: one
small function per op, numpy int64 arithmetic on the data path, the rounding helpers of
:mod:`tinylora.quant` (and the gemmlowp fixed-point functions of :mod:`tinylora.softmax`).
Floats appear only where TFLM computes constants from scales before anything runs, and in
QUANTIZE from float32 / DEQUANTIZE to float32, which are float by definition (a model's float
ends). docs/ops.md states the arithmetic of each op in words.

Tensors are numpy arrays in TFLite's layout (NHWC for 4-D). Every function returns int8 (or
float32 for DEQUANTIZE).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinylora.errors import InputError
from tinylora.ref.quant import (
    INT32_MAX,
    activation_range,
    quantize_multiplier,
    requantize,
    rounding_divide_by_pot,
    saturate,
    wrap_int32,
)
from tinylora.ref.softmax import exp_on_negative_values, one_over_one_plus_x_for_x_in_0_1

__all__ = [
    "Quant", "quantize_multiplier_signed", "pool_geometry", "average_pool_2d", "max_pool_2d",
    "add_params", "add",
    "pad", "mean_params", "mean", "concatenation", "quantize_params", "requantize_int8",
    "quantize_float", "dequantize", "logistic_params", "logistic", "hard_swish_params",
    "hard_swish", "reshape",
]


@dataclass(frozen=True)
class Quant:
    """Per-tensor quantization of an int8 activation: real = scale * (q - zero_point).

    ``scale`` is held as the float32 the .tflite file stores."""
    scale: float
    zero_point: int

    def __post_init__(self):
        object.__setattr__(self, "scale", float(np.float32(self.scale)))
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise InputError(f"scale must be a finite positive float32, got {self.scale!r}")
        if not -128 <= int(self.zero_point) <= 127:
            raise InputError(f"int8 zero point must be in [-128, 127], got {self.zero_point}")
        object.__setattr__(self, "zero_point", int(self.zero_point))


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def _int8(x) -> np.ndarray:
    return saturate(x, -128, 127).astype(np.int8)


def _check_nhwc(x: np.ndarray, what: str) -> None:
    if x.ndim != 4:
        raise InputError(f"{what} expects a 4-D NHWC tensor, got shape {x.shape}; "
                         "reshape the input to [N, H, W, C] first")


# --------------------------------------------------------------------------- signed scales


def quantize_multiplier_signed(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier for any sign (per-channel weight scales can be negative:
    TFLM runs such models). frexp keeps the sign, the rounding is half away from zero, so
    m(-r) = -m(r), except that a mantissa rounding to 2^31 is renormalised only when positive
    (a negative one stays -2^31 = INT32_MIN with the same exponent)."""
    real = float(real)
    if real >= 0:
        return quantize_multiplier(real)
    q, e = math.frexp(real)
    q_fixed = -math.floor(-q * 2**31 + 0.5)
    if e < -31:
        return 0, 0
    return int(q_fixed), int(e)


# --------------------------------------------------------------------------- pooling


def pool_geometry(in_size: int, filter_size: int, stride: int, padding: str) -> tuple[int, int]:
    """(output size, padding before) along one axis, as TFLite computes them.

    VALID: out = (in - filter + stride) // stride, no padding. SAME: out = ceil(in / stride),
    total padding max((out - 1) * stride + filter - in, 0) split with the smaller half before."""
    if stride < 1 or filter_size < 1:
        raise InputError(f"stride and filter size must be >= 1, got {stride}, {filter_size}")
    if padding == "VALID":
        out = (in_size - filter_size + stride) // stride
        return out, 0
    if padding == "SAME":
        out = (in_size + stride - 1) // stride
        return out, max((out - 1) * stride + filter_size - in_size, 0) // 2
    raise InputError(f"padding must be 'SAME' or 'VALID', got {padding!r}")


def _pool_windows(x: np.ndarray, fh: int, fw: int, sh: int, sw: int, padding: str):
    """Yield (oy, ox, window) with the window clipped to the input (no padded values)."""
    _, h, w, _ = x.shape
    oh, pad_h = pool_geometry(h, fh, sh, padding)
    ow, pad_w = pool_geometry(w, fw, sw, padding)
    if oh < 1 or ow < 1:
        raise InputError(f"a {fh}x{fw} filter with {padding} padding leaves no output on a "
                         f"{h}x{w} input; use SAME padding or a smaller filter")
    for oy in range(oh):
        y0 = oy * sh - pad_h
        for ox in range(ow):
            x0 = ox * sw - pad_w
            yield oy, ox, oh, ow, x[:, max(y0, 0):min(y0 + fh, h), max(x0, 0):min(x0 + fw, w), :]


def average_pool_2d(x, filter_hw, strides, padding: str = "VALID", out: Quant | None = None,
                    activation: str = "NONE") -> np.ndarray:
    """AVERAGE_POOL_2D: the sum of the window's raw int8 values (padding excluded, zero
    points not subtracted: input and output share their quantization) divided by the count,
    rounded half away from zero, clamped to the fused activation range of ``out``."""
    x = _i64(x)
    _check_nhwc(x, "AVERAGE_POOL_2D")
    lo, hi = (-128, 127) if out is None else activation_range(activation, out.scale,
                                                               out.zero_point)
    result = None
    for oy, ox, oh, ow, win in _pool_windows(x, *filter_hw, *strides, padding):
        if result is None:
            result = np.zeros((x.shape[0], oh, ow, x.shape[3]), np.int64)
        count = win.shape[1] * win.shape[2]
        acc = win.sum(axis=(1, 2))
        # C integer division truncates toward zero; acc +- count/2 first: half away from 0
        num = np.where(acc > 0, acc + count // 2, acc - count // 2)
        result[:, oy, ox, :] = np.sign(num) * (np.abs(num) // count)
    return _int8(np.clip(result, lo, hi))


def max_pool_2d(x, filter_hw, strides, padding: str = "VALID", out: Quant | None = None,
                activation: str = "NONE") -> np.ndarray:
    """MAX_POOL_2D: the largest raw value of the (clipped) window, clamped to the fused
    activation range of ``out``."""
    x = _i64(x)
    _check_nhwc(x, "MAX_POOL_2D")
    lo, hi = (-128, 127) if out is None else activation_range(activation, out.scale,
                                                               out.zero_point)
    result = None
    for oy, ox, oh, ow, win in _pool_windows(x, *filter_hw, *strides, padding):
        if result is None:
            result = np.zeros((x.shape[0], oh, ow, x.shape[3]), np.int64)
        result[:, oy, ox, :] = win.max(axis=(1, 2))
    return _int8(np.clip(result, lo, hi))


# --------------------------------------------------------------------------- add


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
    a = (_i64(x1) - q1.zero_point) * (1 << p.left_shift)
    b = (_i64(x2) - q2.zero_point) * (1 << p.left_shift)
    sa = requantize(a, p.input1_multiplier, p.input1_shift)
    sb = requantize(b, p.input2_multiplier, p.input2_shift)
    raw = requantize(wrap_int32(sa + sb), p.output_multiplier, p.output_shift) + qo.zero_point
    lo, hi = activation_range(activation, qo.scale, qo.zero_point)
    return _int8(np.clip(raw, lo, hi))


# --------------------------------------------------------------------------- pad


def pad(x, paddings, pad_value: int) -> np.ndarray:
    """PAD / PADV2: copy the input bytes unchanged into a larger tensor filled with
    ``pad_value`` (PAD: the output zero point; PADV2: the constant's int8 value, which TFLM
    requires to share the output's quantization). ``paddings``: (before, after) per axis."""
    x = np.asarray(x, np.int8)
    paddings = [(int(b), int(a)) for b, a in paddings]
    if len(paddings) != x.ndim or any(b < 0 or a < 0 for b, a in paddings):
        raise InputError(f"paddings must give non-negative (before, after) for each of the "
                         f"{x.ndim} axes, got {paddings}")
    if not -128 <= int(pad_value) <= 127:
        raise InputError(f"int8 pad value must be in [-128, 127], got {pad_value}")
    return np.pad(x, paddings, mode="constant", constant_values=np.int8(pad_value))


# --------------------------------------------------------------------------- mean


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
    x = _i64(x)
    axes = tuple(sorted({int(a) % x.ndim for a in np.atleast_1d(axes)}))
    count = int(np.prod([x.shape[a] for a in axes]))
    if count < 1:
        raise InputError(f"MEAN over axes {axes} of shape {x.shape} averages nothing")
    total = x.sum(axis=axes, keepdims=keep_dims)
    m, s = mean_params(q_in, q_out, count)
    y = requantize(wrap_int32(total - q_in.zero_point * count), m, s) + q_out.zero_point
    return _int8(y)


# --------------------------------------------------------------------------- concatenation


def concatenation(xs, axis: int, q_inputs=None, q_out: Quant | None = None) -> np.ndarray:
    """CONCATENATION (int8): the input bytes copied along ``axis``.

    TFLM never requantizes here: its Prepare refuses a model whose inputs' scale or zero
    point differ from the output's (measured: "input->params.scale != output->params.scale",
    the model fails to allocate). The TF converter gives all inputs the output's
    quantization. Given the quantizations, this function refuses the same models."""
    if q_inputs is not None and q_out is not None:
        bad = concatenation_quant_mismatch(q_inputs, q_out)
        if bad:
            raise InputError(f"CONCATENATION inputs {bad} are quantized differently from the "
                             f"output ({q_out}); TFLM refuses such a model. Insert a QUANTIZE "
                             "op before those inputs (or re-convert the model)")
    return np.concatenate([np.asarray(x, np.int8) for x in xs], axis=axis)


def concatenation_quant_mismatch(q_inputs, q_out: Quant) -> list[int]:
    """Indices of inputs whose quantization differs from the output's."""
    return [i for i, q in enumerate(q_inputs) if q != q_out]


# --------------------------------------------------------------------------- quantize


def quantize_params(q_in: Quant, q_out: Quant) -> tuple[int, int]:
    """(multiplier, shift) of an int8 -> int8 QUANTIZE: QuantizeMultiplier(s_in / s_out)."""
    return quantize_multiplier(q_in.scale / q_out.scale)


def requantize_int8(x, q_in: Quant, q_out: Quant) -> np.ndarray:
    """QUANTIZE int8 -> int8: requantize(x - zp_in, m, e) + zp_out, saturated (double
    rounding)."""
    m, e = quantize_params(q_in, q_out)
    return _int8(requantize(_i64(x) - q_in.zero_point, m, e) + q_out.zero_point)


def quantize_float(x, q_out: Quant) -> np.ndarray:
    """QUANTIZE float32 -> int8 (a model's float input): round(x / float32(scale)) + zp,
    the division in float32, rounding half away from zero, saturated."""
    v = np.asarray(x, np.float32) / np.float32(q_out.scale)
    r = np.trunc(v.astype(np.float64) + np.where(v >= 0, 0.5, -0.5))  # std::round of a float
    r = np.clip(r, -(2.0**31), 2.0**31 - 1).astype(np.int64)
    return _int8(r + q_out.zero_point)


def dequantize(x, q_in: Quant) -> np.ndarray:
    """DEQUANTIZE int8 -> float32 (a model's float output): float32(scale) * (x - zp) as a
    float32 product."""
    return (np.float32(q_in.scale) * (_i64(x) - q_in.zero_point).astype(np.float32)).astype(
        np.float32)


# --------------------------------------------------------------------------- logistic

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
    a = _i64(a)
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
    d = _i64(x) - q_in.zero_point
    q4 = requantize(d, p.input_multiplier, p.input_left_shift)
    y = rounding_divide_by_pot(_logistic_q0(q4), 31 - 8) - 128
    y = np.where(d <= -p.input_range_radius, -128, np.where(d >= p.input_range_radius, 127, y))
    return _int8(y)


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
    a, b = _i64(a), _i64(b)
    return np.where((a == INT16_MIN) & (b == INT16_MIN), INT16_MAX, (a * b + (1 << 14)) >> 15)


def _sdhm16(a, b):
    """TFLite's SaturatingDoublingHighMul on int16: (a*b) / 2^15 truncated toward zero."""
    a, b = _i64(a), _i64(b)
    p = a * b
    return np.where((a == INT16_MIN) & (b == INT16_MIN), INT16_MAX,
                    np.sign(p) * (np.abs(p) >> 15))


def _sat_shl16(x, n: int):
    return np.clip(_i64(x) * (1 << n), INT16_MIN, INT16_MAX)


def _wrap16(x):
    return ((_i64(x) + 2**15) & 0xFFFF) - 2**15


def hard_swish(x, q_in: Quant, q_out: Quant) -> np.ndarray:
    """HARD_SWISH int8 (TFLite's reference, in int16 fixed point):
    v = (x - zp_in) * 2^7; y_pre = srdhm16(v, m_out); r = v rescaled by the reluish multiplier
    to [-1, 1] in Q15 (saturating), mapped to [0, 1]: (r + 2^15) >> 1; y = RDBP(sdhm16(r, y_pre),
    -e_out) + zp_out, saturated to int8."""
    p = hard_swish_params(q_in, q_out)
    v = (_i64(x) - q_in.zero_point) * (1 << 7)
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
    return _int8(y)


# --------------------------------------------------------------------------- reshape


def reshape(x, shape) -> np.ndarray:
    """RESHAPE: TFLM copies the bytes. When the output tensor's quantization differs from the
    input's, TFLM still copies the bytes (no requantization): the same int8 values are read
    with the output's scale and zero point."""
    return np.asarray(x, np.int8).reshape(shape)


__all__ += ["AddParams", "LogisticParams", "HardSwishParams", "concatenation_quant_mismatch",
            "INT16_MIN", "INT16_MAX"]
