"""Exact instruction counts of a generated training step under QEMU ``-icount`` (``tinylora
bench``, ``tinylora plan --estimate``, ``benchmarks/cost.py``).

Method. QEMU's ``-icount shift=S`` advances the virtual clock by 2^S ns per instruction, so a
counter driven by that clock counts instructions exactly and repeatably
(``firmware/testing/tl_counter.h``):

- RISC-V ``rdinstret`` counts one per instruction: one run with ``shift=0`` is exact.
- Cortex-M SysTick (mps2, 25 MHz, 24 bits, counts down) and Xtensa CCOUNT (lx106 sim, 40 MHz)
  tick once per 40 / 25 instructions at ``shift=0``. Each program is therefore also run with
  ``shift=7`` (128 virtual ns per instruction: 3.2 SysTick / 5.12 CCOUNT ticks per
  instruction), where a delta of D ticks has exactly one integer n with |n * rate - D| < 1;
  that n is taken, after undoing counter wrap-around with the coarse ``shift=0`` reading
  (which must agree within one coarse tick).

Per-op counts come from a second build of the same step, rendered with ``timing=True``
(:func:`tinylora.codegen.step.render_step`): it calls ``tl_bench_op`` before every schedule op,
and the harness (``firmware/testing/tl_bench_main.c``) keeps the counter at each call. Totals
come from the normal build (the bytes ``tinylora gen`` and ``verify`` produce). A mark costs
the call itself plus what it does to the step's register allocation (spills around the call);
that cost, c = (timing build's step - normal step) / marks, exact on average, is subtracted
from each op, so the per-op counts sum to the normal total less the step's own glue (argument
checks, the input copy, counters). Two marks in a row in ``main`` (the call alone) are
reported too (``mark_call_instructions``).
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinylora import emulate, libraries
from tinylora.codegen import c_array_rows
from tinylora.codegen.step import plan_step, render_step
from tinylora.errors import EmulationError, InputError
from tinylora.planning.arena import plan_trainer
from tinylora.ref.dag import is_chain_path
from tinylora.ref.layers import Reshape
from tinylora.ref.trainer import Trainer
from tinylora.targets import LIBRARIES, TOOLCHAINS, VARIANTS, Variant

__all__ = ["BENCH_TARGETS", "FINE_SHIFT", "exact_counts", "measure", "bench_variant", "op_table",
           "run_bench", "build_bench", "BenchResult", "table_text", "estimate", "estimate_text"]

#: toolchain -> (counter ticks per instruction at shift 0, counter modulus)
COUNTERS = {
    "cortex-m4": (1 / 40, 1 << 24),
    "cortex-m7": (1 / 40, 1 << 24),
    "xtensa": (1 / 25, 1 << 32),
    "rv32imc": (1.0, 1 << 32),
}
BENCH_TARGETS = tuple(COUNTERS)
FINE_SHIFT = 7
def _run_report(target: str, elf: Path, shift: int, timeout: float) -> emulate.Report:
    r = emulate.run(target, elf, timeout=timeout, icount=True, icount_shift=shift)
    rep = emulate.parse_report(r.stdout, r.returncode)
    if rep.errors:
        raise EmulationError(f"{target}: the generated step returned tl_status codes {rep.errors} "
                             f"(firmware/include/tl_types.h); nothing was counted. TL_ERR_ARENA "
                             f"from a library backend: its kernel scratch (planned in the arena, "
                             f"planning/kernel_scratch.py) was too small; try --backend portable")
    return rep


def exact_counts(toolchain: str, coarse: np.ndarray, fine: np.ndarray | None) -> np.ndarray:
    """Instruction counts from counter deltas at ``shift=0`` (``coarse``) and ``shift=7``
    (``fine``; None for a counter that counts instructions). Negative deltas (no mark) stay -1."""
    rate, modulus = COUNTERS[toolchain]
    coarse = np.asarray(coarse, np.int64) & 0xFFFFFFFF
    missing = np.asarray(coarse) == 0xFFFFFFFF
    if rate == 1.0:
        return np.where(missing, -1, coarse)
    fine_rate = rate * 2 ** FINE_SHIFT
    approx = coarse / rate                                   # +- one coarse tick
    d = (np.asarray(fine, np.int64) & 0xFFFFFFFF).astype(np.float64)
    wraps = np.rint((approx * fine_rate - d) / modulus)      # counter wrap-arounds at shift 7
    d = d + wraps * modulus
    n = np.rint(d / fine_rate).astype(np.int64)
    bad = ~missing & ((np.abs(n * fine_rate - d) >= 1) | (np.abs(approx - n) > 1 / rate + 1))
    if np.any(bad):
        raise EmulationError(f"{toolchain}: counter deltas do not give one instruction count "
                             f"(fine {d[bad][:4]}, coarse {coarse[bad][:4]}); was the program "
                             f"run under -icount with shift 0 and {FINE_SHIFT}?")
    return np.where(missing, -1, n)


def measure(target: str, elf: Path, names, timeout: float = 600.0) -> dict[str, np.ndarray]:
    """Exact instructions of every reported region ``names`` of the program ``elf``."""
    toolchain = TOOLCHAINS[target].name
    coarse = _run_report(target, elf, 0, timeout)
    fine = _run_report(target, elf, FINE_SHIFT, timeout) if COUNTERS[toolchain][0] != 1.0 else None
    return {k: exact_counts(toolchain, coarse.int32(k), fine.int32(k) if fine else None) for k in names}


def bench_variant(target: str, backend: str = "portable") -> Variant:
    """The variant of the target table that runs ``backend``'s kernels on ``target``."""
    if target not in BENCH_TARGETS:
        why = (" Host instruction counts depend on the host CPU and are not exact; use "
               "valgrind --tool=callgrind on a `tinylora verify --target host --keep DIR` build."
               if target.startswith("host") else "")
        raise InputError(f"no instruction counter on target {target!r}.{why} "
                         f"Targets: {', '.join(BENCH_TARGETS)}")
    offered = [v for v in VARIANTS.values() if v.toolchain == target and v.backend == backend]
    if offered:
        return next((v for v in offered if v.name == target), offered[0])
    lib = LIBRARIES.get(backend)
    if lib is not None and target in lib.toolchains:  # the target's own build plus the library
        base = VARIANTS[target]
        return Variant(f"{target}-{backend}", target, {**(base.defines or {}), lib.define: 1},
                       f"{base.description}, {lib.title} frozen kernels", backend=backend,
                       verify=False)
    have = sorted({v.backend for v in VARIANTS.values() if v.toolchain == target}
                  | {b for b, lb in LIBRARIES.items() if target in lb.toolchains})
    raise InputError(f"target {target} has no {backend!r} build in tinylora.targets; "
                     f"backends: {', '.join(have)}")


def _library(variant: Variant) -> tuple[list[Path], list[Path], dict]:
    """(archives, include folders, defines) of the variant's optimised kernel library (none for
    the portable kernels): tinylora.libraries builds it from the tree its variable names."""
    lib = LIBRARIES.get(variant.backend)
    if lib is None:
        return [], [], {}
    archive, includes = libraries.build_library(variant.toolchain, lib)
    return [archive], includes, {lib.define: 1, **lib.defines}


def op_table(trainer: Trainer) -> list[dict]:
    """One row per schedule op: index, op, layer, kind, macs (multiply-accumulates: a frozen
    layer's MACs; LoRA forward: the frozen layer's plus rows*rank*(in+out); backward: LoRA's four products
    rows*rank*(2*out+in), plus the input gradient rows*in*out when it propagates; the backward
    of a frozen conv / depthwise conv: its forward's MACs, of the other frozen ops: 0)."""
    model, rows = trainer.model, []
    for t, op in enumerate(trainer.schedule):
        layer = model.layers[op.layer]
        kind, macs = op.op, 0
        if op.op == "forward":
            kind, macs = layer.kind, int(layer.macs)
        elif op.op == "backward" and not is_chain_path(layer):
            kind = f"{layer.kind} backward"
            macs = int(layer.macs) if layer.weights is not None else 0
        elif op.op in ("lora_forward", "backward") and not isinstance(layer, Reshape):
            depth, out = int(layer.weights.shape[-1]), int(layer.weights.shape[0])
            spatial = int(np.prod(layer.output_shape)) // out
            ad = trainer.adapters.get(op.layer)
            rank = ad.k.rank if ad is not None else 0
            if op.op == "lora_forward":
                macs = int(layer.macs) + spatial * rank * (depth + out)
            else:
                macs = spatial * rank * (2 * out + depth) + (int(layer.macs) if trainer._slots(op.layer) else 0)
        rows.append({"index": t, "op": str(op).split(":")[0], "layer": op.layer, "kind": kind,
                     "macs": macs})
    return rows


@dataclass
class BenchResult:
    target: str
    backend: str
    variant: str
    samples: int
    inference: np.ndarray                 # per sample
    step: np.ndarray                      # per sample
    layers: list = field(default_factory=list)            # training step ops, mean instructions
    inference_layers: list = field(default_factory=list)  # predict's ops
    marks: dict = field(default_factory=dict)             # what one mark costs (see above)

    @property
    def inference_instructions(self) -> int:
        return int(round(float(self.inference.mean())))

    @property
    def training_step_instructions(self) -> int:
        return int(round(float(self.step.mean())))

    def to_json(self) -> dict:
        return {"target": self.target, "backend": self.backend, "variant": self.variant,
                "samples": self.samples, "method": "QEMU -icount, exact instructions, mean over samples",
                "inference_instructions": self.inference_instructions,
                "training_step_instructions": self.training_step_instructions,
                "inference_per_sample": self.inference.tolist(), "step_per_sample": self.step.tolist(),
                "layers": self.layers, "inference_layers": self.inference_layers, **self.marks}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)


def _samples_header(x: np.ndarray, y: np.ndarray, marks: int) -> str:
    rows = "\n".join(f"    {{ {', '.join(map(str, s.reshape(-1).tolist()))} }}," for s in x)
    # aligned: memcpy's path (so its instruction count) depends on the source's alignment
    return (f"#define BENCH_SAMPLES {len(y)}\n#define BENCH_MAX_MARKS {marks}\n"
            f"static const int8_t bench_inputs[{len(y)}][{int(np.prod(x.shape[1:]))}]\n"
            f"    __attribute__((aligned(16))) = {{\n{rows}\n}};\n"
            f"static const int32_t bench_labels[{len(y)}] = {{ {' '.join(c_array_rows(y, 1000))} }};\n")


def build_bench(trainer: Trainer, variant: Variant, x, y, out: Path, command: str) -> Path:
    """The benchmark program: the step built normally (``bench``) and with marks (``bench_t``)."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for prefix, timing in (("bench", False), ("bench_t", True)):
        step = plan_step(trainer, plan_trainer(trainer, backend=variant.backend), prefix=prefix)
        for name, text in render_step(step, command, timing=timing).items():
            (out / name).write_text(text)
        files.append(out / f"{prefix}.c")
    (out / "bench_samples.h").write_text(_samples_header(x, y, len(trainer.schedule) + 1))
    fw = emulate.firmware_dir()
    archives, includes, defines = _library(variant)
    return emulate.build(variant.toolchain, [fw / "testing" / "tl_bench_main.c", *files,
                                             fw / "src" / "tl_train.c", fw / "src" / "tl_backward.c",
                                             fw / "src" / "tl_checkpoint.c"],
                         out, {**(variant.defines or {}), **defines, "TL_BENCH_MODEL": 1},
                         include_dirs=[out, *includes], libs=archives)


def _per_op(deltas: np.ndarray, samples: int, mark: float, rows: list[dict]) -> list[dict]:
    per = deltas.reshape(samples, -1)[:, : len(rows)]
    if np.any(per < 0):
        raise EmulationError("the timing build skipped a mark (tl_bench_op): ops and marks differ")
    mean = per.mean(axis=0) - mark
    return [dict(r, instructions=int(round(float(m)))) for r, m in zip(rows, mean)]


def run_bench(trainer: Trainer, target: str, x, y, backend: str = "portable",
              keep: Path | None = None, command: str = "tinylora bench") -> BenchResult:
    """Build and run the benchmark of ``trainer``'s step on ``target`` with samples ``x, y``
    (the trainer is not changed: the program trains its own copy)."""
    variant = bench_variant(target, backend)
    ok, why = emulate.available(variant.toolchain)
    if not ok:
        raise EmulationError(f"target {target} is not available here: {why}")
    x, y = np.asarray(x, np.int8), np.asarray(y, np.int64)
    with tempfile.TemporaryDirectory(prefix="tinylora-bench-") as tmp:
        out = Path(keep) if keep else Path(tmp)
        elf = build_bench(trainer, variant, x, y, out, command)
        c = measure(variant.toolchain, elf, ("empty", "hook", "predict", "predict_t", "predict_ops",
                                             "step", "step_t", "step_ops"))
    n = len(y)
    rows = op_table(trainer)
    predict_rows = [rows[t] for t, op in enumerate(trainer.schedule)   # as plan_step's predict_ops
                    if op.op in ("forward", "lora_forward") and t <= trainer.logits_layer and not op.recompute]
    empty = int(c["empty"][0])
    step_mark = float((c["step_t"] - c["step"]).mean()) / (len(rows) + 1)
    predict_mark = float((c["predict_t"] - c["predict"]).mean()) / (len(predict_rows) + 1)
    return BenchResult(target, backend, variant.name, n, c["predict"] - empty, c["step"] - empty,
                       _per_op(c["step_ops"], n, step_mark, rows),
                       _per_op(c["predict_ops"], n, predict_mark, predict_rows),
                       {"mark_call_instructions": int(c["hook"][0]),
                        "mark_in_step_instructions": round(step_mark, 2),
                        "mark_in_predict_instructions": round(predict_mark, 2)})



def table_text(result: BenchResult) -> str:
    """The per-op table and the totals of a benchmark, for the terminal."""
    head = ["#", "op", "kind", "MACs", "instructions", "instr/MAC"]
    rows = [[str(r["index"]), r["op"], r["kind"], f"{r['macs']:,}", f"{r['instructions']:,}",
             f"{r['instructions'] / r['macs']:.2f}" if r["macs"] else "-"] for r in result.layers]
    widths = [max(len(row[i]) for row in rows + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.rjust(w) if i in (0, 3, 4, 5) else c.ljust(w)
                               for i, (c, w) in enumerate(zip(r, widths))).rstrip()
    step, inf = result.training_step_instructions, result.inference_instructions
    attributed = sum(r["instructions"] for r in result.layers)
    return "\n".join([
        f"target {result.target} ({result.variant}, backend {result.backend}): exact instructions "
        f"under QEMU -icount, mean over {result.samples} samples",
        line(head), line(["-" * w for w in widths]), *map(line, rows), "",
        f"inference (predict):   {inf:,} instructions",
        f"training step:         {step:,} instructions ({step / inf:.2f}x inference; "
        f"{step - attributed:,} outside the ops: checks, input copy, counters)"])


def estimate(perf: dict, inference: int, step: int, accum_steps: int = 1) -> dict:
    """Milliseconds per inference and per training step and millijoules per update from a
    board's ``[perf]`` table (clock_mhz, cpi, active_current_ma, voltage): an ESTIMATE, time =
    instructions * cpi / clock, energy = voltage * current * time of the ``accum_steps`` steps
    of one update."""
    missing = [k for k in ("clock_mhz", "cpi", "active_current_ma", "voltage") if k not in perf]
    if missing:
        raise InputError(f"the board's [perf] table lacks {', '.join(missing)}: add them to its "
                         f"boards/<name>.toml with a source comment")
    per_ms = perf["cpi"] / (perf["clock_mhz"] * 1e3)          # ms per instruction
    step_ms = step * per_ms
    return {"inference_ms": inference * per_ms, "step_ms": step_ms,
            "update_mj": perf["voltage"] * perf["active_current_ma"] * step_ms * accum_steps / 1e3}


def estimate_text(board, result: BenchResult, accum_steps: int = 1) -> str:
    """The estimate block of ``tinylora plan --board B --estimate``."""
    perf = board.perf or {}
    e = estimate(perf, result.inference_instructions, result.training_step_instructions, accum_steps)
    return "\n".join([
        f"ESTIMATE for {board.name} (not measured on the board): exact instruction counts of "
        f"{result.variant} under QEMU -icount x {perf['cpi']} cycles per instruction / "
        f"{perf['clock_mhz']} MHz; {perf['active_current_ma']} mA at {perf['voltage']} V "
        f"(boards/{board.name}.toml [perf], sources there)",
        f"  inference      {result.inference_instructions:>12,} instructions  {e['inference_ms']:9.3f} ms",
        f"  training step  {result.training_step_instructions:>12,} instructions  {e['step_ms']:9.3f} ms",
        f"  energy per update ({accum_steps} step{'s' if accum_steps > 1 else ''}): {e['update_mj']:.4f} mJ"])
