"""Random, valid, full-integer int8 ``.tflite`` models built without TensorFlow.

Test support for the oracle tests: every model produced here loads and runs in the
tflite-micro interpreter and in LiteRT's reference kernels (see ``oracles.py``).

Public API
----------
``random_model(rng, kind=None, **overrides) -> bytes``
    ``kind`` is one of ``FAMILIES`` ("mlp", "cnn", "wide"); ``None`` picks one with ``rng``.
    Overrides (all optional; anything not given is drawn from ``rng``):

    common  ``input_scale`` (float), ``input_zp`` (int), ``edge`` (one of ``EDGES`` or
            ``"none"``), ``softmax`` (bool), ``beta`` (float), ``per_channel`` (bool, all
            layers), ``bias`` (bool, all layers), ``activation`` ("NONE"/"RELU"/"RELU6",
            all layers), ``weight_spread`` ("narrow"/"wide").
    mlp     ``input_size`` (int), ``widths`` (list of int, 1..3 FC layers).
    cnn     ``input_shape`` ((H, W, C)), ``convs`` (list of dicts with any of the keys
            ``op`` ("CONV_2D"/"DEPTHWISE_CONV_2D"), ``out_channels``, ``kernel`` ((KH, KW)),
            ``stride`` ((SH, SW)), ``dilation`` ((DH, DW)), ``padding`` ("SAME"/"VALID")),
            ``n_convs``, ``fc_widths`` (list of int, 1..2 FC layers), ``ops`` (tuple of conv
            op names allowed when drawing).
    wide    ``input_shape``, ``op``, ``out_channels``, ``kernel``, ``stride``, ``dilation``,
            ``padding``.

``random_input(rng, model_bytes_or_shape, n, dist="uniform") -> np.ndarray``
    int8 array of shape ``(n, *input_shape)`` (batch dimension of the model removed).

``describe(model_bytes) -> str``
    Human-readable summary (ops, shapes, quantisation, effective multipliers) for failure
    messages.

``input_shape(model_bytes)`` / ``output_shape(model_bytes)``
    Shapes without the batch dimension 1.

``multiplier_probe_model(rng, op) -> (model_bytes, x, expected)``
    A one-value per-tensor FULLY_CONNECTED / CONV_2D model on which forming the real
    multiplier from float32(s_in * s_w) or from double(s_in) * double(s_w) gives different
    outputs (TFLM: the double product, for both ops).

Conventions (as the TF 2.21 converter writes them): activation tensors [1, K] or
[1, H, W, C] int8 asymmetric; FC weights [OUT, IN], conv weights [O, KH, KW, I], depthwise
weights [1, KH, KW, C], all int8 symmetric in [-127, 127] with zero point 0, per-channel on
dim 0 (dim 3 for depthwise) or per-tensor; bias int32 [OUT], zero point 0, scale
float32(input_scale * weight_scale[c]); SOFTMAX output scale 1/256, zero point -128; RESHAPE
has both ``new_shape`` options and a constant int32 shape input. Buffer 0 is empty and every
constant buffer is 16-byte aligned.

Output scales are calibrated: a batch of random inputs is pushed through an approximate
(float-requantising) copy of the network so that each layer's accumulators typically land in
the int8 range, times a random factor 0.2..5 so that some layers saturate. Everything is a
pure function of the generator state and the overrides.
"""

from __future__ import annotations

import math
from typing import Any

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb

__all__ = [
    "FAMILIES",
    "EDGES",
    "SOFTMAX_MAX_DEPTH",
    "random_model",
    "random_input",
    "describe",
    "input_shape",
    "output_shape",
    "multiplier_probe_model",
]

FAMILIES = ("mlp", "cnn", "wide")
EDGES = ("big_multiplier", "tiny_multiplier", "zero_channel")

_ACTS = {
    "NONE": fb.ActivationFunctionType.NONE,
    "RELU": fb.ActivationFunctionType.RELU,
    "RELU6": fb.ActivationFunctionType.RELU6,
}
_ACT_NAMES = {v: k for k, v in _ACTS.items()}
_PADS = {"SAME": fb.Padding.SAME, "VALID": fb.Padding.VALID}
_PAD_NAMES = {v: k for k, v in _PADS.items()}
_OPS = {
    "CONV_2D": fb.BuiltinOperator.CONV_2D,
    "DEPTHWISE_CONV_2D": fb.BuiltinOperator.DEPTHWISE_CONV_2D,
    "FULLY_CONNECTED": fb.BuiltinOperator.FULLY_CONNECTED,
    "RESHAPE": fb.BuiltinOperator.RESHAPE,
    "SOFTMAX": fb.BuiltinOperator.SOFTMAX,
}
_OP_NAMES = {v: k for k, v in _OPS.items()}
# Operator versions as the converter writes them for int8 models.
_OP_VERSION = {"CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "RESHAPE": 1, "SOFTMAX": 2}
_TYPE_NAMES = {fb.TensorType.INT8: "int8", fb.TensorType.INT32: "int32", fb.TensorType.FLOAT32: "float32"}

# int8 SOFTMAX in TFLM and LiteRT (reference) asserts inside gemmlowp's RoundingDivideByPOT
# (exponent > 31) when the sum of exps, in Q12.19, reaches 512: both abort the whole process.
# That needs at least 512 values, so the generator refuses softmax depths of 512 or more.
SOFTMAX_MAX_DEPTH = 512

_CALIB_SAMPLES = {"mlp": 32, "cnn": 8, "wide": 4}


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _f32(x: float) -> float:
    return float(np.float32(x))


def _pick(overrides: dict, name: str, draw):
    """Return ``overrides[name]`` if given, else ``draw()`` (drawn lazily)."""
    if name in overrides and overrides[name] is not None:
        return overrides[name]
    return draw()


def _size(rng: np.random.Generator, lo: int, hi: int) -> int:
    """A size in [lo, hi], biased towards small values 30% of the time."""
    if rng.random() < 0.3:
        return int(rng.integers(lo, min(hi, lo + 7) + 1))
    return int(rng.integers(lo, hi + 1))


class _AlignedBufferT(fb.BufferT):
    """BufferT whose data vector is 16-byte aligned (the converter aligns to 16 too)."""

    def Pack(self, builder):  # noqa: N802 (flatbuffers naming)
        data = None
        if self.data is not None and len(self.data) > 0:
            payload = bytes(self.data)
            builder.StartVector(1, len(payload), 16)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head : builder.head + len(payload)] = payload
            builder.vectorNumElems = len(payload)
            data = builder.EndVector()
        fb.BufferStart(builder)
        if data is not None:
            fb.BufferAddData(builder, data)
        return fb.BufferEnd(builder)


class _Graph:
    """Collects tensors, buffers, operator codes and operators of one subgraph."""

    def __init__(self) -> None:
        self.tensors: list[fb.TensorT] = []
        self.buffers: list[fb.BufferT] = [fb.BufferT()]  # buffer 0: the empty sentinel
        self.opcodes: list[fb.OperatorCodeT] = []
        self._opcode_index: dict[str, int] = {}
        self.operators: list[fb.OperatorT] = []

    def _quant(self, scale, zero_point, dim: int = 0) -> fb.QuantizationParametersT:
        q = fb.QuantizationParametersT()
        q.scale = [_f32(s) for s in np.atleast_1d(scale)]
        q.zeroPoint = [int(z) for z in np.atleast_1d(zero_point)]
        q.quantizedDimension = int(dim)
        return q

    def tensor(self, name, shape, ttype, *, scale=None, zero_point=None, dim=0, data=None) -> int:
        t = fb.TensorT()
        t.name = name
        t.shape = [int(s) for s in shape]
        t.type = ttype
        if scale is not None:
            t.quantization = self._quant(scale, zero_point, dim)
        if data is not None:
            b = _AlignedBufferT()
            b.data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        else:
            t.buffer = 0
        self.tensors.append(t)
        return len(self.tensors) - 1

    def activation(self, name, shape, scale, zero_point) -> int:
        return self.tensor(name, shape, fb.TensorType.INT8, scale=scale, zero_point=zero_point)

    def op(self, opname: str, inputs, outputs, options_type: int, options) -> None:
        if opname not in self._opcode_index:
            code = _OPS[opname]
            oc = fb.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = _OP_VERSION[opname]
            self.opcodes.append(oc)
            self._opcode_index[opname] = len(self.opcodes) - 1
        o = fb.OperatorT()
        o.opcodeIndex = self._opcode_index[opname]
        o.inputs = [int(i) for i in inputs]
        o.outputs = [int(i) for i in outputs]
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        self.operators.append(o)

    def finish(self, inputs, outputs, description: str) -> bytes:
        sg = fb.SubGraphT()
        sg.tensors = self.tensors
        sg.inputs = list(inputs)
        sg.outputs = list(outputs)
        sg.operators = self.operators
        sg.name = "main"
        m = fb.ModelT()
        m.version = 3
        m.operatorCodes = self.opcodes
        m.subgraphs = [sg]
        m.description = description
        m.buffers = self.buffers
        builder = flatbuffers.Builder(1024)
        builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
        return bytes(builder.Output())


# --------------------------------------------------------------------------------------------
# Approximate integer network used only for calibrating output scales
# --------------------------------------------------------------------------------------------


def _act_range(act: str, scale: float, zp: int) -> tuple[int, int]:
    lo, hi = -128, 127
    if act in ("RELU", "RELU6"):
        lo = max(lo, zp)
    if act == "RELU6":
        hi = min(hi, zp + int(round(6.0 / scale)))
    return lo, hi


def _same_pad(in_size: int, k_eff: int, stride: int) -> tuple[int, int]:
    out = -(-in_size // stride)
    total = max((out - 1) * stride + k_eff - in_size, 0)
    return out, total // 2


def _conv_out(in_size: int, k: int, s: int, d: int, padding: str) -> int:
    k_eff = (k - 1) * d + 1
    if padding == "SAME":
        return -(-in_size // s)
    return (in_size - k_eff) // s + 1 if in_size >= k_eff else 0


def _conv_acc(x, zp, w, depthwise, stride, dilation, padding):
    """int64 accumulators (without bias) of a conv / depthwise conv on (n, H, W, C) int8."""
    n, h, wd, c = x.shape
    _, kh, kw, _ = w.shape
    sh, sw = stride
    dh, dw = dilation
    xs = x.astype(np.int64) - zp
    if padding == "SAME":
        oh, pt = _same_pad(h, (kh - 1) * dh + 1, sh)
        ow, pl = _same_pad(wd, (kw - 1) * dw + 1, sw)
    else:
        oh = _conv_out(h, kh, sh, dh, "VALID")
        ow = _conv_out(wd, kw, sw, dw, "VALID")
        pt = pl = 0
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    xp = np.zeros((n, max(need_h, pt + h), max(need_w, pl + wd), c), np.int64)
    xp[:, pt : pt + h, pl : pl + wd, :] = xs
    out_c = w.shape[3] if depthwise else w.shape[0]
    acc = np.zeros((n, oh, ow, out_c), np.int64)
    w64 = w.astype(np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dh : i * dh + (oh - 1) * sh + 1 : sh, j * dw : j * dw + (ow - 1) * sw + 1 : sw, :]
            if depthwise:
                acc += patch * w64[0, i, j, :]
            else:
                acc += patch @ w64[:, i, j, :].T
    return acc


def _requant_approx(acc, mult, out_scale, zp, act):
    y = np.rint(acc * mult) + zp
    lo, hi = _act_range(act, out_scale, zp)
    return np.clip(y, lo, hi).astype(np.int8)


# --------------------------------------------------------------------------------------------
# Layer generation
# --------------------------------------------------------------------------------------------


def _rel_scales(rng, n: int, spread: str) -> np.ndarray:
    """Per-channel weight scales relative to the layer's base scale (geometric centre ~1).

    "narrow": within a factor 2^±1.5 of each other; "wide": log-uniform over three decades
    (the full 1e-4..1e-1 range when the base sits at 3e-3)."""
    if spread == "wide":
        return np.exp(rng.uniform(math.log(10**-1.5), math.log(10**1.5), n))
    return 2.0 ** rng.uniform(-1.5, 1.5, n)


def _int_weights(rng, shape, chan_axis: int, per_channel: bool, small: bool) -> np.ndarray:
    if small:  # sparse, tiny values: keeps accumulators small (big-multiplier edge case)
        w = rng.integers(-2, 3, shape) * (rng.random(shape) < 0.25)
        return w.astype(np.int8)
    if rng.random() < 0.2:
        raw = rng.uniform(-1.0, 1.0, shape)
    else:
        raw = rng.standard_normal(shape)
    n_out = shape[chan_axis]
    bshape = [1] * len(shape)
    bshape[chan_axis] = n_out
    amp = rng.uniform(0.1, 1.0, n_out).reshape(bshape)
    raw = raw * amp
    axes = tuple(a for a in range(len(shape)) if a != chan_axis)
    if per_channel:
        mx = np.max(np.abs(raw), axis=axes, keepdims=True)
    else:
        mx = np.max(np.abs(raw))
    mx = np.where(mx == 0, 1.0, mx)
    w = np.clip(np.rint(raw / mx * 127.0), -127, 127)
    return w.astype(np.int8)


class _Net:
    """Builds the graph layer by layer while tracking a calibration batch."""

    def __init__(self, rng, kind, overrides, in_shape, in_scale, in_zp):
        self.rng = rng
        self.kind = kind
        self.ov = overrides
        self.g = _Graph()
        self.scale = float(_f32(in_scale))
        self.zp = int(in_zp)
        self.shape = tuple(int(s) for s in in_shape)
        self.input_index = self.g.activation("input", (1,) + self.shape, self.scale, self.zp)
        self.cur = self.input_index
        n = _CALIB_SAMPLES[kind]
        self.x = rng.integers(-128, 128, (n,) + self.shape).astype(np.int8)
        self.layer_no = 0
        self.notes: list[str] = []

    # ---- quantisation choices ------------------------------------------------------------
    def _quantize(self, name, acc, w, chan_axis, per_channel, act, edge, logits_beta, bias):
        """Choose weight scales, output scale and zero point for a layer whose int64
        accumulators (bias included) on the calibration batch are ``acc`` (..., channels).

        The integer behaviour depends only on the multipliers M_c = in_s * w_s[c] / out_s:
        they are calibrated so that the typical accumulator maps to about 40/factor output
        units (factor log-uniform 0.2..5). The real scales are then split so that the output
        scale is a plausible activation scale and the weight scales mostly lie in 1e-4..1e-1.
        Edge cases modify this (big / tiny multipliers); ``w`` may be modified in place
        (zero channels). Returns (w_scale array (1 or C values), out_scale, out_zp, M_c).
        """
        rng = self.rng
        n_out = acc.shape[-1]
        in_s = self.scale
        spread = _pick(self.ov, "weight_spread", lambda: "wide" if rng.random() < 0.25 else "narrow")
        rel = _rel_scales(rng, n_out, spread) if per_channel else np.ones(1)
        rel_b = rel if per_channel else np.full(n_out, rel[0])
        real = acc.reshape(-1, n_out).astype(np.float64) * rel_b  # units of in_s * base
        std = float(np.std(real))
        if not np.isfinite(std) or std <= 0:
            std = 64.0 * float(np.median(rel_b))
        factor = _loguniform(rng, 0.2, 5.0)
        k = std * factor / 40.0  # out_s / (in_s * base)

        if logits_beta is not None and edge is None:
            target = _loguniform(rng, 0.01, 0.12) / logits_beta
        elif act == "RELU6" and rng.random() < 0.5:
            target = 6.0 / 255.0 * 2.0 ** rng.uniform(-1.0, 2.0)  # the 6 clamp is in range
        else:
            target = _loguniform(rng, 1e-3, 1.0)

        if edge == "big_multiplier":
            out_s = target
            base = out_s * rng.uniform(1.2, 40.0) / (in_s * float(np.max(rel)))
        elif edge == "tiny_multiplier" and not per_channel:
            out_s = target
            base = out_s * 2.0 ** -rng.uniform(32.5, 40.0) / in_s
        else:
            base = target / (in_s * k)
            if logits_beta is None or edge is not None:
                base = min(max(base, 1e-4 / float(np.min(rel))), 1e-1 / float(np.max(rel)))
                if not 1e-4 <= in_s * base * k <= 10.0:  # keep activation scales sane
                    base = target / (in_s * k)
            out_s = in_s * base * k
        out_s = _f32(out_s)
        w_scale = np.array([_f32(base * r) for r in rel])

        if edge == "zero_channel":
            c = int(rng.integers(1, max(1, n_out // 4) + 1))
            chans = rng.choice(n_out, size=c, replace=False)
            idx = [slice(None)] * w.ndim
            idx[chan_axis] = chans
            w[tuple(idx)] = 0
            self.notes.append(f"{name}: zero weight channels {sorted(int(i) for i in chans)}")
        elif edge == "tiny_multiplier" and per_channel:
            c = int(rng.integers(1, max(1, n_out // 2) + 1))
            chans = rng.choice(n_out, size=c, replace=False)
            w_scale[chans] = [_f32(s * 2.0 ** -rng.uniform(40.0, 48.0)) for s in w_scale[chans]]
            self.notes.append(f"{name}: tiny-scale channels {sorted(int(i) for i in chans)}")
        elif edge is not None:
            self.notes.append(f"{name}: {edge}")

        ws_b = w_scale if per_channel else np.full(n_out, w_scale[0])
        # Multipliers >= 1 are applied as a left shift of the int32 accumulator *before* the
        # doubling high multiply; TFLM does that shift in int32 (overflow is UB in C, wraps on
        # the host). Keep every reachable accumulator times 2^shift inside int32.
        bound = self._acc_bound(w, chan_axis, bias)
        limit = float(np.max(in_s * ws_b * bound)) / 2.0**30
        if limit > out_s:
            out_s = _f32(limit * 1.01)
            self.notes.append(f"{name}: output scale raised to avoid int32 overflow")
        mult = in_s * ws_b / out_s
        mean = float(np.mean(acc.reshape(-1, n_out) * mult))
        u = rng.random()
        if act in ("RELU", "RELU6") and u < 0.4:
            zp = -128
        elif u < 0.7:
            zp = int(np.clip(round(-mean) + rng.integers(-20, 21), -128, 127))
        else:
            zp = int(rng.integers(-128, 128))
        return w_scale, out_s, zp, mult

    def _acc_bound(self, w, chan_axis, bias):
        """Largest |accumulator| any int8 input can produce, per output channel."""
        xmax = max(abs(-128 - self.zp), abs(127 - self.zp))
        axes = tuple(a for a in range(w.ndim) if a != chan_axis)
        wsum = np.abs(w.astype(np.int64)).sum(axis=axes)
        b = np.zeros(len(wsum)) if bias is None else np.abs(np.asarray(bias, np.float64))
        return wsum * float(xmax) + b

    def _edge_for_layer(self, edge, n_layers, li):
        """The edge case of the model applies to one layer, chosen here."""
        if edge in (None, "none"):
            return None
        if not hasattr(self, "_edge_layer"):
            self._edge_layer = int(self.rng.integers(0, n_layers))
        return edge if li == self._edge_layer else None

    def _bias(self, acc_nobias, out_c):
        rng = self.rng
        flat = acc_nobias.reshape(-1, out_c).astype(np.float64)
        sd = flat.std(axis=0) + 1.0
        b = rng.standard_normal(out_c) * sd * rng.uniform(0.0, 1.0)
        if rng.random() < 0.1:
            b = b * 20.0
        return np.clip(np.rint(b), -(2**31) + 1, 2**31 - 1).astype(np.int32)

    def _const_quant_tensors(self, name, w, w_scale, qdim, bias):
        """Weight (and bias) tensors; bias scale = float32(in_scale * w_scale[c])."""
        g = self.g
        zeros = np.zeros(len(w_scale), int)
        wi = g.tensor(f"{name}/weights", w.shape, fb.TensorType.INT8,
                      scale=w_scale, zero_point=zeros, dim=qdim, data=w)
        if bias is None:
            return wi, -1
        b_scale = [_f32(np.float32(self.scale) * np.float32(s)) for s in w_scale]
        bi = g.tensor(f"{name}/bias", (len(bias),), fb.TensorType.INT32,
                      scale=b_scale, zero_point=zeros, dim=0, data=bias)
        return wi, bi

    # ---- layers --------------------------------------------------------------------------
    def fc(self, name, out_n, per_channel, use_bias, act, edge, logits_beta=None):
        """A FULLY_CONNECTED layer. ``logits_beta``: the layer feeds a SOFTMAX with this beta;
        its output scale is then chosen so that the logits' real spread times beta is a few
        units and the softmax output is not one-hot."""
        rng = self.rng
        assert len(self.shape) == 1
        in_n = self.shape[0]
        w = _int_weights(rng, (out_n, in_n), 0, per_channel, small=edge == "big_multiplier")
        x = self.x.reshape(self.x.shape[0], in_n).astype(np.int64) - self.zp
        acc0 = x @ w.astype(np.int64).T
        bias = self._bias(acc0, out_n) if use_bias else None
        acc = acc0 + (bias if bias is not None else 0)
        w_scale, out_scale, out_zp, mult = self._quantize(name, acc, w, 0, per_channel, act, edge, logits_beta, bias)
        if edge == "zero_channel":
            acc = x @ w.astype(np.int64).T + (bias if bias is not None else 0)
        wi, bi = self._const_quant_tensors(name, w, w_scale, 0, bias)
        oi = self.g.activation(name, (1, out_n), out_scale, out_zp)
        opt = fb.FullyConnectedOptionsT()
        opt.fusedActivationFunction = _ACTS[act]
        opt.keepNumDims = False
        self.g.op("FULLY_CONNECTED", [self.cur, wi, bi], [oi], fb.BuiltinOptions.FullyConnectedOptions, opt)
        self.x = _requant_approx(acc, mult, out_scale, out_zp, act)
        self._advance(oi, (out_n,), out_scale, out_zp)

    def conv(self, name, op, out_c, kernel, stride, dilation, padding, per_channel, use_bias, act, edge):
        rng = self.rng
        h, wd, c = self.shape
        kh, kw = kernel
        depthwise = op == "DEPTHWISE_CONV_2D"
        small = edge == "big_multiplier"
        if depthwise:
            out_c = c
            w = _int_weights(rng, (1, kh, kw, c), 3, per_channel, small)
            qdim = 3
        else:
            w = _int_weights(rng, (out_c, kh, kw, c), 0, per_channel, small)
            qdim = 0
        acc0 = _conv_acc(self.x, self.zp, w, depthwise, stride, dilation, padding)
        # LiteRT's int8 conv kernels require a bias tensor (the converter always writes
        # one), so "no bias" for a conv is an all-zero bias.
        bias = self._bias(acc0, out_c) if use_bias else np.zeros(out_c, np.int32)
        acc = acc0 + bias
        w_scale, out_scale, out_zp, mult = self._quantize(name, acc, w, qdim, per_channel, act, edge, None, bias)
        if edge == "zero_channel":
            acc = _conv_acc(self.x, self.zp, w, depthwise, stride, dilation, padding) + bias
        wi, bi = self._const_quant_tensors(name, w, w_scale, qdim, bias)
        oh, ow = acc.shape[1], acc.shape[2]
        oi = self.g.activation(name, (1, oh, ow, out_c), out_scale, out_zp)
        if depthwise:
            opt = fb.DepthwiseConv2DOptionsT()
            opt.depthMultiplier = 1
            otype = fb.BuiltinOptions.DepthwiseConv2DOptions
        else:
            opt = fb.Conv2DOptionsT()
            otype = fb.BuiltinOptions.Conv2DOptions
        opt.padding = _PADS[padding]
        opt.strideH, opt.strideW = int(stride[0]), int(stride[1])
        opt.dilationHFactor, opt.dilationWFactor = int(dilation[0]), int(dilation[1])
        opt.fusedActivationFunction = _ACTS[act]
        self.g.op(op, [self.cur, wi, bi], [oi], otype, opt)
        self.x = _requant_approx(acc, mult, out_scale, out_zp, act)
        self._advance(oi, (oh, ow, out_c), out_scale, out_zp)

    def reshape(self, name):
        k = int(np.prod(self.shape))
        g = self.g
        si = g.tensor(f"{name}/shape", (2,), fb.TensorType.INT32, data=np.array([1, k], np.int32))
        oi = g.activation(name, (1, k), self.scale, self.zp)
        opt = fb.ReshapeOptionsT()
        opt.newShape = [1, k]
        g.op("RESHAPE", [self.cur, si], [oi], fb.BuiltinOptions.ReshapeOptions, opt)
        self.x = self.x.reshape(self.x.shape[0], k)
        self._advance(oi, (k,), self.scale, self.zp)

    def softmax(self, name, beta):
        depth = self.shape[-1]
        if depth >= SOFTMAX_MAX_DEPTH:
            raise ValueError(
                f"SOFTMAX over {depth} >= {SOFTMAX_MAX_DEPTH} values: TFLM and LiteRT abort the "
                "process (gemmlowp assert) once the sum of exps reaches 512"
            )
        g = self.g
        oi = g.activation(name, (1,) + self.shape, 1.0 / 256.0, -128)
        opt = fb.SoftmaxOptionsT()
        opt.beta = float(beta)
        g.op("SOFTMAX", [self.cur], [oi], fb.BuiltinOptions.SoftmaxOptions, opt)
        # Calibration data is not needed after the softmax (it is always last).
        self._advance(oi, self.shape, 1.0 / 256.0, -128)

    def _advance(self, index, shape, scale, zp):
        self.cur = index
        self.shape = tuple(int(s) for s in shape)
        self.scale = float(scale)
        self.zp = int(zp)
        self.layer_no += 1

    def finish(self, description):
        return self.g.finish([self.input_index], [self.cur], description)


# --------------------------------------------------------------------------------------------
# Families
# --------------------------------------------------------------------------------------------


def _common(rng, ov):
    in_scale = _pick(ov, "input_scale", lambda: _loguniform(rng, 1e-3, 1.0))
    in_zp = _pick(ov, "input_zp", lambda: int(rng.integers(-128, 128)))
    u = rng.random()
    edge_draw = None if u < 0.7 else EDGES[int(rng.integers(0, len(EDGES)))]
    edge = ov.get("edge", edge_draw)
    if edge == "none":
        edge = None
    if edge is not None and edge not in EDGES:
        raise ValueError(f"unknown edge case {edge!r}; expected one of {EDGES}")
    return in_scale, in_zp, edge


def _layer_flags(rng, ov):
    per_channel = _pick(ov, "per_channel", lambda: bool(rng.random() < 0.7))
    use_bias = _pick(ov, "bias", lambda: bool(rng.random() < 0.8))
    act = _pick(ov, "activation", lambda: str(rng.choice(["NONE", "RELU", "RELU6"], p=[0.45, 0.35, 0.2])))
    if act not in _ACTS:
        raise ValueError(f"unknown activation {act!r}")
    return per_channel, use_bias, act


def _softmax_choice(rng, ov, p):
    sm = _pick(ov, "softmax", lambda: bool(rng.random() < p))
    beta = _pick(ov, "beta", lambda: 1.0 if rng.random() < 0.7 else _loguniform(rng, 0.1, 4.0))
    return bool(sm), float(beta)


def _mlp(rng, ov):
    in_scale, in_zp, edge = _common(rng, ov)
    in_n = int(_pick(ov, "input_size", lambda: _size(rng, 1, 128)))
    widths = _pick(ov, "widths", lambda: [_size(rng, 1, 128) for _ in range(int(rng.integers(1, 4)))])
    sm, beta = _softmax_choice(rng, ov, 0.3)
    net = _Net(rng, "mlp", ov, (in_n,), in_scale, in_zp)
    for i, width in enumerate(widths):
        pc, b, act = _layer_flags(rng, ov)
        lb = beta if sm and i == len(widths) - 1 else None
        net.fc(f"fc{i}", int(width), pc, b, act, net._edge_for_layer(edge, len(widths), i), lb)
    if sm:
        net.softmax("softmax", beta)
    return net, edge


def _draw_conv(rng, ov_layer, allowed_ops, h, w, c):
    """Draw one conv layer's geometry that fits an (h, w, c) input."""
    op = ov_layer.get("op") or allowed_ops[int(rng.integers(0, len(allowed_ops)))]
    out_c = int(ov_layer.get("out_channels") or _size(rng, 1, 16))
    kernel = ov_layer.get("kernel")
    if kernel is None:
        k = int(rng.integers(1, 6))
        kernel = (k, k) if rng.random() < 0.75 else (k, int(rng.integers(1, 6)))
    stride = ov_layer.get("stride")
    if stride is None:
        s = int(rng.choice([1, 1, 2, 3]))
        stride = (s, s) if rng.random() < 0.8 else (s, int(rng.integers(1, 4)))
    dilation = ov_layer.get("dilation")
    if dilation is None:
        dilation = (2, 2) if rng.random() < 0.15 else ((1, 2) if rng.random() < 0.05 else (1, 1))
    padding = ov_layer.get("padding") or ("SAME" if rng.random() < 0.5 else "VALID")
    if padding == "VALID" and "padding" not in ov_layer:
        if _conv_out(h, kernel[0], stride[0], dilation[0], "VALID") < 1 or _conv_out(
            w, kernel[1], stride[1], dilation[1], "VALID"
        ) < 1:
            padding = "SAME"
    if _conv_out(h, kernel[0], stride[0], dilation[0], padding) < 1 or _conv_out(
        w, kernel[1], stride[1], dilation[1], padding
    ) < 1:
        raise ValueError(f"conv layer {ov_layer} does not fit input {(h, w, c)}")
    return op, out_c, tuple(kernel), tuple(stride), tuple(dilation), padding


def _cnn(rng, ov):
    in_scale, in_zp, edge = _common(rng, ov)
    shape = _pick(ov, "input_shape", lambda: (_size(rng, 1, 20), _size(rng, 1, 20), int(rng.integers(1, 9))))
    allowed = tuple(ov.get("ops") or ("CONV_2D", "CONV_2D", "DEPTHWISE_CONV_2D"))
    conv_ov = ov.get("convs")
    n_convs = len(conv_ov) if conv_ov is not None else int(_pick(ov, "n_convs", lambda: int(rng.integers(1, 4))))
    conv_ov = conv_ov or [{} for _ in range(n_convs)]
    fc_widths = _pick(ov, "fc_widths", lambda: [_size(rng, 1, 64) for _ in range(int(rng.integers(1, 3)))])
    sm, beta = _softmax_choice(rng, ov, 0.4)
    net = _Net(rng, "cnn", ov, tuple(shape), in_scale, in_zp)
    n_layers = n_convs + len(fc_widths)
    for i, lov in enumerate(conv_ov):
        h, w, c = net.shape
        geo = _draw_conv(rng, lov, allowed, h, w, c)
        pc, b, act = _layer_flags(rng, ov)
        tag = "dwconv" if geo[0] == "DEPTHWISE_CONV_2D" else "conv"
        net.conv(f"{tag}{i}", *geo, pc, b, act, net._edge_for_layer(edge, n_layers, i))
    net.reshape("flatten")
    for j, width in enumerate(fc_widths):
        pc, b, act = _layer_flags(rng, ov)
        lb = beta if sm and j == len(fc_widths) - 1 else None
        net.fc(f"fc{j}", int(width), pc, b, act, net._edge_for_layer(edge, n_layers, n_convs + j), lb)
    if sm:
        net.softmax("softmax", beta)
    return net, edge


def _wide(rng, ov):
    in_scale, in_zp, edge = _common(rng, ov)
    op = ov.get("op") or ("CONV_2D" if rng.random() < 0.75 else "DEPTHWISE_CONV_2D")
    c_lo, c_hi = (24, 48) if op == "DEPTHWISE_CONV_2D" else (1, 8)

    def default_shape():
        return (int(rng.integers(12, 21)), int(rng.integers(12, 21)), int(rng.integers(c_lo, c_hi + 1)))

    shape = tuple(_pick(ov, "input_shape", default_shape))
    out_c = int(_pick(ov, "out_channels", lambda: int(rng.integers(24, 41))))
    k = int(rng.integers(1, 6))
    layer_ov = {
        "op": op,
        "out_channels": out_c,
        "kernel": ov.get("kernel", (k, k)),
        "stride": ov.get("stride", (1, 1)),
        "dilation": ov.get("dilation"),
        "padding": ov.get("padding", "SAME"),
    }
    net = _Net(rng, "wide", ov, shape, in_scale, in_zp)
    geo = _draw_conv(rng, layer_ov, (op,), *shape)
    pc, b, act = _layer_flags(rng, ov)
    net.conv("dwconv0" if op == "DEPTHWISE_CONV_2D" else "conv0", *geo, pc, b, act, net._edge_for_layer(edge, 1, 0))
    return net, edge


_FAMILY_FUNCS = {"mlp": _mlp, "cnn": _cnn, "wide": _wide}
_COMMON_KEYS = {
    "input_scale", "input_zp", "edge", "softmax", "beta", "per_channel", "bias", "activation", "weight_spread",
}
_FAMILY_KEYS = {
    "mlp": _COMMON_KEYS | {"input_size", "widths"},
    "cnn": _COMMON_KEYS | {"input_shape", "convs", "n_convs", "fc_widths", "ops"},
    "wide": (_COMMON_KEYS - {"softmax", "beta"})
    | {"input_shape", "op", "out_channels", "kernel", "stride", "dilation", "padding"},
}


def random_model(rng: np.random.Generator, kind: str | None = None, **overrides: Any) -> bytes:
    """A random valid int8 ``.tflite`` flatbuffer of family ``kind`` (see module docstring)."""
    if kind is None:
        kind = FAMILIES[int(rng.integers(0, len(FAMILIES)))]
    if kind not in _FAMILY_FUNCS:
        raise ValueError(f"unknown model family {kind!r}; expected one of {FAMILIES}")
    unknown = set(overrides) - _FAMILY_KEYS[kind]
    if unknown:
        raise TypeError(f"unknown overrides for {kind!r}: {sorted(unknown)}")
    net, edge = _FAMILY_FUNCS[kind](rng, dict(overrides))
    desc = f"tinylora randmodel kind={kind} edge={edge or 'none'}"
    if net.notes:
        desc += " (" + "; ".join(net.notes) + ")"
    return net.finish(desc)


# --------------------------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------------------------


def _load(model_bytes) -> fb.ModelT:
    buf = bytearray(model_bytes) if not isinstance(model_bytes, bytearray) else model_bytes
    return fb.ModelT.InitFromPackedBuf(buf, 0)


def _io_shape(model_bytes, which: str) -> tuple[int, ...]:
    m = _load(model_bytes)
    sg = m.subgraphs[0]
    idx = (sg.inputs if which == "input" else sg.outputs)[0]
    shape = [int(s) for s in sg.tensors[idx].shape]
    if shape and shape[0] == 1:
        shape = shape[1:]
    return tuple(shape)


def input_shape(model_bytes) -> tuple[int, ...]:
    """Input shape without the batch dimension."""
    return _io_shape(model_bytes, "input")


def output_shape(model_bytes) -> tuple[int, ...]:
    """Output shape without the batch dimension."""
    return _io_shape(model_bytes, "output")


def random_input(rng: np.random.Generator, model_bytes_or_shape, n: int, dist: str = "uniform") -> np.ndarray:
    """``n`` random int8 inputs, shape ``(n, *input_shape)``.

    ``model_bytes_or_shape`` is a model (bytes/bytearray) or a shape without batch dimension.
    ``dist``: "uniform" over [-128, 127]; "extreme" (mostly -128/127/0 and the rest uniform);
    "narrow" (normal around a random centre, std 1..30).
    """
    if isinstance(model_bytes_or_shape, (bytes, bytearray, memoryview)):
        shape = input_shape(bytes(model_bytes_or_shape))
    else:
        shape = tuple(int(s) for s in model_bytes_or_shape)
    full = (int(n),) + shape
    if dist == "uniform":
        x = rng.integers(-128, 128, full)
    elif dist == "extreme":
        x = rng.integers(-128, 128, full)
        sel = rng.random(full)
        x = np.where(sel < 0.3, -128, np.where(sel < 0.6, 127, np.where(sel < 0.7, 0, x)))
    elif dist == "narrow":
        centre = rng.integers(-128, 128)
        x = np.rint(rng.normal(centre, rng.uniform(1.0, 30.0), full))
    else:
        raise ValueError(f"unknown dist {dist!r}")
    return np.clip(x, -128, 127).astype(np.int8)


def _fmt_list(v, k: int = 4) -> str:
    v = list(v)
    if len(v) <= k:
        return "[" + ", ".join(f"{x:.4g}" if isinstance(x, float) else str(x) for x in v) + "]"
    return f"[{len(v)} values, min {min(v):.4g}, max {max(v):.4g}]"


def describe(model_bytes) -> str:
    """Multi-line summary of a model: ops, tensors, quantisation and effective multipliers."""
    m = _load(model_bytes)
    sg = m.subgraphs[0]
    lines = []
    if m.description:
        desc = m.description.decode() if isinstance(m.description, bytes) else m.description
        lines.append(desc)
    lines.append(
        f"{len(model_bytes)} bytes, {len(sg.operators)} ops, {len(sg.tensors)} tensors, {len(m.buffers)} buffers"
    )

    def tname(i):
        if i < 0:
            return "-"
        n = sg.tensors[i].name
        return n.decode() if isinstance(n, bytes) else n

    def tdesc(i):
        if i < 0:
            return "(none)"
        t = sg.tensors[i]
        s = f"{tname(i)} {_TYPE_NAMES.get(t.type, t.type)}{[int(d) for d in t.shape]}"
        q = t.quantization
        if q is not None and q.scale is not None:
            s += f" scale={_fmt_list(q.scale)} zp={_fmt_list(q.zeroPoint)}"
            if len(q.scale) > 1:
                s += f" qdim={q.quantizedDimension}"
        return s

    for k, op in enumerate(sg.operators):
        oc = m.operatorCodes[op.opcodeIndex]
        name = _OP_NAMES.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), str(oc.builtinCode))
        o = op.builtinOptions
        extra = []
        if o is not None:
            if hasattr(o, "fusedActivationFunction"):
                extra.append(f"act={_ACT_NAMES.get(o.fusedActivationFunction, o.fusedActivationFunction)}")
            if hasattr(o, "padding"):
                extra.append(
                    f"pad={_PAD_NAMES.get(o.padding, o.padding)} stride=({o.strideH},{o.strideW}) "
                    f"dil=({o.dilationHFactor},{o.dilationWFactor})"
                )
            if hasattr(o, "beta"):
                extra.append(f"beta={o.beta:.6g}")
            if hasattr(o, "newShape") and o.newShape is not None:
                extra.append(f"new_shape={[int(d) for d in o.newShape]}")
        lines.append(f"op{k} {name} {' '.join(extra)}")
        for role, i in zip(("in", "w", "b"), op.inputs, strict=False):
            if name in ("RESHAPE",) and role != "in":
                role = "shape"
            lines.append(f"    {role}: {tdesc(i)}")
        lines.append(f"    out: {tdesc(op.outputs[0])}")
        if name in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
            ti, tw, to = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]], sg.tensors[op.outputs[0]]
            ws = np.asarray(tw.quantization.scale, np.float64)
            mult = float(ti.quantization.scale[0]) * ws / float(to.quantization.scale[0])
            e = np.frexp(mult)[1]
            lines.append(f"    multiplier: min {mult.min():.4g} max {mult.max():.4g} (exponent {e.min()}..{e.max()})")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Multiplier-formation probes
# --------------------------------------------------------------------------------------------


def _qmult(m: float) -> tuple[int, int]:
    """QuantizeMultiplier (frexp, round half away from zero, e < -31 -> 0)."""
    if m == 0:
        return 0, 0
    q, e = math.frexp(m)
    qf = int(math.floor(q * 2**31 + 0.5))
    if qf == 2**31:
        qf //= 2
        e += 1
    if e < -31:
        return 0, 0
    return qf, e


def _double_round(acc: np.ndarray, qf: int, e: int) -> np.ndarray:
    """Requantise int64 accumulators with gemmlowp double rounding (values < 2^31 only)."""
    x = acc.astype(np.int64) * (1 << max(e, 0))
    x = (x * qf + (1 << 30)) >> 31
    n = max(-e, 0)
    mask = (1 << n) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> n) + ((x & mask) > threshold)


def multiplier_probe_model(rng: np.random.Generator, op: str = "FULLY_CONNECTED"):
    """A one-value per-tensor model whose output tells how the real multiplier is formed.

    Scales are drawn until ``float32(s_in * s_w) / s_out`` and
    ``double(s_in) * double(s_w) / double(s_out)`` quantise to different fixed-point
    multipliers, and the bias places the accumulator where the two give different outputs
    under double rounding. Returns ``(model_bytes, x, expected)`` with ``x`` the int8 input
    (shape (1, *input_shape)) and ``expected`` a dict {"float32_product": int,
    "double_product": int} of the two candidate outputs. (TFLM was measured to follow
    "double_product" for both FULLY_CONNECTED and CONV_2D.)
    """
    if op not in ("FULLY_CONNECTED", "CONV_2D"):
        raise ValueError(f"op must be FULLY_CONNECTED or CONV_2D, not {op!r}")
    accs = np.arange(-(2**20), 2**20, dtype=np.int64)
    while True:
        s_in = _f32(_loguniform(rng, 1e-3, 1.0))
        s_w = _f32(_loguniform(rng, 1e-4, 1e-1))
        s_out = _f32(_loguniform(rng, 1e-3, 1.0))
        m_f32 = float(np.float32(np.float32(s_in) * np.float32(s_w))) / s_out
        m_dbl = s_in * s_w / s_out
        qa, qb = _qmult(m_f32), _qmult(m_dbl)
        if qa == qb or not 1e-5 < m_dbl < 0.5:
            continue
        ya, yb = _double_round(accs, *qa), _double_round(accs, *qb)
        cand = np.nonzero((ya != yb) & (np.abs(ya) < 100))[0]
        if len(cand):
            break
    k = int(rng.choice(cand))
    acc = int(accs[k])
    zp_out = int(np.clip(-ya[k], -100, 100))
    g = _Graph()
    shape = (1, 1) if op == "FULLY_CONNECTED" else (1, 1, 1, 1)
    xi = g.activation("input", shape, s_in, 0)
    w = np.ones(shape if op == "CONV_2D" else (1, 1), np.int8)
    wi = g.tensor("probe/weights", w.shape, fb.TensorType.INT8, scale=[s_w], zero_point=[0], data=w)
    bi = g.tensor("probe/bias", (1,), fb.TensorType.INT32, scale=[_f32(np.float32(s_in) * np.float32(s_w))],
                  zero_point=[0], data=np.array([acc], np.int32))
    oi = g.activation("probe", shape, s_out, zp_out)
    if op == "FULLY_CONNECTED":
        g.op(op, [xi, wi, bi], [oi], fb.BuiltinOptions.FullyConnectedOptions, fb.FullyConnectedOptionsT())
    else:
        o = fb.Conv2DOptionsT()
        o.padding, o.strideH, o.strideW = fb.Padding.VALID, 1, 1
        g.op(op, [xi, wi, bi], [oi], fb.BuiltinOptions.Conv2DOptions, o)
    model = g.finish([xi], [oi], f"tinylora multiplier probe {op} acc={acc}")
    expected = {
        "float32_product": int(np.clip(ya[k] + zp_out, -128, 127)),
        "double_product": int(np.clip(yb[k] + zp_out, -128, 127)),
    }
    return model, np.zeros((1,) + shape[1:], np.int8), expected
