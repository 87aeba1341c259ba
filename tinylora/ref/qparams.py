"""Per-tensor int8 activation quantization (:class:`Quant`), signed multipliers and the
small helpers shared by the op families of issue 11 (pooling, arith, tensor_ops, activations).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tinylora.errors import InputError
from tinylora.ref.quant import quantize_multiplier, saturate


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


def i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def int8(x) -> np.ndarray:
    return saturate(x, -128, 127).astype(np.int8)


def check_nhwc(x: np.ndarray, what: str) -> None:
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


def fold_weight_signs(weights, scale, zero_point, bias, channels: int, axis: int):
    """Negative per-channel weight scales (TFLM runs them): s * w = (-s) * (-w), so negate the
    channel's weights, bias and scale when that is exact (no weight -128, zero point 0, bias
    not INT32_MIN). Returns (weights, scale, zero_point, bias, signed); ``signed`` when some
    channel cannot fold: scales stay as given and the multiplier keeps the sign
    (:func:`quantize_multiplier_signed`)."""
    scale = np.broadcast_to(scale, (channels,)).astype(np.float32)
    zp = np.broadcast_to(zero_point, (channels,)).astype(np.int64)
    neg = scale < 0
    if not neg.any():
        return weights, scale, zp, bias, False
    w = np.moveaxis(weights, axis, 0)
    exact = all(not (w[c] == -128).any() and zp[c] == 0 and (bias is None or bias[c] != -2**31)
                for c in np.flatnonzero(neg))
    if not exact:
        return weights, scale, zp, bias, True
    sign = np.where(neg, -1, 1)
    w = (w.astype(np.int64) * sign.reshape((-1,) + (1,) * (w.ndim - 1))).astype(np.int8)
    bias = None if bias is None else bias * sign
    return np.moveaxis(w, 0, axis), np.abs(scale), zp, bias, False
