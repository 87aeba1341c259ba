"""Does integer LoRA learn as well as float LoRA? Prints the table of issue 3.

    python benchmarks/learning.py            # full sweep (a few minutes on 2 cores)
    python benchmarks/learning.py --quick    # one learning rate, one epoch

For each adaptation task: the base int8 model's accuracy; int8 LoRA (the reference trainer,
integer-only) and float32 LoRA (same architecture, rank, A init, data order and step count),
each at its best learning rate from the sweep; the sparse int8 variant (<= 10% of gradient
entries applied per step); and the accuracy on the original domain after adaptation.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import tinylora
from tinylora import tasks
from tinylora.ref.floatref import FloatLoRA
from tinylora.ref.trainer import LoRAConfig, Trainer


def run(task: dict, lr: float, kind: str, args) -> dict:
    m = tinylora.load_tflite(tinylora.example_model())
    xtr, xte, xorig = (m.quantize(task[k]) for k in ("x_train", "x_test", "x_orig"))
    kw = dict(lr=lr, seed=args.seed, calibration=xtr[:64])
    if kind == "sparse":
        kw["grad_density"] = args.density
    t = Trainer(m, LoRAConfig(rank=args.rank), **kw)
    t0 = time.perf_counter()
    if kind == "float":
        f = FloatLoRA(t, lr)
        f.fit(t.segment_inputs(xtr), task["y_train"], args.epochs, seed=args.seed)
        acc = float(np.mean(f.predict(t.segment_inputs(xte)) == task["y_test"]))
        orig = float(np.mean(f.predict(t.segment_inputs(xorig)) == task["y_orig"]))
    else:
        t.fit(xtr, task["y_train"], epochs=args.epochs)
        acc = float(np.mean(t.predict(xte) == task["y_test"]))
        orig = float(np.mean(t.predict(xorig) == task["y_orig"]))
    steps = args.epochs * len(xtr)
    return dict(acc=acc, orig=orig, lr=lr, steps=steps, seconds=time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rank", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--density", type=float, default=0.1)
    ap.add_argument("--lrs", type=float, nargs="+", default=[0.002, 0.004, 0.008, 0.016])
    ap.add_argument("--quick", action="store_true", help="one learning rate, one epoch")
    args = ap.parse_args()
    if args.quick:
        args.lrs, args.epochs = [0.008], 1
    m = tinylora.load_tflite(tinylora.example_model())
    print(f"bundled digits CNN, LoRA rank {args.rank} on both FULLY_CONNECTED layers, "
          f"{args.epochs} epochs of single-sample SGD, lr sweep {args.lrs}, seed {args.seed}\n")
    header = ("task", "base int8", "int8 LoRA", "float LoRA", "int8-float", f"sparse {args.density:.0%}",
              "orig. domain after (int8)", "int8 steps/s")
    rows = []
    for name in tasks.TASKS:
        task = tasks.task(name, args.seed)
        base = float(np.mean(np.argmax(m.forward(m.quantize(task["x_test"])), -1) == task["y_test"]))
        best = {}
        for kind in ("int8", "float", "sparse"):
            results = [run(task, lr, kind, args) for lr in args.lrs]
            for r in results:
                print(f"  {name:7s} {kind:6s} lr={r['lr']:<6g} acc={r['acc']:.4f} orig={r['orig']:.4f} "
                      f"({r['steps'] / r['seconds']:.0f} steps/s)", flush=True)
            best[kind] = max(results, key=lambda r: (r["acc"], -r["lr"]))
        i, f, s = best["int8"], best["float"], best["sparse"]
        rows.append((name, f"{base:.2%}", f"{i['acc']:.2%} (lr {i['lr']:g})", f"{f['acc']:.2%} (lr {f['lr']:g})",
                     f"{100 * (i['acc'] - f['acc']):+.2f} pt", f"{s['acc']:.2%} (lr {s['lr']:g})",
                     f"{i['orig']:.2%}", f"{i['steps'] / i['seconds']:.0f}"))
    widths = [max(len(str(r[k])) for r in rows + [header]) for k in range(len(header))]
    print()
    for r in [header, tuple("-" * w for w in widths)] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    print("\nint8-float: accuracy of int8 LoRA minus float32 LoRA, each at its best learning rate.")


if __name__ == "__main__":
    main()
