"""Training state next to the model: one row per reference model (issue 11, item 6).

    python benchmarks/model_memory.py [--only NAME ...] [--cache DIR]

For the zoo models of scripts/make_zoo.py (tests/support/zoo.py) and a TFLM micro_speech-like
model (49x40 input, conv 8 filters 10x8 stride 2, FC 4000->4, softmax): params and MACs (from
the flatbuffer), TFLM's own arena (``print_allocations``' total), tinylora's inference arena
(the same planner on the forward alone), the training-step arena and its lower bound with LoRA
on the head (the last FULLY_CONNECTED / 1x1 CONV_2D before the loss) and on every pointwise
layer (every FC and 1x1 conv, recompute none and all), the bytes of the int8 views in the head
plan (what computing them on the fly would save), and the checkpoint of the default config.
All with the default rank rule (ref/config.default_rank) and the fused update.
Goals: head-only training step <= 1.25x TFLM's arena; default checkpoint <= 1 KB.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tests.support import keras_zoo, zoo  # noqa: E402
from tinylora import LoRAConfig, Trainer, load_tflite  # noqa: E402
from tinylora.errors import TinyLoRAError  # noqa: E402
from tinylora.planning.arena import inference_plan, plan_trainer  # noqa: E402
from tinylora.ref import lora  # noqa: E402

HEAD_GOAL, CHECKPOINT_GOAL = 1.25, 1024


def micro_speech_like() -> bytes:
    """TFLM's micro_speech architecture: 49x40x1 features, CONV_2D 8 filters 10x8 stride 2
    (SAME, ReLU), FULLY_CONNECTED 4000 -> 4, SOFTMAX (seeded weights, not trained)."""
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    keras.utils.set_random_seed(1960)
    L = keras.layers
    inp = keras.Input((49, 40, 1), batch_size=1)
    x = L.Conv2D(8, (10, 8), strides=(2, 2), padding="same", activation="relu")(inp)
    x = L.Dense(4)(L.Flatten()(x))
    model = keras.Model(inp, L.Softmax()(x))
    calib = np.random.default_rng(1960).standard_normal((16, 49, 40, 1)).astype(np.float32)
    return keras_zoo.to_int8_tflite(tf, model, calib)


def _models(only, cache) -> dict[str, bytes]:
    names = list(zoo.MODELS) + ["micro_speech_like"]
    out = {}
    for name in only or names:
        out[name] = micro_speech_like() if name == "micro_speech_like" else zoo.build(name, cache)
    return out


def _trainer(model, x, targets=None, recompute="none") -> Trainer:
    loss = None if model.layers[-1].kind == "SOFTMAX" else "mse"
    return Trainer(model, LoRAConfig(targets=targets), recompute=recompute, calibration=x, loss=loss)


def _pointwise(model, top: int) -> tuple[int, ...]:
    return tuple(l.index for l in model.layers[: top + 1] if lora.is_adaptable(l))


def _plan(model, x, targets, recompute="none"):
    """(arena, lower bound, int8 view bytes) of a training step, or the reason it has none."""
    try:
        p = plan_trainer(_trainer(model, x, targets, recompute))
    except TinyLoRAError as e:
        return str(e).split(":")[0]
    views = sum(b.padded for b in p.buffers if b.what == "int8 views")
    return p.total_bytes, p.lower_bound_bytes, views


def row(name: str, data: bytes) -> dict:
    model = load_tflite(data)
    rng = np.random.default_rng(0)
    if model.input_dtype == "FLOAT32":
        x = rng.standard_normal((16,) + tuple(model.input_shape)).astype(np.float32)
    else:
        x = rng.integers(-128, 128, (16,) + tuple(model.input_shape)).astype(np.int8)
    d = zoo.describe(data)
    default = _trainer(model, x)
    top = default.logits_layer
    head = (_pointwise(model, top)[-1],)
    head_t = _trainer(model, x, head)
    return {"model": name, "params": d["params"], "macs": d["macs"],
            "tflm": zoo.tflm_arena(data)["total"], "inference": inference_plan(model).total_bytes,
            "head": _plan(model, x, head), "pointwise": _plan(model, x, _pointwise(model, top)),
            "pointwise_all": _plan(model, x, _pointwise(model, top), "all"),
            "checkpoint": len(default.checkpoint()), "head_checkpoint": len(head_t.checkpoint()),
            "default": {i: ad.k.rank for i, ad in default.adapters.items()},
            "head_ranks": {i: ad.k.rank for i, ad in head_t.adapters.items()}}


def _cell(plan) -> str:
    return f"{plan[0]:,} / {plan[1]:,}" if isinstance(plan, tuple) else "n/a"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--cache", default=None, help="zoo cache folder (or $TINYLORA_ZOO_CACHE)")
    args = ap.parse_args(argv)
    rows = [row(n, b) for n, b in _models(args.only, args.cache).items()]
    print("| model | params | MACs | TFLM arena | inference arena | step, LoRA on head: arena / "
          "bound (x TFLM) | int8 views | step, LoRA on all pointwise (none / all): arena / bound | "
          "checkpoint: default / head only | default ranks |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    misses = []
    for r in rows:
        h = r["head"]
        ratio = h[0] / r["tflm"] if isinstance(h, tuple) else float("inf")
        pw = f"{_cell(r['pointwise'])}; {_cell(r['pointwise_all'])}"
        views = f"{h[2]:,}" if isinstance(h, tuple) else "-"
        print(f"| {r['model']} | {r['params']:,} | {r['macs']:,} | {r['tflm']:,} | "
              f"{r['inference']:,} | {_cell(h)} ({ratio:.2f}x) | {views} | {pw} | "
              f"{r['checkpoint']:,} / {r['head_checkpoint']:,} | {r['default']} |")
        if ratio > HEAD_GOAL:
            misses.append(f"{r['model']}: head-only step {ratio:.2f}x TFLM's arena (goal "
                          f"{HEAD_GOAL}x); head ranks {r['head_ranks']}")
        if r["checkpoint"] > CHECKPOINT_GOAL:
            misses.append(f"{r['model']}: default checkpoint {r['checkpoint']:,} B (goal "
                          f"{CHECKPOINT_GOAL:,} B); default ranks {r['default']}")
    print("\nmissed goals:" if misses else "\nevery goal met")
    for m in misses:
        print(f"  {m}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
