"""Merged vs unmerged adapters: accuracy of the merged .tflite (run by TFLM) next to the adapter
run by tinylora's integer forward, on each learning task and on a real architecture (issue 13).

    python benchmarks/merge.py            # every row (about two minutes on 2 cores)
    python benchmarks/merge.py --quick    # fewer training samples

Rows: the bundled tasks 'sensor' and 'remap' and the bundled digits themselves (the base model's
own domain), LoRA rank 4 on every FULLY_CONNECTED layer; and the MLPerf Tiny DS-CNN (Keras'
seeded weights, converted by TF; tests/support/zoo.py) with LoRA on its last FC, trained to
follow a "teacher" that is the same model with a random rank-4 change merged into that FC
(labels = the teacher's argmax on seeded random inputs), so the task is learnable by LoRA.
Columns: base model, adapter unmerged (tinylora), merged (TFLM on the merged file), the
difference in points, how often the two predict the same class, and the bytes in which
tinylora's forward of the merged file differs from TFLM's (must be 0).
"""
from __future__ import annotations

import argparse
import hashlib
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import oracles, zoo  # noqa: E402

import tinylora  # noqa: E402
from tinylora import Adapter, LoRAConfig, Trainer, datasets, tasks  # noqa: E402


def measure(name: str, model, t: Trainer, x: np.ndarray, y: np.ndarray) -> list[str]:
    merged = tinylora.merge(model, t.adapter)
    unmerged_pred = t.predict(x)
    tflm = oracles.tflm_run(merged, x).reshape(len(x), -1)
    ours = tinylora.load_tflite(merged).forward(x).reshape(len(x), -1)
    merged_pred = np.argmax(tflm, -1)
    base = float(np.mean(np.argmax(model.forward(x).reshape(len(x), -1), -1) == y))
    un, me = float(np.mean(unmerged_pred == y)), float(np.mean(merged_pred == y))
    return [name, str(len(x)), f"{base:.2%}", f"{un:.2%}", f"{me:.2%}", f"{100 * (me - un):+.2f}",
            f"{np.mean(unmerged_pred == merged_pred):.2%}", str(int(np.count_nonzero(ours != tflm)))]


def bundled(name: str, args) -> list[str]:
    m = tinylora.load_tflite(tinylora.example_model())
    if name == "digits":
        sp = datasets.digits_split(seed=0)
        xtr, ytr, xte, yte = sp["x_train"], sp["y_train"], sp["x_test"], sp["y_test"]
    else:
        t = tasks.task(name)
        xtr, ytr, xte, yte = t["x_train"], t["y_train"], t["x_test"], t["y_test"]
    xtr, xte = m.quantize(xtr)[: args.samples], m.quantize(xte)
    t = Trainer(m, LoRAConfig(rank=4), lr=0.004, calibration=xtr[:64])
    t.fit(xtr, np.asarray(ytr)[: args.samples], epochs=args.epochs)
    return measure(name, m, t, xte, np.asarray(yte))


def ds_cnn(args) -> list[str]:
    data = zoo.build("ds_cnn", ROOT / ".cache" / "zoo")
    m = tinylora.load_tflite(data)
    fc = [l for l in m.layers if l.kind == "FULLY_CONNECTED"][-1]
    rng = np.random.default_rng(0)
    c_out, k = fc.weights.shape[0], fc.weights.shape[-1]
    teacher = Adapter([dict(index=fc.index, rank=4, s_a=1 / 64 / np.sqrt(k), s_b=0.03, s_h=0.05, alpha=4.0,
                            a=rng.integers(-64, 65, (4, k)) << 8, b=rng.integers(-127, 128, (c_out, 4)) << 8)],
                      hashlib.sha256(data).digest(), "xent")
    teacher_model = tinylora.load_tflite(tinylora.merge(m, teacher))
    n = args.samples + 300
    x = rng.integers(-128, 128, (n,) + m.input_shape).astype(np.int8)
    y = np.argmax(teacher_model.forward(x).reshape(n, -1), -1)
    t = Trainer(m, LoRAConfig(rank=4, targets=(fc.index,)), lr=0.01, calibration=x[:64])
    t.fit(x[300:], y[300:], epochs=args.epochs)
    return measure("DS-CNN (last FC)", m, t, x[:300], y[:300])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 training samples, one epoch")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    args.samples = 300 if args.quick else 100000
    args.epochs = 1 if args.quick else args.epochs
    rows = [bundled(name, args) for name in ("sensor", "remap", "digits")]
    args.samples = min(args.samples, 1200)
    rows.append(ds_cnn(args))
    head = ["task", "test n", "base", "adapter (tinylora)", "merged (TFLM)", "points", "same class",
            "merged: tinylora != TFLM bytes"]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
