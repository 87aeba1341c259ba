"""Per-tensor int8 activation quantization (:class:`Quant`), signed multipliers and the
small helpers shared by the op families of issue 11 (pooling, arith, tensor_ops, activations).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
            raise ValueError(f"scale must be a finite positive float32, got {self.scale!r}")
        if not -128 <= int(self.zero_point) <= 127:
            raise ValueError(f"int8 zero point must be in [-128, 127], got {self.zero_point}")
        object.__setattr__(self, "zero_point", int(self.zero_point))


def i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def int8(x) -> np.ndarray:
    return saturate(x, -128, 127).astype(np.int8)


def check_nhwc(x: np.ndarray, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what} expects a 4-D NHWC tensor, got shape {x.shape}; "
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
