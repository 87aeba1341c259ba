"""The C kernels of issue 11's ops (``firmware/src/tl_ops.c``) equal the numpy reference
(``tinylora/ref/`` (pooling, arith, tensor_ops, activations), itself bit-exact with TFLM) byte for byte.

One test program per variant holds many random cases per op (shapes, quantizations, fused
activations, paddings, broadcasts; seeded) plus argument checks with the expected tl_status.
Variants: the portable C on host (also under the sanitizers), Cortex-M4, Xtensa LX106 and
rv32imc; and the dispatched ops (pooling, ADD) built against the REAL libraries,
``CMSIS_NN_DIR`` (default ../shared/third_party/CMSIS-NN, v7.0.0; on Cortex-M4 with its DSP
path and with its pure C path) and ``ESP_NN_DIR`` (default ../shared/third_party/esp-nn,
v1.1.2 ANSI C, on Xtensa and host). The library entry points are wrapped at link time
(``-Wl,--wrap``) so the program counts its calls into each: a variant that silently fell back to
the portable path fails.

``pytest tests/test_ops_c.py -s`` prints the bytes compared per op per variant.
A missing toolchain or library skips its variant with the reason, except in CI (env var ``CI``
set), where it fails.
"""
from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from support.tools import missing, require

from tinylora import emulate
from tinylora.ref import activations, arith, pooling, tensor_ops
from tinylora.ref.qparams import Quant
from tinylora.ref.quant import activation_range

#: ../shared/third_party beside the repository (unmodified CMSIS-NN and ESP-NN releases)
_THIRD_PARTY = Path(__file__).resolve().parents[2] / "shared" / "third_party"
CMSIS_NN_DIR = Path(os.environ.get("CMSIS_NN_DIR", _THIRD_PARTY / "CMSIS-NN"))
ESP_NN_DIR = Path(os.environ.get("ESP_NN_DIR", _THIRD_PARTY / "esp-nn"))

CMSIS_CALLS = ("arm_avgpool_s8", "arm_max_pool_s8", "arm_elementwise_add_s8")
ESP_CALLS = ("esp_nn_avg_pool_s8_ansi", "esp_nn_max_pool_s8_ansi",
             "esp_nn_add_elementwise_s8_ansi")
# library op -> the tinylora op whose cases may reach it
LIB_OP = {"avgpool": "avg_pool", "max_pool": "max_pool", "add": "add"}

# (id, emulate target, library or None, extra library cflags)
VARIANTS = [
    ("host", "host", None, ()),
    ("host-sanitize", "host-sanitize", None, ()),
    ("cortex-m4", "cortex-m4", None, ()),
    ("xtensa", "xtensa", None, ()),
    ("rv32imc", "rv32imc", None, ()),
    ("cortex-m4-cmsis-nn", "cortex-m4", "cmsis-nn", ()),
    ("cortex-m4-cmsis-nn-c", "cortex-m4", "cmsis-nn", ("-U__ARM_FEATURE_DSP",)),
    ("xtensa-esp-nn", "xtensa", "esp-nn", ()),
    ("host-esp-nn", "host", "esp-nn", ()),
]
ACTIVATIONS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")
SCRATCH_BYTES = 4096


@dataclass
class Case:
    op: str
    setup: str               # C statements: declare params / dims, call, into `s`
    expected: bytes
    out_len: int             # output elements (int8, or float as int32 bits)
    floats: bool = False


@dataclass
class Program:
    cases: list[Case] = field(default_factory=list)
    decls: list[str] = field(default_factory=list)

    def array(self, name: str, values, ctype: str = "int8_t") -> str:
        vals = ", ".join(_c_int(int(v), ctype) for v in np.asarray(values).ravel())
        self.decls.append(f"static const {ctype} {name}[] = {{{vals or '0'}}};")
        return name


def _c_int(v: int, ctype: str) -> str:
    if ctype == "uint32_t":
        return f"{v}u"
    return "INT32_MIN" if v == -2**31 else str(v)  # -2147483648 is not an int constant


def _dims(shape) -> str:
    n, h, w, c = shape
    return f"{{{n}, {h}, {w}, {c}}}"


def _rand_quant(rng, lo=1e-3, hi=0.2) -> Quant:
    return Quant(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), int(rng.integers(-128, 128)))


def _rand_int8(rng, shape) -> np.ndarray:
    kind = rng.integers(3)
    if kind == 0:
        return rng.integers(-128, 128, shape).astype(np.int8)
    if kind == 1:  # extremes
        return rng.choice(np.array([-128, -127, 126, 127], np.int8), shape)
    return np.clip(rng.normal(0, 20, shape), -128, 127).astype(np.int8)


# --------------------------------------------------------------------------- case generators


def _pool_case(prog: Program, rng, i: int, average: bool) -> Case:
    n, c = int(rng.integers(1, 3)), int(rng.integers(1, 10))
    h, w = map(int, rng.integers(1, 11, 2))
    if rng.random() < 0.2:  # global pooling, as DS-CNN / MobileNet end
        fh, fw, sh, sw, padding = h, w, 1, 1, "VALID"
    else:
        padding = ("SAME", "VALID")[int(rng.integers(2))]
        fh, fw = int(rng.integers(1, min(h, 5) + 1)), int(rng.integers(1, min(w, 5) + 1))
        sh, sw = map(int, rng.integers(1, 4, 2))
    act = ACTIVATIONS[int(rng.integers(4))]
    q = _rand_quant(rng, 0.005, 0.1)
    lo, hi = activation_range(act, q.scale, q.zero_point)
    if lo > hi:
        act, (lo, hi) = "NONE", (-128, 127)
    oh, ph = pooling.pool_geometry(h, fh, sh, padding)
    ow, pw = pooling.pool_geometry(w, fw, sw, padding)
    x = _rand_int8(rng, (n, h, w, c))
    fn = pooling.average_pool_2d if average else pooling.max_pool_2d
    y = fn(x, (fh, fw), (sh, sw), padding, out=q, activation=act)
    assert y.shape == (n, oh, ow, c)
    op = "avg_pool" if average else "max_pool"
    name = prog.array(f"in_{i}", x)
    setup = (f"tl_pool_params p = {{{sh}, {sw}, {fh}, {fw}, {ph}, {pw}, {lo}, {hi}}};\n"
             f"    tl_dims di = {_dims(x.shape)}, do_ = {_dims(y.shape)};\n"
             f"    s = tl_{op}_s8(&kctx, &p, &di, {name}, &do_, out);")
    return Case(op, setup, y.tobytes(), y.size)


def _big_pool_case(prog: Program, rng, i: int) -> Case:
    """A global average over 257 x 257 values: a window of more than 65535 values, whose
    rounded mean takes the bit-wise quotient search instead of the reciprocal."""
    x = rng.choice(np.array([-128, 127, 126, -3], np.int8), (1, 257, 257, 1),
                   p=[0.2, 0.6, 0.1, 0.1])
    y = pooling.average_pool_2d(x, (257, 257), (1, 1), "VALID")
    name = prog.array(f"in_{i}", x)
    setup = ("tl_pool_params p = {1, 1, 257, 257, 0, 0, -128, 127};\n"
             "    tl_dims di = {1, 257, 257, 1}, do_ = {1, 1, 1, 1};\n"
             f"    s = tl_avg_pool_s8(&kctx, &p, &di, {name}, &do_, out);")
    return Case("avg_pool", setup, y.tobytes(), y.size)


def _add_case(prog: Program, rng, i: int) -> Case:
    shape = (int(rng.integers(1, 3)), *map(int, rng.integers(1, 7, 2)), int(rng.integers(1, 9)))
    s2 = list(shape)
    if rng.random() < 0.35:  # broadcast some axes of one input
        for a in range(4):
            if rng.random() < 0.5:
                s2[a] = 1
    while True:
        q1, q2, qo = _rand_quant(rng), _rand_quant(rng), _rand_quant(rng, 0.002, 0.4)
        try:
            p = arith.add_params(q1, q2, qo)
            break
        except ValueError:
            continue
    act = ACTIVATIONS[int(rng.integers(4))]
    lo, hi = activation_range(act, qo.scale, qo.zero_point)
    if lo > hi:
        act, (lo, hi) = "NONE", (-128, 127)
    x1, x2 = _rand_int8(rng, shape), _rand_int8(rng, tuple(s2))
    if rng.random() < 0.5:
        x1, x2, shape1, shape2 = x2, x1, tuple(s2), shape
    else:
        shape1, shape2 = shape, tuple(s2)
    y = arith.add(x1, q1, x2, q2, qo, act)
    a, b = prog.array(f"in_{i}", x1), prog.array(f"in2_{i}", x2)
    setup = (f"tl_add_params p = {{{-q1.zero_point}, {p.input1_multiplier}, {p.input1_shift}, "
             f"{-q2.zero_point}, {p.input2_multiplier}, {p.input2_shift}, {p.left_shift}, "
             f"{qo.zero_point}, {p.output_multiplier}, {p.output_shift}, {lo}, {hi}}};\n"
             f"    tl_dims d1 = {_dims(shape1)}, d2 = {_dims(shape2)}, do_ = {_dims(y.shape)};\n"
             f"    s = tl_add_s8(&p, &d1, {a}, &d2, {b}, &do_, out);")
    return Case("add", setup, y.tobytes(), y.size)


def _pad_case(prog: Program, rng, i: int) -> Case:
    shape = (int(rng.integers(1, 3)), *map(int, rng.integers(1, 7, 2)), int(rng.integers(1, 6)))
    pads = [(0, 0) if rng.random() < 0.3 else tuple(map(int, rng.integers(0, 4, 2)))
            for _ in range(4)]
    value = int(rng.integers(-128, 128))
    x = _rand_int8(rng, shape)
    y = tensor_ops.pad(x, pads, value)
    name = prog.array(f"in_{i}", x)
    b = [p[0] for p in pads]
    setup = (f"tl_pad_params p = {{{b[0]}, {b[1]}, {b[2]}, {b[3]}, {value}}};\n"
             f"    tl_dims di = {_dims(shape)}, do_ = {_dims(y.shape)};\n"
             f"    s = tl_pad_s8(&p, &di, {name}, &do_, out);")
    return Case("pad", setup, y.tobytes(), y.size)


def _mean_case(prog: Program, rng, i: int) -> Case:
    shape = (int(rng.integers(1, 3)), *map(int, rng.integers(1, 13, 2)), int(rng.integers(1, 9)))
    q_in = _rand_quant(rng)
    q_out = q_in if rng.random() < 0.2 else _rand_quant(rng)
    x = _rand_int8(rng, shape)
    y = arith.mean(x, (1, 2), q_in, q_out, keep_dims=True)
    m, e = arith.mean_params(q_in, q_out, shape[1] * shape[2])
    name = prog.array(f"in_{i}", x)
    setup = (f"tl_mean_params p = {{{-q_in.zero_point}, {q_out.zero_point}, {m}, {e}}};\n"
             f"    tl_dims di = {_dims(shape)};\n"
             f"    s = tl_mean_s8(&p, &di, {name}, out);")
    return Case("mean", setup, y.tobytes(), y.size)


def _concat_case(prog: Program, rng, i: int) -> Case:
    base = [int(rng.integers(1, 3)), *map(int, rng.integers(1, 6, 3))]
    axis = int(rng.integers(4))
    k = int(rng.integers(1, 5))
    xs, sizes = [], []
    for _j in range(k):
        shape = list(base)
        shape[axis] = int(rng.integers(1, 5))
        sizes.append(shape[axis])
        xs.append(_rand_int8(rng, tuple(shape)))
    y = tensor_ops.concatenation(xs, axis)
    names = [prog.array(f"in_{i}_{j}", x) for j, x in enumerate(xs)]
    outer, inner = int(np.prod(base[:axis])), int(np.prod(base[axis + 1:]))
    setup = (f"static const int32_t sizes[] = {{{', '.join(map(str, sizes))}}};\n"
             f"    static const int8_t *const ins[] = {{{', '.join(names)}}};\n"
             f"    tl_concat_params p = {{{k}, sizes, {outer}, {inner}}};\n"
             f"    s = tl_concat_s8(&p, ins, out);")
    return Case("concat", setup, y.tobytes(), y.size)


def _quantize_case(prog: Program, rng, i: int) -> Case:
    q_in, q_out = _rand_quant(rng, 1e-3, 1.0), _rand_quant(rng, 1e-3, 1.0)
    x = np.arange(-128, 128, dtype=np.int8)
    y = tensor_ops.requantize_int8(x, q_in, q_out)
    m, e = tensor_ops.quantize_params(q_in, q_out)
    name = prog.array(f"in_{i}", x)
    setup = (f"tl_quantize_params p = {{{-q_in.zero_point}, {q_out.zero_point}, {m}, {e}}};\n"
             f"    s = tl_quantize_s8(&p, {x.size}, {name}, out);")
    return Case("quantize", setup, y.tobytes(), y.size)


def _float_inputs(rng, q: Quant) -> np.ndarray:
    s = np.float32(q.scale)
    k = rng.integers(-300, 300, 48).astype(np.float32)
    ties = (k + np.float32(0.5)) * s                       # near-ties after the division
    near = np.nextafter(ties, np.float32(np.inf), dtype=np.float32)
    wide = rng.normal(0, 150, 48).astype(np.float32) * s
    special = np.array([0.0, -0.0, 1e30, -1e30, np.inf, -np.inf, 1e-30, -1e-30, 0.5 * s,
                        -0.5 * s, 127.5 * s, -128.5 * s, 2.0**31, -(2.0**31)], np.float32)
    return np.concatenate([ties, near, wide, special]).astype(np.float32)


def _quantize_f32_case(prog: Program, rng, i: int) -> Case:
    q = _rand_quant(rng, 1e-3, 1.0)
    x = _float_inputs(rng, q)
    y = tensor_ops.quantize_float(x, q)
    bits = prog.array(f"fin_{i}", x.view("<u4"), "uint32_t")
    setup = (f"tl_float_quant q = {{{_c_float(q.scale)}, {q.zero_point}}};\n"
             f"    float x[{x.size}];\n"
             f"    memcpy(x, {bits}, sizeof x);\n"
             f"    s = tl_quantize_f32_s8(&q, {x.size}, x, out);")
    return Case("quantize_f32", setup, y.tobytes(), y.size)


def _c_float(v: float) -> str:
    return f"{float(np.float32(v)).hex()}f"  # exact: a hex float literal of the float32


def _dequantize_case(prog: Program, rng, i: int) -> Case:
    q = _rand_quant(rng, 1e-4, 10.0)
    x = np.arange(-128, 128, dtype=np.int8)
    y = tensor_ops.dequantize(x, q)
    name = prog.array(f"in_{i}", x)
    setup = (f"tl_float_quant q = {{{_c_float(q.scale)}, {q.zero_point}}};\n"
             f"    s = tl_dequantize_s8_f32(&q, {x.size}, {name}, fout);")
    return Case("dequantize", setup, y.view("<i4").tobytes(), y.size, floats=True)


def _logistic_case(prog: Program, rng, i: int) -> Case:
    while True:
        q = _rand_quant(rng, 1e-3, 0.5)
        try:
            p = activations.logistic_params(q)
            break
        except ValueError:
            continue
    x = np.arange(-128, 128, dtype=np.int8)
    y = activations.logistic(x, q)
    name = prog.array(f"in_{i}", x)
    setup = (f"tl_logistic_params p = {{{-q.zero_point}, {p.input_multiplier}, "
             f"{p.input_left_shift}, {p.input_range_radius}}};\n"
             f"    s = tl_logistic_s8(&p, {x.size}, {name}, out);")
    return Case("logistic", setup, y.tobytes(), y.size)


def _hard_swish_case(prog: Program, rng, i: int) -> Case:
    while True:
        q_in, q_out = _rand_quant(rng, 1e-3, 0.5), _rand_quant(rng, 1e-3, 0.5)
        try:
            p = activations.hard_swish_params(q_in, q_out)
            break
        except ValueError:
            continue
    x = np.arange(-128, 128, dtype=np.int8)
    y = activations.hard_swish(x, q_in, q_out)
    name = prog.array(f"in_{i}", x)
    setup = (f"tl_hard_swish_params p = {{{-q_in.zero_point}, {q_out.zero_point}, "
             f"{p.output_multiplier}, {p.output_exponent}, {p.reluish_multiplier}, "
             f"{p.reluish_exponent}}};\n"
             f"    s = tl_hard_swish_s8(&p, {x.size}, {name}, out);")
    return Case("hard_swish", setup, y.tobytes(), y.size)


def _reshape_case(prog: Program, rng, i: int) -> Case:
    x = _rand_int8(rng, (2, 3, 4, 5))
    y = tensor_ops.reshape(x, (6, 20))
    name = prog.array(f"in_{i}", x)
    return Case("reshape", f"s = tl_reshape_s8({x.size}, {name}, out);", y.tobytes(), y.size)


def _f32_arith_case(prog: Program, rng, i: int) -> Case:
    """float32 product, sum, difference and int -> float conversion on random finite operands
    (normal, subnormal, zero, huge): what the float ends compile to. On the Xtensa test target
    these are firmware/targets/xtensa/tl_softfloat.c, so this checks that file bit for bit."""
    n = 64
    bits = rng.integers(0, 2**32, (2, n), dtype=np.uint64).astype(np.uint32)
    exps = (bits >> 23) & 0xFF
    bits = np.where(exps == 255, bits & 0x807FFFFF, bits)     # no inf / NaN operands
    bits[:, :8] &= 0x807FFFFF                                  # subnormals and zeros
    bits[1, 8:16] = bits[0, 8:16] ^ 0x80000000                 # exact cancellation
    bits[1, 16:24] = bits[0, 16:24] + rng.integers(-3, 4, 8).astype(np.uint32)  # near-cancellation
    a, b = bits[0].view(np.float32), bits[1].view(np.float32)
    ints = rng.integers(-2**31, 2**31, n, dtype=np.int64).astype(np.int32)
    ints[:4] = [0, -2**31, 2**31 - 1, 16777217]
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.concatenate([a * b, a + b, a - b, ints.astype(np.float32)]).astype(np.float32)
    an, bn = prog.array(f"fa_{i}", bits[0], "uint32_t"), prog.array(f"fb_{i}", bits[1], "uint32_t")
    iname = prog.array(f"fi_{i}", ints, "int32_t")
    setup = (f"float a[{n}], b[{n}];\n"
             f"    int32_t k;\n"
             f"    memcpy(a, {an}, sizeof a);\n"
             f"    memcpy(b, {bn}, sizeof b);\n"
             f"    for (k = 0; k < {n}; ++k) {{\n"
             f"        fout[k] = a[k] * b[k];\n"
             f"        fout[{n} + k] = a[k] + b[k];\n"
             f"        fout[{2 * n} + k] = a[k] - b[k];\n"
             f"        fout[{3 * n} + k] = (float){iname}[k];\n"
             f"    }}\n"
             f"    s = TL_OK;")
    return Case("f32_arith", setup, y.view("<i4").tobytes(), y.size, floats=True)


GENERATORS = {
    "avg_pool": (lambda p, r, i: _pool_case(p, r, i, True), 60),
    "max_pool": (lambda p, r, i: _pool_case(p, r, i, False), 60),
    "avg_pool_big": (_big_pool_case, 1),
    "add": (_add_case, 60),
    "pad": (_pad_case, 12),
    "mean": (_mean_case, 40),
    "concat": (_concat_case, 12),
    "quantize": (_quantize_case, 12),
    "quantize_f32": (_quantize_f32_case, 8),
    "dequantize": (_dequantize_case, 8),
    "logistic": (_logistic_case, 16),
    "hard_swish": (_hard_swish_case, 16),
    "reshape": (_reshape_case, 1),
    "f32_arith": (_f32_arith_case, 4),
}

# Argument checks: (name, C call, expected tl_status). 1 NULL, 2 SHAPE, 3 PARAM.
STATUS_CASES = [
    ("pool_null", "tl_avg_pool_s8(NULL, &pp, &d4, NULL, &d4, out)", 1),
    ("pool_pad_ge_filter", "(pp.pad_h = 3, tl_max_pool_s8(NULL, &pp, &d4, in_0, &d4, out))", 3),
    ("pool_channels", "tl_avg_pool_s8(NULL, &pp0, &d4, in_0, &d4c, out)", 2),
    ("pool_act", "(pp0.act_min = 5, pp0.act_max = 4,"
                 " tl_avg_pool_s8(NULL, &pp0, &d4, in_0, &d4, out))", 3),
    ("add_broadcast", "tl_add_s8(&ap, &d4, in_0, &d4c, in_0, &d4, out)", 2),
    ("add_offset", "(ap.input1_offset = 200, tl_add_s8(&ap, &d4, in_0, &d4, in_0, &d4, out))", 3),
    ("pad_too_small", "tl_pad_s8(&padp, &d4, in_0, &d4, out)", 3),
    ("mean_shape", "tl_mean_s8(&mp, &d0, in_0, out)", 2),
    ("concat_count", "tl_concat_s8(&cp, NULL, out)", 1),
    ("quantize_f32_scale", "tl_quantize_f32_s8(&fq, 1, fx, out)", 3),
    ("hard_swish_exp", "tl_hard_swish_s8(&hp, 1, in_0, out)", 3),
    ("reshape_n", "tl_reshape_s8(-1, in_0, out)", 2),
]
STATUS_SETUP = """tl_pool_params pp = {1, 1, 2, 2, 0, 0, -128, 127};
    tl_pool_params pp0 = {1, 1, 1, 1, 0, 0, -128, 127};
    tl_dims d4 = {1, 2, 2, 1}, d4c = {1, 2, 2, 2}, d0 = {1, 0, 2, 1};
    tl_add_params ap = {0, 1073741824, -1, 0, 1073741824, -1, 20, 0, 1073741824, -1, -128, 127};
    tl_pad_params padp = {0, 1, 0, 0, 0};
    tl_mean_params mp = {0, 0, 1073741824, 0};
    tl_concat_params cp = {1, NULL, 1, 1};
    tl_float_quant fq = {0.0f, 0};
    tl_hard_swish_params hp = {0, 0, 100, 1, 100, 0};
    float fx[1] = {0.0f};
    static const int32_t one[1] = {1};
    cp.axis_size = one;"""


def build_cases(seed: int) -> tuple[Program, list[Case]]:
    rng = np.random.default_rng(seed)
    prog = Program()
    cases = []
    i = 0
    for _op, (gen, count) in GENERATORS.items():
        for _ in range(count):
            cases.append(gen(prog, rng, i))
            i += 1
    return prog, cases


def program_c(prog: Program, cases: list[Case], calls: tuple[str, ...]) -> str:
    max_out = max(c.out_len for c in cases)
    lines = ['#include "tl_ops.h"', '#include "tl_kernels.h"', '#include "tl_report.h"',
             "#include <string.h>", "", f"static int8_t out[{max_out}];",
             f"static float fout[{max_out}];", f"static int32_t fbits[{max_out}];", *prog.decls,
             "/* the pooling calls' kernel scratch (tl_context; only CMSIS-NN on DSP uses it) */",
             f"static uint32_t kscratch[{SCRATCH_BYTES // 4}];",
             "static const tl_context kctx = {kscratch, sizeof kscratch};", ""]
    if calls:  # counted by the -Wl,--wrap=<name> wrappers (wraps_c)
        lines += [f"extern int32_t tl_test_calls[{len(calls)}];", ""]
    for i, c in enumerate(cases):
        report = (f"memcpy(fbits, fout, sizeof(float) * {c.out_len});\n"
                  f"        tl_report_i32_at(\"{c.op}\", {i}, fbits, {c.out_len});"
                  if c.floats else f"tl_report_s8_at(\"{c.op}\", {i}, out, {c.out_len});")
        lines += [f"static void case_{i}(void)", "{", "    tl_status s;", f"    {c.setup}",
                  "    if (s != TL_OK) {", f"        tl_report_error(\"{c.op}\", {i}, (int)s);",
                  "    } else {", f"        {report}", "    }", "}", ""]
    lines += ["static void status_cases(void)", "{", f"    {STATUS_SETUP}",
              f"    int32_t st[{len(STATUS_CASES)}];"]
    for k, (_, call, _) in enumerate(STATUS_CASES):
        lines.append(f"    st[{k}] = (int32_t){call};")
    lines += [f"    tl_report_i32(\"status\", st, {len(STATUS_CASES)});", "}", ""]
    # the scratch query of a 2x2x3 average pool, and the call without a scratch context
    lines += ["static void scratch_case(void)", "{",
              "    tl_pool_params p = {1, 1, 2, 2, 0, 0, -128, 127};",
              "    tl_dims di = {1, 2, 2, 3}, do_ = {1, 1, 1, 3};", "    int32_t r[2];",
              "    r[0] = (int32_t)tl_avg_pool_s8_scratch_size(&p, &di, &do_);",
              "    r[1] = (int32_t)tl_avg_pool_s8(NULL, &p, &di, in_0, &do_, out);",
              "    tl_report_i32(\"scratch\", r, 2);", "}", ""]
    lines += ["int main(void)", "{"]
    lines += [f"    case_{i}();" for i in range(len(cases))]
    lines += ["    status_cases();", "    scratch_case();"]
    if calls:
        lines.append(f'    tl_report_i32("calls", tl_test_calls, {len(calls)});')
    lines += ["    return tl_report_done();", "}", ""]
    return "\n".join(lines)


_CMSIS_POOL = ("arm_cmsis_nn_status",
               "const cmsis_nn_context *a, const cmsis_nn_pool_params *b, const cmsis_nn_dims *c, "
               "const int8_t *d, const cmsis_nn_dims *e, const cmsis_nn_dims *f, int8_t *g",
               "a, b, c, d, e, f, g")
# name -> (return type, parameters, arguments) of each wrapped library function
WRAPS = {
    "arm_avgpool_s8": _CMSIS_POOL,
    "arm_max_pool_s8": _CMSIS_POOL,
    "arm_elementwise_add_s8": (
        "arm_cmsis_nn_status", "const int8_t *a, const int8_t *b, int32_t c, int32_t d, int32_t e, "
        "int32_t f, int32_t g, int32_t h, int32_t i, int8_t *j, int32_t k, int32_t l, int32_t m, "
        "int32_t n, int32_t o, int32_t p", "a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p"),
    "esp_nn_avg_pool_s8_ansi": (
        "void", "const int8_t *a, uint16_t b, uint16_t c, int8_t *d, uint16_t e, uint16_t f, "
        "uint16_t g, uint16_t h, uint16_t i, uint16_t j, uint16_t k, uint16_t l, int32_t m, "
        "int32_t n, uint16_t o", "a, b, c, d, e, f, g, h, i, j, k, l, m, n, o"),
    "esp_nn_max_pool_s8_ansi": (
        "void", "const int8_t *a, uint16_t b, uint16_t c, int8_t *d, uint16_t e, uint16_t f, "
        "uint16_t g, uint16_t h, uint16_t i, uint16_t j, uint16_t k, uint16_t l, int32_t m, "
        "int32_t n, uint16_t o", "a, b, c, d, e, f, g, h, i, j, k, l, m, n, o"),
    "esp_nn_add_elementwise_s8_ansi": (
        "void", "const int8_t *a, const int8_t *b, int32_t c, int32_t d, int32_t e, int32_t f, "
        "int32_t g, int32_t h, int32_t i, int8_t *j, int32_t k, int32_t l, int32_t m, int32_t n, "
        "int32_t o, int32_t p", "a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p"),
}


def wraps_c(calls: tuple[str, ...], header: str) -> str:
    """__wrap_<f> counts the call and calls the library's __real_<f> (GNU ld --wrap)."""
    lines = [f'#include "{header}"', ""]
    for k, name in enumerate(calls):
        ret, params, args = WRAPS[name]
        lines += [f"extern int32_t tl_test_calls[{len(calls)}];",
                  f"{ret} __real_{name}({params});", f"{ret} __wrap_{name}({params});",
                  f"{ret} __wrap_{name}({params})", "{", f"    ++tl_test_calls[{k}];",
                  f"    {'return ' if ret != 'void' else ''}__real_{name}({args});", "}", ""]
    lines.append(f"int32_t tl_test_calls[{len(calls)}];")
    return "\n".join(lines)


# --------------------------------------------------------------------------- building


def _library(name: str) -> tuple[list[Path], list[Path], str, tuple[str, ...], str]:
    """(sources, include dirs, define, wrapped calls, header) of a real library."""
    if name == "cmsis-nn":
        root = CMSIS_NN_DIR
        if not (root / "Include" / "arm_nnfunctions.h").is_file():
            missing(f"CMSIS-NN not found at {root}: set CMSIS_NN_DIR to an unmodified "
                     "CMSIS-NN v7.0.0 tree")
        srcs = [p for d in ("PoolingFunctions", "BasicMathFunctions", "ConvolutionFunctions",
                            "FullyConnectedFunctions", "NNSupportFunctions")
                for p in sorted((root / "Source" / d).glob("*.c"))]
        return srcs, [root / "Include"], "TL_USE_CMSIS_NN", CMSIS_CALLS, "arm_nnfunctions.h"
    root = ESP_NN_DIR
    if not (root / "include" / "esp_nn.h").is_file():
        missing(f"ESP-NN not found at {root}: set ESP_NN_DIR to an unmodified esp-nn v1.1.2 tree")
    srcs = sorted((root / "src").glob("*/*_ansi.c"))
    return srcs, [root / "include", root / "src" / "common"], "TL_USE_ESP_NN", ESP_CALLS, "esp_nn.h"


def _library_objects(target: str, srcs, incs, extra, out: Path) -> list[Path]:
    """The library compiled with the target's own flags (not our warning set: it is not our
    code), unmodified."""
    spec = emulate._spec(target)
    out.mkdir(parents=True, exist_ok=True)
    objs = []
    for src in srcs:
        obj = out / f"{src.parent.name}_{src.stem}.o"
        cmd = [spec.cc, *spec.cflags, *extra, *[f"-I{i}" for i in incs], "-c", str(src), "-o",
               str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise emulate.EmulationError(f"library build failed:\n$ {' '.join(cmd)}\n{proc.stderr}")
        objs.append(obj)
    return objs


@dataclass
class Outcome:
    cases: list[Case]
    report: emulate.Report
    calls: dict[str, int]


SEEDS = {v[0]: 1100 + k for k, v in enumerate(VARIANTS)}
_OUTCOMES: dict[str, Outcome] = {}


def _outcome(variant: str, tmp_path_factory) -> Outcome:
    if variant in _OUTCOMES:
        return _OUTCOMES[variant]
    _, target, library, extra = next(v for v in VARIANTS if v[0] == variant)
    require(target)
    out = tmp_path_factory.mktemp(variant)
    prog, cases = build_cases(SEEDS[variant])
    fw = emulate.firmware_dir()
    sources: list = [out / "ops_prog.c"]   # tl_ops.c and Xtensa's soft float: emulate's own
    includes: list = [fw / "src"]
    defines = None
    calls: tuple[str, ...] = ()
    if library is not None:
        srcs, incs, define, calls, header = _library(library)
        sources += _library_objects(target, srcs, incs, extra, out / "lib")
        (out / "wraps.c").write_text(wraps_c(calls, header))
        sources.append(out / "wraps.c")
        # GNU ld: calls to f from other objects go to __wrap_f (counted), which calls __real_f
        sources += [f"-Wl,--wrap={name}" for name in calls]
        includes += incs
        defines = {define: 1}
    (out / "ops_prog.c").write_text(program_c(prog, cases, calls))
    elf = emulate.build(target, sources, out, defines, include_dirs=includes)
    res = emulate.run(target, elf, timeout=300)
    report = emulate.parse_report(res.stdout, res.returncode)
    got_calls = dict(zip(calls, report.int32("calls").tolist())) if calls else {}
    _OUTCOMES[variant] = Outcome(cases, report, got_calls)
    return _OUTCOMES[variant]


@pytest.mark.parametrize("variant", [v[0] for v in VARIANTS])
def test_ops_equal_numpy(variant, tmp_path_factory):
    outcome = _outcome(variant, tmp_path_factory)
    rep = outcome.report
    assert not rep.errors, f"{variant}: kernels returned errors {rep.errors}"
    compared: dict[str, int] = {}
    bad = []
    for i, case in enumerate(outcome.cases):
        key = f"{case.op}_{i:x}"
        got = rep.values[key]
        if got != case.expected:
            diff = sum(a != b for a, b in zip(got, case.expected))
            diff += abs(len(got) - len(case.expected))
            bad.append(f"{key}: {diff} of {len(case.expected)} bytes differ")
        compared[case.op] = compared.get(case.op, 0) + len(case.expected)
    print(f"\n{variant}: bytes compared per op (0 differing): "
          + ", ".join(f"{op} {n}" for op, n in compared.items()))
    assert not bad, f"{variant}: " + "; ".join(bad[:10])
    assert rep.int32("status").tolist() == [c[2] for c in STATUS_CASES], \
        dict(zip([c[0] for c in STATUS_CASES], rep.int32("status").tolist()))


@pytest.mark.parametrize("variant", [v[0] for v in VARIANTS])
def test_avg_pool_scratch(variant, tmp_path_factory):
    """Only CMSIS-NN's DSP average pool takes scratch (one int32 per channel, plus the 16-byte
    alignment slack); without it registered that build returns TL_ERR_ARENA (5), others TL_OK."""
    outcome = _outcome(variant, tmp_path_factory)
    dsp_cmsis = variant == "cortex-m4-cmsis-nn"
    expected = [3 * 4 + 15, 5] if dsp_cmsis else [0, 0]
    assert outcome.report.int32("scratch").tolist() == expected


@pytest.mark.parametrize("variant", [v[0] for v in VARIANTS if v[2] is not None])
def test_library_takes_its_ops(variant, tmp_path_factory):
    """Every wrapped library entry point was called (the dispatch is real), and every call was
    for an op the library is documented to take."""
    outcome = _outcome(variant, tmp_path_factory)
    print(f"\n{variant}: library calls {outcome.calls}")
    assert all(n > 0 for n in outcome.calls.values()), outcome.calls
