"""How many output bytes of Model.forward were compared with the real kernels, and how many differ.

    python benchmarks/oracles.py

The same comparisons as tests/test_oracles.py (same seeds), counted: the bundled model on
every digit plus noise, random models of each family, the Keras-converted zoo, and the
multiplier-rule probes; against tflite-micro (TFLM) and against LiteRT's BUILTIN_REF
resolver under its per-op rounding rule.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support import keras_zoo, oracles, randmodel  # noqa: E402

import tinylora  # noqa: E402
from tinylora import datasets  # noqa: E402


def compare(model_bytes, x, oracle):
    m = tinylora.load_tflite(model_bytes)
    if oracle == "tflm":
        want, got = oracles.tflm_run(model_bytes, x), m.forward(x)
    else:
        want, got = oracles.litert_ref_run(model_bytes, x), m.forward(x, rounding="litert")
    return got.size, int(np.count_nonzero(got != want.reshape(got.shape)))


def main() -> None:
    rows = []
    t0 = time.perf_counter()
    ex = tinylora.example_model().read_bytes()
    m = tinylora.load_tflite(ex)
    images, _ = datasets.load_digits()
    digits = datasets.to_model_input(m, images[..., None].astype(np.float32) / 16)
    noise = np.random.default_rng(0).integers(-128, 128, (500, 8, 8, 1)).astype(np.int8)
    rows.append(
        ("bundled model: 1797 digits + 500 noise", "tflm", *compare(ex, np.concatenate([digits, noise]), "tflm"))
    )
    rows.append(
        (
            "bundled model: 300 noise",
            "litert",
            *compare(ex, np.random.default_rng(1).integers(-128, 128, (300, 8, 8, 1)).astype(np.int8), "litert"),
        )
    )
    for oracle, base, count in (("tflm", 1000, 100), ("litert", 2000, 40)):
        for k, family in enumerate(randmodel.FAMILIES):
            rng = np.random.default_rng(base + k)
            n = bad = 0
            for _ in range(count):
                mb = randmodel.random_model(rng, family)
                a, b = compare(mb, randmodel.random_input(rng, mb, 4), oracle)
                n, bad = n + a, bad + b
            rows.append((f"{count} random '{family}' models", oracle, n, bad))
    with tempfile.TemporaryDirectory() as cache:
        for oracle, take in (("tflm", 64), ("litert", 16)):
            n = bad = 0
            for i, name in enumerate(sorted(keras_zoo.ZOO)):
                mb = keras_zoo.build(name, cache)
                rng = np.random.default_rng(i)
                x = rng.integers(-128, 128, (64,) + tinylora.load_tflite(mb).input_shape).astype(np.int8)
                a, b = compare(mb, x[:take], oracle)
                n, bad = n + a, bad + b
            rows.append((f"{len(keras_zoo.ZOO)} Keras-converted models", oracle, n, bad))
    total = sum(r[2] for r in rows if r[1] == "tflm")
    width = max(len(r[0]) for r in rows)
    print(f"{'source':{width}s}  oracle  compared  differing")
    for r in rows:
        print(f"{r[0]:{width}s}  {r[1]:6s}  {r[2]:8,d}  {r[3]:9d}")
    print(f"\nagainst TFLM: {total:,} output bytes compared, "
          f"{sum(r[3] for r in rows if r[1] == 'tflm')} differ; "
          f"against LiteRT reference: {sum(r[2] for r in rows if r[1] == 'litert'):,} compared, "
          f"{sum(r[3] for r in rows if r[1] == 'litert')} differ ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
