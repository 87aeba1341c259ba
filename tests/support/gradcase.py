"""One gradient-correctness case: the integer trainer's gradients and float autodiff's.

A random 2-layer MLP (tests/support/randmodel.py), a random trained-looking B so that dA is
not zero, and a sample the model gets wrong (the typical training signal; for a confident
right answer the gradient is a few units of the softmax's 1/256 resolution, mostly rounding).
The integer gradient is read from the int32 update accumulators, which hold lr * gradient in
master units: the largest learning rate that keeps them off the rails is used.
"""
from __future__ import annotations

import numpy as np

import tinylora
from tests.support import randmodel
from tinylora.ref import lora
from tinylora.ref.floatref import FloatLoRA
from tinylora.ref.trainer import LoRAConfig, Trainer


def cosine(a, b) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def gradient_case(seed: int, loss: str = "xent"):
    """(cosines [(layer, 'A'|'B', cosine)], learning rate used) for one seeded case; tensors
    whose float gradient is negligible next to the layer's other gradient are left out."""
    rng = np.random.default_rng(seed)
    mb = randmodel.random_model(rng, "mlp", widths=[int(rng.integers(8, 48)), int(rng.integers(4, 16))],
                                softmax=False, edge="none")
    m = tinylora.load_tflite(mb)
    x = randmodel.random_input(rng, mb, 16)
    rank, b_init = int(rng.integers(1, 6)), {}
    pairs, used = {}, []   # (layer, "A"|"B") -> (int gradient, float gradient)
    for lr in (1.0, 1e-2, 1e-4, 1e-6):
        t = Trainer(m, LoRAConfig(rank=rank, loss=loss), lr=lr, seed=seed, calibration=x)
        for i, ad in t.adapters.items():
            b_init.setdefault(i, rng.integers(-60, 61, ad.b_master.shape) << lora.MASTER_FRAC_BITS)
            ad.b_master = b_init[i].copy()
            ad.refresh()
        y0 = t.logits(x[:1])[0]
        label = int(np.argmin(y0)) if loss == "xent" else \
            (y0.astype(int) + np.where(y0 > 0, -20, 20)).astype(np.int8)  # a target 20 units off
        got = t.gradients(x[0], label)
        want = FloatLoRA(t, 0.01).gradients_at(t.trace(x[0], label), label)
        unit = lr * 2.0 ** (lora.MASTER_FRAC_BITS + lora.ACCUM_FRAC_BITS)
        # each tensor at the largest learning rate that keeps its own accumulator off the
        # rails (one lr for all lets a large gradient elsewhere underflow a small one)
        for i, ad in t.adapters.items():
            for g, s, w, name in zip(got[i], (ad.k.s_a, ad.k.s_b), want[i], "AB"):
                if (i, name) not in pairs and float(np.max(np.abs(g / s))) * unit < 2**31 - 2:
                    pairs[(i, name)] = (g, w)
                    used.append(lr)
        if len(pairs) == 2 * len(t.adapters):
            break
    out = []
    for (i, name), (g_int, g_float) in sorted(pairs.items()):
        if np.linalg.norm(g_float) > 1e-3 * max(np.linalg.norm(v) for v in want[i]):
            out.append((i, name, cosine(g_int, g_float)))
    return out, min(used)
