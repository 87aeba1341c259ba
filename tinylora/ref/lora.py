"""Integer LoRA for FULLY_CONNECTED and 1x1 CONV_2D layers: forward, backward, update.

The spec in words (``docs/numerics.md`` has the full derivation):

    x_off = x - zp_x                                  (int16)
    acc   = x_off . W^T + bias                        (int32, TFLM's accumulator)
    u     = x_off . A^T                               (int32)
    h     = sat8(rescale(u, M_h))                     (int8 intermediate, scale s_h)
    v     = h . B^T                                   (int32)
    acc'  = sat32(acc + rescale(v, M_join[c]))        (LoRA joins the base accumulator)
    y     = requant_double(acc', M[c]) + zp_y, clamp  (TFLM's own output stage)

``rescale`` is :func:`tinylora.ref.quant.requantize` with single rounding (exact 64-bit
product, half up, saturating); the frozen output stage keeps TFLM's double rounding,
so an adapter whose B is zero gives the base model's bytes exactly.

Backward signals are block floating point: int16 mantissas and one power-of-two
exponent per tensor (:func:`normalize`), with a static real scale known before
training. Updates go to int16 master copies (``MASTER_FRAC_BITS`` fraction bits
below the int8 value the forward uses).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tinylora.errors import InputError
from tinylora.ref import quant
from tinylora.ref.layers import Conv2D, FullyConnected, Layer

MASTER_FRAC_BITS = 8          # master = int8 value * 2^8 (int16 storage)
MASTER_MIN, MASTER_MAX = -(1 << 15), (1 << 15) - 1
ACCUM_FRAC_BITS = 8           # update accumulators hold master units * 2^8 (int32)
GRAD_BITS = 15                # gradient mantissas fit int16
A_INIT = 64                   # A starts uniform in [-64, 64] (half the int8 range: room to grow)
H_SIGMAS = 3.0                # h's int8 range holds this many standard deviations of u = x_off . A
                              # when every entry of A has grown to its int8 bound (+-127)


def normalize(x, bits: int = GRAD_BITS) -> tuple[np.ndarray, int]:
    """Block floating point: (mantissas with |m| < 2^bits, exponent e) with x ~= m * 2^e.

    e = bit_length(max|x|) - bits (negative for small x: mantissas are shifted up, so a
    small gradient keeps its precision); m = x * 2^-e, rounded half away from zero when
    e > 0. An all-zero x gives e = 0.
    """
    x = np.asarray(x, np.int64)
    peak = int(np.abs(x).max()) if x.size else 0
    e = peak.bit_length() - bits if peak else 0
    if e <= 0:
        return x << -e, e
    m = quant.rounding_divide_by_pot(x, e)
    return quant.saturate(m, -(1 << bits) + 1, (1 << bits) - 1), e


def rescale(x, multiplier, shift) -> np.ndarray:
    """Training-time rescale: single rounding, saturating (the one helper's other rule)."""
    return quant.requantize(x, multiplier, shift, rounding="single")


def to_int8(master) -> np.ndarray:
    """The int8 value the forward uses: round(master / 2^8), saturated."""
    return quant.saturate(quant.rounding_divide_by_pot(master, MASTER_FRAC_BITS), -127, 127)


class Xorshift32:
    """The specified integer PRNG (Marsaglia xorshift32, shifts 13/17/5), seed != 0."""

    def __init__(self, seed: int):
        self.state = (seed * 2654435761 + 0x9E3779B9) & 0xFFFFFFFF or 0x9E3779B9

    def next(self) -> int:
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x

    def uniform_int(self, lo: int, hi: int, n: int) -> np.ndarray:
        """n integers in [lo, hi]: (next() * (hi - lo + 1)) >> 32 + lo."""
        span = hi - lo + 1
        return np.array([((self.next() * span) >> 32) + lo for _ in range(n)], np.int64)


def is_adaptable(layer: Layer) -> bool:
    """FULLY_CONNECTED, or a 1x1 CONV_2D (the same math per pixel)."""
    if isinstance(layer, FullyConnected):
        return True
    return (isinstance(layer, Conv2D) and layer.kind == "CONV_2D" and layer.kernel == (1, 1)
            and layer.options["dilation_h"] == 1 and layer.options["dilation_w"] == 1)


def rows_view(layer: Layer, x: np.ndarray) -> np.ndarray:
    """The layer input as (N, rows, depth): FC rows, or the pixels a 1x1 conv visits."""
    if isinstance(layer, Conv2D):
        x = x[:, ::layer.options["stride_h"], ::layer.options["stride_w"], :]
    return x.reshape(x.shape[0], -1, layer.weights.shape[-1])


def lora_rows(layer: Layer) -> int:
    """How many rows (dot products of ``depth`` inputs) one sample gives: the FC input's rows,
    or the output pixels of a 1x1 conv (its stride skips input pixels). The one place of the rule."""
    if layer.kind == "CONV_2D":
        return int(np.prod(layer.output_shape[:2]))
    return int(np.prod(layer.input_shape)) // layer.weights.shape[-1]


def input_grad_scratch_words(rows: int, depth: int, word_bytes: int = 8) -> int:
    """Words of a C backward's input-gradient scratch (int64: tl_lora_dx_words; int32, rows =
    input rows, depth = in_w * in_c: tl_depthwise_dx_words): every row's sums, or, when
    smaller, one row's sums plus a byte per row (its shift) and a bit per value (its sign) for
    the row-at-a-time form. Either gives the bytes of ``normalize`` over the whole tensor;
    numpy keeps the sums in a temporary."""
    row_path = depth + -(-(rows + -(-rows * depth // 8)) // word_bytes)
    return min(rows * depth, row_path)


def row_scratch_shape(shape, word_bytes: int) -> tuple:
    """The planned shape of that scratch for a tensor of ``shape`` summed a ``shape[0]`` row at
    a time: ``shape`` itself when the whole tensor is the smaller, else (words,)."""
    shape = tuple(int(v) for v in shape)
    rows, whole = shape[0], int(np.prod(shape))
    words = input_grad_scratch_words(rows, whole // rows, word_bytes)
    return shape if words == whole else (words,)


def base_weights(layer: Layer) -> np.ndarray:
    """Weights as [C_out, depth] int64."""
    w = layer.weights.astype(np.int64)
    return w.reshape(w.shape[0], -1)


@dataclass
class LayerConstants:
    """Everything about one adapted layer that is fixed before training (from float scales)."""
    rank: int
    s_a: float
    s_b: float
    s_h: float
    m_h: tuple[int, int]
    m_join: tuple[np.ndarray, np.ndarray]
    m_update_b: tuple[int, int] = (0, 0)
    m_update_a: tuple[int, int] = (0, 0)
    extra: dict = field(default_factory=dict)


def choose_scales(layer: Layer, rank: int, alpha: float, rms_x_off: float) -> tuple[float, float, float]:
    """(s_A, s_B, s_h) for a layer; documented in docs/numerics.md.

    A starts uniform with real bound 1/sqrt(depth) (Kaiming-uniform, as float LoRA) on
    [-64, 64]. s_h leaves h room for A's growth: the int8 range of h holds H_SIGMAS standard
    deviations of u even when every entry of A sits at +-127 (u's rms is then
    sqrt(depth) * 127 * rms(x_off)); at initialisation typical |h| is about 12. A linear merge
    of W + BA cannot clamp h, so an h that saturates is an adapter no merge can reproduce.
    B's scale lets a full-range B move the output by about its whole int8 range for h at its
    initial typical size.
    """
    depth = layer.weights.shape[-1]
    s_x = float(layer.input_q.scale[0])
    s_a = 1.0 / math.sqrt(depth) / A_INIT
    rms = max(rms_x_off, 1.0)
    h_typical = s_x * s_a * math.sqrt(depth) * (A_INIT / math.sqrt(3)) * rms   # real |h| at init
    u_rms_full = math.sqrt(depth) * 127 * rms       # u's rms with every entry of A at +-127
    s_h = s_x * s_a * H_SIGMAS * u_rms_full / 127
    s_y = float(layer.output_q.scale[0])
    s_b = s_y * 128 / ((alpha / rank) * h_typical * 127 * math.sqrt(rank))
    return s_a, s_b, s_h


def multiplier(real: float, what: str) -> tuple[int, int]:
    """(q, shift) of a training-time constant. Any magnitude works: the single-rounding
    rescale takes any shift and saturates."""
    if not math.isfinite(real) or real < 0:
        raise InputError(f"{what} multiplier {real!r} is not a finite non-negative number")
    if 0 < real < 2.0 ** -31:   # deep in a DAG the static scales get tiny: keep every bit
        k = -math.frexp(real)[1]  # (scaling by a power of two is exact; the shift carries it)
        q, e = quant.quantize_multiplier(math.ldexp(real, k))
        return q, e - k
    return quant.quantize_multiplier(real)


def layer_constants(layer: Layer, rank: int, alpha: float, rms_x_off: float) -> LayerConstants:
    # float32, as the adapter file stores them: the constants are reproducible from the file
    s_a, s_b, s_h = (float(np.float32(v)) for v in choose_scales(layer, rank, alpha, rms_x_off))
    return constants_for_scales(layer, rank, alpha, s_a, s_b, s_h)


def constants_for_scales(layer: Layer, rank: int, alpha: float, s_a: float, s_b: float,
                         s_h: float) -> LayerConstants:
    """The constants of given (float32) scales: a fresh layer's, or an adapter file's."""
    s_x = float(layer.input_q.scale[0])
    s_w = layer.weights_q.scale.astype(np.float64)
    s_w = np.broadcast_to(s_w, (layer.weights.shape[0],))
    join = [multiplier((alpha / rank) * s_h * s_b / (s_x * sw), "LoRA join") for sw in s_w]
    return LayerConstants(rank, s_a, s_b, s_h, multiplier(s_x * s_a / s_h, "LoRA down"),
                          (np.array([j[0] for j in join], np.int64),
                           np.array([j[1] for j in join], np.int64)))


# ------------------------------------------------------------------------- forward

def lora_forward(layer: Layer, x: np.ndarray, a8: np.ndarray, b8: np.ndarray,
                 k: LayerConstants) -> tuple[np.ndarray, np.ndarray]:
    """(y int8 in the layer's output shape, h int8 (N, rows, r)) for int8 input x."""
    n = x.shape[0]
    x_off = rows_view(layer, x).astype(np.int64) - int(layer.input_q.zero_point[0])
    acc = x_off @ base_weights(layer).T
    if layer.bias is not None:
        acc = acc + layer.bias
    acc = quant.wrap_int32(acc)
    u = x_off @ a8.T
    h = quant.saturate(rescale(u, *k.m_h), -128, 127)
    v = h @ b8.T
    acc = quant.saturate(acc + rescale(v, *k.m_join), quant.INT32_MIN, quant.INT32_MAX)
    y = quant.requantize_to_int8(acc, layer.multiplier, layer.shift,
                                 int(layer.output_q.zero_point[0]), layer.act_min, layer.act_max)
    return y.reshape((n,) + layer.output_shape), h.astype(np.int8)


# ------------------------------------------------------------------------- backward

def activation_bounds(layer: Layer) -> tuple[bool, bool]:
    """(low, high): is each output clamp bound set by the fused activation (ReLU's zero,
    ReLU6's six) rather than by int8 saturation alone?"""
    zp = int(layer.output_q.zero_point[0])
    low = layer.activation in ("RELU", "RELU6") and layer.act_min == max(-128, zp)
    high = layer.activation == "RELU6" and layer.act_max < 127
    return low, high


def output_gradient_mask(layer: Layer, y: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gradient through the output clamp.

    A bound set by the fused activation (ReLU's zero, ReLU6's six) passes no gradient.
    A bound that is only int8 saturation passes the gradient that moves the value back
    into range (descent lowers y where g > 0) and blocks the one that pushes it further out.
    """
    low_is_act, high_is_act = activation_bounds(layer)
    at_low = y == layer.act_min
    at_high = y == layer.act_max
    block = (at_low & (low_is_act | (g > 0))) | (at_high & (high_is_act | (g < 0)))
    return np.where(block, 0, g)


def saturation_mask(h: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Gradient through int8 saturation alone (the directional rule above)."""
    return np.where(((h == -128) & (g > 0)) | ((h == 127) & (g < 0)), 0, g)


def sparsify(delta: np.ndarray, threshold: int, capacity: int | None) -> np.ndarray:
    """Keep the nonzero entries with |delta| >= threshold, at most `capacity` of them (the
    largest, ties to the lower flat index); zero the rest. threshold 0 and no capacity is the
    identity: dense training exactly."""
    if threshold <= 0 and capacity is None:
        return delta
    mag = np.abs(delta).ravel()
    keep = (mag >= threshold) & (mag > 0)
    if capacity is not None and np.count_nonzero(keep) > capacity:
        order = np.lexsort((np.arange(mag.size), -mag))   # by |delta| desc, then index asc
        top = np.zeros(mag.size, bool)
        top[order[:capacity]] = True
        keep &= top
    return np.where(keep.reshape(delta.shape), delta, 0)
