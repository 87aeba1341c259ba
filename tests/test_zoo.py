"""The reference model zoo (tests/support/zoo.py): what the converter writes, and newops on
the converter's own tensors.

The models are built once per session (cached under ``$TINYLORA_ZOO_CACHE`` when set). Every
op of a zoo model that tinylora.ref covers is cut out into a one-op model, with the
converter's shapes, quantization and options, and compared byte for byte with TFLM on random
inputs.
"""
from __future__ import annotations

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as fb  # noqa: E402

from tests.support import oracles, zoo
from tests.support.edit import pack, unpack
from tinylora.ref import arith, pooling, tensor_ops
from tinylora.ref.qparams import Quant

pytestmark = pytest.mark.slow  # converts 8 Keras models (~45 s on 2 busy cores)

OPS = {
    "ds_cnn": {"AVERAGE_POOL_2D": 1, "CONV_2D": 5, "DEPTHWISE_CONV_2D": 4,
               "FULLY_CONNECTED": 1, "SOFTMAX": 1},
    "mobilenet_v1_025": {"AVERAGE_POOL_2D": 1, "CONV_2D": 14, "DEPTHWISE_CONV_2D": 13,
                         "FULLY_CONNECTED": 1, "SOFTMAX": 1},
    "resnet8": {"ADD": 3, "AVERAGE_POOL_2D": 1, "CONV_2D": 9, "FULLY_CONNECTED": 1,
                "SOFTMAX": 1},
    "autoencoder": {"FULLY_CONNECTED": 10},
    "autoencoder_float_io": {"DEQUANTIZE": 1, "FULLY_CONNECTED": 10, "QUANTIZE": 1},
    "mbv2_block": {"ADD": 2, "CONV_2D": 5, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 1,
                   "MEAN": 1, "SOFTMAX": 1},
    "person_detect_like": {"AVERAGE_POOL_2D": 1, "CONV_2D": 7, "DEPTHWISE_CONV_2D": 5,
                           "RESHAPE": 1, "SOFTMAX": 1},
    "hello_world": {"FULLY_CONNECTED": 3},
}
COVERED = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "MEAN", "QUANTIZE", "DEQUANTIZE", "RESHAPE",
           "PAD", "PADV2", "CONCATENATION", "LOGISTIC", "HARD_SWISH")
NAMES = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
ACT_NAMES = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "zoo-cache"  # one conversion per session
    return {name: zoo.build(name, cache) for name in zoo.MODELS}


def test_zoo_ops_are_the_reference_architectures(models):
    for name, data in models.items():
        assert zoo.describe(data)["ops"] == OPS[name], name


def test_zoo_conversion_is_reproducible(models):
    for name in ("hello_world", "mbv2_block"):
        assert zoo.convert(name) == models[name], f"{name}: two conversions differ"


def test_zoo_models_run_on_tflm_and_report_their_arena(models):
    for name, data in models.items():
        arena = zoo.tflm_arena_used(data)
        assert 1000 < arena < 200_000, (name, arena)
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(4, 32, 32, 3)).astype(np.int8)
    y = oracles.tflm_run(models["resnet8"], x)
    assert y.shape == (4, 10)
    assert (y.astype(int) + 128).sum(axis=1).min() > 200  # softmax outputs sum to ~256


def _quant(t) -> Quant:
    return Quant(float(t.quantization.scale[0]), int(t.quantization.zeroPoint[0]))


def _one_op_model(m, op_index: int) -> bytes:
    """Model ``m`` reduced to operator ``op_index``: its tensors, constants and options."""
    sg = m.subgraphs[0]
    op = sg.operators[op_index]
    used = [i for i in list(op.inputs) + list(op.outputs) if i >= 0]
    remap = {old: new for new, old in enumerate(dict.fromkeys(used))}
    buffers = [fb.BufferT()]
    tensors = []
    for old in remap:
        t = sg.tensors[old]
        b = m.buffers[t.buffer] if t.buffer else None
        if b is not None and b.data is not None and len(b.data):
            buffers.append(b)
            t.buffer = len(buffers) - 1
        else:
            t.buffer = 0
        tensors.append(t)
    op.inputs = [remap[i] for i in op.inputs]
    op.outputs = [remap[i] for i in op.outputs]
    code = m.operatorCodes[op.opcodeIndex]
    op.opcodeIndex = 0
    variable = [remap[i] for i in dict.fromkeys(used) if tensors[remap[i]].buffer == 0
                and remap[i] not in op.outputs]
    sg.tensors, sg.operators = tensors, [op]
    sg.inputs, sg.outputs = variable, list(op.outputs)
    m.operatorCodes, m.buffers, m.subgraphs = [code], buffers, [sg]
    m.signatureDefs = []
    m.metadata = []
    return pack(m)


def _newops_eval(name, op, tensors, inputs):
    """newops' result for one converter-written op, from its tensors and options."""
    t_in = [tensors[i] for i in op.inputs]
    t_out = tensors[op.outputs[0]]
    opt = op.builtinOptions
    if name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        fn = pooling.average_pool_2d if name == "AVERAGE_POOL_2D" else pooling.max_pool_2d
        pad = "SAME" if opt.padding == fb.Padding.SAME else "VALID"
        return fn(inputs[0], (opt.filterHeight, opt.filterWidth), (opt.strideH, opt.strideW), pad,
                  _quant(t_out), ACT_NAMES[opt.fusedActivationFunction])
    if name == "ADD":
        return arith.add(inputs[0], _quant(t_in[0]), inputs[1], _quant(t_in[1]), _quant(t_out),
                          ACT_NAMES[opt.fusedActivationFunction])
    if name == "MEAN":
        return arith.mean(inputs[0], inputs[1], _quant(t_in[0]), _quant(t_out), opt.keepDims)
    if name == "QUANTIZE":
        if t_in[0].type == fb.TensorType.FLOAT32:
            return tensor_ops.quantize_float(inputs[0], _quant(t_out))
        return tensor_ops.requantize_int8(inputs[0], _quant(t_in[0]), _quant(t_out))
    if name == "DEQUANTIZE":
        return tensor_ops.dequantize(inputs[0], _quant(t_in[0]))
    if name == "RESHAPE":
        return tensor_ops.reshape(inputs[0], tuple(t_out.shape))
    raise NotImplementedError(name)


def test_newops_on_the_converters_own_ops(models):
    """Every covered op of every zoo model, on 64 random inputs each: 0 differing bytes."""
    rng = np.random.default_rng(11)
    checked = {}
    for model_name, data in models.items():
        m0 = unpack(data)
        for k, op in enumerate(m0.subgraphs[0].operators):
            code = m0.operatorCodes[op.opcodeIndex]
            name = NAMES[max(code.builtinCode, code.deprecatedBuiltinCode)]
            if name not in COVERED:
                continue
            m = unpack(data)
            tensors = m.subgraphs[0].tensors
            const = {i: np.frombuffer(bytes(m.buffers[tensors[i].buffer].data), np.int32)
                     for i in m.subgraphs[0].operators[k].inputs
                     if tensors[i].buffer and m.buffers[tensors[i].buffer].data is not None}
            one = _one_op_model(m, k)
            op1 = unpack(one).subgraphs[0].operators[0]
            t1 = unpack(one).subgraphs[0].tensors
            interp = oracles.tflm_interpreter(one)
            for _ in range(64):
                inputs, slot = [], 0
                for old, i in zip(op.inputs, op1.inputs):
                    if old in const:
                        inputs.append(const[old])
                        continue
                    shape = tuple(t1[i].shape)
                    if t1[i].type == fb.TensorType.FLOAT32:
                        x = (rng.standard_normal(shape) * 3).astype(np.float32)
                    else:
                        x = rng.integers(-128, 128, size=shape).astype(np.int8)
                    interp.set_input(x, slot)
                    slot += 1
                    inputs.append(x)
                interp.invoke()
                want = np.array(interp.get_output(0))
                got = _newops_eval(name, op1, t1, inputs)
                assert got.dtype == want.dtype and got.shape == want.shape, (model_name, name)
                diff = int((got.view(np.uint8) != want.view(np.uint8)).sum())
                assert diff == 0, f"{model_name} op {k} {name}: {diff} bytes differ"
                checked[name] = checked.get(name, 0) + got.nbytes
    assert set(checked) == {"AVERAGE_POOL_2D", "ADD", "MEAN", "QUANTIZE", "DEQUANTIZE",
                            "RESHAPE"}, checked
    print("\nzoo ops checked against TFLM (bytes):", dict(sorted(checked.items())))
