"""Ops that move or convert bytes: PAD/PADV2, CONCATENATION, RESHAPE, QUANTIZE (int8 -> int8
and float32 -> int8) and DEQUANTIZE (int8 -> float32), bit-exact with TFLM."""
from __future__ import annotations

import numpy as np

from tinylora.errors import InputError
from tinylora.ref.qparams import Quant, i64, int8
from tinylora.ref.quant import quantize_multiplier, requantize


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
    return int8(requantize(i64(x) - q_in.zero_point, m, e) + q_out.zero_point)


def ends_params(q_in, q_out) -> tuple[int, int]:
    """(multiplier, shift) of any QUANTIZE between quantized tensors (int8 or uint8):
    QuantizeMultiplier(s_in / s_out); ``q_in``/``q_out`` hold scale and zero point arrays."""
    return quantize_multiplier(float(q_in.scale[0]) / float(q_out.scale[0]))


def requantize_ends(x, q_in, q_out, out_dtype: str) -> np.ndarray:
    """QUANTIZE uint8 -> int8 or int8 -> uint8 (a model converted with uint8 ends): TFLM's
    Requantize, sat(requantize(x - zp_in, m, e) + zp_out) to the output type, with (m, e) =
    QuantizeMultiplier(s_in / s_out). (TFLM's fast path for equal scales and zero points 128
    apart, x ^ 0x80, gives the same bytes.) ``q_in``/``q_out``: scale and zero point arrays."""
    m, e = ends_params(q_in, q_out)
    y = requantize(i64(x) - int(q_in.zero_point[0]), m, e) + int(q_out.zero_point[0])
    if out_dtype == "UINT8":
        return np.clip(y, 0, 255).astype(np.uint8)
    return int8(y)


def quantize_float(x, q_out: Quant) -> np.ndarray:
    """QUANTIZE float32 -> int8 (a model's float input): round(x / float32(scale)) + zp,
    the division in float32, rounding half away from zero, saturated."""
    v = np.asarray(x, np.float32) / np.float32(q_out.scale)
    r = np.trunc(v.astype(np.float64) + np.where(v >= 0, 0.5, -0.5))  # std::round of a float
    r = np.clip(r, -(2.0**31), 2.0**31 - 1).astype(np.int64)
    return int8(r + q_out.zero_point)


def dequantize(x, q_in: Quant) -> np.ndarray:
    """DEQUANTIZE int8 -> float32 (a model's float output): float32(scale) * (x - zp) as a
    float32 product."""
    return (np.float32(q_in.scale) * (i64(x) - q_in.zero_point).astype(np.float32)).astype(
        np.float32)




def reshape(x, shape) -> np.ndarray:
    """RESHAPE: TFLM copies the bytes. When the output tensor's quantization differs from the
    input's, TFLM still copies the bytes (no requantization): the same int8 values are read
    with the output's scale and zero point."""
    return np.asarray(x, np.int8).reshape(shape)
