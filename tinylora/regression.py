"""``tinylora train --loss mse``: LoRA on a regression or reconstruction model (MSE), with the
targets given as real values in the model's output space (an .npz: x_train, y_train, and
optionally x_test, y_test; y has the output's shape per sample)."""
from __future__ import annotations

import pathlib
import time

import numpy as np

from tinylora.console import table
from tinylora.errors import InputError
from tinylora.ref import checks
from tinylora.ref.config import LoRAConfig
from tinylora.ref.trainer import Trainer


def _read(path, model):
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise InputError(f"--data {path}: not a readable .npz ({e})") from None
    if not {"x_train", "y_train"} <= set(z.files):
        raise InputError(f"--data {path} holds {sorted(z.files)}; --loss mse needs x_train and "
                         "y_train (targets: real values of the output's shape), optionally "
                         "x_test and y_test")
    test = ("x_test", "y_test") if {"x_test", "y_test"} <= set(z.files) else ("x_train", "y_train")
    return [checks.finite(z[k], f"{path}: {k}") for k in ("x_train", "y_train", *test)]


def _as_input(model, x):
    if model.input_dtype == "FLOAT32":
        return x.astype(np.float32)
    return x if np.issubdtype(x.dtype, np.integer) else model.quantize(x)


def _as_targets(trainer, y):
    """Real targets -> what the trainer takes: float32 for a float-output model, else int8 in
    the output's quantization (round half away from zero, saturated)."""
    out = trainer.model.layers[trainer.logits_layer]
    if out.output_shape != tuple(y.shape[1:]):
        raise InputError(f"targets have shape {tuple(y.shape[1:])} per sample; the model's "
                         f"output is {out.output_shape}")
    v = y.astype(np.float64) / float(out.output_q.scale[0]) + int(out.output_q.zero_point[0])
    outside = float(np.mean((v < -128.5) | (v > 127.5)))
    if outside:
        lo, hi = ((np.array([-128, 127]) - int(out.output_q.zero_point[0])) * float(out.output_q.scale[0]))
        print(f"warning: {outside:.1%} of the targets lie outside the output's range "
              f"[{lo:.4g}, {hi:.4g}]: the model cannot reach them (they count as that bound)")
    if trainer.model.output_dtype == "FLOAT32":
        return y.astype(np.float32)
    v = y.astype(np.float64) / float(out.output_q.scale[0])
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + int(out.output_q.zero_point[0])
    return np.clip(q, -128, 127).astype(np.int8)


def _mse(trainer, x, y_real) -> float:
    out = trainer.model.layers[trainer.logits_layer].output_q
    pred = (trainer.logits(x).astype(np.float64) - float(out.zero_point[0])) * float(out.scale[0])
    return float(np.mean((pred.reshape(y_real.shape) - y_real) ** 2))


def cmd_train_mse(args, model) -> int:
    if not args.data:
        raise InputError("--loss mse needs --data FILE.npz with x_train and y_train (real "
                         "targets of the model's output shape): the bundled tasks are classes")
    xtr, ytr, xte, yte = _read(args.data, model)
    xtr, xte = _as_input(model, xtr), _as_input(model, xte)
    trainer = Trainer(model, LoRAConfig(rank=args.rank, loss="mse"), lr=args.lr, seed=args.seed,
                      grad_density=args.density, recompute=args.recompute, calibration=xtr[:64])
    targets = _as_targets(trainer, ytr)
    before = _mse(trainer, xte, yte)
    t0 = time.perf_counter()
    history = trainer.fit(xtr, targets, epochs=args.epochs)
    seconds = time.perf_counter() - t0
    print(table([[str(h["epoch"]), f"{h['loss']:.6f}"] for h in history], ["epoch", "train MSE"]))
    blob = trainer.adapter.to_bytes()
    print(table([["test MSE (base int8)", f"{before:.6g}"],
                 ["test MSE (adapted)", f"{_mse(trainer, xte, yte):.6g}"],
                 ["steps", f"{args.epochs * len(xtr)} in {seconds:.1f} s"],
                 ["adapter", f"{len(blob)} bytes"]], ["result", "value"]))
    if args.out:
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(blob)
        print(f"wrote {out}")
    return 0
