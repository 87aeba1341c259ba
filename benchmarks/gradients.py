"""Gradient correctness at scale: cosine between the integer trainer's dequantized A/B
gradients and float autodiff of the same dequantized forward, over many random models.

    python benchmarks/gradients.py [--models 200]

Same construction as tests/test_train.py::test_int8_gradients_agree_with_float_autodiff (a
random 2-layer MLP, random B, a sample the model gets wrong), over more seeds. The integer
gradient is read from the int32 update accumulators at the largest learning rate that keeps
them off the rails; where that rate is small, the accumulator's resolution limits the cosine.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import tinylora  # noqa: E402
from tinylora import lora  # noqa: E402
from tinylora.floatref import FloatLoRA  # noqa: E402
from tinylora.train import LoRAConfig, Trainer  # noqa: E402
from support import randmodel  # noqa: E402


def cosine(a, b) -> float:
    a, b = np.ravel(a).astype(float), np.ravel(b).astype(float)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def one(seed: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    mb = randmodel.random_model(rng, "mlp", widths=[int(rng.integers(8, 48)), int(rng.integers(4, 16))],
                                softmax=False, edge="none")
    m = tinylora.load_tflite(mb)
    x = randmodel.random_input(rng, mb, 16)
    rank, b_init = int(rng.integers(1, 6)), {}
    for lr in (1.0, 1e-2, 1e-4, 1e-6):
        t = Trainer(m, LoRAConfig(rank=rank), lr=lr, seed=seed, calibration=x)
        for i, ad in t.adapters.items():
            b_init.setdefault(i, rng.integers(-60, 61, ad.b_master.shape) << lora.MASTER_FRAC_BITS)
            ad.b_master = b_init[i].copy()
            ad.refresh()
        label = int(np.argmin(t.logits(x[:1])[0]))
        got = t.gradients(x[0], label)
        unit = lr * 2.0 ** (lora.MASTER_FRAC_BITS + lora.ACCUM_FRAC_BITS)
        peak = max(float(np.max(np.abs(g / s))) * unit for i, ad in t.adapters.items()
                   for g, s in zip(got[i], (ad.k.s_a, ad.k.s_b)))
        if peak < 2**31 - 2:
            break
    want = FloatLoRA(t, 0.01).gradients_at(t.trace(x[0], label), label)
    out = []
    for i in got:
        for g_int, g_float in zip(got[i], want[i]):
            if np.linalg.norm(g_float) > 1e-3 * max(np.linalg.norm(v) for v in want[i]):
                out.append((cosine(g_int, g_float), lr))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=200)
    args = ap.parse_args()
    res = [r for seed in range(args.models) for r in one(seed)]
    cos = np.array([c for c, _ in res])
    print(f"{len(cos)} gradient tensors from {args.models} random models: cosine min {cos.min():.4f}, "
          f"1st percentile {np.percentile(cos, 1):.4f}, median {np.median(cos):.5f}, "
          f"below 0.99: {int(np.sum(cos < 0.99))}")
    for c, lr in sorted(res)[:3]:
        print(f"  lowest: cosine {c:.4f} (read at learning rate {lr:g})")


if __name__ == "__main__":
    main()
