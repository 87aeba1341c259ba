"""AVERAGE_POOL_2D and MAX_POOL_2D (int8), bit-exact with TFLM's reference kernels."""
from __future__ import annotations

import numpy as np

from tinylora.errors import InputError
from tinylora.ref.qparams import Quant, check_nhwc, i64, int8
from tinylora.ref.quant import activation_range


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
    x = i64(x)
    check_nhwc(x, "AVERAGE_POOL_2D")
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
    return int8(np.clip(result, lo, hi))


def max_pool_2d(x, filter_hw, strides, padding: str = "VALID", out: Quant | None = None,
                activation: str = "NONE") -> np.ndarray:
    """MAX_POOL_2D: the largest raw value of the (clipped) window, clamped to the fused
    activation range of ``out``."""
    x = i64(x)
    check_nhwc(x, "MAX_POOL_2D")
    lo, hi = (-128, 127) if out is None else activation_range(activation, out.scale,
                                                               out.zero_point)
    result = None
    for oy, ox, oh, ow, win in _pool_windows(x, *filter_hw, *strides, padding):
        if result is None:
            result = np.zeros((x.shape[0], oh, ow, x.shape[3]), np.int64)
        result[:, oy, ox, :] = win.max(axis=(1, 2))
    return int8(np.clip(result, lo, hi))
