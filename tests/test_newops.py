"""The op references of tinylora/ref/ (pooling, arith, tensor_ops, activations) against the
tflite-micro interpreter: 0 differing bytes, op by op.

Each case builds a single-op int8 .tflite with the schema's object API (random shapes and
quantization parameters from fixed seeds), runs TFLM's reference kernels on many random
inputs (a large batch, or large tensors, per invoke) and compares every output byte.
``BYTES`` collects the bytes compared per op; the last test prints the table.
"""
from __future__ import annotations

import collections

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as fb  # noqa: E402

from tests.support import oracles
from tests.support.edit import pack
from tests.support.randmodel import _AlignedBufferT
from tinylora.ref import activations, arith, pooling, qparams, tensor_ops
from tinylora.ref.qparams import Quant

BYTES: collections.Counter = collections.Counter()
ACT = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}


# --------------------------------------------------------------------------- model builder


class OneOp:
    """A one-operator subgraph: add tensors, then ``finish`` packs a .tflite."""

    def __init__(self):
        self.tensors, self.buffers, self.inputs = [], [fb.BufferT()], []

    def tensor(self, shape, ttype=fb.TensorType.INT8, quant: Quant | None = None, data=None):
        t = fb.TensorT()
        t.name = f"t{len(self.tensors)}"
        t.shape = [int(s) for s in shape]
        t.type = ttype
        if quant is not None:
            q = fb.QuantizationParametersT()
            q.scale = [float(np.float32(quant.scale))]
            q.zeroPoint = [int(quant.zero_point)]
            t.quantization = q
        t.buffer = 0
        if data is not None:
            b = _AlignedBufferT()
            b.data = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
            self.buffers.append(b)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        return len(self.tensors) - 1

    def finish(self, builtin, inputs, output, options_type=0, options=None, graph_inputs=None):
        code = fb.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)
        code.version = 1
        op = fb.OperatorT()
        op.opcodeIndex = 0
        op.inputs = list(inputs)
        op.outputs = [output]
        op.builtinOptionsType = options_type
        op.builtinOptions = options
        sg = fb.SubGraphT()
        sg.tensors = self.tensors
        sg.inputs = list(graph_inputs if graph_inputs is not None else inputs[:1])
        sg.outputs = [output]
        sg.operators = [op]
        m = fb.ModelT()
        m.version = 3
        m.operatorCodes = [code]
        m.subgraphs = [sg]
        m.buffers = self.buffers
        m.description = "tinylora test_newops"
        return pack(m)


def run_tflm(model: bytes, *inputs) -> np.ndarray:
    interp = oracles.tflm_interpreter(model)
    for i, x in enumerate(inputs):
        interp.set_input(np.ascontiguousarray(x), i)
    interp.invoke()
    return np.array(interp.get_output(0))


def rand_quant(rng, lo=1e-3, hi=0.5) -> Quant:
    return Quant(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))), int(rng.integers(-128, 128)))


def rand_int8(rng, shape) -> np.ndarray:
    return rng.integers(-128, 128, size=shape, dtype=np.int64).astype(np.int8)


def assert_same(got, want, op: str):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, (got.shape, want.shape)
    assert got.dtype == want.dtype, (got.dtype, want.dtype)
    diff = got.view(np.uint8) != want.view(np.uint8)
    assert not diff.any(), (f"{op}: {int(diff.sum())} of {diff.size} values differ; first at "
                            f"{np.argwhere(diff)[0]}: ours {got[tuple(np.argwhere(diff)[0])]}, "
                            f"TFLM {want[tuple(np.argwhere(diff)[0])]}")
    BYTES[op] += got.nbytes


# --------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("kind", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
def test_pool(kind, seed):
    rng = np.random.default_rng(1000 + seed)
    n, h, w, c = 64, int(rng.integers(1, 13)), int(rng.integers(1, 13)), int(rng.integers(1, 9))
    fh, fw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
    sh, sw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    padding = ["SAME", "VALID"][seed % 2]
    act = ["NONE", "RELU", "RELU6", "RELU_N1_TO_1"][seed % 4]
    q = rand_quant(rng, 0.005, 0.1)
    oh, _ = pooling.pool_geometry(h, fh, sh, padding)
    ow, _ = pooling.pool_geometry(w, fw, sw, padding)
    g = OneOp()
    i = g.tensor([n, h, w, c], quant=q)
    o = g.tensor([n, oh, ow, c], quant=q)
    opt = fb.Pool2DOptionsT()
    opt.padding = fb.Padding.SAME if padding == "SAME" else fb.Padding.VALID
    opt.strideH, opt.strideW, opt.filterHeight, opt.filterWidth = sh, sw, fh, fw
    opt.fusedActivationFunction = ACT[act]
    builtin = getattr(fb.BuiltinOperator, kind)
    model = g.finish(builtin, [i], o, fb.BuiltinOptions.Pool2DOptions, opt)
    x = rand_int8(rng, (n, h, w, c))
    fn = pooling.average_pool_2d if kind == "AVERAGE_POOL_2D" else pooling.max_pool_2d
    assert_same(fn(x, (fh, fw), (sh, sw), padding, q, act), run_tflm(model, x), kind)


# --------------------------------------------------------------------------- add


@pytest.mark.parametrize("seed", range(12))
def test_add(seed):
    rng = np.random.default_rng(2000 + seed)
    q1, q2 = rand_quant(rng), rand_quant(rng)
    qo = rand_quant(rng, 0.5 * max(q1.scale, q2.scale), 4 * max(q1.scale, q2.scale))
    shape = (64, 4, 4, int(rng.integers(1, 9)))
    # every third case broadcasts the second input over H and W (a per-channel add)
    shape2 = (1, 1, 1, shape[3]) if seed % 3 == 2 else shape
    act = ["NONE", "RELU", "RELU6"][seed % 3]
    g = OneOp()
    a = g.tensor(shape, quant=q1)
    b = g.tensor(shape2, quant=q2)
    o = g.tensor(shape, quant=qo)
    opt = fb.AddOptionsT()
    opt.fusedActivationFunction = ACT[act]
    model = g.finish(fb.BuiltinOperator.ADD, [a, b], o, fb.BuiltinOptions.AddOptions, opt,
                     graph_inputs=[a, b])
    x1, x2 = rand_int8(rng, shape), rand_int8(rng, shape2)
    assert_same(arith.add(x1, q1, x2, q2, qo, act), run_tflm(model, x1, x2), "ADD")


def test_add_same_scales_is_exact_sum():
    """With equal input scales and an output scale twice theirs, ADD is (a + b) / 2 rounded:
    a value the rescaling pipeline cannot fake."""
    q = Quant(0.05, 0)
    qo = Quant(0.1, 0)
    a = np.arange(-128, 128, dtype=np.int8)
    y = arith.add(a, q, a[::-1], q, qo)
    want = np.clip(np.round((a.astype(int) + a[::-1].astype(int)) / 2 + 1e-9 * np.sign(
        a.astype(int) + a[::-1].astype(int))), -128, 127)
    assert np.array_equal(y.astype(int), want.astype(int))


# --------------------------------------------------------------------------- pad


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("kind", ["PAD", "PADV2"])
def test_pad(kind, seed):
    rng = np.random.default_rng(3000 + seed)
    shape = (4, int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 9)))
    paddings = np.array([[0, 0]] + [[int(rng.integers(0, 3)), int(rng.integers(0, 3))]
                                    for _ in range(3)], np.int32)
    q = rand_quant(rng)
    out_shape = [s + int(p.sum()) for s, p in zip(shape, paddings)]
    g = OneOp()
    i = g.tensor(shape, quant=q)
    p = g.tensor([4, 2], fb.TensorType.INT32, data=paddings)
    inputs = [i, p]
    value = q.zero_point
    if kind == "PADV2":
        value = int(rng.integers(-128, 128))
        inputs.append(g.tensor([1], quant=q, data=np.array([value], np.int8)))
    o = g.tensor(out_shape, quant=q)
    if kind == "PAD":
        model = g.finish(fb.BuiltinOperator.PAD, inputs, o, fb.BuiltinOptions.PadOptions,
                         fb.PadOptionsT())
    else:
        model = g.finish(fb.BuiltinOperator.PADV2, inputs, o, fb.BuiltinOptions.PadV2Options,
                         fb.PadV2OptionsT())
    x = rand_int8(rng, shape)
    assert_same(tensor_ops.pad(x, paddings, value), run_tflm(model, x), kind)


# --------------------------------------------------------------------------- mean


@pytest.mark.parametrize("seed", range(12))
def test_mean(seed):
    rng = np.random.default_rng(4000 + seed)
    n, h, w, c = 256, int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.integers(1, 17))
    keep = bool(seed % 2)
    q_in = rand_quant(rng, 0.01, 0.2)
    # a third of the cases keep the input quantization (TFLM's plain integer-mean path)
    q_out = q_in if seed % 3 == 0 else rand_quant(rng, 0.5 * q_in.scale, 2 * q_in.scale)
    g = OneOp()
    i = g.tensor([n, h, w, c], quant=q_in)
    ax = g.tensor([2], fb.TensorType.INT32, data=np.array([1, 2], np.int32))
    o = g.tensor([n, 1, 1, c] if keep else [n, c], quant=q_out)
    opt = fb.ReducerOptionsT()
    opt.keepDims = keep
    model = g.finish(fb.BuiltinOperator.MEAN, [i, ax], o, fb.BuiltinOptions.ReducerOptions, opt)
    x = rand_int8(rng, (n, h, w, c))
    assert_same(arith.mean(x, (1, 2), q_in, q_out, keep), run_tflm(model, x), "MEAN")


# --------------------------------------------------------------------------- concatenation


@pytest.mark.parametrize("seed", range(6))
def test_concatenation(seed):
    """Same quantization on every tensor (what the converter writes): a byte copy. For odd
    seeds the inputs' quantizations differ: TFLM refuses the model, and so does newops."""
    rng = np.random.default_rng(5000 + seed)
    k = int(rng.integers(2, 5))
    axis = int(rng.integers(1, 4))
    base = [16, 3, 4, 5]
    q_out = rand_quant(rng)
    qs = [q_out if seed % 2 == 0 else rand_quant(rng) for _ in range(k)]
    shapes = []
    for _ in range(k):
        s = list(base)
        s[axis] = int(rng.integers(1, 6))
        shapes.append(s)
    out_shape = list(base)
    out_shape[axis] = sum(s[axis] for s in shapes)
    g = OneOp()
    ins = [g.tensor(s, quant=q) for s, q in zip(shapes, qs)]
    o = g.tensor(out_shape, quant=q_out)
    opt = fb.ConcatenationOptionsT()
    opt.axis = axis
    model = g.finish(fb.BuiltinOperator.CONCATENATION, ins, o,
                     fb.BuiltinOptions.ConcatenationOptions, opt, graph_inputs=ins)
    xs = [rand_int8(rng, s) for s in shapes]
    if seed % 2:
        with pytest.raises(RuntimeError, match="scale"):
            run_tflm(model, *xs)
        with pytest.raises(ValueError, match="QUANTIZE"):
            tensor_ops.concatenation(xs, axis, qs, q_out)
        return
    assert_same(tensor_ops.concatenation(xs, axis, qs, q_out), run_tflm(model, *xs), "CONCATENATION")


# --------------------------------------------------------------------------- quantize


@pytest.mark.parametrize("seed", range(12))
def test_quantize_int8(seed):
    rng = np.random.default_rng(6000 + seed)
    q_in = rand_quant(rng)
    q_out = rand_quant(rng, q_in.scale / 8, q_in.scale * 8)
    g = OneOp()
    i = g.tensor([4096], quant=q_in)
    o = g.tensor([4096], quant=q_out)
    model = g.finish(fb.BuiltinOperator.QUANTIZE, [i], o, fb.BuiltinOptions.QuantizeOptions,
                     fb.QuantizeOptionsT())
    x = rand_int8(rng, (4096,))
    assert_same(tensor_ops.requantize_int8(x, q_in, q_out), run_tflm(model, x), "QUANTIZE int8")


@pytest.mark.parametrize("seed", range(8))
def test_quantize_float(seed):
    rng = np.random.default_rng(7000 + seed)
    q = rand_quant(rng)
    n = 8192
    x = (rng.standard_normal(n) * 100 * q.scale).astype(np.float32)
    # exact half-way points and values far out of range
    x[:256] = ((rng.integers(-200, 200, 256) + 0.5) * np.float32(q.scale)).astype(np.float32)
    x[256:272] = np.float32(1e6) * np.sign(rng.standard_normal(16)).astype(np.float32)
    g = OneOp()
    i = g.tensor([n], fb.TensorType.FLOAT32)
    o = g.tensor([n], quant=q)
    model = g.finish(fb.BuiltinOperator.QUANTIZE, [i], o, fb.BuiltinOptions.QuantizeOptions,
                     fb.QuantizeOptionsT())
    assert_same(tensor_ops.quantize_float(x, q), run_tflm(model, x), "QUANTIZE float32")


@pytest.mark.parametrize("seed", range(8))
def test_dequantize(seed):
    rng = np.random.default_rng(8000 + seed)
    q = rand_quant(rng, 1e-4, 10.0)
    g = OneOp()
    i = g.tensor([2048], quant=q)
    o = g.tensor([2048], fb.TensorType.FLOAT32)
    model = g.finish(fb.BuiltinOperator.DEQUANTIZE, [i], o, fb.BuiltinOptions.DequantizeOptions,
                     fb.DequantizeOptionsT())
    x = rand_int8(rng, (2048,))
    assert_same(tensor_ops.dequantize(x, q), run_tflm(model, x), "DEQUANTIZE")


# --------------------------------------------------------------------------- logistic / hard swish


def all_int8(copies: int = 16) -> np.ndarray:
    return np.tile(np.arange(-128, 128, dtype=np.int8), copies)


@pytest.mark.parametrize("seed", range(16))
def test_logistic(seed):
    rng = np.random.default_rng(9000 + seed)
    q_in = rand_quant(rng, 1e-3, 1.0)
    q_out = Quant(1.0 / 256, -128)
    g = OneOp()
    i = g.tensor([256], quant=q_in)
    o = g.tensor([256], quant=q_out)
    model = g.finish(fb.BuiltinOperator.LOGISTIC, [i], o)
    x = all_int8(1)  # every int8 value: the op is a function of one byte
    assert_same(activations.logistic(x, q_in), run_tflm(model, x), "LOGISTIC")


@pytest.mark.parametrize("seed", range(16))
def test_hard_swish(seed):
    rng = np.random.default_rng(10000 + seed)
    q_in = rand_quant(rng, 1e-3, 0.2)
    q_out = rand_quant(rng, q_in.scale / 4, q_in.scale * 4)
    g = OneOp()
    i = g.tensor([256], quant=q_in)
    o = g.tensor([256], quant=q_out)
    model = g.finish(fb.BuiltinOperator.HARD_SWISH, [i], o, fb.BuiltinOptions.HardSwishOptions,
                     fb.HardSwishOptionsT())
    x = all_int8(1)
    assert_same(activations.hard_swish(x, q_in, q_out), run_tflm(model, x), "HARD_SWISH")


# --------------------------------------------------------------------------- reshape


@pytest.mark.parametrize("seed", range(4))
def test_reshape_with_different_output_quant_copies_bytes(seed):
    """TFLM's RESHAPE never requantizes: differing output quantization only relabels."""
    rng = np.random.default_rng(11000 + seed)
    q_in, q_out = rand_quant(rng), rand_quant(rng)
    assert q_in != q_out
    g = OneOp()
    i = g.tensor([1, 4, 4, 8], quant=q_in)
    s = g.tensor([2], fb.TensorType.INT32, data=np.array([1, 128], np.int32))
    o = g.tensor([1, 128], quant=q_out)
    opt = fb.ReshapeOptionsT()
    opt.newShape = [1, 128]
    model = g.finish(fb.BuiltinOperator.RESHAPE, [i, s], o, fb.BuiltinOptions.ReshapeOptions, opt)
    x = rand_int8(rng, (1, 4, 4, 8))
    assert_same(tensor_ops.reshape(x, (1, 128)), run_tflm(model, x), "RESHAPE")


# --------------------------------------------------------------------------- negative scales


@pytest.mark.parametrize("seed", range(4))
def test_pointwise_conv_with_negative_per_channel_scales(seed):
    """A 1x1 CONV_2D whose per-channel weight scales are partly negative (as in MCUNet): TFLM
    runs it with signed multipliers, and requantize() with quantize_multiplier_signed matches
    every byte. Negating a channel's scale, weights and bias together gives the same bytes as
    the all-positive model (srdhm(-a, -m) == srdhm(a, m))."""
    from tinylora.ref.quant import real_multipliers, requantize

    rng = np.random.default_rng(12000 + seed)
    cin, cout, n = int(rng.integers(2, 17)), int(rng.integers(2, 17)), 64
    q_in, q_out = rand_quant(rng, 0.01, 0.1), rand_quant(rng, 0.05, 0.5)
    w = rng.integers(-127, 128, size=(cout, 1, 1, cin)).astype(np.int8)
    w_scale = np.exp(rng.uniform(np.log(1e-3), np.log(2e-2), cout)).astype(np.float32)
    bias = rng.integers(-2000, 2000, cout).astype(np.int32)
    sign = np.where(rng.random(cout) < 0.5, -1, 1)
    sign[0] = -1

    def conv_model(scales, weights, b):
        g = OneOp()
        i = g.tensor([1, n, 1, cin], quant=q_in)
        wt = g.tensor([cout, 1, 1, cin], data=weights)
        q = fb.QuantizationParametersT()
        q.scale = [float(s) for s in scales]
        q.zeroPoint = [0] * cout
        q.quantizedDimension = 0
        g.tensors[wt].quantization = q
        bt = g.tensor([cout], fb.TensorType.INT32, data=b)
        qb = fb.QuantizationParametersT()
        qb.scale = [float(np.float32(q_in.scale) * s) for s in scales]
        qb.zeroPoint = [0] * cout
        g.tensors[bt].quantization = qb
        o = g.tensor([1, n, 1, cout], quant=q_out)
        opt = fb.Conv2DOptionsT()
        opt.padding, opt.strideH, opt.strideW = fb.Padding.VALID, 1, 1
        opt.dilationHFactor = opt.dilationWFactor = 1
        return g.finish(fb.BuiltinOperator.CONV_2D, [i, wt, bt], o,
                        fb.BuiltinOptions.Conv2DOptions, opt)

    x = rand_int8(rng, (1, n, 1, cin))
    signed = conv_model(w_scale * sign, w, bias)
    got_tflm = run_tflm(signed, x)

    acc = (x.astype(np.int64).reshape(n, cin) - q_in.zero_point) @ w.reshape(cout, cin).T.astype(
        np.int64) + bias
    reals = real_multipliers(q_in.scale, w_scale * sign, q_out.scale)
    mults = np.array([qparams.quantize_multiplier_signed(r) for r in reals])
    y = requantize(acc, mults[:, 0], mults[:, 1]) + q_out.zero_point
    ours = np.clip(y, -128, 127).astype(np.int8).reshape(1, n, 1, cout)
    assert_same(ours, got_tflm, "CONV_2D negative scales")

    # folding the sign into weights and bias reproduces the signed model exactly
    folded = conv_model(w_scale, (w * sign[:, None, None, None]).astype(np.int8),
                        (bias * sign).astype(np.int32))
    assert_same(run_tflm(folded, x), got_tflm, "CONV_2D sign folded")


# --------------------------------------------------------------------------- report


def test_zz_report_bytes_compared(capsys):
    with capsys.disabled():
        print("\nbytes compared per op (0 differing):")
        for op, n in sorted(BYTES.items()):
            print(f"  {op:18s} {n}")
