"""The C runtime, built for the host and emulated microcontrollers, equals the numpy spec.

One test program per target variant (built and run once per session) holds: the fixed-point
primitives on edge tables (``QuantCases``), the kernels' argument checks, the bundled digits
CNN on 20 inputs, 5 random models (different ones per variant) from
``tests/support/randmodel.py``, and single synthetic layers for what the random models never
draw (depth multiplier > 1, FULLY_CONNECTED over several rows, softmax rows of 600 values).
Every reported byte is compared with ``tinylora.ref.quant`` /
``tinylora.ref.softmax`` / ``Model.forward``.

A missing toolchain skips its variant with the reason, except in CI (env var ``CI`` set),
where it fails: CI must run every target.

The ``cortex-m4-cmsis-nn`` and ``xtensa-esp-nn`` variants build with ``TL_USE_CMSIS_NN`` /
``TL_USE_ESP_NN`` against the real CMSIS-NN v7.0.0 / ESP-NN v1.1.2 (ANSI C) built from their
unmodified sources (``CMSIS_NN_DIR`` / ``ESP_NN_DIR``, tests/support/backends.py): the same
vectors must come out byte for byte and every library entry point must be linked.
``tests/test_backends.py`` shows that marshalling mistakes in the glue change the bytes.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import zlib
from dataclasses import dataclass

import numpy as np
import pytest
from support import backends
from support.randmodel import describe, random_input, random_model
from support.tools import require

import tinylora
from tinylora import emulate, targets
from tinylora.codegen.frozen import generate_frozen_c, output_name, plan_frozen
from tinylora.codegen.selftest import STATUS_CASES_SOURCE, TL_STATUS_CASES_EXPECTED, QuantCases, runner_main_c
from tinylora.datasets import digits_split, to_model_input
from tinylora.ref import quant
from tinylora.ref.layers import Conv2D, FullyConnected, QuantParams, Softmax, _out_size
from tinylora.ref.softmax import softmax_params

# (test id, emulate target, defines)
VARIANTS = [(v.name, v.toolchain, None if v.defines is None else dict(v.defines))
            for v in targets.VARIANTS.values()]
# 5 random models per variant; TINYLORA_EMULATED_MODELS=N for a deeper local run.
RANDOM_KINDS = tuple(("mlp", "cnn", "wide", "cnn", "mlp")[i % 5]
                     for i in range(int(os.environ.get("TINYLORA_EMULATED_MODELS", 5))))
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
    variant: str
    target: str
    defines: dict | None
    elf: object
    stdout: bytes
    report: emulate.Report
    quant: dict
    example: _Case
    randoms: list
    synthetic: list
    seconds: dict


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


def _qp(scale, zero_point, n: int = 1) -> QuantParams:
    return QuantParams(np.broadcast_to(np.float32(scale), (n,)).astype(np.float32),
                       np.broadcast_to(np.int64(zero_point), (n,)).astype(np.int64))


def _single_layer_model(layer) -> tinylora.Model:
    """A Model around one hand-made layer (no .tflite behind it)."""
    m = tinylora.Model.__new__(tinylora.Model)
    m.graph, m.source, m.layers = None, b"", [layer]
    m.input_shape, m.output_shape = layer.input_shape, layer.output_shape
    m.input_scale, m.input_zero_point = float(layer.input_q.scale[0]), int(layer.input_q.zero_point[0])
    m.output_scale, m.output_zero_point = float(layer.output_q.scale[0]), int(layer.output_q.zero_point[0])
    return m


def _requant(rng, channels: int, lo: float, hi: float):
    mult, shift = quant.quantize_multipliers(rng.uniform(lo, hi, channels))
    return mult.astype(np.int64), shift.astype(np.int64)


def _conv_layer(rng, kind, in_shape, out_c, kernel, stride, dilation, padding, mult=1):
    h, w, c = in_shape
    oh = _out_size(h, kernel[0], stride[0], dilation[0], padding)
    ow = _out_size(w, kernel[1], stride[1], dilation[1], padding)
    wshape = (1, *kernel, out_c) if kind == "DEPTHWISE_CONV_2D" else (out_c, *kernel, c)
    m, s = _requant(rng, out_c, 2e-4, 3e-3)
    options = {"stride_h": stride[0], "stride_w": stride[1], "dilation_h": dilation[0],
               "dilation_w": dilation[1], "padding": padding, "depth_multiplier": mult}
    return Conv2D(index=0, name=kind.lower(), kind=kind, input_shape=in_shape,
                  output_shape=(oh, ow, out_c), input_q=_qp(0.02, -5), output_q=_qp(0.05, 7),
                  activation="RELU6", weights=rng.integers(-127, 128, wshape).astype(np.int8),
                  weights_q=_qp(0.01, 0, out_c), bias=rng.integers(-5000, 5000, out_c),
                  multiplier=m, shift=s, act_min=-20, act_max=100, options=options)


def _synthetic_cases() -> list[_Case]:
    """Single layers the random models do not draw; inputs random plus special rows."""
    rng = np.random.default_rng(77)
    layers = [
        _conv_layer(rng, "DEPTHWISE_CONV_2D", (7, 9, 3), 9, (3, 2), (2, 1), (1, 2), "SAME", mult=3),
        _conv_layer(rng, "DEPTHWISE_CONV_2D", (6, 5, 2), 8, (2, 3), (1, 2), (2, 1), "VALID", mult=4),
        _conv_layer(rng, "CONV_2D", (9, 8, 4), 5, (4, 3), (2, 3), (2, 1), "SAME"),
        _conv_layer(rng, "CONV_2D", (10, 7, 6), 3, (2, 2), (3, 1), (3, 2), "VALID"),
    ]
    m, s = _requant(rng, 6, 1e-3, 1e-2)
    layers.append(FullyConnected(
        index=0, name="fc_rows", kind="FULLY_CONNECTED", input_shape=(3, 5), output_shape=(3, 6),
        input_q=_qp(0.02, 11), output_q=_qp(0.04, -3), weights=rng.integers(-127, 128, (6, 5)).astype(np.int8),
        weights_q=_qp(0.01, 0, 6), bias=None, multiplier=m, shift=s))
    for shape, scale in (((4, 7), 0.08), ((600,), 0.02)):
        layers.append(Softmax(index=0, name="softmax", kind="SOFTMAX", input_shape=shape,
                              output_shape=shape, input_q=_qp(scale, 3), output_q=_qp(1 / 256, -128),
                              options={"params": softmax_params(scale, 1.0)}))
    cases = []
    for i, layer in enumerate(layers):
        model = _single_layer_model(layer)
        x = random_input(rng, model.input_shape, 3, ("uniform", "extreme", "narrow")[i % 3])
        if layer.kind == "SOFTMAX":  # equal values: the 600-wide sum reaches 2^28 (shift 32)
            x = np.concatenate([x, np.full((1, *model.input_shape), 9, np.int8)])
        cases.append(_Case(f"syn{i}", model, x, model.forward(x),
                           f"synthetic {layer.kind} {layer.input_shape} -> {layer.output_shape} "
                           f"{layer.options}"))
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


@pytest.fixture(scope="session")
def synthetic_cases():
    return _synthetic_cases()


@pytest.fixture(params=VARIANTS, ids=[v[0] for v in VARIANTS])
def outcome(request, build_root, quant_cases, example_case, synthetic_cases) -> _Outcome:
    """Build (once per session) and run the variant's test program."""
    vid, target, defines = request.param
    require(target)
    if vid not in _CACHE:
        qc, quant_expected = quant_cases
        randoms = _random_cases(zlib.crc32(vid.encode()))
        models = [example_case, *randoms, *synthetic_cases]
        src = build_root / vid
        src.mkdir()
        files = [src / "quant_cases.c", emulate.firmware_dir() / STATUS_CASES_SOURCE]
        files[0].write_text(qc.c_source())
        backend = backends.backend_of(defines)
        for case in models:  # each model plans its backend's kernel scratch (tl_context)
            path = src / f"{case.prefix}.c"
            path.write_text(generate_frozen_c(case.model, case.inputs, prefix=case.prefix,
                                              backend=backends.backend_name(backend)))
            files.append(path)
        (src / "main.c").write_text(runner_main_c([f"{c.prefix}_run_tests" for c in models]))
        files.append(src / "main.c")
        t0 = time.perf_counter()
        if backend is None:
            elf = emulate.build(target, files, src, defines)
        else:
            elf = backends.build(target, backend, files, src, defines)
        t1 = time.perf_counter()
        result = emulate.run(target, elf, timeout=120)
        t2 = time.perf_counter()
        try:
            report = emulate.parse_report(result.stdout, result.returncode)
        except emulate.EmulationError as e:
            raise AssertionError(f"{vid}: {e}\nstderr: {result.stderr.decode(errors='replace')[-2000:]}") from e
        _CACHE[vid] = _Outcome(vid, target, defines, elf, result.stdout, report, quant_expected,
                               example_case, randoms, synthetic_cases,
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


def test_synthetic_layers(outcome):
    for case in outcome.synthetic:
        _compare_model(outcome.report, case)


def test_every_line_checked(outcome):
    """Nothing printed goes unchecked, and nothing expected is missing."""
    names = set(outcome.quant) | {"status_0"}
    for case in [outcome.example, *outcome.randoms, *outcome.synthetic]:
        names |= {output_name(case.prefix, i) for i in range(len(case.inputs))}
    assert set(outcome.report.values) == names


def _subset(pred):
    chosen = [v for v in VARIANTS if pred(v)]
    return pytest.mark.parametrize("outcome", chosen, ids=[v[0] for v in chosen], indirect=True)


@_subset(lambda v: v[1].startswith("cortex-m"))
def test_kernel_path(outcome, tmp_path):
    """The Cortex-M variants really test what they say: tinylora's frozen forward is portable
    C on every core (no SMLAD in its ELF unless a library brings it), and the training
    kernels' dot products (tl_dot_s8, tl_dot4_s8, compiled with the variant's flags) use
    SMLAD in the DSP build only."""
    objdump = shutil.which("arm-none-eabi-objdump")
    if objdump is None:
        pytest.skip("arm-none-eabi-objdump not found")

    def disassembly(path):
        return subprocess.run([objdump, "-d", str(path)], capture_output=True, text=True,
                              check=True).stdout

    if backends.backend_of(outcome.defines) is None:
        assert "smlad" not in disassembly(outcome.elf)
    [obj] = emulate.compile_objects(outcome.target, [emulate.firmware_dir() / "src" / "tl_kernels.c"],
                                    tmp_path, outcome.defines)
    dsp = not (outcome.defines or {}).get("TL_NO_DSP")
    assert ("smlad" in disassembly(obj)) == dsp


@_subset(lambda v: backends.backend_of(v[2]) is not None)
def test_library_calls(outcome):
    """The library variants really link the library: every entry point tinylora's glue calls
    (FC with one multiplier and per channel, conv, depthwise) is in the ELF, built from the
    real library's archive with --gc-sections (tests/test_backends.py shows, by mutating the
    glue, that the bytes come from the library's arithmetic)."""
    backend = backends.backend_of(outcome.defines)
    assert backends.linked(outcome.target, backend, outcome.elf) == set(backend.entry_points)


@_subset(lambda v: not v[1].startswith("host"))
def test_icount_run_is_identical(outcome):
    """run(..., icount=True) (deterministic instruction counting) prints the same bytes."""
    rerun = emulate.run(outcome.target, outcome.elf, timeout=120, icount=True)
    assert rerun.returncode == 0 and rerun.stdout == outcome.stdout


def test_generated_c_is_deterministic(example_case):
    model, x = example_case.model, example_case.inputs
    a = generate_frozen_c(model, x, prefix="digits", command="tinylora gen")
    b = generate_frozen_c(tinylora.load_tflite(tinylora.example_model()), x.copy(),
                          prefix="digits", command="tinylora gen")
    assert a == b
    assert a.startswith(f"/*\n * Generated by tinylora {tinylora.__version__}: "
                        "tinylora.codegen.frozen.generate_frozen_c\n * Command: tinylora gen\n")
    assert QuantCases.default().c_source() == QuantCases.default().c_source()
