"""The blocked fast paths of the portable frozen kernels, and the training kernels' dot
products on both their paths (portable and SMLAD), equal the numpy spec on the shapes that
exercise their edges.

``firmware/src/tl_kernels.c`` computes CONV_2D as 2-pixel x 2-channel blocks where neighbouring
output pixels see the same valid taps, 4-channel blocks elsewhere and single channels for the
rest; FULLY_CONNECTED 4 channels at a time; DEPTHWISE_CONV_2D with multiplier 1 channel-inner,
4 channels at a time. Each layer below is chosen to hit a seam: channel counts that leave
tails of every block size, strides and dilations that break pixel pairs or make taps
non-contiguous, padding wide enough that a window is all padding, 1x1 convolutions with and
without padding and with stride 2 (1x1 without padding runs as FULLY_CONNECTED rows), several
FULLY_CONNECTED rows. Every output byte is compared with ``Model.forward`` on the host with
the sanitizers (pointer walks stay inside the buffers), on Cortex-M4 and on rv32imc (the frozen
kernels have no DSP path: the same C on every core).

``tl_dot_s8`` / ``tl_dot4_s8`` (the LoRA forward's dot products: SXTB16/SMLAD on Arm cores with
the DSP extension) run ``firmware/testing/tl_dot_cases.c``: every length 0..45, offsets -128..128,
every alignment, on the host, Cortex-M4 with and without ``TL_NO_DSP``, and Cortex-M7; each sum
is recomputed here modulo 2^32.
"""
from __future__ import annotations

import numpy as np
import pytest
from support.randmodel import random_input
from support.tools import require
from test_emulated import _conv_layer, _qp, _requant, _single_layer_model

from tinylora import emulate
from tinylora.codegen.frozen import generate_frozen_c, output_name
from tinylora.codegen.selftest import runner_main_c
from tinylora.ref.layers import FullyConnected

VARIANTS = [
    ("host-sanitize", "host-sanitize", None),
    ("cortex-m4", "cortex-m4", None),
    ("rv32imc", "rv32imc", None),
]
DOT_VARIANTS = [
    ("host-sanitize", "host-sanitize", None),
    ("cortex-m4-portable", "cortex-m4", {"TL_NO_DSP": 1}),
    ("cortex-m4-dsp", "cortex-m4", None),
    ("cortex-m7-dsp", "cortex-m7", None),
]

# (kind, input HWC, output channels, kernel, stride, dilation, padding, multiplier)
LAYERS = [
    ("DEPTHWISE_CONV_2D", (6, 7, 6), 6, (3, 3), (1, 1), (1, 1), "SAME", 1),
    ("DEPTHWISE_CONV_2D", (9, 8, 5), 5, (3, 3), (2, 2), (2, 2), "SAME", 1),
    ("DEPTHWISE_CONV_2D", (5, 6, 9), 9, (2, 3), (1, 2), (1, 1), "VALID", 1),
    ("DEPTHWISE_CONV_2D", (4, 4, 8), 8, (5, 5), (1, 1), (1, 3), "SAME", 1),
    ("CONV_2D", (6, 7, 5), 7, (3, 3), (1, 1), (1, 1), "SAME", 1),
    ("CONV_2D", (9, 10, 3), 6, (3, 3), (2, 2), (2, 2), "SAME", 1),
    ("CONV_2D", (5, 5, 13), 9, (1, 1), (1, 1), (1, 1), "VALID", 1),
    ("CONV_2D", (7, 6, 10), 5, (1, 1), (2, 2), (1, 1), "SAME", 1),
    ("CONV_2D", (3, 9, 4), 5, (1, 7), (1, 1), (1, 1), "SAME", 1),
    ("CONV_2D", (7, 6, 8), 11, (2, 2), (1, 3), (1, 2), "SAME", 1),
    ("CONV_2D", (4, 5, 6), 4, (5, 5), (1, 1), (3, 3), "SAME", 1),
]


def _cases():
    rng = np.random.default_rng(2026)
    layers = [_conv_layer(rng, kind, shape, out_c, kernel, stride, dilation, padding, mult)
              for kind, shape, out_c, kernel, stride, dilation, padding, mult in LAYERS]
    for depth, out, rows in ((37, 11, 2), (8, 4, 1), (3, 6, 3)):
        m, s = _requant(rng, out, 1e-3, 1e-2)
        layers.append(FullyConnected(
            index=0, name="fc", kind="FULLY_CONNECTED", input_shape=(rows, depth),
            output_shape=(rows, out), input_q=_qp(0.02, -7), output_q=_qp(0.04, 5),
            weights=rng.integers(-127, 128, (out, depth)).astype(np.int8),
            weights_q=_qp(0.01, 0, out), bias=rng.integers(-3000, 3000, out).astype(np.int32),
            multiplier=m, shift=s))
    cases = []
    for i, layer in enumerate(layers):
        model = _single_layer_model(layer)
        x = np.concatenate([random_input(rng, model.input_shape, 2, "uniform"),
                            random_input(rng, model.input_shape, 1, "extreme")])
        cases.append((f"blk{i}", model, x, model.forward(x), f"{layer.kind} {layer.input_shape} "
                      f"-> {layer.output_shape} {getattr(layer, 'options', None)}"))
    return cases


@pytest.fixture(scope="module")
def cases():
    return _cases()


def test_cases_hit_the_seams(cases):
    """The layer list really has what the docstring claims (guards against edits)."""
    kinds = [c[1].layers[0].kind for c in cases]
    assert kinds.count("DEPTHWISE_CONV_2D") == 4 and kinds.count("FULLY_CONNECTED") == 3
    out_c = [c[1].layers[0].output_shape[-1] for c in cases if c[1].layers[0].kind == "CONV_2D"]
    assert {c % 4 for c in out_c} >= {0, 1, 2, 3} and {c % 2 for c in out_c} == {0, 1}


@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_blocked_kernels_match_numpy(tmp_path, cases, variant):
    vid, target, defines = variant
    require(target)
    files = []
    for prefix, model, x, _, _ in cases:
        path = tmp_path / f"{prefix}.c"
        path.write_text(generate_frozen_c(model, x, prefix=prefix))
        files.append(path)
    (tmp_path / "main.c").write_text(runner_main_c([f"{c[0]}_run_tests" for c in cases],
                                                   quant_cases=False))
    files.append(tmp_path / "main.c")
    elf = emulate.build(target, files, tmp_path, defines)
    result = emulate.run(target, elf, timeout=120)
    report = emulate.parse_report(result.stdout, result.returncode)
    assert not report.errors, report.errors
    compared = 0
    for prefix, _model, x, expected, about in cases:
        for i in range(len(x)):
            got = report.int8(output_name(prefix, i))
            want = expected[i].reshape(-1)
            bad = np.nonzero(got != want)[0]
            assert bad.size == 0, (f"{vid} {prefix} sample {i}: {bad.size}/{want.size} bytes "
                                   f"differ, first at {bad[:8].tolist()}\n{about}")
            compared += want.size
    assert compared > 3000


def _dot_expected(report):
    x = report.int8("x").astype(np.int64)
    w = report.int8("w").astype(np.int64)
    stride, start_acc = 53, np.array([1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF], np.int64)
    cases = 0
    while f"dot_{cases:x}" in report.values:
        n, offset, xs, ws, one, *four = report.int32(f"dot_{cases:x}").tolist()
        xo = x[xs:xs + n] + offset
        sums = [int(np.dot(xo, w[ws + r * stride: ws + r * stride + n])) for r in range(4)]
        want_four = [(int(a) + s) & 0xFFFFFFFF for a, s in zip(start_acc, sums)]
        assert one & 0xFFFFFFFF == sums[0] & 0xFFFFFFFF, (cases, n, offset, xs, ws)
        assert [v & 0xFFFFFFFF for v in four] == want_four, (cases, n, offset, xs, ws)
        cases += 1
    return cases


@pytest.mark.parametrize("variant", DOT_VARIANTS, ids=[v[0] for v in DOT_VARIANTS])
def test_training_dot_products_both_paths(tmp_path, variant):
    _, target, defines = variant
    require(target)
    elf = emulate.build(target, [emulate.firmware_dir() / "testing" / "tl_dot_cases.c"], tmp_path,
                        defines)
    result = emulate.run(target, elf, timeout=120)
    report = emulate.parse_report(result.stdout, result.returncode)
    assert not report.errors, report.errors
    assert _dot_expected(report) == 46 * 6 * 4
