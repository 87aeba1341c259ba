"""The C training kernels (firmware/tl_train.c, tl_checkpoint.c) equal the numpy reference.

One C program per target (built and run once per session) holds every case: per kernel 20
random cases from hypothesis-chosen seeds plus hand-picked edge cases (INT32 / INT64
extremes, zero gradients, saturated h and y, ties in the sparsifier), the checkpoint codec
and two-slot store against ``tinylora.checkpoint``, and whole training runs of the bundled
model's adapted segment (layers 5 and 6) and of a 1x1-conv model against ``Trainer``. Every
reported byte is compared.

The reference for each kernel is the numpy code itself: ``lora.lora_forward``,
``loss.xent_grad``, ``lora.normalize``, ``Trainer._op_backward`` and ``Trainer._apply`` (run on
a stand-in trainer holding one layer), ``checkpoint.encode / decode / CheckpointStore``.

A missing cross toolchain skips its target with the reason, except in CI (env ``CI`` set),
where it fails.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import struct
import subprocess
import time
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from support import randmodel
from support.tools import require
from support.train_c import CProgram, lit, lora_params, optim_params, report_u8_bytes

import tinylora
from tinylora import emulate, targets, verify
from tinylora.codegen import tables
from tinylora.codegen.vectors import VectorSet
from tinylora.datasets import digits_split, to_model_input
from tinylora.errors import CheckpointError
from tinylora.formats import checkpoint as ckpt
from tinylora.ref import lora, quant
from tinylora.ref.adapted import AdaptedLayer
from tinylora.ref.config import LoRAConfig
from tinylora.ref.layers import Conv2D, FullyConnected, QuantParams
from tinylora.ref.lora import sparsify
from tinylora.ref.loss import LOSS_LUT, mse_constants, mse_grad, xent_grad
from tinylora.ref.schedule import ScheduleOp
from tinylora.ref.softmax import softmax_int8, softmax_params
from tinylora.ref.trainer import Trainer

TARGETS = tuple(targets.TOOLCHAINS)
N_RANDOM = 20           # hypothesis-chosen seeds per kernel
TRAIN_STEPS = 20
I32_MIN, I32_MAX = -2**31, 2**31 - 1
I64_MAX = 2**63 - 1


def _seeds(label: str, n: int = N_RANDOM) -> list[int]:
    """n seeds drawn by hypothesis (deterministic under the default profile), mixed with the
    kernel's label so that every kernel gets its own cases."""
    drawn: list[int] = []

    @settings(max_examples=n, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, 2**32 - 1))
    def collect(seed):
        if seed not in drawn:
            drawn.append(seed)

    collect()
    while len(drawn) < n:
        drawn.append(len(drawn) * 7919 + 1)
    return [zlib.crc32(f"{label}:{s}".encode()) for s in drawn[:n]]


def _loguniform(rng, lo, hi, size=None):
    return np.exp(rng.uniform(math.log(lo), math.log(hi), size))


def _qp(scale, zero_point, n: int = 1) -> QuantParams:
    return QuantParams(np.broadcast_to(np.float32(scale), (n,)).astype(np.float32),
                       np.broadcast_to(np.int64(zero_point), (n,)).astype(np.int64))


def _view(arrays: dict, p: str) -> str:
    """The key of parameter p's int8 view among an AdaptedLayer's arrays."""
    return next(k for k, v in arrays.items() if k != p and k.startswith(p) and v.dtype == np.int8)


def _state_names(arrays: dict) -> list[str]:
    """Masters, views, accumulators, momentum: the arrays a checkpoint touches, in a fixed order."""
    return ["A", "B", _view(arrays, "A"), _view(arrays, "B"), "dA", "dB", "mA", "mB"]


def _q(real: float) -> tuple[int, int]:
    return quant.quantize_multiplier(float(real))


class Mismatch(list):
    """Collects one line per mismatching named result."""

    def compare(self, what: str, got, want) -> None:
        got, want = np.asarray(got).reshape(-1), np.asarray(want).reshape(-1)
        if got.shape != want.shape:
            self.append(f"{what}: {got.size} values, expected {want.size}")
            return
        bad = np.nonzero(got != want)[0]
        if bad.size:
            self.append(f"{what}: {bad.size}/{want.size} differ, first at {bad[:6].tolist()}: "
                        f"C {got[bad[:6]].tolist()} vs numpy {want[bad[:6]].tolist()}")


def _i16(report, name):
    return report.int32(name)


def _i64(report, name):
    return np.frombuffer(report.values[name], "<i8")


# ==================================================================== random layers

def _random_layer(rng, conv: bool, small: bool = False):
    """A FULLY_CONNECTED or 1x1 CONV_2D layer (index 1) with random quantization."""
    k_max, c_max = (12, 10) if small else (40, 24)
    depth, c_out = int(rng.integers(1, k_max + 1)), int(rng.integers(1, c_max + 1))
    zp_x, zp_y = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    s_x, s_y = float(_loguniform(rng, 1e-3, 1.0)), float(_loguniform(rng, 1e-3, 1.0))
    per_channel = rng.random() < 0.6
    s_w = _loguniform(rng, 1e-4, 1e-1, c_out if per_channel else 1).astype(np.float32)
    activation = str(rng.choice(["NONE", "RELU", "RELU6"]))
    act_min, act_max = quant.activation_range(activation, s_y, zp_y)
    mult, shift = quant.quantize_multipliers(
        np.broadcast_to(quant.real_multipliers(s_x, s_w, s_y), (c_out,)))
    bias = None
    if rng.random() < 0.8:
        bias = rng.integers(-2**20, 2**20, c_out).astype(np.int64)
        if rng.random() < 0.2:   # accumulators that wrap (TFLM's int32 arithmetic)
            bias[rng.integers(0, c_out)] = I32_MAX
            bias[rng.integers(0, c_out)] = I32_MIN
    common = dict(index=1, input_q=_qp(s_x, zp_x), output_q=_qp(s_y, zp_y), activation=activation,
                  weights_q=QuantParams(s_w, np.zeros(s_w.shape, np.int64)), bias=bias,
                  multiplier=mult.astype(np.int64), shift=shift.astype(np.int64),
                  act_min=act_min, act_max=act_max)
    if conv:
        h, w = int(rng.integers(1, 7)), int(rng.integers(1, 7))
        sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        oh, ow = -(-h // sh), -(-w // sw)
        weights = rng.integers(-127, 128, (c_out, 1, 1, depth)).astype(np.int8)
        return Conv2D(name="conv1x1", kind="CONV_2D", input_shape=(h, w, depth),
                      output_shape=(oh, ow, c_out), weights=weights,
                      options={"stride_h": sh, "stride_w": sw, "dilation_h": 1, "dilation_w": 1,
                               "padding": "SAME", "depth_multiplier": 1}, **common)
    rows = int(rng.integers(1, 4)) if rng.random() < 0.3 else 1
    shape_in = (depth,) if rows == 1 else (rows, depth)
    shape_out = (c_out,) if rows == 1 else (rows, c_out)
    weights = rng.integers(-127, 128, (c_out, depth)).astype(np.int8)
    return FullyConnected(name="fc", kind="FULLY_CONNECTED", input_shape=shape_in,
                          output_shape=shape_out, weights=weights, **common)


def _rows(layer) -> int:
    return lora.lora_rows(layer)


def _random_constants(rng, layer, rank: int, extreme: bool) -> lora.LayerConstants:
    k = lora.layer_constants(layer, rank, float(rank) * float(rng.uniform(0.5, 2)),
                             float(rng.uniform(0, 80)))
    if extreme:   # h and the LoRA join pushed onto their int8 / int32 rails
        k.m_h = _q(_loguniform(rng, 1e-2, 1e4))
        c_out = layer.weights.shape[0]
        pairs = [_q(v) for v in _loguniform(rng, 1e2, 1e9, c_out)]
        k.m_join = (np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64))
    k.m_update_a = _q(_loguniform(rng, 1e-12, 1e5))
    k.m_update_b = _q(_loguniform(rng, 1e-12, 1e5))
    k.extra["lora_to_input"] = _q(_loguniform(rng, 1e-6, 1e2))
    return k


def _ratios(layer):
    s_w = np.broadcast_to(layer.weights_q.scale.astype(np.float64), (layer.weights.shape[0],))
    pairs = [_q(v / s_w.max()) for v in s_w]
    return np.array([p[0] for p in pairs], np.int64), np.array([p[1] for p in pairs], np.int64)


def _int8(rng, shape, edge: bool):
    x = rng.integers(-128, 128, shape).astype(np.int8)
    if edge:
        m = rng.random(shape)
        x[m < 0.2] = -128
        x[m > 0.8] = 127
    return x


# ==================================================================== cases

class NormalizeCase:
    kernel = "normalize"

    def __init__(self, n: int, seed: int | None = None, values=None, bits: int | None = None):
        self.n = n
        rng = np.random.default_rng(seed)
        if values is None:
            size = int(rng.integers(0, 41))
            width = int(rng.integers(0, 63))
            values = rng.integers(-(2**width), 2**width, size, dtype=np.int64, endpoint=True) \
                if width else np.zeros(size, np.int64)
            if size and rng.random() < 0.3:   # exactly at a rounding boundary
                values[rng.integers(0, size)] = (1 << width) - 1
        self.x = np.asarray(values, np.int64)
        self.bits = bits if bits is not None else int(rng.choice([15, 31]))
        self.m, self.e = lora.normalize(self.x, self.bits)
        self.m15, self.e15 = lora.normalize(self.x, 15)

    def emit(self, prog: CProgram):
        n, size = self.n, self.x.size
        x = prog.const(f"nx{n}", "int64_t", self.x)
        m32 = prog.buffer(f"nm{n}", "int32_t", size)
        m16 = prog.buffer(f"nm16_{n}", "int16_t", size)
        inpl = prog.buffer(f"ninp{n}", "int64_t", size)
        prog.function(f"normalize_{n}", [
            "int32_t e = 0;",
            f"CHECK(\"norm\", {n}, tl_normalize({x}, {size}, {self.bits}, {m32}, &e));",
            f"tl_report_i32_at(\"norm_m\", {n}, {m32}, {size});",
            f"rep_one(\"norm_e\", {n}, e);",
            f"CHECK(\"norm\", {n}, tl_normalize_s16({x}, {size}, {m16}, &e));",
            f"rep_i16(\"norm_m16\", {n}, {m16}, {size});",
            f"rep_one(\"norm_e16\", {n}, e);",
            f"COPY({inpl}, {x}, {size});",
            f"CHECK(\"norm\", {n}, tl_normalize_inplace({inpl}, {size}, 15, &e));",
            f"rep_i64(\"norm_inplace\", {n}, {inpl}, {size});",
        ])

    def check(self, r, bad: Mismatch):
        n = self.n
        bad.compare(f"normalize#{n} m (bits {self.bits})", r.int32(f"norm_m_{n:x}"), self.m)
        bad.compare(f"normalize#{n} e", r.int32(f"norm_e_{n:x}"), [self.e])
        bad.compare(f"normalize#{n} m16", _i16(r, f"norm_m16_{n:x}"), self.m15)
        bad.compare(f"normalize#{n} e16", r.int32(f"norm_e16_{n:x}"), [self.e15])
        bad.compare(f"normalize#{n} inplace", _i64(r, f"norm_inplace_{n:x}"), self.m15)


def _normalize_cases() -> list:
    cases = [NormalizeCase(i, s) for i, s in enumerate(_seeds("normalize"))]
    edges = [
        ([], 15), ([0, 0, 0], 15), ([0, 0, 0], 31), ([I64_MAX, -I64_MAX, 1], 15),
        ([I64_MAX, -I64_MAX, 1, -1], 31), ([2**62, -(2**62)], 15), ([32767, -32767, 5], 15),
        ([32768, -32767], 15), ([-32768, 3], 15), ([65535, 65533, -65535], 15), ([1, -1], 31),
        ([2**31 - 1, -(2**31)], 31), ([3, -2], 15), ([2**40 + 2**24, -(2**25) - 2**24 + 1], 15),
        ([I32_MIN, I32_MAX], 15),
    ]
    for values, bits in edges:
        cases.append(NormalizeCase(len(cases), values=values, bits=bits))
    return cases


class ForwardCase:
    kernel = "forward"

    def __init__(self, n: int, seed: int, edge: bool):
        rng = np.random.default_rng(seed)
        self.n = n
        self.layer = _random_layer(rng, conv=rng.random() < 0.4)
        depth, c_out = self.layer.weights.shape[-1], self.layer.weights.shape[0]
        self.rank = int(rng.integers(1, 6))
        self.k = _random_constants(rng, self.layer, self.rank, extreme=edge)
        self.x = _int8(rng, self.layer.input_shape, edge)
        self.a8 = _int8(rng, (self.rank, depth), edge)
        self.b8 = _int8(rng, (c_out, self.rank), edge)
        if rng.random() < 0.15:
            self.b8[:] = 0   # B's initial zero: the adapted layer equals the frozen one
        y, h = lora.lora_forward(self.layer, self.x[None], self.a8, self.b8, self.k)
        self.y, self.h = y[0], h[0]
        if not np.any(self.b8):
            assert np.array_equal(self.y, self.layer.forward(self.x[None])[0])

    def emit(self, prog):
        n = self.n
        p = lora_params(prog, f"fp{n}", self.layer, self.k, None)
        x = prog.const(f"fx{n}", "int8_t", self.x)
        a = prog.const(f"fa{n}", "int8_t", self.a8)
        b = prog.const(f"fb{n}", "int8_t", self.b8)
        y = prog.buffer(f"fy{n}", "int8_t", self.y.size)
        h = prog.buffer(f"fh{n}", "int8_t", self.h.size)
        prog.function(f"forward_{n}", [
            f"CHECK(\"fwd\", {n}, tl_lora_forward_s8(&{p}, {x}, {a}, {b}, {y}, {h}));",
            f"tl_report_s8_at(\"fwd_y\", {n}, {y}, {self.y.size});",
            f"tl_report_s8_at(\"fwd_h\", {n}, {h}, {self.h.size});",
        ])

    def check(self, r, bad):
        about = f"forward#{self.n} {self.layer.kind} {self.layer.input_shape}->{self.layer.output_shape} r={self.rank}"
        bad.compare(f"{about} y", r.int8(f"fwd_y_{self.n:x}"), self.y)
        bad.compare(f"{about} h", r.int8(f"fwd_h_{self.n:x}"), self.h)


class LossCase:
    kernel = "loss"

    def __init__(self, n: int, seed: int, edge: bool):
        rng = np.random.default_rng(seed)
        self.n = n
        self.classes = int(rng.integers(1, 41)) if not (edge and n % 6 == 0) else 1
        while True:
            try:
                self.params = softmax_params(float(_loguniform(rng, 1e-2, 0.5)),
                                             float(rng.choice([1.0, float(rng.uniform(0.2, 3))])))
                break
            except ValueError:
                continue
        self.logits = _int8(rng, (self.classes,), edge)
        if not edge:   # a spread of a few tens: probabilities between the extremes
            centre, width = int(rng.integers(-100, 100)), int(rng.integers(1, 28))
            self.logits = np.clip(rng.integers(centre - width, centre + width + 1, self.classes),
                                  -128, 127).astype(np.int8)
        if edge and n % 2:
            self.logits[:] = self.logits[0]
        self.label = int(rng.integers(0, self.classes))
        self.g, self.loss = xent_grad(self.logits, self.label, self.params)
        self.probs = softmax_int8(self.logits, *self.params)

    def emit(self, prog):
        n, c = self.n, self.classes
        sm = prog.name(f"lsm{n}")
        prog.decl(f"static const tl_softmax_params {sm} = {{{lit(self.params[0])}, "
                  f"{lit(self.params[1])}, {lit(self.params[2])}}};")
        logits = prog.const(f"llog{n}", "int8_t", self.logits)
        probs = prog.buffer(f"lp{n}", "int8_t", c)
        grad = prog.buffer(f"lg{n}", "int16_t", c)
        prog.function(f"loss_{n}", [
            "int32_t loss = -1;",
            f"CHECK(\"loss\", {n}, tl_xent_grad_s8(&{sm}, {c}, {logits}, {self.label}, {probs}, "
            f"{grad}, &loss));",
            f"tl_report_s8_at(\"loss_p\", {n}, {probs}, {c});",
            f"rep_i16(\"loss_g\", {n}, {grad}, {c});",
            f"rep_one(\"loss_q10\", {n}, loss);",
        ])

    def check(self, r, bad):
        n = self.n
        bad.compare(f"loss#{n} probs", r.int8(f"loss_p_{n:x}"), self.probs)
        bad.compare(f"loss#{n} g", _i16(r, f"loss_g_{n:x}"), self.g)
        bad.compare(f"loss#{n} loss", r.int32(f"loss_q10_{n:x}"), [self.loss])


class MseCase:
    """loss.mse_grad: random output counts (up to past the 255-output mark), scales and
    targets; edge cases put outputs and targets at opposite int8 ends (|g| = 255)."""
    kernel = "mse"

    def __init__(self, n: int, seed: int, edge: bool):
        rng = np.random.default_rng(seed)
        self.n = n
        self.count = int(rng.integers(1, 700)) if n % 5 else 1
        _, self.q = mse_constants(float(_loguniform(rng, 1e-4, 0.5)), self.count)
        self.y = _int8(rng, (self.count,), edge)
        self.t = _int8(rng, (self.count,), edge)
        if edge:
            self.y[: self.count // 2], self.t[: self.count // 2] = 127, -128
        if n % 7 == 3:
            self.t = self.y.copy()   # a perfect output: gradient and loss 0
        self.g, self.loss = mse_grad(self.y, self.t, self.q)

    def emit(self, prog):
        n, c = self.n, self.count
        prm = prog.name(f"mprm{n}")
        prog.decl(f"static const tl_mse_params {prm} = {{{lit(self.q[0])}, {lit(self.q[1])}}};")
        y = prog.const(f"my{n}", "int8_t", self.y)
        t = prog.const(f"mt{n}", "int8_t", self.t)
        grad = prog.buffer(f"mg{n}", "int16_t", c)
        prog.function(f"mse_{n}", [
            "int32_t loss = -1;",
            f"CHECK(\"mse\", {n}, tl_mse_grad_s8(&{prm}, {c}, {y}, {t}, {grad}, &loss));",
            f"rep_i16(\"mse_g\", {n}, {grad}, {c});",
            f"rep_one(\"mse_q10\", {n}, loss);",
        ])

    def check(self, r, bad):
        n = self.n
        bad.compare(f"mse#{n} g", _i16(r, f"mse_g_{n:x}"), self.g)
        bad.compare(f"mse#{n} loss", r.int32(f"mse_q10_{n:x}"), [self.loss])


class _StandIn:
    """Just enough of a Trainer for Trainer._op_backward / _apply on one layer."""
    _op_backward = Trainer._op_backward
    _weighted_backward = Trainer._weighted_backward
    _deliver = Trainer._deliver
    _slots = Trainer._slots
    _to_input_shape = Trainer._to_input_shape
    _apply = Trainer._apply
    _emit = Trainer._emit

    def __init__(self, layer, ad, ratios, with_dx, accum_steps, threshold, capacity, momentum_q,
                 fused=False):
        self.model = SimpleNamespace(layers={layer.index: layer})
        self.adapters = {layer.index: ad} if ad is not None else {}
        self.input_grad = {layer.index: ratios}
        self.lowest = layer.index - 1 if with_dx else layer.index
        self.srcs = {layer.index: (layer.index - 1,)}
        self.tainted = [layer.index - 1, layer.index] if with_dx else [layer.index]
        self.merge_ratio = {}
        self.accum_steps = accum_steps
        self.grad_threshold = threshold
        self.momentum_q = momentum_q
        self._capacity = capacity
        self.fused_now = fused

    def capacity(self, size):
        return self._capacity(size)


def _random_int32(rng, size, edge: bool, small: bool = False):
    v = rng.integers(-2**12, 2**12, size) if small else rng.integers(I32_MIN, I32_MAX, size, endpoint=True)
    if edge and size:
        m = rng.random(size)
        v[m < 0.15] = I32_MIN
        v[m > 0.85] = I32_MAX
    return v.astype(np.int64)


def _random_masters(rng, shape, edge: bool):
    m = rng.integers(-2**15, 2**15, shape).astype(np.int64)
    if edge:
        r = rng.random(shape)
        m[r < 0.15] = -2**15
        m[r > 0.85] = 2**15 - 1
    return m


class BackwardCase:
    kernel = "backward"

    def __init__(self, n: int, seed: int, edge: bool, zero_grad: bool = False, force=None):
        rng = np.random.default_rng(seed)
        force = force or {}
        self.n = n
        layer = self.layer = _random_layer(rng, conv=force.get("conv", rng.random() < 0.4), small=True)
        c_out, depth = layer.weights.shape[0], layer.weights.shape[-1]
        rows = _rows(layer)
        self.adapted = force.get("adapted", rng.random() < 0.8)
        self.with_dx = force.get("dx", rng.random() < 0.7) or not self.adapted
        self.accum = bool(force.get("accum", rng.random() < 0.3))
        self.sparse = self.adapted and not self.accum and force.get("sparse", rng.random() < 0.35)
        # every other dense one-step case: the fused update (straight into the masters)
        self.fused = self.adapted and not self.accum and not self.sparse and force.get("fused", n % 2 == 1)
        self.threshold = int(rng.integers(1, 40)) if rng.random() < 0.3 else 0
        self.threshold_hit = force.get("threshold_hit", False)   # = some |delta| exactly
        self.aim_range = force.get("aim", (-2, 34))
        self.momentum_q = _q(rng.uniform(0.1, 0.99)) if self.sparse and rng.random() < 0.5 else (0, 0)
        self.rank = int(rng.integers(1, 5))
        self.ratios = _ratios(layer)
        # inputs
        self.x = _int8(rng, layer.input_shape, edge)
        self.y = _int8(rng, layer.output_shape, False)
        if edge or rng.random() < 0.5:   # outputs on the clamp's bounds
            m = rng.random(layer.output_shape)
            self.y[m < 0.3] = layer.act_min
            self.y[m > 0.7] = layer.act_max
        else:
            self.y = np.clip(self.y, layer.act_min, layer.act_max).astype(np.int8)
        bits = int(force.get("bits", rng.integers(0, 16)))
        self.g = rng.integers(-(2**bits) + 1, 2**bits, layer.output_shape).astype(np.int64) \
            if bits and not zero_grad else np.zeros(layer.output_shape, np.int64)
        self.e_in = int(rng.integers(-40, 12))
        self.ad = None
        if self.adapted:
            self.k = _random_constants(rng, layer, self.rank, extreme=False)
            a_master = _random_masters(rng, (self.rank, depth), edge)
            b_master = _random_masters(rng, (c_out, self.rank), edge)
            self.ad = AdaptedLayer(layer, self.k, a_master, b_master, momentum=bool(self.momentum_q[0]))
            self.h = _int8(rng, (rows, self.rank), True)
            if self.accum:
                self.ad.acc_a = _random_int32(rng, self.ad.acc_a.shape, edge)
                self.ad.acc_b = _random_int32(rng, self.ad.acc_b.shape, edge)
            if self.momentum_q[0]:
                self.ad.arrays["mA"][...] = _random_int32(rng, self.ad.acc_a.shape, edge, small=not edge)
                self.ad.arrays["mB"][...] = _random_int32(rng, self.ad.acc_b.shape, edge, small=not edge)
            self._aim_constants(rng)
            self.caps = {"A": int(rng.integers(1, self.ad.a_master.size + 3)),
                         "B": int(rng.integers(1, self.ad.b_master.size + 3))}
            self.init = {k: v.copy() for k, v in self.ad.arrays.items()}
        self._reference()

    def _aim_constants(self, rng):
        """Update / input-gradient multipliers chosen from the block exponents this case will
        produce, so that the rescaled values land anywhere from 0 to the int32 rails (random
        multipliers would mostly give all-zero or all-saturated gradients)."""
        layer, ad = self.layer, self.ad
        c_out = layer.weights.shape[0]
        g_rows, eg = lora.normalize(lora.output_gradient_mask(layer, self.y, self.g).reshape(-1, c_out))
        e = self.e_in + eg
        h = self.h.astype(np.int64)
        _, eb = lora.normalize(g_rows.T @ h, 31)
        dh, eh = lora.normalize(lora.saturation_mask(h, g_rows @ ad.b8))
        x_rows = lora.rows_view(layer, self.x[None])[0].astype(np.int64) - int(layer.input_q.zero_point[0])
        _, ea = lora.normalize(dh.T @ x_rows, 31)

        lo, hi = self.aim_range

        def aim(exponents, mantissa_bits):   # output ~ 2^T for T in [lo, hi]
            return _q(2.0 ** (rng.uniform(lo, hi) - mantissa_bits - exponents))
        self.k.m_update_b = aim(e + eb, 30)
        self.k.m_update_a = aim(e + eh + ea, 30)
        self.k.extra["lora_to_input"] = aim(eh, 14)

    def _reference(self):
        layer, ad = self.layer, self.ad
        c_out = layer.weights.shape[0]
        fake = _StandIn(layer, ad, self.ratios, self.with_dx, 2 if self.accum else 1,
                        self.threshold, lambda size: None, self.momentum_q, self.fused)
        bufs = {"grad1": (self.g[None], self.e_in), "act1": self.y[None], "act0": self.x[None]}
        if ad is not None:
            bufs["h1"] = self.h[None]
        fake._op_backward(ScheduleOp("backward", 1, (), ()), bufs)
        # internal buffers, for diagnosis: masked 15-bit g, and dh
        g_rows, _ = lora.normalize(lora.output_gradient_mask(layer, self.y, self.g).reshape(-1, c_out))
        self.g_rows = g_rows
        if self.with_dx:
            self.grad_in, self.e_out = bufs["grad0"]
        if ad is not None:
            b8 = self.init[_view(self.init, "B")].astype(np.int64)   # the forward's B (fused: ad.b8 is new)
            self.dh = lora.normalize(lora.saturation_mask(self.h.astype(np.int64), g_rows @ b8))[0]
            self.acc = {"A": ad.acc_a.copy(), "B": ad.acc_b.copy()}
            if self.fused:   # the masters the backward updated, and their refreshed views
                self.after = {k: v.copy() for k, v in ad.arrays.items()}
            if self.sparse:   # the pairs the sparse buffer keeps, then the update itself
                deltas = {}
                for p in "AB":
                    delta = quant.rounding_divide_by_pot(ad.arrays["d" + p], lora.ACCUM_FRAC_BITS)
                    if self.momentum_q[0]:
                        delta = quant.saturate(lora.rescale(ad.arrays["m" + p], *self.momentum_q) + delta,
                                               I32_MIN, I32_MAX)
                    deltas[p] = delta
                if self.threshold_hit:
                    mags = np.abs(np.concatenate([deltas["A"].ravel(), deltas["B"].ravel()]))
                    mags = np.sort(mags[mags > 0])
                    self.threshold = fake.grad_threshold = int(mags[len(mags) // 2]) if mags.size else 1
                self.pairs = {}
                for p in "AB":   # Trainer.capacity: min(grad_capacity, size), per tensor
                    cap = min(self.caps[p], deltas[p].size)
                    kept = sparsify(deltas[p], self.threshold, cap).ravel()
                    self.pairs[p] = sorted((int(i), int(kept[i])) for i in np.nonzero(kept)[0])
                    fake._capacity = lambda size, cap=cap: cap
                    fake._apply(ad.arrays, p)
                ad.refresh()
                self.after = {k: v.copy() for k, v in ad.arrays.items()}

    def emit(self, prog):
        n, layer = self.n, self.layer
        rows, depth = _rows(layer), layer.weights.shape[-1]
        p = lora_params(prog, f"bp{n}", layer, self.k if self.adapted else None, self.ratios)
        opt = optim_params(prog, f"bo{n}", self.accum, self.threshold, self.momentum_q)
        x = prog.const(f"bx{n}", "int8_t", self.x)
        y = prog.const(f"by{n}", "int8_t", self.y)
        g0 = prog.const(f"bg0_{n}", "int16_t", self.g)
        g = prog.buffer(f"bg{n}", "int16_t", self.g.size)
        body = ["int32_t e_out = 0;", "(void)e_out;", f"COPY({g}, {g0}, {self.g.size});"]
        lt = "NULL"
        report = [f"rep_i16(\"bwd_g\", {n}, {g}, {self.g.size});"]
        after = []
        if self.adapted:
            ad, r = self.ad, self.rank
            h = prog.const(f"bh{n}", "int8_t", self.h)
            dh = prog.buffer(f"bdh{n}", "int64_t", rows * r)
            arrays = {}
            for name in ("A", "B"):
                size = ad.arrays[name].size
                arrays[name + "8"] = prog.const(f"b{name}8_{n}", "int8_t", self.init[_view(self.init, name)])
                arrays["M" + name] = arrays["V" + name] = "NULL"
                if self.fused and (n // 2) % 2 == 0:   # views rewritten in place as masters change
                    view0 = arrays[name + "8"]
                    arrays[name + "8"] = arrays["V" + name] = prog.buffer(f"bV{name}{n}", "int8_t", size)
                    body.append(f"COPY({arrays['V' + name]}, {view0}, {size});")
                if self.sparse:
                    arrays["d" + name] = "NULL"
                    arrays["s" + name] = prog.buffer(f"bs{name}{n}", "int32_t", 2 * self.caps[name])
                    cap = self.caps[name]
                elif self.fused:
                    arrays["d" + name] = arrays["s" + name] = "NULL"
                    arrays["M" + name] = prog.buffer(f"bM{name}{n}", "int16_t", size)
                    init = prog.const(f"bM{name}0_{n}", "int16_t", self.init[name])
                    body.append(f"COPY({arrays['M' + name]}, {init}, {size});")
                    cap = 0
                else:
                    arrays["d" + name] = prog.buffer(f"bd{name}{n}", "int32_t", size)
                    arrays["s" + name] = "NULL"
                    cap = 0
                    if self.accum:
                        init = prog.const(f"bd{name}0_{n}", "int32_t", self.init["d" + name])
                        body.append(f"COPY({arrays['d' + name]}, {init}, {size});")
                arrays["cap" + name] = cap
                if self.momentum_q[0]:
                    arrays["m" + name] = prog.buffer(f"bm{name}{n}", "int32_t", size)
                    init = prog.const(f"bm{name}0_{n}", "int32_t", self.init["m" + name])
                    body.append(f"COPY({arrays['m' + name]}, {init}, {size});")
                else:
                    arrays["m" + name] = "NULL"
            tn = prog.name(f"bt{n}")
            prog.decl(f"static const tl_lora_tensors {tn} = {{{arrays['A8']}, {arrays['B8']}, {h}, "
                      f"{dh}, {{{arrays['dA']}, {arrays['sA']}, {arrays['capA']}, {arrays['mA']}, "
                      f"{arrays['MA']}, {arrays['VA']}}}, {{{arrays['dB']}, {arrays['sB']}, "
                      f"{arrays['capB']}, {arrays['mB']}, {arrays['MB']}, {arrays['VB']}}}}};")
            lt = f"&{tn}"
            report.append(f"rep_i64(\"bwd_dh\", {n}, {dh}, {rows * r});")
            for name in ("A", "B"):
                size = ad.arrays[name].size
                if self.sparse:
                    report.append(f"tl_report_i32_at(\"bwd_s{name}\", {n}, {arrays['s' + name]}, "
                                  f"{2 * self.caps[name]});")
                    master = prog.buffer(f"bM{name}{n}", "int16_t", size)
                    view = prog.buffer(f"bV{name}{n}", "int8_t", size)
                    init = prog.const(f"bM{name}0_{n}", "int16_t", self.init[name])
                    body.append(f"COPY({master}, {init}, {size});")
                    after += [f"CHECK(\"bwd_upd\", {n}, tl_update_s16(&{opt}, {size}, &{tn}.d{name.lower()}, "
                              f"{master}, {view}));",
                              f"rep_i16(\"bwd_M{name}\", {n}, {master}, {size});",
                              f"tl_report_s8_at(\"bwd_V{name}\", {n}, {view}, {size});",
                              f"tl_report_i32_at(\"bwd_left{name}\", {n}, {arrays['s' + name]}, "
                              f"{2 * self.caps[name]});"]
                    if self.momentum_q[0]:
                        after.append(f"tl_report_i32_at(\"bwd_m{name}\", {n}, {arrays['m' + name]}, {size});")
                elif self.fused:
                    view = arrays["V" + name]
                    if view == "NULL":   # the caller refreshes the views after the backward
                        view = prog.buffer(f"bV{name}{n}", "int8_t", size)
                        after.append(f"CHECK(\"bwd_view\", {n}, tl_refresh_view_s8({size}, "
                                     f"{arrays['M' + name]}, {view}));")
                    after += [f"rep_i16(\"bwd_M{name}\", {n}, {arrays['M' + name]}, {size});",
                              f"tl_report_s8_at(\"bwd_V{name}\", {n}, {view}, {size});"]
                else:
                    report.append(f"tl_report_i32_at(\"bwd_d{name}\", {n}, {arrays['d' + name]}, {size});")
        if self.with_dx:
            dx = prog.buffer(f"bdx{n}", "int64_t", lora.input_grad_scratch_words(rows, depth))
            gin = prog.buffer(f"bgi{n}", "int16_t", int(np.prod(layer.input_shape)))
            tail = f"{dx}, {gin}, &e_out"
            report += [f"rep_i16(\"bwd_gin\", {n}, {gin}, {int(np.prod(layer.input_shape))});",
                       f"rep_one(\"bwd_ein\", {n}, e_out);"]
        else:
            tail = "NULL, NULL, NULL"
        body.append(f"CHECK(\"bwd\", {n}, tl_lora_backward_s8(&{p}, &{opt}, {x}, {y}, {g}, "
                    f"{self.e_in}, {lt}, {tail}));")
        prog.function(f"backward_{n}", body + report + after)

    def about(self):
        l = self.layer
        return (f"backward#{self.n} {l.kind} {l.input_shape}->{l.output_shape} act={l.activation} "
                f"adapted={self.adapted} dx={self.with_dx} accum={self.accum} sparse={self.sparse} "
                f"fused={self.fused} "
                f"thr={self.threshold} mom={self.momentum_q[0] != 0}")

    def check(self, r, bad):
        n, about = self.n, self.about()
        bad.compare(f"{about} g", _i16(r, f"bwd_g_{n:x}"), self.g_rows)
        if self.with_dx:
            bad.compare(f"{about} grad_in", _i16(r, f"bwd_gin_{n:x}"), self.grad_in)
            bad.compare(f"{about} grad_in exponent", r.int32(f"bwd_ein_{n:x}"), [self.e_out])
        if not self.adapted:
            return
        bad.compare(f"{about} dh", _i64(r, f"bwd_dh_{n:x}"), self.dh)
        for p in "AB":
            if self.fused:
                bad.compare(f"{about} fused master {p}", _i16(r, f"bwd_M{p}_{n:x}"), self.after[p])
                bad.compare(f"{about} fused view {p}", r.int8(f"bwd_V{p}_{n:x}"),
                            self.after[_view(self.after, p)])
                continue
            if not self.sparse:
                bad.compare(f"{about} d{p}", r.int32(f"bwd_d{p}_{n:x}"), self.acc[p])
                continue
            raw = r.int32(f"bwd_s{p}_{n:x}").reshape(-1, 2)
            got = sorted((int(i), int(v)) for i, v in raw if v != 0)
            if got != self.pairs[p]:
                bad.append(f"{about} pairs {p}: C {got[:8]} vs numpy {self.pairs[p][:8]}")
            bad.compare(f"{about} master {p}", _i16(r, f"bwd_M{p}_{n:x}"), self.after[p])
            bad.compare(f"{about} view {p}", r.int8(f"bwd_V{p}_{n:x}"), self.after[_view(self.after, p)])
            bad.compare(f"{about} pairs {p} emptied", r.int32(f"bwd_left{p}_{n:x}"), np.zeros(2 * self.caps[p]))
            if self.momentum_q[0]:
                bad.compare(f"{about} momentum {p}", r.int32(f"bwd_m{p}_{n:x}"), self.after["m" + p])


def _backward_cases() -> list:
    cases = [BackwardCase(i, s, edge=i % 3 == 0) for i, s in enumerate(_seeds("backward"))]
    extra = [dict(zero_grad=True, force={"adapted": True, "dx": True}),
             dict(zero_grad=True, force={"adapted": True, "dx": False, "sparse": True}),
             dict(force={"conv": True, "adapted": True, "dx": True, "accum": True}),
             dict(force={"conv": True, "adapted": False, "dx": True}),
             dict(force={"conv": False, "adapted": True, "dx": True, "sparse": True, "accum": False}),
             dict(force={"conv": True, "adapted": True, "dx": False, "sparse": True, "accum": False}),
             # accumulators on their rails, additions past them (saturating, not wrapping)
             dict(force={"adapted": True, "accum": True, "aim": (29, 33)}),
             dict(force={"conv": True, "adapted": True, "accum": True, "aim": (29, 33)}),
             # a threshold equal to some |delta|; small deltas with many ties
             dict(force={"adapted": True, "sparse": True, "accum": False, "threshold_hit": True,
                         "aim": (8, 12)}),
             dict(force={"conv": True, "adapted": True, "sparse": True, "accum": False,
                         "threshold_hit": True, "aim": (6, 10)}),
             # fused: deltas past the int16 masters' rails (saturating), and a 1x1 conv
             dict(force={"adapted": True, "dx": True, "sparse": False, "accum": False,
                         "fused": True, "aim": (22, 33)}),
             dict(force={"conv": True, "adapted": True, "dx": True, "sparse": False,
                         "accum": False, "fused": True}),
             # 1x1 convs whose input gradient goes a row at a time (lora.input_grad_scratch_words):
             # 15-bit gradients (block exponent > 0, rounding from each row's kept bits) and
             # 1-bit ones (exponent <= 0, exact sums shifted up)
             dict(force={"conv": True, "adapted": True, "dx": True, "bits": 15}),
             dict(force={"conv": True, "adapted": False, "dx": True, "bits": 15}),
             dict(force={"conv": True, "adapted": True, "dx": True, "bits": 1})]
    for j, kw in enumerate(extra):
        cases.append(BackwardCase(len(cases), 9000 + j, edge=True, **kw))
    return cases


class UpdateCase:
    kernel = "update"

    def __init__(self, n: int, seed: int, edge: bool, force=None):
        rng = np.random.default_rng(seed)
        force = force or {}
        self.n = n
        size = self.size = int(rng.integers(1, 301))
        mode = force.get("mode", rng.integers(0, 3))
        if mode == 0:      # many equal magnitudes: ties for the capacity cut
            acc = rng.choice([-3, -2, -1, 0, 1, 2, 3], size) * 256 + rng.integers(-128, 128, size)
        elif mode == 1:
            acc = rng.integers(-2**16, 2**16, size)
        else:
            acc = _random_int32(rng, size, edge=True)
        self.acc0 = np.asarray(acc, np.int64)
        self.master0 = _random_masters(rng, size, edge)
        self.momentum_q = _q(rng.uniform(0.05, 0.999)) if rng.random() < 0.4 else (0, 0)
        self.mom0 = _random_int32(rng, size, edge, small=not edge)
        typical = np.abs(quant.rounding_divide_by_pot(self.acc0, lora.ACCUM_FRAC_BITS))
        self.threshold = int(rng.choice([0, 0, int(rng.integers(1, 300)),
                                         int(rng.choice(typical))]))
        self.capacity = int(rng.integers(1, size + 3)) if rng.random() < 0.6 else 0
        if "threshold" in force:
            self.threshold = force["threshold"]
        if "capacity" in force:
            self.capacity = max(1, int(force["capacity"] * size))
        if "momentum" in force:
            self.momentum_q = _q(force["momentum"]) if force["momentum"] else (0, 0)
        arrays = {"A": self.master0.astype(np.int16), "dA": self.acc0.astype(np.int32),
                  "mA": self.mom0.astype(np.int32)}
        cap = self.capacity
        fake = SimpleNamespace(momentum_q=self.momentum_q, grad_threshold=self.threshold,
                               capacity=lambda s: (min(cap, s) if cap else None))
        Trainer._apply(fake, arrays, "A")
        self.master, self.mom, self.acc = arrays["A"], arrays["mA"], arrays["dA"]
        self.view = lora.to_int8(self.master)

    def emit(self, prog):
        n, size = self.n, self.size
        opt = optim_params(prog, f"uo{n}", 0, self.threshold, self.momentum_q)
        acc = prog.buffer(f"uacc{n}", "int32_t", size)
        mom = prog.buffer(f"umom{n}", "int32_t", size)
        master = prog.buffer(f"um{n}", "int16_t", size)
        view = prog.buffer(f"uv{n}", "int8_t", size)
        c_acc = prog.const(f"uacc0_{n}", "int32_t", self.acc0)
        c_mom = prog.const(f"umom0_{n}", "int32_t", self.mom0)
        c_master = prog.const(f"um0_{n}", "int16_t", self.master0)
        prog.function(f"update_{n}", [
            f"tl_grad_buffer g = {{{acc}, NULL, {self.capacity}, {mom}, NULL, NULL}};",
            f"COPY({acc}, {c_acc}, {size});",
            f"COPY({mom}, {c_mom}, {size});",
            f"COPY({master}, {c_master}, {size});",
            f"CHECK(\"upd\", {n}, tl_update_s16(&{opt}, {size}, &g, {master}, {view}));",
            f"rep_i16(\"upd_master\", {n}, {master}, {size});",
            f"tl_report_s8_at(\"upd_view\", {n}, {view}, {size});",
            f"tl_report_i32_at(\"upd_acc\", {n}, {acc}, {size});",
            f"tl_report_i32_at(\"upd_mom\", {n}, {mom}, {size});",
        ])

    def check(self, r, bad):
        n = self.n
        about = f"update#{n} n={self.size} thr={self.threshold} cap={self.capacity} mom={self.momentum_q}"
        bad.compare(f"{about} master", _i16(r, f"upd_master_{n:x}"), self.master)
        bad.compare(f"{about} view", r.int8(f"upd_view_{n:x}"), self.view)
        bad.compare(f"{about} acc", r.int32(f"upd_acc_{n:x}"), self.acc)
        want_mom = self.mom if self.momentum_q[0] else self.mom0
        bad.compare(f"{about} momentum", r.int32(f"upd_mom_{n:x}"), want_mom)


def _update_cases() -> list:
    cases = [UpdateCase(i, s, edge=i % 3 == 0) for i, s in enumerate(_seeds("update"))]
    # many equal |delta| (-3 .. 3): the capacity cut falls inside a tie, and the threshold
    # equals a present magnitude
    extra = [dict(mode=0, threshold=0, capacity=0.2, momentum=0),
             dict(mode=0, threshold=2, capacity=0.15, momentum=0),
             dict(mode=0, threshold=1, capacity=0.5, momentum=0),
             dict(mode=0, threshold=3, capacity=0, momentum=0),
             dict(mode=0, threshold=0, capacity=0.1, momentum=0.5)]
    for j, kw in enumerate(extra):
        cases.append(UpdateCase(len(cases), 7000 + j, edge=False, force=kw))
    return cases


# ==================================================================== checkpoints

def _trainers():
    """Three trained-a-little trainers of the bundled model: plain, momentum + sparse,
    accumulation + momentum (all three checkpoint layouts)."""
    model = tinylora.load_tflite(tinylora.example_model())
    d = digits_split()
    x = to_model_input(model, d["x_train"][:8])
    y = (d["y_train"][:8] + 1) % 10
    out = []
    for kw in ({}, {"momentum": 0.9, "grad_density": 0.25}, {"accum_steps": 3, "momentum": 0.5}):
        t = Trainer(model, lr=0.3, **kw)
        t.fit(x[:5], y[:5], shuffle=False)
        out.append(t)
    return out, x, y


def _fields(t):
    """(layer index, AdaptedLayer) in ascending layer index: the checkpoint's layer order."""
    return [(i, ad) for i, ad in sorted(t.adapters.items())]


class CheckpointCodec:
    """encode of each trainer's state; decode of valid and damaged records."""
    kernel = "checkpoint"

    def __init__(self, trainers):
        self.trainers = trainers
        self.records = []       # (trainer index, bytes, expected status name, description)
        for ti, t in enumerate(trainers):
            good = t.checkpoint()
            self.records.append((ti, good, "OK", "valid"))
            rng = np.random.default_rng(ti)
            for _ in range(2):
                flip = bytearray(good)
                flip[int(rng.integers(0, len(flip)))] ^= 1 << int(rng.integers(0, 8))
                self.records.append((ti, bytes(flip), "CRC", "one flipped bit"))
            self.records.append((ti, good[:-1], "CRC", "truncated"))
            self.records.append((ti, good[:40], "SHORT", "header only"))
            self.records.append((ti, b"XLCK" + good[4:], "MAGIC", "bad magic"))
            self.records.append((ti, _reseal(good, version=2), "VERSION", "version 2"))
            self.records.append((ti, _reseal(good, flags_or=ckpt.FLAG_SPLIT), "SPLIT", "split flag"))
            self.records.append((ti, _reseal(good, binding_xor=1), "FOREIGN", "other binding"))
            self.records.append((ti, _reseal(good, flags_xor=ckpt.FLAG_ACCUM), "LAYOUT", "flags"))
            self.records.append((ti, _reseal(good, layers=3), "LAYOUT", "layer count"))
            self.records.append((ti, _reseal(good, extra=b"\0\0"), "LAYOUT", "payload too long"))
            self.records.append((ti, _reseal(good, cut=2), "LAYOUT", "payload too short"))
            self.records.append((ti, _reseal(good, length_delta=4), "LENGTH", "length field"))
        # the numpy reference agrees on every verdict, and restores the valid ones
        self.expected = []
        for ti, data, status, what in self.records:
            probe = _fresh_like(trainers[ti])
            before = _state_arrays(probe)
            if status == "OK":
                probe.restore(data)
            else:
                with pytest.raises(CheckpointError):
                    probe.restore(data)
                assert all(np.array_equal(a, b) for a, b in zip(before, _state_arrays(probe))), what
            self.expected.append((_state_arrays(probe), (probe.step_count, probe.rng_state, probe.updates)))

    def emit(self, prog):
        self.names = []
        for ti, t in enumerate(self.trainers):
            layers, bufs = [], []
            for i, ad in _fields(t):
                b = {}
                names = _state_names(ad.arrays)
                for name in names:
                    if name in ad.arrays:
                        ctype = {"int16": "int16_t", "int8": "int8_t", "int32": "int32_t"}[str(ad.arrays[name].dtype)]
                        b[name] = prog.buffer(f"ck{ti}_{name}{i}", ctype, ad.arrays[name].size)
                        b[name + "0"] = prog.const(f"ck{ti}_{name}{i}_0", ctype, ad.arrays[name])
                        b["n" + name] = ad.arrays[name].size
                    else:
                        b[name] = "NULL"
                b["A8"], b["B8"], b["names"] = b[names[2]], b[names[3]], names
                bufs.append(b)
                # the accumulators are always given: a restore without them zeroes them
                layers.append(f"{{{ad.a_master.size}, {ad.b_master.size}, {b['A']}, {b['B']}, "
                              f"{b['A8']}, {b['B8']}, {b['dA']}, {b['dB']}, {b['mA']}, {b['mB']}}}")
            ckl = prog.name(f"ck{ti}_layers")
            prog.decl(f"static const tl_ckpt_layer {ckl}[{len(layers)}] = {{\n    " +
                      ",\n    ".join(layers) + "\n};")
            size = len(t.checkpoint())
            out = prog.buffer(f"ck{ti}_out", "uint8_t", size)
            load = []
            for b in bufs:
                for name in b["names"]:
                    if b[name] != "NULL":
                        load.append(f"COPY({b[name]}, {b[name + '0']}, {b['n' + name]});")
            state = (f"tl_ckpt_state st = {{UINT64_C({ckpt.binding(t)}), {ckpt._flags(t)}, "
                     f"{len(layers)}, {ckl}, {t.step_count}u, {t.rng_state}u, {t.updates}u, "
                     f"{t.step_count % t.accum_steps}}};")
            prog.function(f"ckpt_encode_{ti}", [
                state, "uint32_t len = 0;", *load,
                f"CHECK(\"ck_enc\", {ti}, tl_checkpoint_encode(&st, 0u, {out}, {size}u, &len));",
                f"rep_one(\"ck_size\", {ti}, (int32_t)tl_checkpoint_size(&st));",
                f"rep_u8(\"ck_enc\", {ti}, {out}, len);",
                f"rep_one(\"ck_small\", {ti}, tl_checkpoint_encode(&st, 0u, {out}, {size - 1}u, &len));",
            ])
            self.names.append((ckl, bufs, state, load))
        for n, (ti, data, _status, _what) in enumerate(self.records):
            ckl, bufs, state, load = self.names[ti]
            rec = prog.const(f"ckrec{n}", "uint8_t", np.frombuffer(data, np.uint8))
            # start from a different state (zeros and other counters) so a restore shows
            init = [state.replace(f"{self.trainers[ti].step_count}u, {self.trainers[ti].rng_state}u",
                                  "7u, 8u")]
            for b in bufs:
                for name in b["names"]:
                    if b[name] != "NULL":
                        init.append(f"COPY({b[name]}, {b[name + '0']}, {b['n' + name]});")
                        init.append(f"{b[name]}[0] = 5;")
            rep = [f"rep_one(\"ck_dec\", {n}, tl_checkpoint_decode({rec}, {len(data)}u, &st));",
                   f"rep_one(\"ck_counters\", {n}, (int32_t)st.step_count);",
                   f"rep_one(\"ck_rng\", {n}, (int32_t)st.rng_state);",
                   f"rep_one(\"ck_upd\", {n}, (int32_t)st.updates);"]
            for li, b in enumerate(bufs):
                for j, name in enumerate(b["names"]):
                    if b[name] == "NULL":
                        continue
                    idx = (n << 8) | (li << 4) | j
                    if name in ("A", "B"):
                        rep.append(f"rep_i16(\"ck_arr\", {idx}, {b[name]}, {b['n' + name]});")
                    elif j in (2, 3):
                        rep.append(f"tl_report_s8_at(\"ck_arr\", {idx}, {b[name]}, {b['n' + name]});")
                    else:
                        rep.append(f"tl_report_i32_at(\"ck_arr\", {idx}, {b[name]}, {b['n' + name]});")
            prog.function(f"ckpt_decode_{n}", init + rep)

    def check(self, r, bad):
        for ti, t in enumerate(self.trainers):
            good = t.checkpoint()
            got = report_u8_bytes(r.values, "ck_enc", ti)
            if got != good:
                bad.append(f"checkpoint encode #{ti}: {len(got)} bytes vs {len(good)}, first "
                           f"difference at {next((i for i, (a, b) in enumerate(zip(got, good)) if a != b), None)}")
            bad.compare(f"checkpoint size #{ti}", r.int32(f"ck_size_{ti:x}"), [len(good)])
            bad.compare(f"checkpoint small buffer #{ti}", r.int32(f"ck_small_{ti:x}"), [5])   # TL_ERR_ARENA
        codes = {"OK": 0, "SHORT": 6, "MAGIC": 7, "CRC": 8, "LENGTH": 9, "VERSION": 10, "SPLIT": 11,
                 "FOREIGN": 12, "LAYOUT": 13}   # tl_status (tl_types.h)
        for n, (ti, _data, status, what) in enumerate(self.records):
            about = f"decode #{n} ({what}, trainer {ti})"
            bad.compare(f"{about} status", r.int32(f"ck_dec_{n:x}"), [codes[status]])
            arrays, counters = self.expected[n]
            if status == "OK":
                bad.compare(f"{about} counters",
                            [r.int32(f"ck_counters_{n:x}")[0], int(r.int32(f"ck_rng_{n:x}")[0]) & 0xFFFFFFFF,
                             r.int32(f"ck_upd_{n:x}")[0]], list(counters))
            else:
                bad.compare(f"{about} counters unchanged", r.int32(f"ck_counters_{n:x}"), [7])
            for li, (i, ad) in enumerate(_fields(self.trainers[ti])):
                for j, name in enumerate(_state_names(ad.arrays)):
                    if name not in ad.arrays:
                        continue
                    key = f"ck_arr_{(n << 8) | (li << 4) | j:x}"
                    got = r.int8(key) if ad.arrays[name].dtype == np.int8 else r.int32(key)
                    if status == "OK":
                        want = arrays[(i, name)]
                    else:   # unchanged: the initial copy with its first value set to 5
                        want = self.trainers[ti].adapters[i].arrays[name].reshape(-1).astype(np.int64).copy()
                        want[0] = 5
                    bad.compare(f"{about} {name}{i}", got, want)


def _reseal(data: bytes, version=None, flags_or=0, flags_xor=0, binding_xor=0, layers=None,
            extra=b"", cut=0, length_delta=0) -> bytes:
    body = bytearray(data[:-4])
    if version is not None:
        struct.pack_into("<H", body, 4, version)
    flags = struct.unpack_from("<H", body, 6)[0]
    struct.pack_into("<H", body, 6, (flags | flags_or) ^ flags_xor)
    struct.pack_into("<Q", body, 16, struct.unpack_from("<Q", body, 16)[0] ^ binding_xor)
    if layers is not None:
        struct.pack_into("<H", body, 38, layers)
    body = body[:len(body) - cut] + extra
    out = bytearray(ckpt._seal(bytes(body)))
    if length_delta:
        struct.pack_into("<I", out, 8, len(out) + length_delta)
        out[-4:] = struct.pack("<I", zlib.crc32(bytes(out[:-4])))
    return bytes(out)


def _fresh_like(t):
    """A trainer with t's configuration and a different state (zeros, counters 7 and 8)."""
    f = Trainer(t.model, t.config, lr=t.lr, seed=t.seed, momentum=(
        t.momentum_q[0] * 2.0 ** (t.momentum_q[1] - 31)), accum_steps=t.accum_steps,
        grad_threshold=t.grad_threshold, grad_density=t.grad_density, grad_capacity=t.grad_capacity)
    for i, ad in f.adapters.items():
        for name, arr in ad.arrays.items():
            arr[...] = t.adapters[i].arrays[name]
            arr.reshape(-1)[0] = 5
    f.step_count, f.rng_state = 7, 8
    return f


def _state_arrays(t) -> dict:
    return {(i, name): arr.reshape(-1).astype(np.int64).copy()
            for i, ad in t.adapters.items() for name, arr in ad.arrays.items()}


# ---------------------------------------------------------------- the two-slot store

def _synthetic_checkpoint(rng, payload_len: int) -> bytes:
    head = ckpt.HEADER.pack(ckpt.MAGIC, ckpt.VERSION, int(rng.integers(0, 8)) & 6, 0, 0,
                            int(rng.integers(0, 2**63)), int(rng.integers(0, 2**32)),
                            int(rng.integers(0, 2**32)), int(rng.integers(0, 2**32)),
                            int(rng.integers(0, 2**16)), int(rng.integers(0, 5)))
    return ckpt._seal(head + rng.integers(0, 256, payload_len).astype(np.uint8).tobytes())


class StoreScenario:
    """A sequence of saves (some torn), loads and bit flips on a two-slot store."""
    kernel = "store"

    def __init__(self, n: int, seed: int, wrap: bool = False):
        rng = np.random.default_rng(seed)
        self.n = n
        self.record_slot = int(rng.choice([64, 128, 1024]))
        self.adapter_slot = int(rng.choice([0, 200, 2048]))
        sizes = [0, 4, 20, 60, 84, 300, 980, 1500, 2000, 2100]
        self.checkpoints = [_synthetic_checkpoint(rng, int(rng.choice(sizes))) for _ in range(3)]
        self.ops = []
        for _ in range(int(rng.integers(4, 10))):
            kind = rng.choice(["save", "save", "save", "load", "flip", "forge"])
            if kind == "save":
                c = int(rng.integers(0, len(self.checkpoints)))
                tear = int(rng.integers(0, len(self.checkpoints[c]) + 60)) if rng.random() < 0.35 else -1
                self.ops.append(("save", c, tear))
            elif kind == "load":
                self.ops.append(("load", 0, 0))
            elif kind == "forge":   # record slot 1 := slot 0 with one payload byte changed
                self.ops.append(("forge", 0, 0))   # and resealed: two equal sequence numbers
            else:
                size = 2 * (self.record_slot + self.adapter_slot)
                self.ops.append(("flip", int(rng.integers(0, size)), int(rng.integers(0, 8))))
        self.ops.append(("load", 0, 0))
        if wrap:   # a crafted sequence 0xFFFFFFFF must not beat the checkpoints saved after it
            self.ops = [("save", 0, -1), ("wrap", 0, 0), ("load", 0, 0), ("save", 1, -1),
                        ("load", 0, 0), ("save", 2, -1), ("load", 0, 0), ("save", 0, -1),
                        ("load", 0, 0)]
        self._reference()

    def _reference(self):
        store = ckpt.CheckpointStore(record_slot=self.record_slot, adapter_slot=self.adapter_slot)
        self.expected = []
        for kind, a, b in self.ops:
            if kind == "save":
                try:
                    total = sum(len(d) for _, d in store.plan_writes(self.checkpoints[a]))
                    store.save(self.checkpoints[a], tear_at=None if b < 0 else b)
                    status = 16 if 0 <= b < total else 0   # C reports the torn write (TL_ERR_IO)
                except CheckpointError:
                    status = 15   # TL_ERR_TOO_LARGE
                self.expected.append((status, zlib.crc32(store.medium), None))
            elif kind == "flip":
                store.medium[a] ^= 1 << b
                self.expected.append((0, zlib.crc32(store.medium), None))
            elif kind == "forge":
                store.medium[:] = _forge(bytes(store.medium), self.record_slot)
                self.expected.append((0, zlib.crc32(store.medium), None))
            elif kind == "wrap":
                store.medium[:] = _wrap(bytes(store.medium))
                self.expected.append((0, zlib.crc32(store.medium), None))
            else:
                try:
                    data = store.load()
                    self.expected.append((0, zlib.crc32(store.medium), data))
                except CheckpointError:
                    self.expected.append((14, zlib.crc32(store.medium), None))   # TL_ERR_EMPTY

    def emit(self, prog):
        n = self.n
        size = 2 * (self.record_slot + self.adapter_slot)
        medium = prog.buffer(f"sm{n}", "uint8_t", size)
        out = prog.buffer(f"sout{n}", "uint8_t", max(len(c) for c in self.checkpoints))
        used = sorted({a for kind, a, _ in self.ops if kind == "save"})
        cks = {j: prog.const(f"sck{n}_{j}", "uint8_t", np.frombuffer(self.checkpoints[j], np.uint8))
               for j in used}
        body = ["ram_medium med;", "tl_ckpt_store st;", "uint32_t len = 0, seq = 0;", "int status;",
                f"ram_medium_init(&med, &st, {medium}, {size}u, {self.record_slot}u, {self.adapter_slot}u);"]
        for j, (kind, a, b) in enumerate(self.ops):
            idx = (n << 8) | j
            if kind == "save":
                body += [f"med.budget = {b};",
                         f"status = tl_ckpt_store_save(&st, {cks[a]}, {len(self.checkpoints[a])}u);",
                         "med.budget = -1;"]
            elif kind == "flip":
                body.append(f"{medium}[{a}] ^= (uint8_t){1 << b}u; status = 0;")
            elif kind == "forge":
                body.append(f"forge({medium}, {self.record_slot}u); status = 0;")
            elif kind == "wrap":
                body.append(f"wrap({medium}); status = 0;")
            else:
                body += [f"len = 0; status = tl_ckpt_store_load(&st, {out}, "
                         f"{max(len(c) for c in self.checkpoints)}u, &len, &seq);",
                         f"if (status == 0) {{ rep_u8(\"st_load\", {idx}, {out}, len); }}"]
            body += [f"rep_one(\"st_status\", {idx}, status);",
                     f"rep_one(\"st_crc\", {idx}, (int32_t)tl_crc32(0u, {medium}, {size}u));"]
        prog.function(f"store_{n}", body)

    def check(self, r, bad):
        for j, ((kind, a, b), (status, crc, data)) in enumerate(zip(self.ops, self.expected)):
            idx = (self.n << 8) | j
            about = (f"store#{self.n} op {j} {kind}({a}, {b}) slots {self.record_slot}/"
                     f"{self.adapter_slot} sizes {[len(c) for c in self.checkpoints]}")
            got_status = int(r.int32(f"st_status_{idx:x}")[0])
            if got_status != status:
                bad.append(f"{about}: status {got_status}, expected {status}")
            bad.compare(f"{about} medium crc", [int(r.int32(f"st_crc_{idx:x}")[0]) & 0xFFFFFFFF], [crc])
            if kind == "load" and data is not None:
                got = report_u8_bytes(r.values, "st_load", idx)
                if got != data:
                    bad.append(f"{about}: loaded {len(got)} bytes differ from numpy's {len(data)}")


def _forge(medium: bytes, record_slot: int) -> bytes:
    """Record slot 1 := record slot 0 with its byte 40 (first payload byte, or the split
    record's length) incremented and the CRC resealed, when slot 0 holds a sealed record."""
    m = bytearray(medium)
    length = struct.unpack_from("<I", m, 8)[0]
    if m[:4] != ckpt.MAGIC or not 45 <= length <= record_slot:
        return bytes(m)
    rec = bytearray(m[:length])
    rec[40] = (rec[40] + 1) & 0xFF
    rec[-4:] = struct.pack("<I", zlib.crc32(bytes(rec[:-4])))
    m[record_slot:record_slot + length] = rec
    return bytes(m)


def _wrap(medium: bytes) -> bytes:
    """Record slot 0 with its sequence number set to 0xFFFFFFFF and the CRC resealed, when
    it holds a sealed record."""
    m = bytearray(medium)
    length = struct.unpack_from("<I", m, 8)[0]
    if m[:4] != ckpt.MAGIC or not 44 <= length <= len(m):
        return bytes(m)
    m[12:16] = b"\xff\xff\xff\xff"
    m[length - 4:length] = struct.pack("<I", zlib.crc32(bytes(m[:length - 4])))
    return bytes(m)


FORGE_C = r"""
static void wrap(uint8_t *m)
{
    uint32_t length = (uint32_t)m[8] | ((uint32_t)m[9] << 8) | ((uint32_t)m[10] << 16) |
                      ((uint32_t)m[11] << 24);
    uint32_t i, c;
    if (m[0] != 'T' || m[1] != 'L' || m[2] != 'C' || m[3] != 'K' || length < 44u) {
        return;
    }
    for (i = 12u; i < 16u; ++i) {
        m[i] = 0xFFu;
    }
    c = tl_crc32(0u, m, length - 4u);
    for (i = 0; i < 4u; ++i) {
        m[length - 4u + i] = (uint8_t)(c >> (8u * i));
    }
}

static void forge(uint8_t *m, uint32_t record_slot)
{
    uint32_t length = (uint32_t)m[8] | ((uint32_t)m[9] << 8) | ((uint32_t)m[10] << 16) |
                      ((uint32_t)m[11] << 24);
    uint32_t i, c;
    if (m[0] != 'T' || m[1] != 'L' || m[2] != 'C' || m[3] != 'K' || length < 45u ||
        length > record_slot) {
        return;
    }
    for (i = 0; i < length; ++i) {
        m[record_slot + i] = m[i];
    }
    m[record_slot + 40u] = (uint8_t)(m[record_slot + 40u] + 1u);
    c = tl_crc32(0u, m + record_slot, length - 4u);
    for (i = 0; i < 4u; ++i) {
        m[record_slot + length - 4u + i] = (uint8_t)(c >> (8u * i));
    }
}
"""


class CrcCase:
    kernel = "crc"

    def __init__(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        self.n = n
        self.data = rng.integers(0, 256, int(rng.integers(0, 300))).astype(np.uint8).tobytes()
        self.cut = int(rng.integers(0, len(self.data) + 1))

    def emit(self, prog):
        d = prog.const(f"crc{self.n}", "uint8_t", np.frombuffer(self.data, np.uint8))
        prog.function(f"crc_{self.n}", [
            f"rep_one(\"crc\", {self.n}, (int32_t)tl_crc32(0u, {d}, {len(self.data)}u));",
            f"rep_one(\"crc_split\", {self.n}, (int32_t)tl_crc32(tl_crc32(0u, {d}, {self.cut}u), "
            f"{d} + {self.cut}, {len(self.data) - self.cut}u));"])

    def check(self, r, bad):
        want = zlib.crc32(self.data)
        for name in ("crc", "crc_split"):
            bad.compare(f"crc#{self.n} ({len(self.data)} bytes) {name}",
                        [int(r.int32(f"{name}_{self.n:x}")[0]) & 0xFFFFFFFF], [want])


# ==================================================================== whole training runs

def _training_cases() -> list[verify.Case]:
    """Whole training runs under several trainer options, as `tinylora verify` cases: their C
    comes from tinylora.codegen (the one step generator), the expected bytes from numpy.
    Fresh trainers each call (a case's trainer is trained in place for the expected values)."""
    model = tinylora.load_tflite(tinylora.example_model())
    d = digits_split()
    x = to_model_input(model, d["x_train"][:TRAIN_STEPS])
    y_true = np.asarray(d["y_train"][:TRAIN_STEPS])
    y_new = (y_true + 3) % 10           # a new labelling: large gradients from the first step
    cases = []
    configs = [("ex", {}, y_true),
               ("exrel", {"lr": 0.3}, y_new),
               ("exsparse", {"lr": 0.3, "momentum": 0.9, "grad_density": 0.2}, y_new),
               ("exaccum", {"lr": 0.5, "accum_steps": 3, "momentum": 0.5, "grad_capacity": 5,
                            "recompute": "all"}, y_new),
               ("exthr", {"lr": 0.3, "accum_steps": 2, "grad_threshold": 2}, y_new)]
    for prefix, kw, labels in configs:
        t = Trainer(model, LoRAConfig(), **kw)
        assert sorted(t.adapters) == [5, 6]
        cases.append(verify.Case(prefix, t, VectorSet(x, labels), about=f"bundled model {kw}"))
    # a strided 1x1 CONV_2D adapter under a RESHAPE and an FC adapter
    rng = np.random.default_rng(4)
    mb = randmodel.random_model(rng, "cnn", input_shape=(5, 6, 3), softmax=True, edge="none",
                                convs=[{"op": "CONV_2D", "kernel": (1, 1), "stride": (2, 2),
                                        "out_channels": 6}], fc_widths=[5])
    m = tinylora.load_tflite(mb)
    xs = randmodel.random_input(rng, mb, TRAIN_STEPS)
    fc = m.layers[-2].index
    assert m.layers[0].kind == "CONV_2D" and m.layers[0].kernel == (1, 1)
    t = Trainer(m, LoRAConfig(rank=2, targets=(0, fc)), lr=0.5, calibration=xs)
    cases.append(verify.Case("conv", t, VectorSet(xs, np.arange(TRAIN_STEPS) % 5), about="strided 1x1 conv"))
    return cases


#: The verify variant of each toolchain here: its default kernels (no defines).
VERIFY_VARIANT = {tc: next(v.name for v in targets.VARIANTS.values()
                           if v.verify and v.toolchain == tc and v.defines is None) for tc in TARGETS}


@pytest.mark.parametrize("target", TARGETS)
def test_training_runs_match_numpy(target, tmp_path):
    require(target)
    result = verify.run_cases(VERIFY_VARIANT[target], _training_cases(), tmp_path)
    assert result.ok and len(result.cases) == 6 and result.bytes_compared > 6 * TRAIN_STEPS * 10, \
        result.summary()


# ==================================================================== the program per target

class Suite:
    def __init__(self):
        t0 = time.perf_counter()
        self.groups: dict[str, list] = {
            "normalize": _normalize_cases(),
            "forward": [ForwardCase(i, s, edge=i % 4 == 0) for i, s in enumerate(_seeds("forward"))],
            "loss": [LossCase(i, s, edge=i % 3 == 0) for i, s in enumerate(_seeds("loss"))],
            "mse": [MseCase(i, s, edge=i % 3 == 0) for i, s in enumerate(_seeds("mse"))],
            "backward": _backward_cases(),
            "update": _update_cases(),
            "crc": [CrcCase(i, s) for i, s in enumerate(_seeds("crc", 8))],
            "store": [StoreScenario(i, s) for i, s in enumerate(_seeds("store"))]
                     + [StoreScenario(len(_seeds("store")), 7, wrap=True)],
        }
        trainers, _, _ = _trainers()
        self.groups["checkpoint"] = [CheckpointCodec(trainers)]
        prog = CProgram()
        prog.decl(FORGE_C)
        prog.calls.append("    (void)forge;")
        for cases in self.groups.values():
            for case in cases:
                case.emit(prog)
        prog.function("loss_table", ["int32_t v[TL_LOSS_LUT_SIZE];", "int i;",
                                     "for (i = 0; i < TL_LOSS_LUT_SIZE; ++i) {",
                                     "    v[i] = tl_loss_lut_q10[i];", "}",
                                     "tl_report_i32(\"loss_lut\", v, TL_LOSS_LUT_SIZE);"])
        prog.function("status_checks", _status_checks())
        self.source = prog.source()
        self.prepare_seconds = time.perf_counter() - t0


_STATUS_EXPECTED = {}


def _status_checks() -> list[str]:
    """Argument checks: (name, call, expected tl_status)."""
    checks = [
        ("fwd_null", "tl_lora_forward_s8(&p, NULL, a, b, y, h)", 1),
        ("fwd_stride", "(q = p, q.stride_h = 0, tl_lora_forward_s8(&q, x, a, b, y, h))", 3),
        ("fwd_depth", "(q = p, q.depth = TL_LORA_MAX_DEPTH + 1, tl_lora_forward_s8(&q, x, a, b, y, h))", 2),
        ("fwd_geometry", "(q = p, q.out_h = 2, tl_lora_forward_s8(&q, x, a, b, y, h))", 2),
        ("fwd_rank0", "(q = p, q.rank = 0, tl_lora_forward_s8(&q, x, a, b, y, h))", 2),
        ("fwd_offset", "(q = p, q.input_offset = 129, tl_lora_forward_s8(&q, x, a, b, y, h))", 3),
        ("fwd_act", "(q = p, q.act_min = 5, q.act_max = 4, tl_lora_forward_s8(&q, x, a, b, y, h))", 3),
        ("fwd_ok", "tl_lora_forward_s8(&p, x, a, b, y, h)", 0),
        ("loss_label", "tl_xent_grad_s8(&sm, 4, x, 4, y, g, &loss)", 3),
        ("loss_classes", "tl_xent_grad_s8(&sm, 0, x, 0, y, g, &loss)", 2),
        ("loss_null", "tl_xent_grad_s8(NULL, 4, x, 0, y, g, &loss)", 1),
        ("mse_count0", "tl_mse_grad_s8(&mp, 0, x, y, g, &loss)", 2),
        ("mse_count_big", "tl_mse_grad_s8(&mp, TL_MSE_MAX_OUTPUTS + 1, x, y, g, &loss)", 2),
        ("mse_null", "tl_mse_grad_s8(&mp, 4, x, NULL, g, &loss)", 1),
        ("mse_ok", "tl_mse_grad_s8(&mp, 4, x, y, g, &loss)", 0),
        ("bwd_exponent", "tl_lora_backward_s8(&p, &opt, x, y, g, 1 << 21, NULL, dx, gi, &e)", 3),
        ("bwd_no_dx", "tl_lora_backward_s8(&p, &opt, x, y, g, 0, NULL, NULL, gi, &e)", 1),
        ("bwd_sparse_accum", "tl_lora_backward_s8(&p, &opt_acc, x, y, g, 0, &ts, dx, gi, &e)", 3),
        ("bwd_mom_null", "tl_lora_backward_s8(&p, &opt_mom, x, y, g, 0, &ts, dx, gi, &e)", 1),
        ("bwd_ok", "tl_lora_backward_s8(&p, &opt, x, y, g, 0, &ts, dx, gi, &e)", 0),
        ("bwd_fused_accum", "tl_lora_backward_s8(&p, &opt_acc, x, y, g, 0, &tf, dx, gi, &e)", 3),
        ("bwd_fused_mom", "tl_lora_backward_s8(&p, &opt_mom, x, y, g, 0, &tf, dx, gi, &e)", 3),
        ("bwd_fused_ok", "tl_lora_backward_s8(&p, &opt, x, y, g, 0, &tf, dx, gi, &e)", 0),
        ("bwd_view_unfused", "tl_lora_backward_s8(&p, &opt, x, y, g, 0, &tv, dx, gi, &e)", 3),
        ("upd_fused", "tl_update_s16(&opt, 4, &fb, m, v)", 3),
        ("upd_bad_index", "(pairs[0] = 99, pairs[1] = 3, tl_update_s16(&opt, 4, &sb, m, v))", 3),
        ("upd_neg_thr", "tl_update_s16(&opt_neg, 4, &db, m, v)", 3),
        ("upd_null", "tl_update_s16(&opt, 4, &db, NULL, v)", 1),
        ("upd_mom_null", "tl_update_s16(&opt_mom, 4, &db, m, v)", 1),
        ("norm_bits", "tl_normalize(big, 2, 32, m32, &e)", 3),
        ("norm_null", "tl_normalize(NULL, 2, 15, m32, &e)", 1),
        ("norm_empty", "tl_normalize(NULL, 0, 15, NULL, &e)", 0),
        ("ck_null", "tl_checkpoint_encode(NULL, 0u, bytes, 64u, &len)", 1),
        ("ck_verify_short", "tl_checkpoint_verify(bytes, 10u)", 6),
        ("ck_store_small_slot", "(stor.record_slot = 51u, tl_ckpt_store_save(&stor, bytes, 64u))", 5),
        ("ck_store_empty", "(stor.record_slot = 64u, tl_ckpt_store_load(&stor, bytes, 64u, &len, NULL))", 14),
    ]
    body = [
        "static const int8_t w[8] = {1, -2, 3, -4, 5, -6, 7, -8};",
        "static const int32_t qm[2] = {1 << 30, 1 << 30}, qs[2] = {-3, -3};",
        "static int8_t x[4] = {1, 2, 3, 4}, a[4], b[2], y[4], h[2];",
        "static int16_t g[4], gi[4], m[4];",
        "static int8_t v[4];",
        "static int64_t dx[4], dh[2], big[2] = {1, 2};",
        "static int32_t pairs[4], acc[4], m32[2];",
        "static uint8_t bytes[64], medium[256];",
        "tl_lora_params p = {1, 1, 1, 1, 1, 1, 4, 2, 1, w, NULL, {qm, qs}, 0, 0, -128, 127, 0, 0,",
        "                    1 << 30, 0, {qm, qs}, {qm, qs}, 1 << 30, 0, 1 << 30, 0, 1 << 30, 0};",
        "tl_lora_params q;",
        "const tl_softmax_params sm = {1 << 30, 20, -100};",
        "const tl_mse_params mp = {1 << 30, -3};",
        "const tl_optim_params opt = {0, 0, 0, 0}, opt_acc = {1, 0, 0, 0}, opt_mom = {0, 0, 1 << 30, 0},"
        " opt_neg = {0, -1, 0, 0};",
        "const tl_lora_tensors ts = {a, b, h, dh, {NULL, pairs, 2, NULL, NULL, NULL},"
        " {acc, NULL, 0, NULL, NULL, NULL}};",
        "const tl_lora_tensors tv = {a, b, h, dh, {NULL, pairs, 2, NULL, NULL, v}, {acc, NULL, 0, NULL, NULL, v}};",
        "const tl_lora_tensors tf = {a, b, h, dh, {NULL, NULL, 0, NULL, m, NULL}, {NULL, NULL, 0, NULL, m, v}};",
        "tl_grad_buffer sb = {NULL, pairs, 2, NULL, NULL, NULL}, db = {acc, NULL, 0, NULL, NULL, NULL};",
        "tl_grad_buffer fb = {NULL, NULL, 0, NULL, m, NULL};",
        "int32_t e = 0, loss = 0;",
        "uint32_t len = 0;",
        "ram_medium med;",
        "tl_ckpt_store stor;",
        "ram_medium_init(&med, &stor, medium, 256u, 64u, 0u);",
        "(void)m32;",
    ]
    for k, (name, call, want) in enumerate(checks):
        body.append(f"rep_one(\"status\", {k}, (int32_t)({call}));")
        _STATUS_EXPECTED[k] = (name, want)
    return body


_SUITE: Suite | None = None
_RUNS: dict[str, tuple] = {}


@pytest.fixture(scope="session")
def suite() -> Suite:
    global _SUITE
    if _SUITE is None:
        _SUITE = Suite()
    return _SUITE


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("train_c")


def _sources(src_dir):
    fw = emulate.firmware_dir()
    return [src_dir / "train_cases.c", fw / "src" / "tl_train.c", fw / "src" / "tl_checkpoint.c"]


@pytest.fixture(params=TARGETS)
def outcome(request, suite, build_dir):
    target = request.param
    require(target)
    if target not in _RUNS:
        src = build_dir / target
        src.mkdir()
        (src / "train_cases.c").write_text(suite.source)
        t0 = time.perf_counter()
        elf = emulate.build(target, _sources(src), src)
        t1 = time.perf_counter()
        result = emulate.run(target, elf, timeout=240)
        t2 = time.perf_counter()
        try:
            report = emulate.parse_report(result.stdout, result.returncode)
        except emulate.EmulationError as e:
            raise AssertionError(f"{target}: {e}\nstderr: {result.stderr.decode(errors='replace')[-2000:]}") from e
        _RUNS[target] = (report, {"build": t1 - t0, "run": t2 - t1})
    return target, _RUNS[target][0]


def _check_group(suite, report, group: str) -> None:
    bad = Mismatch()
    errors = {k: v for k, v in report.errors.items()}
    assert not errors, f"kernel calls failed: {errors}"
    for case in suite.groups[group]:
        case.check(report, bad)
    assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad[:30])


@pytest.mark.parametrize("group", ["normalize", "forward", "loss", "mse", "backward", "update", "crc",
                                   "checkpoint", "store"])
def test_kernels_match_numpy(outcome, suite, group):
    target, report = outcome
    _check_group(suite, report, group)


def test_loss_table_and_status_codes(outcome):
    target, report = outcome
    np.testing.assert_array_equal(report.int32("loss_lut"), LOSS_LUT)
    wrong = []
    for k, (name, want) in _STATUS_EXPECTED.items():
        got = int(report.int32(f"status_{k:x}")[0])
        if got != want:
            wrong.append(f"{name}: {got}, expected {want}")
    assert not wrong, wrong


# ==================================================================== source-level checks

def test_loss_table_in_c_is_the_rendered_formula():
    # the formula, written out here independently of tinylora.ref.loss
    assert tables.loss_lut() == LOSS_LUT.tolist() == [round(-math.log(max(k, 0.5) / 256) * 1024) for k in range(257)]
    source = (emulate.firmware_dir() / "src" / "tl_train.c").read_text()
    assert tables.embedded_block(source) == tables.render_loss_lut_c(), \
        "firmware/tl_train.c's loss table differs from tinylora.codegen.tables.render_loss_lut_c()"


def test_training_runtime_has_no_float():
    fw = emulate.firmware_dir()
    for name in ("src/tl_train.c", "include/tl_train.h", "src/tl_checkpoint.c",
                 "include/tl_checkpoint.h"):
        text = re.sub(r"/\*.*?\*/", "", (fw / name).read_text(), flags=re.S)
        assert not re.search(r"\b(float|double)\b", text), f"{name} mentions float/double"
    if shutil.which("gcc"):   # no float or SSE registers at all (x86-64 only knows this flag)
        for name in ("tl_train.c", "tl_checkpoint.c"):
            proc = subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic",
                                   "-O2", "-mgeneral-regs-only", f"-I{fw / 'include'}", "-c", str(fw / "src" / name),
                                   "-o", os.devnull], capture_output=True, text=True)
            if "unrecognized" in proc.stderr:
                break
            assert proc.returncode == 0, proc.stderr
    if os.environ.get("CI") or shutil.which("arm-none-eabi-gcc"):
        require("cortex-m4")
        for name in ("tl_train.c", "tl_checkpoint.c"):   # soft-float core: float would call libgcc
            obj = f"{os.environ.get('TMPDIR', '/tmp')}/tl_nofloat_{os.getpid()}_{name}.o"
            subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-Wall", "-Wextra", "-Werror",
                            "-pedantic", "-O2", "-mthumb", "-mcpu=cortex-m0", "-mfloat-abi=soft",
                            f"-I{fw / 'include'}", "-c", str(fw / "src" / name), "-o", obj], check=True)
            syms = subprocess.run(["arm-none-eabi-nm", "-u", obj], capture_output=True, text=True,
                                  check=True).stdout
            os.unlink(obj)
            floats = [s for s in syms.split() if re.match(r"__aeabi_([fd]|[iul]+2[fd]|u?l?div|u?idiv)", s)
                      or re.search(r"(sf|df)\d?$", s)]
            assert not floats, f"{name} calls float or division helpers: {floats}"


def test_backward_cases_take_both_input_gradient_forms():
    """The backward group runs the whole-tensor dx and the row-at-a-time one (with a positive
    and a non-positive block exponent), so both C forms are compared with lora.normalize."""
    forms = {"whole": 0, "rows": 0}
    for case in _backward_cases():
        if case.with_dx:
            rows, depth = _rows(case.layer), case.layer.weights.shape[-1]
            whole = lora.input_grad_scratch_words(rows, depth) == rows * depth
            forms["whole" if whole else "rows"] += 1
    assert forms["whole"] >= 5 and forms["rows"] >= 5, forms
    assert lora.input_grad_scratch_words(48 * 48, 8) == 8 + (2304 + 2304 + 7) // 8
    assert lora.input_grad_scratch_words(1, 256) == 256
