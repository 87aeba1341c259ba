"""Training the zoo's real architectures (issue 11): does integer LoRA learn through DAGs?

    python benchmarks/zoo_train.py            # the table (a few minutes on 2 cores)
    python benchmarks/zoo_train.py --quick    # fewer samples and epochs

Rows:
- ResNet-8 (residual CNN, 32x32x3) adapting to a 4-class image task (dark, or the red, green
  or blue channel bright): int8 LoRA on the head alone, int8 LoRA on every pointwise layer (the 1x1
  shortcut convs and the FC, below and above the residual forks), and float LoRA on the same
  layers (TensorFlow autodiff, same init, data order and step count).
- The MLPerf Tiny anomaly autoencoder (int8 and float32 ends), MSE: the AUC of the
  reconstruction error separating a machine's held-out abnormal from normal samples, before
  and after adapting to that machine's normal data.
- MobileNetV1-0.25 with LoRA on all 14 pointwise layers: a dark/bright task, and the arena with
  recompute none/all/auto.
Each row reports the training-step arena (plan) and its lower bound, and the adapter's bytes.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tinylora  # noqa: E402
from tests.support import zoo  # noqa: E402
from tinylora.planning.arena import plan_trainer  # noqa: E402
from tinylora.ref import lora  # noqa: E402


def load(name: str):
    return tinylora.load_tflite(zoo.build(name, ROOT / ".zoo-cache"))


def pointwise(m) -> tuple:
    return tuple(l.index for l in m.layers if lora.is_adaptable(l))


def image_task(m, n: int, seed: int):
    """4 classes: a dark image, or one whose red, green or blue channel is bright (noise
    around -0.5, a channel at +0.5)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.standard_normal((n,) + m.input_shape) * 0.5 - 0.5
    for k in range(1, 4):
        x[y == k, ..., k - 1] += 1.0
    return m.quantize(x), y


def memory(t) -> tuple[int, int, int]:
    plan = plan_trainer(t)
    return plan.total_bytes, plan.lower_bound_bytes, len(t.adapter.to_bytes())


def resnet_rows(args) -> list[list[str]]:
    """int8 LoRA on the head at --lr; on every pointwise layer, int8 and float LoRA at each of
    --lrs (one learning rate favours either by tens of points on 64 test samples, so the
    comparison is each one's best over the same sweep)."""
    from tests.support.float_dag import FloatDag
    m = load("resnet8")
    x, y = image_task(m, args.train + args.test, args.seed)
    xtr, ytr, xte, yte = x[:args.train], y[:args.train], x[args.train:], y[args.train:]
    rows, best = [], {"int8": 0.0, "float": 0.0}

    def trainer(targets, lr):
        return tinylora.Trainer(m, tinylora.LoRAConfig(rank=4, targets=targets), lr=lr,
                                calibration=xtr[:16], seed=args.seed)

    for what, targets, lrs in (("head (FC)", None, [args.lr]), ("all pointwise", pointwise(m), args.lrs)):
        for lr in lrs:
            t = trainer(targets, lr)
            before = float(np.mean(t.predict(xte) == yte))
            t0 = time.perf_counter()
            t.fit(xtr, ytr, epochs=args.epochs)
            secs = time.perf_counter() - t0
            acc = float(np.mean(t.predict(xte) == yte))
            rows.append(["resnet8", f"int8 LoRA, {what}, lr {lr}", f"acc {before:.1%}", f"acc {acc:.1%}",
                         *map(_b, memory(t)), f"{secs:.0f} s"])
            if targets is None:
                continue
            best["int8"] = max(best["int8"], acc)
            f = FloatDag(trainer(targets, lr))
            t0 = time.perf_counter()
            f.fit(xtr, ytr, epochs=args.epochs, seed=args.seed)
            acc = float(np.mean(np.argmax(f.predict_outputs(xte), axis=1) == yte))
            best["float"] = max(best["float"], acc)
            rows.append(["resnet8", f"float LoRA, {what}, lr {lr}", f"acc {before:.1%}", f"acc {acc:.1%}",
                         "-", "-", "-", f"{time.perf_counter() - t0:.0f} s"])
    rows.append(["resnet8", "all pointwise, best over the lrs: int8 / float", "-",
                 f"{best['int8']:.1%} / {best['float']:.1%}", "-", "-", "-", "-"])
    return rows


def auc(normal: np.ndarray, abnormal: np.ndarray) -> float:
    """P(score of an abnormal sample > score of a normal one), ties half (Mann-Whitney)."""
    a, b = abnormal[:, None], normal[None, :]
    return float(np.mean((a > b) + 0.5 * (a == b)))


def machine_data(n: int, seed: int, abnormal: bool):
    """640-feature 'spectra' of one machine: its own profile plus noise (values within the
    zoo autoencoder's output range, so a reconstruction can reach them); an abnormal sample
    has one band of 32 features shifted by 0.1 (a new tone)."""
    profile = 0.2 * np.tanh(np.random.default_rng(1000).standard_normal(640))
    rng = np.random.default_rng(seed + (7 if abnormal else 0))
    x = profile + 0.03 * rng.standard_normal((n, 640))
    if abnormal:
        for row, start in zip(x, rng.integers(0, 640 - 32, n)):
            row[start:start + 32] += 0.1
    return x.astype(np.float32)


def autoencoder_rows(args) -> list[list[str]]:
    rows = []
    for name in ("autoencoder", "autoencoder_float_io"):
        m = load(name)
        normal = machine_data(args.train + args.test, args.seed, False)
        abnormal = machine_data(args.test, args.seed, True)
        prep = (lambda v: v) if m.input_dtype == "FLOAT32" else m.quantize
        t = tinylora.Trainer(m, tinylora.LoRAConfig(rank=2, loss="mse"), lr=args.ae_lr,
                             calibration=prep(normal[:16]), seed=args.seed)
        out_q = m.layers[t.logits_layer].output_q
        targets = normal if m.output_dtype == "FLOAT32" else _quantize(normal, out_q)
        held = normal[args.train:]
        before = auc(_errors(t, prep, held), _errors(t, prep, abnormal))
        t0 = time.perf_counter()
        t.fit(prep(normal[:args.train]), targets[:args.train], epochs=args.epochs)
        rows.append([name, "int8 LoRA, every FC, MSE", f"AUC {before:.3f}",
                     f"AUC {auc(_errors(t, prep, held), _errors(t, prep, abnormal)):.3f}", *map(_b, memory(t)),
                     f"{time.perf_counter() - t0:.0f} s"])
    return rows


def _errors(t, prep, v) -> np.ndarray:
    """Per-sample reconstruction error in the output's real scale."""
    out_q = t.model.layers[t.logits_layer].output_q
    out = t.logits(prep(v)).astype(np.float64)
    real = (out - float(out_q.zero_point[0])) * float(out_q.scale[0])
    return np.mean((real - v) ** 2, axis=1)


def _quantize(v, q):
    s = v / float(q.scale[0])
    return np.clip(np.sign(s) * np.floor(np.abs(s) + 0.5) + int(q.zero_point[0]), -128, 127).astype(np.int8)


def mobilenet_rows(args) -> list[list[str]]:
    m = load("mobilenet_v1_025")
    rng = np.random.default_rng(args.seed)
    n = args.train // 2 + 16
    y = rng.integers(0, 2, n)   # dark or bright 96x96 images
    x = m.quantize(rng.standard_normal((n,) + m.input_shape) * 0.5 + np.where(y == 1, 0.5, -0.5)[:, None, None, None])
    t = tinylora.Trainer(m, tinylora.LoRAConfig(rank=2, targets=pointwise(m)), lr=args.mobilenet_lr,
                         recompute="auto", calibration=x[:8], seed=args.seed)
    before = float(np.mean(t.predict(x[-16:]) == y[-16:]))
    t0 = time.perf_counter()
    t.fit(x[:-16], y[:-16], epochs=2)
    rows = [["mobilenet_v1_025", f"int8 LoRA, {len(t.adapters)} pointwise, dark/bright",
             f"acc {before:.1%}", f"acc {np.mean(t.predict(x[-16:]) == y[-16:]):.1%}",
             *map(_b, memory(t)), f"{time.perf_counter() - t0:.0f} s"]]
    for mode in ("none", "all", "auto"):
        t = tinylora.Trainer(m, tinylora.LoRAConfig(rank=2, targets=pointwise(m)), recompute=mode)
        rows.append(["mobilenet_v1_025", f"{len(t.adapters)} pointwise LoRA, recompute {mode}"
                     + (f" -> {t.recompute}" if mode == "auto" else ""), "-", "-", *map(_b, memory(t)), "-"])
    return rows


def _b(n: int) -> str:
    return f"{n:,} B"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=0.2, help="ResNet-8 head learning rate")
    p.add_argument("--lrs", type=float, nargs="+", default=[0.1, 0.2, 0.4],
                   help="ResNet-8 pointwise learning rates, int8 and float each")
    p.add_argument("--ae-lr", type=float, default=0.004,
                   help="autoencoder (MSE) learning rate (default 0.004, the Trainer's default)")
    p.add_argument("--mobilenet-lr", type=float, default=0.02)
    args = p.parse_args(argv)
    args.train, args.test, args.epochs = (32, 32, 1) if args.quick else (96, 64, 3)
    rows = resnet_rows(args) + autoencoder_rows(args) + mobilenet_rows(args)
    head = ["model", "training", "before", "after", "arena (plan)", "lower bound", "adapter",
            "time"]
    widths = [max(len(str(r[k])) for r in rows + [head]) for k in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
