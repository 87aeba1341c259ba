"""The losses: softmax cross-entropy on int8 logits and mean squared error, in fixed point.

The probabilities are the device's own int8 softmax (TFLM's algorithm, scale 1/256,
zero point -128), so the loss gradient needs no float:

    dL/dz_real = beta * (p - onehot)   ->   g = (p_q + 128) - 256 * onehot,  scale beta/256

The loss itself, for reporting and for the C runtime's logs, is
``LOSS_LUT[p_q + 128]`` = round(-ln(k / 256) * 2^10) for k = p_q + 128 (k = 0 is
taken as k = 1/2): a Q10 value, a constant table built before training.
"""
from __future__ import annotations

import math

import numpy as np

from tinylora.errors import ConfigError
from tinylora.ref.quant import quantize_multiplier, requantize
from tinylora.ref.softmax import softmax_int8

LOSS_FRAC_BITS = 10
LOSS_LUT = np.array([round(-math.log(max(k, 0.5) / 256) * (1 << LOSS_FRAC_BITS))
                     for k in range(257)], dtype=np.int64)


def xent_grad(logits, label: int, softmax_params) -> tuple[np.ndarray, int]:
    """(gradient g in units of beta/256, loss in Q10) for one sample's int8 logits."""
    p = softmax_int8(np.asarray(logits, np.int64), *softmax_params).astype(np.int64) + 128
    g = p.copy()
    g[..., label] -= 256
    return g, int(LOSS_LUT[p[..., label]].sum())


def loss_real(loss_q10) -> float:
    """A Q10 loss as a float (for display only)."""
    return float(loss_q10) / (1 << LOSS_FRAC_BITS)


LOSSES = ("xent", "mse")


def choose_loss(requested: str | None, last_kind: str) -> str:
    """The loss of a model whose last op is ``last_kind``: the one asked for, else inferred
    when that is safe (SOFTMAX -> cross-entropy); a non-softmax output is never taken as
    classes without being told."""
    if requested is not None:
        if requested not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {requested!r}")
        return requested
    if last_kind == "SOFTMAX":
        return "xent"
    raise ConfigError(f"the model ends in {last_kind}, not SOFTMAX, so tinylora will not guess "
                      "its loss: pass loss='mse' (regression or reconstruction: targets are "
                      "values in the model's output space) or loss='xent' (the outputs are class "
                      "logits: a softmax is applied on top) to LoRAConfig or Trainer (the CLI: "
                      "--loss mse or --loss xent)")


def mse_constants(out_scale: float, n: int) -> tuple[float, tuple[int, int]]:
    """(real dL/dy per gradient unit, Q10 loss multiplier) of MSE over ``n`` outputs of scale
    ``out_scale``: g = y_q - t_q (int8 units, exponent 0, as the cross-entropy gradient). The
    gradient is the summed squared error's, dL/dy = 2 s g, not the mean's 2 s g / n: a mean
    would shrink every step by the output count (640 on the MLPerf autoencoder) and tie the
    learning rate to it. The reported loss stays the mean, loss_q10 = sum(g^2) * s^2 * 2^10 / n
    (one rounding, from the integer sum)."""
    return 2.0 * out_scale, quantize_multiplier(out_scale * out_scale * (1 << LOSS_FRAC_BITS) / n)


def mse_grad(y, target, loss_q) -> tuple[np.ndarray, int]:
    """(gradient g = y - t in output units, loss in Q10) for one sample's int8 output and its
    int8 target (the target quantized with the output's scale and zero point)."""
    g = np.asarray(y, np.int64) - np.asarray(target, np.int64)
    total = int((g * g).sum())    # <= 255^2 * n: int64 always, int32 below 33k outputs
    q, e = loss_q
    loss = int(requantize(np.int64(total), q, e, "single")) if total else 0
    return g, loss
