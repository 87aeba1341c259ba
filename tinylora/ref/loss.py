"""Softmax cross-entropy on int8 logits, in fixed point.

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
