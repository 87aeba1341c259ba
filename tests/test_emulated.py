"""The C runtime, built for the host and emulated microcontrollers, equals the numpy spec.

One test program per target variant (built and run once per session) holds: the fixed-point
primitives on edge tables (``QuantCases``), the kernels' argument checks, the bundled digits
CNN on 20 inputs, and 5 random models (different ones per variant) from
``tests/support/randmodel.py``. Every reported byte is compared with ``tinylora.quant`` /
``tinylora.softmax`` / ``Model.forward``.

A missing toolchain skips its variant with the reason, except in CI (env var ``CI`` set),
where it fails: CI must run every target.
"""
from __future__ import annotations

import os
import time
import zlib
from dataclasses import dataclass

import numpy as np
import pytest

import tinylora
from support.randmodel import describe, random_input, random_model
from tinylora import emulate
from tinylora.codegen.frozen import generate_frozen_c, output_name, plan_frozen
from tinylora.codegen.selftest import (STATUS_CASES_SOURCE, TL_STATUS_CASES_EXPECTED, QuantCases,
                                       runner_main_c)
from tinylora.datasets import digits_split, to_model_input

# (test id, emulate target, defines)
VARIANTS = [
    ("host", "host", None),
    ("host-sanitize", "host-sanitize", None),
    ("cortex-m4-portable", "cortex-m4", {"TL_NO_DSP": 1}),
    ("cortex-m4-dsp", "cortex-m4", None),
    ("cortex-m7", "cortex-m7", None),
    ("xtensa", "xtensa", None),
    ("rv32imc", "rv32imc", None),
]
RANDOM_KINDS = ("mlp", "cnn", "wide", "cnn", "mlp")
MAX_CONST_BYTES = 48 * 1024   # per random model (Xtensa keeps constants in 256 KiB dataram1)
MAX_MACS = 1_500_000          # per sample, to keep emulation quick


@dataclass
class _Case:
    prefix: str
    model: tinylora.Model
    inputs: np.ndarray
    expected: np.ndarray
    about: str


@dataclass
class _Outcome:
    report: emulate.Report
    quant: dict
    example: _Case
    randoms: list
    seconds: dict


def _require(target: str) -> None:
    ok, why = emulate.available(target)
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{why} (CI is set, so a missing toolchain is an error)")
        pytest.skip(why)


def _example_case() -> _Case:
    model = tinylora.load_tflite(tinylora.example_model())
    digits = to_model_input(model, digits_split()["x_test"][:10])
    rng = np.random.default_rng(1234)
    noise = np.concatenate([random_input(rng, model.input_shape, 5, "uniform"),
                            random_input(rng, model.input_shape, 5, "extreme")])
    x = np.concatenate([digits, noise])
    return _Case("example", model, x, model.forward(x), "bundled digits CNN")


def _random_cases(seed: int) -> list[_Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for i, kind in enumerate(RANDOM_KINDS):
        while True:
            data = random_model(rng, kind)
            try:
                model = tinylora.load_tflite(data)
            except tinylora.ModelError:
                continue
            if model.macs <= MAX_MACS and plan_frozen(model, "m").const_bytes <= MAX_CONST_BYTES:
                break
        n = 2 if kind == "wide" else 4
        x = np.concatenate([random_input(rng, data, n - n // 2, "uniform"),
                            random_input(rng, data, n // 2, ("extreme", "narrow")[i % 2])])
        cases.append(_Case(f"rand{i}", model, x, model.forward(x), describe(data)))
    return cases


_CACHE: dict[str, _Outcome] = {}


@pytest.fixture(scope="session")
def build_root(tmp_path_factory):
    return tmp_path_factory.mktemp("emulated")


@pytest.fixture(scope="session")
def quant_cases():
    qc = QuantCases.default()
    return qc, qc.expected()


@pytest.fixture(scope="session")
def example_case():
    return _example_case()


@pytest.fixture(params=VARIANTS, ids=[v[0] for v in VARIANTS])
def outcome(request, build_root, quant_cases, example_case) -> _Outcome:
    """Build (once per session) and run the variant's test program."""
    vid, target, defines = request.param
    _require(target)
    if vid not in _CACHE:
        qc, quant_expected = quant_cases
        randoms = _random_cases(zlib.crc32(vid.encode()))
        src = build_root / vid
        src.mkdir()
        files = [src / "quant_cases.c", emulate.firmware_dir() / STATUS_CASES_SOURCE]
        files[0].write_text(qc.c_source())
        for case in [example_case, *randoms]:
            path = src / f"{case.prefix}.c"
            path.write_text(generate_frozen_c(case.model, case.inputs, prefix=case.prefix))
            files.append(path)
        (src / "main.c").write_text(runner_main_c([f"{c.prefix}_run_tests" for c in
                                                 [example_case, *randoms]]))
        files.append(src / "main.c")
        t0 = time.perf_counter()
        elf = emulate.build(target, files, src, defines)
        t1 = time.perf_counter()
        result = emulate.run(target, elf, timeout=120)
        t2 = time.perf_counter()
        try:
            report = emulate.parse_report(result.stdout, result.returncode)
        except emulate.EmulationError as e:
            raise AssertionError(f"{vid}: {e}\nstderr: {result.stderr.decode(errors='replace')[-2000:]}")
        _CACHE[vid] = _Outcome(report, quant_expected, example_case, randoms,
                               {"build": t1 - t0, "run": t2 - t1})
    return _CACHE[vid]


def _compare_model(report: emulate.Report, case: _Case) -> int:
    assert not any(k.startswith(case.prefix + "_") for k in report.errors), \
        f"{case.prefix}: kernel errors {report.errors}\n{case.about}"
    for i in range(len(case.inputs)):
        got = report.int8(output_name(case.prefix, i))
        want = case.expected[i].reshape(-1)
        bad = np.nonzero(got != want)[0]
        assert bad.size == 0, (
            f"{case.prefix} sample {i}: {bad.size}/{want.size} bytes differ, first at "
            f"{bad[:8].tolist()}: C {got[bad[:8]].tolist()} vs numpy {want[bad[:8]].tolist()}\n"
            f"{case.about}")
    return int(case.expected.size)


def test_quant_primitives(outcome):
    report = outcome.report
    assert not report.errors
    compared = 0
    for name, want in outcome.quant.items():
        got = report.int32(name)
        bad = np.nonzero(got != want)[0]
        assert got.size == want.size and bad.size == 0, (
            f"{name}: {bad.size} of {want.size} differ at {bad[:8].tolist()}: C "
            f"{got[bad[:8]].tolist()} vs numpy {want[bad[:8]].tolist()}")
        compared += want.size
    assert compared == QuantCases.default().count
    assert tuple(report.int32("status_0").tolist()) == TL_STATUS_CASES_EXPECTED


def test_example_model(outcome):
    assert _compare_model(outcome.report, outcome.example) == 20 * 10


def test_random_models(outcome):
    assert len(outcome.randoms) == len(RANDOM_KINDS)
    for case in outcome.randoms:
        _compare_model(outcome.report, case)


def test_every_line_checked(outcome):
    """Nothing printed goes unchecked, and nothing expected is missing."""
    names = set(outcome.quant) | {"status_0"}
    for case in [outcome.example, *outcome.randoms]:
        names |= {output_name(case.prefix, i) for i in range(len(case.inputs))}
    assert set(outcome.report.values) == names


def test_generated_c_is_deterministic(example_case):
    model, x = example_case.model, example_case.inputs
    a = generate_frozen_c(model, x, prefix="digits", command="tinylora gen")
    b = generate_frozen_c(tinylora.load_tflite(tinylora.example_model()), x.copy(),
                          prefix="digits", command="tinylora gen")
    assert a == b
    assert a.startswith(f"/*\n * Generated by tinylora {tinylora.__version__}: "
                        "tinylora.codegen.frozen.generate_frozen_c\n * Command: tinylora gen\n")
    assert QuantCases.default().c_source() == QuantCases.default().c_source()
