"""Compute cost of a training step: exact instruction counts under QEMU.

    python benchmarks/cost.py [--samples N] [--targets T ...] [--density D] [--recompute MODE]
                              [--keep DIR]

For the bundled digits CNN (rank 3 on both FULLY_CONNECTED layers, the 'sensor' task), the
generated C of ``tinylora.codegen.step`` is built into ``benchmarks/cost_main.c`` and run under
QEMU with ``-icount`` (instructions drive the virtual clock, so counters are deterministic).
Reported per target: instructions of the frozen base inference (``frozen.py``'s forward, with
its softmax), of an adapted inference (``<p>_predict``; both means over N samples: clamps, rounding and the
softmax make the count data-dependent), of a training step (mean, min and max over the same
samples; forward + loss + backward + update), the step / inference ratio, and
instructions per MAC of the frozen FULLY_CONNECTED kernel (the slope between a 256- and a
512-deep layer of 64 outputs, so call overhead cancels). The frozen kernels are portable C on
every core; ``cortex-m4-dsp`` differs from ``cortex-m4`` only in the training kernels' dot
products (SMLAD).

Counters (``firmware/testing/tl_counter.h``) and how each is made exact: see
:mod:`tinylora.bench` (shared with ``tinylora bench``). The cost of the counter reads
themselves (an empty region) is subtracted.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

import tinylora
from tinylora import bench, emulate, tasks
from tinylora.codegen import c_array_rows
from tinylora.codegen.frozen import generate_frozen_c, plan_frozen
from tinylora.codegen.step import generate_step
from tinylora.ref.trainer import LoRAConfig, Trainer

HERE = Path(__file__).resolve().parent

# name -> (emulate target, defines)
TARGETS = {
    "cortex-m4": ("cortex-m4", {"TL_NO_DSP": 1}),
    "cortex-m4-dsp": ("cortex-m4", None),
    "cortex-m7": ("cortex-m7", None),
    "xtensa": ("xtensa", None),
    "rv32imc": ("rv32imc", None),
}


def _samples_header(model, x, y, frozen) -> str:
    rows = "\n".join(f"    {{ {row.rstrip(',')} }}," for row in
                     (", ".join(map(str, s.reshape(-1).tolist())) for s in x))
    return (f"#define COST_SAMPLES {len(y)}\n"
            f"#define BASE_SCRATCH_SIZE {frozen.scratch_size}\n"
            f"#define BASE_OUTPUT_SIZE {frozen.output_size}\n"
            f"static const int8_t cost_inputs[{len(y)}][{frozen.input_size}] = {{\n{rows}\n}};\n"
            f"static const int32_t cost_labels[{len(y)}] = {{ {' '.join(c_array_rows(y, 1000))} }};\n")


def build(target: str, trainer: Trainer, x, y, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model = trainer.model
    for name, text in generate_step(trainer, prefix="ex", command="benchmarks/cost.py").items():
        (out / name).write_text(text)
    (out / "base.c").write_text(generate_frozen_c(model, prefix="base", command="benchmarks/cost.py"))
    (out / "cost_samples.h").write_text(_samples_header(model, x, y, plan_frozen(model, "base")))
    fw = emulate.firmware_dir()
    emu, defines = TARGETS[target]
    return emulate.build(emu, [HERE / "cost_main.c", out / "ex.c", out / "base.c",
                               fw / "src" / "tl_train.c", fw / "src" / "tl_checkpoint.c"], out, defines,
                         include_dirs=[out])


def measure(target: str, elf: Path) -> dict[str, np.ndarray]:
    """Instructions of every measured region (counter overhead subtracted)."""
    counts = bench.measure(TARGETS[target][0], elf, ("empty", "base", "predict", "step", "fc"), timeout=300)
    overhead = int(counts.pop("empty")[0])
    return {k: v - overhead for k, v in counts.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--targets", nargs="*", default=list(TARGETS), choices=list(TARGETS))
    ap.add_argument("--density", type=float, default=None)
    ap.add_argument("--recompute", default="none", choices=["none", "all", "auto"])
    ap.add_argument("--keep", default=None, help="keep the generated C and builds here")
    args = ap.parse_args(argv)

    model = tinylora.load_tflite(tinylora.example_model())
    task = tasks.task("sensor")
    x = model.quantize(task["x_train"])
    y = task["y_train"]
    make = lambda: Trainer(model, LoRAConfig(rank=3), lr=0.02, recompute=args.recompute,
                           grad_density=args.density, calibration=x[:64])
    xs, ys = x[: args.samples], y[: args.samples]
    fc_macs = (64 * 256, 64 * 512)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinylora-cost-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        for target in args.targets:
            ok, why = emulate.available(TARGETS[target][0])
            if not ok:
                print(f"{target}: skipped ({why})", file=sys.stderr)
                continue
            elf = build(target, make(), xs, ys, root / target)
            c = measure(target, elf)
            step, pred, base = c["step"], c["predict"], c["base"]
            slope = (c["fc"][1] - c["fc"][0]) / (fc_macs[1] - fc_macs[0])
            rows.append([target, f"{int(base.mean()):,}", f"{int(pred.mean()):,}",
                         f"{int(step.mean()):,}", f"{int(step.min()):,}..{int(step.max()):,}",
                         f"{step.mean() / pred.mean():.2f}", f"{slope:.3f}",
                         f"{c['fc'][1] / fc_macs[1]:.3f}"])
    header = ["target", "base inference", "adapted inference", "training step",
              "step min..max", "step/inference", "FC instr/MAC (slope)", "FC instr/MAC (512x64 call)"]
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    print(f"Instructions (exact, QEMU -icount) for the bundled digits CNN, LoRA rank 3 on layers "
          f"5 and 6, recompute {args.recompute}, density {args.density}, {args.samples} samples "
          f"of the 'sensor' task; {model.macs:,} MACs per inference.")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
