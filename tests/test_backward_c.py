"""The C backward of the frozen ops (firmware/src/tl_backward.c) equals the numpy reference
(tinylora/ref/backward_ops.py, the delivery of tinylora/ref/executor.py) bit for bit.

One C program per target (host gcc and Cortex-M4 under QEMU) holds every case: per op
N_CASES random shapes and values from fixed seeds (strides, dilations, SAME / VALID padding,
depth multipliers, broadcasting, clipped pooling windows, fused activations whose bounds the
mask must honour), plus edge cases (all-zero gradients, +-32767 everywhere, exponent gaps past
62 in a merge, multipliers below 2^-31). Each case masks the gradient as
``backward_ops.clamp_mask`` does, runs the op's kernel and reports the 15-bit mantissas and
the exponent; the expected values are ``lora.normalize`` of ``backward_ops.input_gradients``.
"""
from __future__ import annotations

import time
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from support.tools import require
from support.train_c import CProgram

from tinylora import emulate
from tinylora.ref import backward_ops, lora
from tinylora.ref.dag import MERGE_GUARD_BITS
from tinylora.ref.layers import _out_size, _padding_before
from tinylora.ref.pooling import pool_geometry

TARGETS = ("host", "cortex-m4")
N_CASES = 8
OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "ADD", "PAD",
       "CONCATENATION", "RESHAPE", "QUANTIZE", "LOGISTIC", "HARD_SWISH", "rescale", "merge")


def _q(scale, zp=0):
    return SimpleNamespace(scale=np.atleast_1d(np.asarray(scale, np.float64)),
                           zero_point=np.atleast_1d(np.asarray(zp, np.int64)))


def _layer(kind, in_shape, out_shape, rng, **extra):
    act = extra.pop("activation", "NONE")
    zp = int(rng.integers(-128, 20))
    return SimpleNamespace(kind=kind, index=1, input_shape=tuple(in_shape),
                           output_shape=tuple(out_shape), activation=act, options=extra.pop("options", {}),
                           input_q=_q(float(rng.uniform(0.01, 0.2)), int(rng.integers(-100, 100))),
                           output_q=_q(float(rng.uniform(0.01, 0.1)), zp), **extra)


def _grad(rng, shape, mode):
    if mode == "zero":
        return np.zeros((1,) + tuple(shape), np.int64)
    if mode == "extreme":
        return rng.choice(np.array([-32767, 32767]), (1,) + tuple(shape)).astype(np.int64)
    g = rng.integers(-32767, 32768, (1,) + tuple(shape))
    g[rng.random(g.shape) < 0.2] = 0
    return g >> int(rng.integers(0, 14))


def _output(rng, layer):
    lo, hi, _, _ = backward_ops.output_range(layer)
    y = rng.integers(-128, 128, (1,) + tuple(layer.output_shape))
    pick = rng.random(y.shape)
    y[pick < 0.15] = lo
    y[pick > 0.85] = hi
    return y.astype(np.int8)


def _i8(v):
    return np.asarray(v, np.int64)


class Case:
    """One kernel call: its C body and the (mantissas, exponent) numpy expects."""

    def __init__(self, prog: CProgram, op: str, k: int, seed: int):
        self.prog, self.name = prog, f"{op.lower()}_{k}"
        self.rng = np.random.default_rng(seed)
        self.mode = ("zero", "extreme")[k] if k < 2 else "random"
        self.body: list[str] = []
        self.flags: set[str] = set()
        self.expected: list[tuple[np.ndarray, int]] = []
        getattr(self, "_" + op.lower())()
        prog.function(self.name, self.body)

    # -- helpers -----------------------------------------------------------------
    def _arr(self, base, ctype, values):
        return self.prog.const(f"{self.name}_{base}", ctype, np.asarray(values).reshape(-1))

    def _masked(self, layer, y, g):
        """C: copy g, mask it; numpy: clamp_mask. Returns (C buffer name, masked g)."""
        gb = self.prog.buffer(f"{self.name}_g", "int16_t", g.size)
        self.body += [f"COPY({gb}, {self._arr('g0', 'int16_t', g)}, {g.size});"]
        lo, hi, low, high = backward_ops.output_range(layer)
        ys = self._arr("y", "int8_t", y)
        self.body += [f"{{ static const tl_clamp_params c = {{ {lo}, {hi}, {int(low)}, {int(high)} }};",
                      f"  CHECK(\"{self.name}\", 0, tl_clamp_mask_s16(&c, {g.size}, {ys}, {gb})); }}"]
        masked = backward_ops.clamp_mask(layer, y, g)
        if (masked != g).any():
            self.flags.add("masked")
        return gb, masked

    def _expect(self, raws, exponent, slots=None):
        for s, raw in enumerate(raws):
            if slots is not None and s not in slots:
                continue
            m, e = lora.normalize(raw)
            self.expected.append((np.asarray(m, np.int64).reshape(-1), exponent + e))

    def _out(self, n):
        slot = len(self.expected) - 1
        gi = self.prog.buffer(f"{self.name}_gi{slot}", "int16_t", n)
        ex = self.prog.name(f"{self.name}_e{slot}")
        self.prog.decl(f"static int32_t {ex};")
        return gi, ex

    def _report(self):
        for s, (m, _) in enumerate(self.expected):
            gi, ex = f"{self.name}_gi{s}", f"{self.name}_e{s}"
            self.body += [f"rep_i16(\"{self.name}_m\", {s}, {gi}, {m.size});",
                          f"rep_one(\"{self.name}_e\", {s}, {ex});"]

    def _run_op(self, layer, y, g, xs, k, call, slots=(0,), mask=True):
        """Mask (optional), expected values, then `call(slot, g_name, e_in, gi, ex)` per slot."""
        e_in = int(self.rng.integers(-40, 40))
        if mask:
            gb, g = self._masked(layer, y, g)
        else:
            gb = self.prog.buffer(f"{self.name}_g", "int16_t", g.size)
            self.body += [f"COPY({gb}, {self._arr('g0', 'int16_t', g)}, {g.size});"]
        raws = backward_ops.input_gradients(layer, g, xs, y, k)
        for s in slots:
            self._expect([raws[s]], e_in)
            gi, ex = self._out(raws[s].size)
            self.body.append(f"CHECK(\"{self.name}\", {s + 1}, {call(s, gb, e_in, gi, ex)});")
        self._report()

    # -- ops ---------------------------------------------------------------------
    def _conv_2d(self, depthwise=False):
        r = self.rng
        h, w, c_in = (int(v) for v in r.integers(1, 7, 3))
        kh, kw = (int(v) for v in r.integers(1, 4, 2))
        sh, sw, dh, dw = (int(v) for v in r.integers(1, 3, 4))
        pad = str(r.choice(["SAME", "VALID"]))
        if _out_size(h, kh, sh, dh, pad) < 1 or _out_size(w, kw, sw, dw, pad) < 1:
            pad = "SAME"
        oh, ow = _out_size(h, kh, sh, dh, pad), _out_size(w, kw, sw, dw, pad)
        mult = int(r.integers(1, 4)) if depthwise else 1
        c_out = c_in * mult if depthwise else int(r.integers(1, 6))
        shape = (1, kh, kw, c_out) if depthwise else (c_out, kh, kw, c_in)
        wts = r.integers(-127, 128, shape)
        opts = {"stride_h": sh, "stride_w": sw, "dilation_h": dh, "dilation_w": dw,
                "depth_multiplier": mult}
        layer = _layer("DEPTHWISE_CONV_2D" if depthwise else "CONV_2D", (h, w, c_in),
                       (oh, ow, c_out), r, activation=str(r.choice(["NONE", "RELU", "RELU6"])),
                       kernel=(kh, kw), weights=wts, options=opts,
                       weights_q=_q(r.uniform(0.001, 0.05, c_out)))
        k = backward_ops.constants(layer, [(h, w, c_in)])
        wn = self._arr("w", "int8_t", wts)
        qn, sn = self._arr("rq", "int32_t", k["ratio"][0]), self._arr("rs", "int32_t", k["ratio"][1])
        ph, pw = _padding_before(h, kh, sh, dh, oh), _padding_before(w, kw, sw, dw, ow)
        self.body.append(f"static const tl_conv_backward_params p = {{ {h}, {w}, {c_in}, {oh}, {ow}, "
                         f"{c_out}, {kh}, {kw}, {sh}, {sw}, {dh}, {dw}, {ph}, {pw}, {mult}, {wn}, "
                         f"{{ {qn}, {sn} }} }};")
        words = lora.input_grad_scratch_words(h, w * c_in, 4) if depthwise else h * w * c_in
        if words < h * w * c_in:
            self.flags.add("rows")   # the C sums an input row at a time
        dx = self.prog.buffer(f"{self.name}_dx", "int32_t" if depthwise else "int64_t", words)
        fn = "tl_depthwise_conv_backward_s16" if depthwise else "tl_conv_backward_s16"
        g = _grad(r, (oh, ow, c_out), self.mode)
        self._run_op(layer, _output(r, layer), g, None, k,
                     lambda s, gb, e, gi, ex: f"{fn}(&p, {gb}, {e}, {dx}, {gi}, &{ex})")

    def _depthwise_conv_2d(self):
        self._conv_2d(depthwise=True)

    def _pool(self, kind):
        r = self.rng
        h, w, c = (int(v) for v in r.integers(1, 8, 3))
        fh, fw = (int(v) for v in r.integers(1, 5, 2))
        sh, sw = (int(v) for v in r.integers(1, 4, 2))
        pad = str(r.choice(["SAME", "VALID"]))
        if h < fh or w < fw:
            pad = "SAME"
        (oh, ph), (ow, pw) = pool_geometry(h, fh, sh, pad), pool_geometry(w, fw, sw, pad)
        opts = {"filter_height": fh, "filter_width": fw, "stride_h": sh, "stride_w": sw,
                "padding": pad}
        layer = _layer(kind, (h, w, c), (oh, ow, c), r, options=opts,
                       activation=str(r.choice(["NONE", "RELU"])))
        k = backward_ops.constants(layer, [(h, w, c)])
        ratios = sorted(n for n in k.get("ratio", {}) if n != k.get("full"))
        names = ["NULL"] * 3
        if ratios:
            self.flags.add("clipped")
            names = [self._arr("rc", "int32_t", ratios),
                     self._arr("rq", "int32_t", [k["ratio"][n][0] for n in ratios]),
                     self._arr("rs", "int32_t", [k["ratio"][n][1] for n in ratios])]
        self.body.append(f"static const tl_pool_backward_params p = {{ {h}, {w}, {c}, {oh}, {ow}, "
                         f"{fh}, {fw}, {sh}, {sw}, {ph}, {pw}, {len(ratios)}, {', '.join(names)} }};")
        dx = self.prog.buffer(f"{self.name}_dx", "int32_t", h * w * c)
        x = r.integers(-128, 128, (1, h, w, c))
        x[r.random(x.shape) < 0.3] = 5   # ties: the first largest wins
        g = _grad(r, (oh, ow, c), self.mode)
        if kind == "MAX_POOL_2D":
            xn = self._arr("x", "int8_t", x)
            call = lambda s, gb, e, gi, ex: f"tl_max_pool_backward_s16(&p, {xn}, {gb}, {e}, {dx}, {gi}, &{ex})"  # noqa: E731
        else:
            call = lambda s, gb, e, gi, ex: f"tl_avg_pool_backward_s16(&p, {gb}, {e}, {dx}, {gi}, &{ex})"  # noqa: E731
        self._run_op(layer, _output(self.rng, layer), g, [x.astype(np.int8)], k, call)

    def _average_pool_2d(self):
        self._pool("AVERAGE_POOL_2D")

    def _max_pool_2d(self):
        self._pool("MAX_POOL_2D")

    def _mean(self):
        r = self.rng
        h, w, c = (int(v) for v in r.integers(1, 9, 3))
        layer = _layer("MEAN", (h, w, c), (1, 1, c), r, options={"axes": (1, 2)})
        g = _grad(r, (1, 1, c), self.mode)
        self._run_op(layer, _output(r, layer), g, None, {},
                     lambda s, gb, e, gi, ex: f"tl_mean_backward_s16({h * w}, {c}, {gb}, {e}, {gi}, &{ex})")

    def _dims(self, name, d):
        d = (1,) * (4 - len(d)) + tuple(int(v) for v in d)
        self.body.append(f"static const tl_dims {name} = {{ {d[0]}, {d[1]}, {d[2]}, {d[3]} }};")

    def _add(self):
        r = self.rng
        out = tuple(int(v) for v in r.integers(1, 6, 3))
        shapes = [tuple(d if r.random() < 0.6 else 1 for d in out) for _ in range(2)]
        layer = _layer("ADD", out, out, r, activation=str(r.choice(["NONE", "RELU"])))
        k = {"shapes": [(1,) + s for s in shapes]}
        self._dims("od", (1,) + out)
        for s, shape in enumerate(shapes):
            self._dims(f"i{s}", (1,) + shape)
        g = _grad(r, out, self.mode)
        self._run_op(layer, _output(r, layer), g, None, k, slots=(0, 1),
                     call=lambda s, gb, e, gi, ex: f"tl_add_backward_s16(&od, &i{s}, {gb}, {e}, {gi}, &{ex})")

    def _slice_case(self, layer, out, boxes, begins, k, mask):
        self._dims("od", out)
        for s, (box, begin) in enumerate(zip(boxes, begins)):
            self._dims(f"i{s}", box)
            self._dims(f"b{s}", begin)
        g = _grad(self.rng, layer.output_shape, self.mode)
        self._run_op(layer, _output(self.rng, layer), g, None, k, slots=tuple(range(len(boxes))),
                     mask=mask, call=lambda s, gb, e, gi, ex:
                     f"tl_slice_backward_s16(&od, &i{s}, &b{s}, {gb}, {e}, {gi}, &{ex})")

    def _pad(self):
        r = self.rng
        shape = tuple(int(v) for v in r.integers(1, 6, 3))
        pads = [[0, 0]] + [[int(v) for v in r.integers(0, 3, 2)] for _ in range(3)]
        out = tuple(d + b + a for d, (b, a) in zip(shape, pads[1:]))
        layer = _layer("PAD", shape, out, r, options={"paddings": pads})
        self._slice_case(layer, (1,) + out, [(1,) + shape], [[p[0] for p in pads]], {}, False)

    def _concatenation(self):
        r = self.rng
        base = [int(v) for v in r.integers(1, 5, 3)]
        axis = int(r.integers(1, 4))
        sizes = [int(v) for v in r.integers(1, 5, int(r.integers(2, 4)))]
        shapes = [tuple(sz if a == axis - 1 else d for a, d in enumerate(base)) for sz in sizes]
        out = tuple(sum(sizes) if a == axis - 1 else d for a, d in enumerate(base))
        layer = _layer("CONCATENATION", shapes[0], out, r, options={"axis": axis})
        k = {"sizes": sizes, "shapes": [(1,) + s for s in shapes]}
        begins = [[0, 0, 0, 0] for _ in sizes]
        for s in range(len(sizes)):
            begins[s][axis] = sum(sizes[:s])
        self._slice_case(layer, (1,) + out, [(1,) + s for s in shapes], begins, k, False)

    def _flat(self, kind):
        r = self.rng
        n = int(r.integers(1, 60))
        layer = _layer(kind, (n,), (n,), r)
        self._slice_case(layer, (1, 1, 1, n), [(1, 1, 1, n)], [[0, 0, 0, 0]], {},
                         kind == "QUANTIZE")

    def _reshape(self):
        self._flat("RESHAPE")

    def _quantize(self):
        self._flat("QUANTIZE")

    def _logistic(self):
        r = self.rng
        n = int(r.integers(1, 80))
        layer = _layer("LOGISTIC", (n,), (n,), r)
        y = r.integers(-128, 128, (1, n)).astype(np.int8)
        yn = self._arr("y1", "int8_t", y)
        self._run_op(layer, y, _grad(r, (n,), self.mode), None, {}, mask=False,
                     call=lambda s, gb, e, gi, ex: f"tl_logistic_backward_s16({n}, {yn}, {gb}, {e}, {gi}, &{ex})")

    def _hard_swish(self):
        r = self.rng
        n = int(r.integers(1, 80))
        layer = _layer("HARD_SWISH", (n,), (n,), r)
        k = backward_ops.constants(layer, [(n,)])
        x = r.integers(-128, 128, (1, n)).astype(np.int8)
        xn, lut = self._arr("x", "int8_t", x), self._arr("lut", "int16_t", k["lut"])
        self._run_op(layer, _output(r, layer), _grad(r, (n,), self.mode), [x], k, mask=False,
                     call=lambda s, gb, e, gi, ex:
                     f"tl_hard_swish_backward_s16({n}, {xn}, {lut}, {gb}, {e}, {gi}, &{ex})")

    def _rescale(self):
        r = self.rng
        n = int(r.integers(1, 50))
        m = _grad(r, (n,), self.mode).reshape(-1)
        q, s = lora.multiplier(float(r.choice([r.uniform(0.001, 1.0), 2.0 ** -40, 0.5])), "test")
        if s < -31:
            self.flags.add("tiny")
        e = int(r.integers(-30, 30))
        got, ex = lora.normalize(lora.rescale(m, q, s + MERGE_GUARD_BITS))
        self.expected.append((np.asarray(got, np.int64), e + ex - MERGE_GUARD_BITS))
        gi, exn = self._out(n)
        self.body += [f"COPY({gi}, {self._arr('m', 'int16_t', m)}, {n});", f"{exn} = {e};",
                      f"CHECK(\"{self.name}\", 1, tl_grad_rescale_s16({n}, {q}, {s}, "
                      f"{MERGE_GUARD_BITS}, {gi}, &{exn}));"]
        self._report()

    def _merge(self):
        r = self.rng
        n = int(r.integers(1, 50))
        a, b = (_grad(r, (n,), self.mode).reshape(-1) for _ in range(2))
        ea, eb = (int(v) for v in r.integers(-20, 20, 2))
        if r.random() < 0.3:
            eb = ea + int(r.choice([63, 70, -65]))   # gaps past the 62-bit cap
            self.flags.add("gap")
        m, e = backward_ops.merge((a, ea), (b, eb))
        self.expected.append((np.asarray(m, np.int64), e))
        gi, exn = self._out(n)
        self.body += [f"COPY({gi}, {self._arr('b', 'int16_t', b)}, {n});",
                      f"CHECK(\"{self.name}\", 1, tl_grad_merge_s16({n}, {self._arr('a', 'int16_t', a)}, "
                      f"{ea}, {gi}, {eb}, &{exn}));"]
        self._report()

    def check(self, report, bad: list) -> None:
        for s, (m, e) in enumerate(self.expected):
            got_m = report.values.get(f"{self.name}_m_{s:x}")
            got_e = report.values.get(f"{self.name}_e_{s:x}")
            want_m = m.astype("<i4").tobytes()
            if got_m != want_m or got_e != np.int32(e).astype("<i4").tobytes():
                c = None if got_m is None else np.frombuffer(got_m, "<i4")[:8].tolist()
                ce = None if got_e is None else int(np.frombuffer(got_e, "<i4")[0])
                bad.append(f"{self.name} slot {s}: C {c} e {ce} vs numpy {m[:8].tolist()} e {e}")


@pytest.fixture(scope="module")
def program():
    prog = CProgram()
    prog.decl('#include "tl_backward.h"')
    cases = [Case(prog, op, k, zlib.crc32(f"{op}:{k}".encode())) for op in OPS for k in range(N_CASES)]
    return prog, cases


_RUNS: dict = {}


@pytest.mark.parametrize("target", TARGETS)
def test_backward_kernels_equal_numpy(target, program, tmp_path):
    require(target)
    prog, cases = program
    (tmp_path / "cases.c").write_text(prog.source())
    fw = emulate.firmware_dir()
    t0 = time.perf_counter()
    elf = emulate.build(target, [tmp_path / "cases.c", fw / "src" / "tl_backward.c",
                                 fw / "src" / "tl_train.c", fw / "src" / "tl_checkpoint.c"], tmp_path)
    result = emulate.run(target, elf, timeout=300)
    report = emulate.parse_report(result.stdout, result.returncode)
    assert not report.errors, f"kernel calls failed: {report.errors}"
    bad: list[str] = []
    for case in cases:
        case.check(report, bad)
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad[:30])
    compared = sum(m.size for c in cases for m, _ in c.expected)
    print(f"\n{target}: {len(cases)} cases ({len(OPS)} kernels), {compared:,} mantissas equal "
          f"({time.perf_counter() - t0:.1f} s)")


def test_cases_reach_every_rule(program):
    """The cases do what the docstring claims: masks that bite, clipped pooling windows,
    merges past the 62-bit cap, multipliers below 2^-31."""
    _, cases = program
    flags = {op: set().union(*(c.flags for c in cases if c.name.startswith(op.lower() + "_")))
             for op in OPS}
    for op in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD"):
        assert "masked" in flags[op], op
    assert "clipped" in flags["AVERAGE_POOL_2D"]
    assert "rows" in flags["DEPTHWISE_CONV_2D"]   # the row-at-a-time input gradient
    assert "gap" in flags["merge"] and "tiny" in flags["rescale"]
    # every kernel sees zero, saturated and ordinary gradients, with exponents moving both ways
    shifts = [e for c in cases for m, e in c.expected if m.any()]
    assert min(shifts) < 0 < max(shifts)


def test_generator_refuses_sums_the_32_bit_scratch_cannot_hold():
    """A depthwise conv whose kh * kw * multiplier reaches 512, and a pooling whose windows
    overlap so much that 2^15 * area/count * overlap passes 2^31, are refused with a
    ConfigError naming the layer (the planner gives them int32 scratch)."""
    from tinylora.codegen import backward
    from tinylora.errors import ConfigError
    rng = np.random.default_rng(0)
    sp = SimpleNamespace(prefix="t", arrays=[])
    opts = {"stride_h": 1, "stride_w": 1, "dilation_h": 1, "dilation_w": 1, "depth_multiplier": 2}
    big = _layer("DEPTHWISE_CONV_2D", (20, 20, 1), (20, 20, 2), rng, kernel=(16, 16),
                 weights=np.ones((1, 16, 16, 2)), options=opts, weights_q=_q([0.01, 0.01]))
    with pytest.raises(ConfigError, match="layer 1 DEPTHWISE_CONV_2D.*choose targets above"):
        backward._conv(sp, big, {"ratio": (np.ones(2, np.int64), np.zeros(2, np.int64))})
    small = _layer("DEPTHWISE_CONV_2D", (20, 20, 1), (20, 20, 2), rng, kernel=(3, 3),
                   weights=np.ones((1, 3, 3, 2)), options=opts, weights_q=_q([0.01, 0.01]))
    backward._conv(sp, small, {"ratio": (np.ones(2, np.int64), np.zeros(2, np.int64))})
    popts = {"filter_height": 200, "filter_width": 200, "stride_h": 1, "stride_w": 1, "padding": "SAME"}
    pool = _layer("AVERAGE_POOL_2D", (200, 200, 1), (200, 200, 1), rng, options=popts)
    with pytest.raises(ConfigError, match="layer 1 AVERAGE_POOL_2D.*32-bit"):
        backward._pool(sp, pool, backward_ops.constants(pool, [(200, 200, 1)]))
    popts.update(filter_height=2, filter_width=2, stride_h=2, stride_w=2)
    ok = _layer("AVERAGE_POOL_2D", (64, 64, 1), (32, 32, 1), rng, options=popts)
    assert backward._pool(sp, ok, backward_ops.constants(ok, [(64, 64, 1)]))["name"] == "params"
