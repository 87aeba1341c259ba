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

from support.gradcase import gradient_case  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=200)
    args = ap.parse_args()
    res = []
    for seed in range(args.models):
        cosines, lr = gradient_case(seed)
        res += [(c, lr) for _, _, c in cosines]
    cos = np.array([c for c, _ in res])
    print(f"{len(cos)} gradient tensors from {args.models} random models: cosine min {cos.min():.4f}, "
          f"1st percentile {np.percentile(cos, 1):.4f}, median {np.median(cos):.5f}, "
          f"below 0.99: {int(np.sum(cos < 0.99))}")
    for c, lr in sorted(res)[:3]:
        print(f"  lowest: cosine {c:.4f} (read at learning rate {lr:g})")


if __name__ == "__main__":
    main()
