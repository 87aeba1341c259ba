"""Whole-model cost of inference and of one training step (issue 12's whole-model table).

    python benchmarks/models.py [--targets T ...] [--models M ...] [--samples N]
                                [--backend portable|library] [--pointwise] [--json FILE]

Models: the bundled digits CNN (LoRA rank 3 on both FULLY_CONNECTED layers), the MLPerf Tiny
keyword-spotting DS-CNN and the visual-wake-words MobileNetV1-0.25 (tests/support/zoo.py,
converted by the TF converter; LoRA rank 3 on the final FULLY_CONNECTED, the default config:
the conv / depthwise / pooling prefix runs forward only). Targets: Cortex-M4, Cortex-M7,
Xtensa LX106, rv32imc. Each cell is ``tinylora bench --model M --target T`` (exact
instruction counts under QEMU ``-icount``, mean over the samples; see tinylora/bench.py):
The build column is tinylora.targets' variant: the frozen layers are portable C on every
core; ``cortex-m4`` builds the training kernels' dot products portable too (``TL_NO_DSP``),
``cortex-m7`` and the library builds with SMLAD. Inference = the generated ``predict``,
training step = the generated ``step`` (forward, loss, backward, update), ratio = step /
inference.

``--pointwise`` adds a column: the training step with LoRA (rank 3) on every
FULLY_CONNECTED and 1x1 CONV_2D layer (the C backward then runs through the depthwise convs
and the pooling, firmware/src/tl_backward.c), and its ratio to inference.

``--backend library`` runs the frozen layers through the target's library: CMSIS-NN
(Cortex-M4/M7) / ESP-NN as ESP-IDF builds it on chips without the S3 SIMD (generic-opt, Xtensa
and rv32imc), from ``$CMSIS_NN_DIR`` / ``$ESP_NN_DIR`` (``tinylora bench --backend``); ``both``
(the default) measures each cell both ways and adds the columns library inference / portable
inference and library step / portable step. A cell that cannot run says why.
The zoo models are converted once and cached in ``$TINYLORA_ZOO_CACHE`` (default
/tmp/tinylora-zoo).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import tinylora  # noqa: E402
from tinylora import LoRAConfig, Trainer, bench, emulate, tasks  # noqa: E402
from tinylora.errors import TinyLoRAError  # noqa: E402
from tinylora.ref import lora  # noqa: E402

TARGETS = ("cortex-m4", "cortex-m7", "xtensa", "rv32imc")
MODELS = ("bundled", "ds_cnn", "mobilenet_v1_025")
LIBRARY = {"cortex-m4": "cmsis-nn", "cortex-m7": "cmsis-nn", "xtensa": "esp-nn",
           "rv32imc": "esp-nn"}


def load(name: str):
    """(model, inputs, labels) of one benchmark model."""
    if name == "bundled":
        model = tinylora.load_tflite(tinylora.example_model())
        t = tasks.task("sensor")
        return model, model.quantize(t["x_train"][:16]), t["y_train"][:16]
    from support import zoo
    cache = os.environ.get("TINYLORA_ZOO_CACHE", "/tmp/tinylora-zoo")
    model = tinylora.load_tflite(zoo.build(name, cache))
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (16,) + tuple(model.input_shape)).astype(np.int8)
    return model, x, rng.integers(0, model.classes, 16)


def _pointwise_step(model, x, y, target: str, be: str, samples: int) -> int:
    targets = tuple(layer.index for layer in model.layers if lora.is_adaptable(layer))
    trainer = Trainer(model, LoRAConfig(rank=3, targets=targets), lr=0.02, calibration=x)
    r = bench.run_bench(trainer, target, x[:samples], y[:samples], backend=be,
                        command="benchmarks/models.py --pointwise")
    return r.training_step_instructions


def run(names, targets, samples: int, backend: str, pointwise: bool = False) -> list[dict]:
    rows = []
    for name in names:
        model, x, y = load(name)
        trainer = Trainer(model, LoRAConfig(rank=3), lr=0.02, calibration=x)
        adapters = ", ".join(f"{model.layers[i].kind} {i}" for i in sorted(trainer.adapters))
        for target in targets:
            kinds = {"portable": ["portable"], "library": [LIBRARY[target]],
                     "both": ["portable", LIBRARY[target]]}[backend]
            for be in kinds:
                row = {"model": name, "target": target, "backend": be, "macs": model.macs,
                       "adapters": adapters}
                t0 = time.perf_counter()
                try:
                    r = bench.run_bench(trainer, target, x[:samples], y[:samples], backend=be,
                                        command="benchmarks/models.py")
                    row.update(variant=r.variant, inference=r.inference_instructions,
                               step=r.training_step_instructions)
                    if pointwise:
                        row["step_pointwise"] = _pointwise_step(model, x, y, target, be, samples)
                except (TinyLoRAError, emulate.EmulationError) as e:
                    row["error"] = str(e).splitlines()[0][:120]
                row["seconds"] = round(time.perf_counter() - t0, 1)
                print(_line(row), flush=True)
                rows.append(row)
    return rows


def library_table(rows: list[dict]) -> str:
    """Markdown: per model and target, portable and library inference / step / ratio, and the
    library's share of the portable cost."""
    out = ["| model | core | portable inference | portable step | ratio | library | "
           "library inference | library step | ratio | library / portable (inference, step) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    cells = {(r["model"], r["target"], r["backend"]): r for r in rows if "error" not in r}
    for (model, target, be), lib in cells.items():
        port = cells.get((model, target, "portable"))
        if be == "portable" or port is None:
            continue
        out.append(f"| {model} | {target} | {port['inference']:,} | {port['step']:,} | "
                   f"{port['step'] / port['inference']:.3f} | {be} | {lib['inference']:,} | "
                   f"{lib['step']:,} | {lib['step'] / lib['inference']:.3f} | "
                   f"{lib['inference'] / port['inference']:.2f}, {lib['step'] / port['step']:.2f} |")
    return "\n".join(out)


def _line(r: dict) -> str:
    if "error" in r:
        return f"{r['model']:18s} {r['target']:10s} {r['backend']:9s} n/a: {r['error']}"
    return (f"{r['model']:18s} {r['variant']:10s} {r['backend']:9s} {r['macs']:>11,} "
            f"{r['inference']:>14,} {r['step']:>14,} {r['step'] / r['inference']:>6.3f} "
            f"{r['inference'] / r['macs']:>9.2f}"
            + (f" {r['step_pointwise']:>14,} {r['step_pointwise'] / r['inference']:>6.3f}"
               if "step_pointwise" in r else ""))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", nargs="+", default=list(TARGETS), choices=TARGETS)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--backend", choices=("portable", "library", "both"), default="both")
    ap.add_argument("--pointwise", action="store_true",
                    help="also the step with LoRA on every pointwise layer")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    print("Whole-model instructions (QEMU -icount, exact; LoRA rank 3 on the head, default config)")
    print(f"{'model':18s} {'build':10s} {'backend':9s} {'MACs':>11s} {'inference':>14s} "
          f"{'training step':>14s} {'ratio':>6s} {'instr/MAC':>9s}"
          + (f" {'step pointwise':>14s} {'ratio':>6s}" if args.pointwise else ""))
    rows = run(args.models, args.targets, args.samples, args.backend, args.pointwise)
    if args.backend == "both":
        print("\n" + library_table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
