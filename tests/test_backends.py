"""The glue to the real CMSIS-NN v7.0.0 / ESP-NN v1.1.2 (built from their unmodified sources,
tests/support/backends.py) passes the right arguments, and the scratch plumbing works.

``tests/test_emulated.py`` runs the full suite on ``cortex-m4-cmsis-nn`` and ``xtensa-esp-nn``.
Here:

- mutation tests: a glue file (``firmware/src/tl_kernels_cmsis_nn.c`` / ``tl_kernels_esp_nn.c``)
  is copied with one marshalling line changed (an input offset negated, CMSIS-NN's FC filter
  dims in tinylora's order, ESP-NN's shift and multiplier swapped, ...); the real library must
  turn each into wrong bytes or an error status, while the unchanged copy gives neither;
- the scratch size queries return what the real libraries ask for (plus the 16-byte alignment
  slack); the scratch travels as a ``tl_context`` argument: a missing or too-small one makes
  the library kernels return TL_ERR_ARENA with nothing written, an exact one one byte off a
  16-byte boundary is realigned and nothing outside it is written;
- ESP-NN without ``esp_nn_fully_connected_per_ch_s8`` (older releases) takes the documented
  detour with identical bytes.

The ESP32-S3 FC restrictions are not exercised: the S3 kernels are S3 assembly, which no
emulator here runs. Every build runs on the variant's emulated target; a missing toolchain
skips (fails under CI), as in test_emulated.py.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from support import backends
from support.randmodel import random_input
from support.tools import require
from test_emulated import _Case, _example_case, _qp, _requant, _single_layer_model, _synthetic_cases

from tinylora import emulate, targets
from tinylora.codegen.frozen import generate_frozen_c, output_name
from tinylora.codegen.selftest import runner_main_c
from tinylora.ref.layers import FullyConnected

TARGET = {b: targets.backend_variant(b).toolchain for b in ("cmsis-nn", "esp-nn")}
TL_ERR_ARENA = 5


def _per_tensor_fc_case() -> _Case:
    """FULLY_CONNECTED with one multiplier for every channel (the libraries' per-tensor entry
    points; the bundled model's FC is per channel) and a bias."""
    rng = np.random.default_rng(5)
    m, s = _requant(rng, 1, 1e-3, 1e-2)
    layer = FullyConnected(
        index=0, name="fc_tensor", kind="FULLY_CONNECTED", input_shape=(2, 24), output_shape=(2, 16),
        input_q=_qp(0.03, -9), output_q=_qp(0.05, 4),
        weights=rng.integers(-127, 128, (16, 24)).astype(np.int8), weights_q=_qp(0.01, 0, 16),
        bias=rng.integers(-3000, 3000, 16), multiplier=np.repeat(m, 16), shift=np.repeat(s, 16))
    model = _single_layer_model(layer)
    x = random_input(rng, model.input_shape, 3, "uniform")
    return _Case("fcpt", model, x, model.forward(x), "synthetic per-tensor FULLY_CONNECTED")


@pytest.fixture(scope="module")
def cases() -> list[_Case]:
    return [_example_case(), *_synthetic_cases(), _per_tensor_fc_case()]


def _program(tmp_path, cases, planned_for: str) -> list:
    """The cases' frozen C with kernel scratch planned for ``planned_for``, and a main."""
    files = []
    for case in cases:
        path = tmp_path / f"{case.prefix}.c"
        path.write_text(generate_frozen_c(case.model, case.inputs, prefix=case.prefix,
                                          backend=planned_for))
        files.append(path)
    main = tmp_path / "main.c"
    main.write_text(runner_main_c([f"{c.prefix}_run_tests" for c in cases], quant_cases=False))
    return files + [main]


def _run(tmp_path, backend_name, cases, defines=None, kernels_source=None, planned_for=None):
    """Build and run; returns (report, bytes that differ from numpy, kernel error lines, elf).
    ``planned_for``: the backend the model C plans kernel scratch for (default: this one)."""
    backend = backends.BACKENDS[backend_name]
    target = TARGET[backend_name]
    require(target)
    planned = backends.backend_name(backend) if planned_for is None else planned_for
    elf = backends.build(target, backend, _program(tmp_path, cases, planned), tmp_path, defines,
                         kernels_source=kernels_source)
    result = emulate.run(target, elf, timeout=120)
    report = emulate.parse_report(result.stdout, result.returncode)
    wrong = 0
    for case in cases:
        for i in range(len(case.inputs)):
            name = output_name(case.prefix, i)
            if name in report.values:
                wrong += int(np.count_nonzero(report.int8(name) != case.expected[i].reshape(-1)))
    return report, wrong, dict(report.errors), elf


GLUE = {"cmsis-nn": "tl_kernels_cmsis_nn.c", "esp-nn": "tl_kernels_esp_nn.c"}


def _function(source: str, name: str) -> tuple[int, int]:
    """Span of the definition of function `name` in a glue file."""
    start = re.search(rf"^[A-Za-z][\w \*]* {name}\(", source, re.M).start()
    return start, source.index("\n}\n", start) + 3


def _mutate(tmp_path, glue: str, function: str, edits) -> object:
    """A copy of the glue file with each (old, new) applied exactly once inside `function`."""
    source = (emulate.firmware_dir() / "src" / glue).read_text()
    start, end = _function(source, function)
    body = source[start:end]
    for old, new in edits:
        assert body.count(old) == 1, f"{function}: {old!r} occurs {body.count(old)} times"
        body = body.replace(old, new)
    path = tmp_path / glue
    path.write_text(source[:start] + body + source[end:])
    return path


# (id, backend, function, edits, extra defines)
MUTATIONS = [
    ("cmsis-fc-input-offset-negated", "cmsis-nn", "tl_backend_fully_connected",
     [("fc.input_offset = params->input_offset;", "fc.input_offset = -params->input_offset;")], None),
    ("cmsis-fc-filter-dims-tinylora-order", "cmsis-nn", "tl_cmsis_fc_dims",
     [("tl_cmsis_dims(filter_dims, depth, 1, 1, channels);",
       "tl_cmsis_dims(filter_dims, channels, 1, 1, depth);")], None),
    ("cmsis-fc-output-offset-negated", "cmsis-nn", "tl_backend_fully_connected",
     [("fc.output_offset = params->output_offset;", "fc.output_offset = -params->output_offset;")],
     None),
    ("cmsis-conv-input-offset-negated", "cmsis-nn", "tl_cmsis_conv_args",
     [("conv->input_offset = params->input_offset;", "conv->input_offset = -params->input_offset;")],
     None),
    ("cmsis-conv-padding-h-w-swapped", "cmsis-nn", "tl_cmsis_conv_args",
     [("conv->padding.w = params->pad_w;", "conv->padding.w = params->pad_h;"),
      ("conv->padding.h = params->pad_h;", "conv->padding.h = params->pad_w;")], None),
    ("cmsis-dw-input-offset-negated", "cmsis-nn", "tl_cmsis_dw_args",
     [("dw->input_offset = params->input_offset;", "dw->input_offset = -params->input_offset;")],
     None),
    ("esp-fc-input-offset-negated", "esp-nn", "tl_backend_fully_connected",
     [("const int32_t input_offset = params->input_offset;",
       "const int32_t input_offset = -params->input_offset;")], None),
    ("esp-fc-mult-before-shift", "esp-nn", "tl_backend_fully_connected",
     [("output_offset, quant->shift[0],\n                                      quant->multiplier[0],",
       "output_offset, quant->multiplier[0],\n                                      quant->shift[0],")],
     None),
    ("esp-conv-input-offset-negated", "esp-nn", "tl_esp_conv_args",
     [("conv->in_offset = params->input_offset;", "conv->in_offset = -params->input_offset;")], None),
    ("esp-quant-data-shift-mult-swapped", "esp-nn", "tl_esp_quant",
     [("q->shift = tl_mutable_i32(quant->shift);", "q->shift = tl_mutable_i32(quant->multiplier);"),
      ("q->mult = tl_mutable_i32(quant->multiplier);", "q->mult = tl_mutable_i32(quant->shift);")],
     None),
    ("esp-dw-input-offset-negated", "esp-nn", "tl_esp_dw_args",
     [("dw->in_offset = params->input_offset;", "dw->in_offset = -params->input_offset;")], None),
]


@pytest.mark.parametrize("backend_name", ["cmsis-nn", "esp-nn"])
def test_unmutated_copy_is_clean(tmp_path, cases, backend_name):
    """Control for the mutation tests: the same harness with an unchanged copy finds nothing,
    and the program links every library entry point the glue uses."""
    source = tmp_path / GLUE[backend_name]
    source.write_text((emulate.firmware_dir() / "src" / GLUE[backend_name]).read_text())
    report, wrong, errors, elf = _run(tmp_path, backend_name, cases, kernels_source=source)
    backend = backends.BACKENDS[backend_name]
    assert wrong == 0 and not errors, (wrong, errors)
    assert backends.linked(TARGET[backend_name], backend, elf) == set(backend.entry_points)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_marshalling_mistake_is_caught(tmp_path, cases, mutation):
    _, backend_name, function, edits, defines = mutation
    kernels = _mutate(tmp_path, GLUE[backend_name], function, edits)
    report, wrong, errors, _ = _run(tmp_path, backend_name, cases, defines, kernels_source=kernels)
    assert wrong > 0 or errors, f"{mutation[0]} went unnoticed"


SIZES_MAIN = r"""
#include <stdint.h>

#include "tl_kernels.h"
#include "tl_report.h"

#define FILL 0xA5

static uint8_t pool[1024];

static void fill(uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        p[i] = FILL;
    }
}

static int32_t untouched(const uint8_t *p, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        if (p[i] != FILL) {
            return 0;
        }
    }
    return 1;
}

/* Scratch queries for fixed shapes; the calls without scratch; the conv with a context one
 * byte too small and one exactly its need, both starting one byte past a 16-byte boundary. */
int main(void)
{
    static const int8_t x[5 * 6 * 3] = {1, 2, 3};
    static const int8_t w[4 * 3 * 2 * 3] = {1, -1};
    static const int32_t mult[6] = {1 << 30, 1 << 30, 1 << 30, 1 << 30, 1 << 30, 1 << 30};
    static const int32_t shift[6] = {-3, -3, -3, -3, -3, -3};
    static int8_t y[256];
    const tl_per_channel_quant q = {mult, shift};
    const tl_conv_params conv = {4, -2, 1, 1, 1, 0, 1, 1, -128, 127};
    const tl_dw_conv_params dw1 = {4, -2, 1, 1, 1, 0, 1, 1, 1, -128, 127};
    const tl_dw_conv_params dw2 = {4, -2, 1, 1, 1, 0, 1, 1, 2, -128, 127};
    const tl_dims in = {1, 5, 6, 3}, conv_w = {4, 3, 2, 3}, conv_out = {1, 5, 5, 4};
    const tl_dims dw1_w = {1, 3, 2, 3}, dw1_out = {1, 5, 5, 3};
    const tl_dims dw2_w = {1, 3, 2, 6}, dw2_out = {1, 5, 5, 6};
    const tl_dims fc_in = {2, 1, 1, 9}, fc_w = {5, 1, 1, 9}, fc_out = {2, 1, 1, 5};
    const size_t need = tl_conv2d_s8_scratch_size(&conv, &in, &conv_w, &conv_out);
    const size_t lead = ((16u - ((uintptr_t)pool & 15u)) & 15u) + 1u; /* pool + lead: 16k + 1 */
    const tl_context empty = {NULL, 0u};
    tl_context ctx;
    tl_report_begin("sizes", 0);
    tl_report_put_i32((int32_t)tl_fully_connected_s8_scratch_size(&fc_in, &fc_w, &fc_out));
    tl_report_put_i32((int32_t)tl_conv2d_s8_scratch_size(&conv, &in, &conv_w, &conv_out));
    tl_report_put_i32((int32_t)tl_depthwise_conv2d_s8_scratch_size(&dw1, &in, &dw1_w, &dw1_out));
    tl_report_put_i32((int32_t)tl_depthwise_conv2d_s8_scratch_size(&dw2, &in, &dw2_w, &dw2_out));
    tl_report_put_i32((int32_t)tl_conv2d_s8_scratch_size(&conv, NULL, &conv_w, &conv_out));
    tl_report_end();
    tl_report_begin("unset", 0);
    tl_report_put_i32((int32_t)tl_conv2d_s8(NULL, &conv, &q, &in, x, &conv_w, w, NULL, &conv_out, y));
    tl_report_put_i32((int32_t)tl_depthwise_conv2d_s8(&empty, &dw1, &q, &in, x, &dw1_w, w, NULL, &dw1_out, y));
    tl_report_put_i32((int32_t)tl_depthwise_conv2d_s8(NULL, &dw2, &q, &in, x, &dw2_w, w, NULL, &dw2_out, y));
    tl_report_put_i32((int32_t)tl_fully_connected_s8(NULL, (const tl_fc_params *)(const void *)&conv, &q,
                                                     &fc_in, x, &fc_w, w, NULL, &fc_out, y));
    tl_report_end();
    /* one byte too small: TL_ERR_ARENA where a library needs scratch, nothing written */
    fill(pool, sizeof pool);
    fill((uint8_t *)y, sizeof y);
    ctx.buf = pool + lead;
    ctx.size = need > 0u ? need - 1u : 0u;
    tl_report_begin("small", 0);
    tl_report_put_i32((int32_t)tl_conv2d_s8(&ctx, &conv, &q, &in, x, &conv_w, w, NULL, &conv_out, y));
    tl_report_put_i32(untouched(pool, sizeof pool));
    tl_report_put_i32(untouched((const uint8_t *)y, sizeof y));
    tl_report_end();
    /* exactly the need: runs; no byte outside [buf, buf + size) written */
    fill(pool, sizeof pool);
    ctx.size = need;
    tl_report_begin("exact", 0);
    tl_report_put_i32((int32_t)tl_conv2d_s8(&ctx, &conv, &q, &in, x, &conv_w, w, NULL, &conv_out, y));
    tl_report_put_i32(untouched(pool, lead));
    tl_report_put_i32(untouched(pool + lead + need, sizeof pool - lead - need));
    tl_report_end();
    return tl_report_done();
}
"""

# What the real libraries ask for on SIZES_MAIN's shapes (C_IN 3, kernel 3x2, pad_h 1), plus
# 15 bytes of alignment slack whenever a size is non-zero (planning/kernel_scratch.py):
# CMSIS-NN (DSP, no MVE) conv: im2col of 2 int16 columns of 18 rounded up to 20 values;
# depthwise with ch_mult 1 (not 3x3): one int16 per input channel and tap; ch_mult 2 and FC
# none. ESP-NN's ANSI kernels need none.
EXPECTED_SIZES = {"cmsis-nn": (0, 2 * 20 * 2 + 15, 3 * 3 * 2 * 2 + 15, 0, 0),
                  "esp-nn": (0, 0, 0, 0, 0),
                  None: (0, 0, 0, 0, 0)}
# Without scratch: the calls that need some cannot run (TL_ERR_ARENA), the rest can.
EXPECTED_UNSET = {"cmsis-nn": (TL_ERR_ARENA, TL_ERR_ARENA, 0, 0),
                  "esp-nn": (0, 0, 0, 0),
                  None: (0, 0, 0, 0)}
# One byte too small: (status, scratch untouched, output untouched). Needing none, the others
# run (and write the output).
EXPECTED_SMALL = {"cmsis-nn": (TL_ERR_ARENA, 1, 1), "esp-nn": (0, 1, 0), None: (0, 1, 0)}


@pytest.mark.parametrize("backend_name", ["cmsis-nn", "esp-nn", None],
                         ids=["cmsis-nn", "esp-nn", "portable"])
def test_scratch_queries_and_missing_scratch(tmp_path, backend_name):
    main = tmp_path / "main.c"
    main.write_text(SIZES_MAIN)
    if backend_name is None:
        require("host")
        elf = emulate.build("host", [main], tmp_path)
        result = emulate.run("host", elf)
    else:
        target = TARGET[backend_name]
        require(target)
        elf = backends.build(target, backends.BACKENDS[backend_name], [main], tmp_path)
        result = emulate.run(target, elf)
    report = emulate.parse_report(result.stdout, result.returncode)
    assert tuple(report.int32("sizes_0").tolist()) == EXPECTED_SIZES[backend_name]
    assert tuple(report.int32("unset_0").tolist()) == EXPECTED_UNSET[backend_name]
    assert tuple(report.int32("small_0").tolist()) == EXPECTED_SMALL[backend_name]
    assert tuple(report.int32("exact_0").tolist()) == (0, 1, 1)


def test_unplanned_scratch_is_an_arena_error(tmp_path, cases):
    """Model C planned without kernel scratch (portable) but linked to CMSIS-NN: the conv
    layers get no tl_context and return TL_ERR_ARENA, never a silent overrun; models without
    convolutions still run."""
    report, wrong, errors, _ = _run(tmp_path, "cmsis-nn", cases, planned_for="portable")
    assert errors and set(errors.values()) == {TL_ERR_ARENA}, errors
    assert any(name.startswith("example_") for name in errors)
    assert not any(name.startswith(("syn4_", "fcpt_")) for name in errors)  # FC only


def test_esp_nn_needs_no_scratch(tmp_path, cases):
    """ESP-NN's ANSI kernels take no scratch: model C planned without any runs every layer."""
    report, wrong, errors, _ = _run(tmp_path, "esp-nn", cases, planned_for="portable")
    assert wrong == 0 and not errors, (wrong, errors)


def test_esp_nn_without_per_channel_entry_point(tmp_path, cases):
    """Older ESP-NN releases lack esp_nn_fully_connected_per_ch_s8 (the glue tests for its
    macro): per-channel FC layers go one channel per esp_nn_fully_connected_s8 call, with the
    same bytes. Shown on a copy of the glue that behaves as if the macro were missing."""
    glue = (emulate.firmware_dir() / "src" / GLUE["esp-nn"]).read_text()
    guard = "#if defined(esp_nn_fully_connected_per_ch_s8)"
    assert glue.count(guard) == 1
    source = tmp_path / GLUE["esp-nn"]
    source.write_text(glue.replace(guard, "#if 0"))
    report, wrong, errors, elf = _run(tmp_path, "esp-nn", cases, kernels_source=source)
    assert wrong == 0 and not errors, (wrong, errors)
    assert backends.linked(TARGET["esp-nn"], backends.BACKENDS["esp-nn"], elf) == \
        set(backends.BACKENDS["esp-nn"].entry_points) - {"esp_nn_fully_connected_per_ch_s8_ansi"}
