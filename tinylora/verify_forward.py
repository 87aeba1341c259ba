"""``tinylora verify --forward N``: the generated frozen forward of any supported model (any
DAG of the supported ops, float32 ends included) on N seeded random inputs, built for a target
(``-std=c99 -Wall -Wextra -Werror -pedantic -O2``, natively or under QEMU) and compared with
:meth:`tinylora.Model.forward` byte for byte.

It is the check for models whose training tinylora's numpy reference does not run yet (a
residual network's ADDs between the adapters and the loss) and for the inference-only
projects; ``tinylora verify`` without ``--forward`` checks the whole training step.
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinylora import emulate, libraries, load_tflite
from tinylora.codegen.frozen import generate_frozen_c, output_name, plan_frozen
from tinylora.codegen.selftest import runner_main_c
from tinylora.errors import InputError
from tinylora.examples import example_model
from tinylora.planning.kernel_scratch import max_scratch
from tinylora.targets import VARIANTS, VERIFY_TARGETS, backend_build

__all__ = ["ForwardResult", "forward_inputs", "verify_forward"]

PREFIX = "fwd"


@dataclass
class ForwardResult:
    target: str
    backend: str
    model: str
    inputs: int
    bytes_compared: int = 0
    differing_bytes: int = 0
    scratch_bytes: int = 0          # the optimised library's kernel scratch
    arena_bytes: int = 0            # the forward's own scratch (tensors between ops)
    problems: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.differing_bytes == 0 and not self.problems

    def summary(self) -> str:
        s = self.seconds
        lines = [f"target {self.target}: {VARIANTS[self.target].description}"
                 + (f"; frozen layers through {self.backend}" if self.backend != "portable" else ""),
                 f"  generated forward of {self.model} on {self.inputs} inputs (scratch "
                 f"{self.arena_bytes:,} B, kernel scratch {self.scratch_bytes:,} B); build "
                 f"{s.get('build', 0):.2f} s, run {s.get('run', 0):.2f} s",
                 f"  compared {self.bytes_compared:,} bytes: {self.differing_bytes} differ"]
        lines += [f"  {p}" for p in self.problems[:10]]
        lines.append("  OK: the generated forward equals Model.forward byte for byte" if self.ok
                     else "  FAILED: the generated forward differs from Model.forward")
        return "\n".join(lines)


def forward_inputs(model, n: int, seed: int = 0) -> np.ndarray:
    """n seeded inputs: uniform int8 with the last quarter at the extremes, or float32 normal
    values (x2, the last quarter x1000: saturating) for a model with a float32 input."""
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(model.input_shape)
    k = n // 4
    if model.input_dtype == "FLOAT32":
        x = rng.standard_normal(shape).astype(np.float32) * 2
        x[n - k:] *= 1000
        return x.astype(np.float32)
    if model.input_dtype == "UINT8":
        x = rng.integers(0, 256, shape).astype(np.uint8)
        x[n - k:] = rng.choice(np.array([0, 1, 254, 255], np.uint8), (k,) + shape[1:])
        return x
    x = rng.integers(-128, 128, shape).astype(np.int8)
    x[n - k:] = rng.choice(np.array([-128, -127, 126, 127], np.int8), (k,) + shape[1:])
    return x


def _build(target: str, backend: str, model, x, out: Path, command: str | None):
    emu, defines, lib = backend_build(target, backend)
    libs, includes = [], []
    if lib is not None:
        archive, includes = libraries.build_library(emu, lib)
        libs = [archive]
    plan = plan_frozen(model, PREFIX, backend)   # the library's kernel scratch: in `scratch`
    scratch = max_scratch(backend, plan.steps)
    files = [out / f"{PREFIX}.c", out / "main.c"]
    files[0].write_text(generate_frozen_c(model, x, PREFIX, command, backend))
    runners = [f"{PREFIX}_run_tests"]
    files[1].write_text(runner_main_c(runners, quant_cases=False, command=command))
    elf = emulate.build(emu, files, out, defines, include_dirs=[out, *includes], libs=libs)
    return emu, elf, scratch, plan.scratch_size


def verify_forward(target: str, model=None, inputs: int = 20, seed: int = 0,
                   keep: Path | str | None = None, command: str | None = None,
                   backend: str = "portable", timeout: float = 900.0) -> ForwardResult:
    """Build and run ``model``'s generated forward (a path, a Model, or None: the bundled
    model) on ``target`` with ``inputs`` seeded random inputs; compare every output byte."""
    if target not in VERIFY_TARGETS:
        raise InputError(f"unknown target {target!r}; expected one of {', '.join(VERIFY_TARGETS)}")
    if inputs < 1:
        raise InputError("--forward needs at least 1 input")
    m = model if hasattr(model, "layers") else load_tflite(model if model is not None
                                                           else example_model())
    x = forward_inputs(m, inputs, seed)
    want = m.forward(x)
    name = Path(model).name if isinstance(model, (str, Path)) else "the bundled model" \
        if model is None else "the model"
    result = ForwardResult(target, backend, name, inputs)
    with tempfile.TemporaryDirectory(prefix="tinylora-verify-") as tmp:
        out = Path(keep) if keep is not None else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        emu, elf, result.scratch_bytes, result.arena_bytes = _build(target, backend, m, x, out, command)
        t1 = time.perf_counter()
        run = emulate.run(emu, elf, timeout=timeout)
        result.seconds = {"build": t1 - t0, "run": time.perf_counter() - t1}
        report = emulate.parse_report(run.stdout, run.returncode)
    for key, status in report.errors.items():
        result.problems.append(f"{key}: error status {status}")
    for i in range(inputs):
        expect, got = want[i].tobytes(), report.values.get(output_name(PREFIX, i), b"")
        result.bytes_compared += len(expect)
        if got != expect:
            bad = sum(a != b for a, b in zip(got, expect)) + abs(len(got) - len(expect))
            result.differing_bytes += bad
            result.problems.append(f"input {i}: {bad}/{len(expect)} bytes differ: C "
                                   f"{got[:24].hex()} vs numpy {expect[:24].hex()}")
    return result
