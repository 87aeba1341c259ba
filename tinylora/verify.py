"""Generate the training step's C, run it on a target, and compare every byte with numpy.

:func:`verify` is ``tinylora verify``: for one model and configuration it renders the C of
:mod:`tinylora.codegen.step` with embedded training samples, builds it for a target of
:data:`TARGETS` (``-std=c99 -Wall -Wextra -Werror -pedantic -O2``), runs it (natively or under
QEMU) and compares each step's logits and loss, a mid-run checkpoint (restored into a fresh
state before training continues), the final int16 masters, the final checkpoint, the refusal
of a damaged checkpoint and ``predict``'s logits with :meth:`tinylora.ref.trainer.Trainer.step`.

:func:`run_cases` does the same for many (trainer, samples) cases in one program, which is
how the test suite keeps the number of builds small.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinylora import emulate, libraries, load_tflite, tasks
from tinylora.codegen.selftest import runner_main_c
from tinylora.codegen.step import plan_step, render_step
from tinylora.codegen.vectors import (
    VectorSet,
    expected_vectors,
    generate_shared_arena,
    generate_vectors,
)
from tinylora.errors import InputError
from tinylora.examples import example_model
from tinylora.planning.arena import plan_trainer
from tinylora.planning.kernel_scratch import frozen_layer_scratch
from tinylora.ref import lora
from tinylora.ref.trainer import LoRAConfig, Trainer
from tinylora.targets import BACKENDS, VARIANTS, VERIFY_TARGETS, backend_build

__all__ = ["TARGETS", "BACKENDS", "Case", "CaseResult", "VerifyResult", "training_sources", "run_cases",
           "example_case", "model_case", "verify"]

#: verify target -> (emulate target, defines, description): a view of tinylora.targets.VARIANTS.
TARGETS: dict[str, tuple[str, dict | None, str]] = {
    name: (VARIANTS[name].toolchain, VARIANTS[name].defines, VARIANTS[name].description) for name in VERIFY_TARGETS}

DEFAULT_LR = 0.02


def training_sources() -> list[Path]:
    """The runtime files a training program links besides :func:`emulate.runtime_sources`."""
    fw = emulate.firmware_dir()
    return [fw / "src" / "tl_train.c", fw / "src" / "tl_backward.c", fw / "src" / "tl_checkpoint.c"]


@dataclass
class Case:
    """One trainer (fresh: it is trained in place to compute the expected bytes, after its C
    has been generated) with the samples to train on, under a C identifier prefix."""
    prefix: str
    trainer: Trainer
    vectors: VectorSet
    about: str = ""


@dataclass
class CaseResult:
    prefix: str
    about: str
    steps: int
    results: int = 0
    bytes_compared: int = 0
    differing_bytes: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.differing_bytes == 0 and not self.problems


@dataclass
class VerifyResult:
    target: str
    cases: list[CaseResult]
    seconds: dict[str, float]
    out_dir: Path | None = None
    backend: str = "portable"
    scratch_bytes: int = 0

    @property
    def steps(self) -> int:
        return sum(c.steps for c in self.cases)

    @property
    def bytes_compared(self) -> int:
        return sum(c.bytes_compared for c in self.cases)

    @property
    def differing_bytes(self) -> int:
        return sum(c.differing_bytes for c in self.cases)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.cases)

    def summary(self) -> str:
        s = self.seconds
        lines = [f"target {self.target}: {TARGETS[self.target][2]}"
                 + (f"; frozen layers through {self.backend} (kernel scratch {self.scratch_bytes} B; "
                    "calls it cannot do exactly run tinylora's kernels)" if self.backend != "portable" else ""),
                 f"  {len(self.cases)} case(s), {self.steps} training steps; generate "
                 f"{s.get('generate', 0):.2f} s, build {s.get('build', 0):.2f} s, run "
                 f"{s.get('run', 0):.2f} s, numpy reference {s.get('reference', 0):.2f} s",
                 f"  compared {self.bytes_compared:,} bytes in "
                 f"{sum(c.results for c in self.cases)} results: {self.differing_bytes} differ"]
        for c in self.cases:
            for p in c.problems[:10]:
                lines.append(f"  {c.prefix}: {p}")
            if len(c.problems) > 10:
                lines.append(f"  {c.prefix}: ... {len(c.problems) - 10} more")
        lines.append("  OK: the C training step equals the numpy reference byte for byte" if self.ok
                     else "  FAILED: the C training step differs from the numpy reference")
        return "\n".join(lines)


def _compare(case: Case, expected: dict[str, bytes], report: emulate.Report) -> CaseResult:
    res = CaseResult(case.prefix, case.about, len(case.vectors.labels))
    mine = {k for k in report.values if k.startswith(case.prefix + "_")}
    for name, want in expected.items():
        res.results += 1
        res.bytes_compared += len(want)
        got = report.values.get(name)
        if got is None:
            res.differing_bytes += len(want)
            res.problems.append(f"{name}: missing ({len(want)} bytes expected)")
            continue
        if len(got) != len(want):
            res.differing_bytes += len(want)
            res.problems.append(f"{name}: {len(got)} bytes, expected {len(want)}")
            continue
        diff = np.nonzero(np.frombuffer(got, np.uint8) != np.frombuffer(want, np.uint8))[0]
        if diff.size:
            res.differing_bytes += int(diff.size)
            res.problems.append(f"{name}: {diff.size}/{len(want)} bytes differ, first at "
                                f"{diff[:6].tolist()}: C {got[:48].hex()} vs numpy {want[:48].hex()}")
    for name in sorted(mine - set(expected)):
        res.problems.append(f"{name}: reported but not expected")
    for name, status in report.errors.items():
        if name.startswith(case.prefix + "_"):
            res.problems.append(f"{name}: error status {status}")
    return res


SHARED_ARENA = "tl_verify_arena"


def write_program(cases: Sequence[Case], out_dir: Path, command: str | None = None,
                  backend: str = "portable"):
    """Render every case's step and runner, and a main calling them; returns (C files, the
    defines to build them with, kernel scratch bytes). The first case runs in its generated
    static arena, the others in one shared caller-owned arena (built without their static
    arenas), so both ways are exercised and a program of many cases fits small RAM. Each step is
    planned for ``backend``: an optimised library's kernel scratch lies in the arena and each
    frozen call gets its own as a ``tl_context``; the bytes returned are the largest of them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files, defines, shared, scratch = [], {}, 0, 0
    for k, case in enumerate(cases):
        step = plan_step(case.trainer, plan_trainer(case.trainer, backend=backend), prefix=case.prefix)
        scratch = max([scratch, *(frozen_layer_scratch(backend, layer) for layer in case.trainer.model.layers)])
        arena = None
        if k > 0:
            arena = SHARED_ARENA
            shared = max(shared, step.plan.total_bytes)
            defines[f"{step.macro}_NO_STATIC_ARENA"] = 1
        for name, text in render_step(step, command=command).items():
            (out_dir / name).write_text(text)
            if name.endswith(".c"):
                files.append(out_dir / name)
        path = out_dir / f"{case.prefix}_vectors.c"
        path.write_text(generate_vectors(case.trainer, case.vectors, prefix=case.prefix,
                                         command=command, arena=arena))
        files.append(path)
    if shared:
        path = out_dir / "shared_arena.c"
        path.write_text(generate_shared_arena(SHARED_ARENA, shared, command))
        files.append(path)
    runners = [f"{c.prefix}_run_vectors" for c in cases]
    main = out_dir / "main.c"
    main.write_text(runner_main_c(runners, quant_cases=False, command=command))
    return files + [main], defines, scratch


def build_program(target: str, cases: Sequence[Case], out_dir: Path, command: str | None = None,
                  backend: str = "portable"):
    """(elf, seconds, kernel scratch bytes) for the cases' program on a verify target, with
    the frozen kernels of ``backend`` (an optimised library is built from its sources, see
    :mod:`tinylora.libraries`)."""
    emu, defines, lib = backend_build(target, backend)
    t0 = time.perf_counter()
    libs, includes = [], []
    if lib is not None:
        archive, includes = libraries.build_library(emu, lib)
        libs = [archive]
    t1 = time.perf_counter()
    files, more, scratch = write_program(cases, out_dir, command, backend)
    t2 = time.perf_counter()
    elf = emulate.build(emu, [*files, *training_sources()], out_dir, {**defines, **more},
                        include_dirs=[out_dir, *includes], libs=libs)
    return elf, {"generate": t2 - t1, "library": t1 - t0, "build": time.perf_counter() - t2}, scratch


def run_cases(target: str, cases: Sequence[Case], out_dir: Path | str, command: str | None = None,
              timeout: float = 300.0, backend: str = "portable") -> VerifyResult:
    """Build and run the cases' program on ``target`` (frozen kernels: ``backend``) and compare
    every reported byte. Raises :class:`tinylora.emulate.EmulationError` if it cannot be built
    or run, :class:`InputError` for an unknown target / backend or missing library sources."""
    if target not in TARGETS:
        raise InputError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    out_dir = Path(out_dir)
    elf, seconds, scratch = build_program(target, cases, out_dir, command, backend)
    t0 = time.perf_counter()
    result = emulate.run(TARGETS[target][0], elf, timeout=timeout)
    seconds["run"] = time.perf_counter() - t0
    try:
        report = emulate.parse_report(result.stdout, result.returncode)
    except emulate.EmulationError as e:
        raise emulate.EmulationError(f"{target}: {e}\nstderr: "
                                     f"{result.stderr.decode(errors='replace')[-2000:]}") from None
    t0 = time.perf_counter()
    outcomes = [_compare(c, expected_vectors(c.trainer, c.vectors, c.prefix), report) for c in cases]
    seconds["reference"] = time.perf_counter() - t0
    return VerifyResult(target, outcomes, seconds, out_dir, backend, scratch)


def _ranks(trainer) -> str:
    return "ranks " + ", ".join(f"{i}:{ad.k.rank}" for i, ad in sorted(trainer.adapters.items()))


def example_case(steps: int = 50, rank: int | None = None, recompute: str = "none",
                 density: float | None = None, seed: int = 0, lr: float = DEFAULT_LR,
                 prefix: str = "example", targets: str | None = None) -> Case:
    """The bundled digits CNN on the bundled 'sensor' adaptation task (full model inputs)."""
    model = load_tflite(example_model())
    t = tasks.task("sensor", seed)
    x = model.quantize(t["x_train"])
    if steps > len(x):
        raise InputError(f"at most {len(x)} steps on the bundled task")
    config = LoRAConfig(rank=rank, loss="xent", targets=lora_targets(model, targets))
    trainer = Trainer(model, config, lr=lr, seed=seed, recompute=recompute,
                      grad_density=density, calibration=x[:64])
    return Case(prefix, trainer, VectorSet(x[:steps], t["y_train"][:steps]),
                f"bundled digits CNN, sensor task, {_ranks(trainer)}, recompute {recompute}, "
                f"density {density}, lr {lr}, seed {seed}")


def lora_targets(model, spec: str | None) -> tuple | None:
    """The LoRA targets ``spec`` names: None (the default config), "pointwise" (every
    FULLY_CONNECTED and 1x1 CONV_2D layer) or comma-separated layer indices / names."""
    if spec is None:
        return None
    if spec == "pointwise":
        return tuple(layer.index for layer in model.layers if lora.is_adaptable(layer))
    return tuple(int(k) if k.strip().isdigit() else k.strip() for k in spec.split(",") if k.strip())


def model_case(model, steps: int = 50, rank: int | None = None, recompute: str = "none",
               density: float | None = None, seed: int = 0, lr: float = DEFAULT_LR,
               prefix: str = "model", targets: str | None = None, loss: str | None = None,
               **trainer_args) -> Case:
    """Any supported model on random int8 inputs and random labels (seeded): class numbers,
    or for loss='mse' int8 targets in the output's quantization; ``targets`` as
    :func:`lora_targets` reads it. ``loss`` None: inferred as the trainer does (a model
    ending in SOFTMAX trains with cross-entropy; any other end must be told)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (steps,) + tuple(model.input_shape)).astype(np.int8)
    if model.input_dtype != "INT8":   # float32 or uint8 ends: the model's own input type
        x = _end_inputs(model, rng, steps)
    config = LoRAConfig(rank=rank, loss=loss, targets=lora_targets(model, targets))
    trainer = Trainer(model, config, lr=lr, seed=seed, recompute=recompute,
                      grad_density=density, calibration=x[:64], **trainer_args)
    loss = trainer.loss
    if loss == "xent":
        trainer.require_classes()
    classes = int(np.prod(model.layers[trainer.logits_layer].output_shape))
    y = (rng.integers(0, classes, steps) if loss == "xent"
         else rng.integers(-128, 128, (steps, classes)).astype(np.int8))
    return Case(prefix, trainer, VectorSet(x, y),
                f"random inputs and {'labels' if loss == 'xent' else 'int8 targets'}, loss {loss}, "
                f"LoRA on {targets or 'the default targets'}, {_ranks(trainer)}, recompute {recompute}, "
                f"density {density}, lr {lr}, seed {seed}")


def _end_inputs(model, rng, n: int) -> np.ndarray:
    shape = (n,) + tuple(model.input_shape)
    if model.input_dtype == "UINT8":
        return rng.integers(0, 256, shape).astype(np.uint8)
    return (rng.standard_normal(shape) * 2).astype(np.float32)


def verify(target: str, model=None, steps: int = 50, rank: int | None = None, recompute: str = "none",
           density: float | None = None, seed: int = 0, keep: Path | str | None = None,
           lr: float = DEFAULT_LR, command: str | None = None, backend: str = "portable",
           targets: str | None = None, loss: str | None = None) -> VerifyResult:
    """One model (a path, a :class:`tinylora.Model`, or None for the bundled example) trained
    ``steps`` steps in C on ``target`` and in numpy, with LoRA on ``targets``
    (:func:`lora_targets`); see the module docstring."""
    if steps < 1:
        raise InputError("steps must be >= 1")
    if model is None:
        if loss not in (None, "xent"):
            raise InputError(f"--loss {loss}: the bundled model is a classifier (xent); give "
                             "--model with a regression or reconstruction model")
        case = example_case(steps, rank, recompute, density, seed, lr, targets=targets)
    else:
        m = model if hasattr(model, "layers") else load_tflite(model)
        case = model_case(m, steps, rank, recompute, density, seed, lr, targets=targets, loss=loss)
    if keep is not None:
        return run_cases(target, [case], Path(keep), command, backend=backend)
    with tempfile.TemporaryDirectory(prefix="tinylora-verify-") as tmp:
        result = run_cases(target, [case], Path(tmp), command, backend=backend)
        result.out_dir = None
        return result
