"""The Model API and every bad input it must refuse with an actionable ModelError."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import edit as E

import tinylora
from tinylora import ModelError


def test_model_api_on_bundled_example(example_bytes):
    m = tinylora.load_tflite(example_bytes)
    assert m.input_shape == (8, 8, 1) and m.output_shape == (10,)
    kinds = [layer.kind for layer in m.layers]
    assert kinds.count("FULLY_CONNECTED") == 2 and kinds[-1] == "SOFTMAX"
    assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= set(kinds)
    for layer in m.layers:
        assert layer.name and layer.input_q.scale.dtype == np.float32
    assert m.macs == sum(layer.macs for layer in m.layers) > 0
    fc = [layer for layer in m.layers if layer.kind == "FULLY_CONNECTED"][0]
    assert fc.macs == fc.weights.shape[0] * fc.weights.shape[1]
    # a path, bytes and a file object load the same model
    assert tinylora.load_tflite(tinylora.example_model()).layers[0].name == m.layers[0].name


def test_forward_single_and_batch_agree(example_bytes):
    m = tinylora.load_tflite(example_bytes)
    x = np.random.default_rng(0).integers(-128, 128, (5, 8, 8, 1)).astype(np.int8)
    batch = m.forward(x)
    assert batch.shape == (5, 10) and batch.dtype == np.int8
    assert np.array_equal(m.forward(x[2]), batch[2])


@pytest.mark.parametrize("bad, match", [
    (np.zeros((8, 8), np.int8), "does not match the model's input"),
    (np.zeros((8, 8, 1), np.float32), "quantize real inputs"),
    (np.full((8, 8, 1), 300), "outside int8"),
])
def test_forward_rejects_bad_input(example_bytes, bad, match):
    with pytest.raises(ValueError, match=match):
        tinylora.load_tflite(example_bytes).forward(bad)


def test_quantize_rounds_half_away_from_zero(example_bytes):
    m = tinylora.load_tflite(example_bytes)
    s, zp = m.input_scale, m.input_zero_point
    got = m.quantize(np.array([0.5 * s, 1.5 * s, 1000.0, -1000.0]))
    assert got.tolist() == [zp + 1, zp + 2, 127, -128]


# ---------------------------------------------------------------- the bad-input table

def _float_model(m):
    for t in m.subgraphs[0].tensors:
        if (
            t.type == E.TENSOR.INT8
            and len(m.buffers[t.buffer].data if m.buffers[t.buffer].data is not None else []) == 0
        ):
            t.type, t.quantization = E.TENSOR.FLOAT32, None


def _int16_input(m):
    sg = m.subgraphs[0]
    sg.tensors[sg.inputs[0]].type = E.TENSOR.INT16


def _uint8_input(m):
    sg = m.subgraphs[0]
    sg.tensors[sg.inputs[0]].type = E.TENSOR.UINT8


def _batch4(m):
    sg = m.subgraphs[0]
    sg.tensors[sg.inputs[0]].shape[0] = 4


def _two_subgraphs(m):
    m.subgraphs.append(m.subgraphs[0])


def _tanh(m):
    m.subgraphs[0].operators[5].builtinOptions.fusedActivationFunction = 4


def _no_scale(m):
    sg = m.subgraphs[0]
    sg.tensors[sg.operators[2].outputs[0]].quantization.scale = [0.0]


def _huge_shape(m):
    sg = m.subgraphs[0]
    sg.tensors[sg.operators[5].inputs[1]].shape = [2**31 - 1, 2**31 - 1]   # product overflows int64


def _int16_kws(m):
    """Like an int16-activation keyword model: a float input QUANTIZEd to int16."""
    sg = m.subgraphs[0]
    E.set_op(m, 0, E.BUILTIN.QUANTIZE)
    sg.tensors[sg.inputs[0]].type = E.TENSOR.FLOAT32
    sg.tensors[sg.operators[0].outputs[0]].type = E.TENSOR.INT16


def _two_bad_ops(m):
    E.set_op(m, 1, E.BUILTIN.SVDF)
    E.set_op(m, 3, E.BUILTIN.L2_NORMALIZATION)


def _branch(m):
    sg = m.subgraphs[0]
    sg.operators[6].inputs[0] = sg.operators[4].outputs[0]


BAD = {
    "float model": (lambda b: E.edit(b, _float_model), r"op 0 CONV_2D: .*FLOAT32.*int8.*inference_input_type=tf.int8"),
    "truncated file": (lambda b: b[: len(b) // 2], r"corrupt or truncated"),
    "truncated header": (lambda b: b[:6], r"corrupt or truncated|too short"),
    "empty file": (lambda b: b"", r"too short"),
    "wrong magic": (lambda b: b[:4] + b"XXXX" + b[8:], r"not a TFLite model.*TFL3"),
    "int16 activations": (lambda b: E.edit(b, _int16_input), r"op 0 CONV_2D: .*int16 activations"),
    "uint8 input": (lambda b: E.edit(b, _uint8_input), r"op 0 CONV_2D: .*UINT8"),
    "unknown op": (lambda b: E.edit(b, lambda m: E.set_op(m, 3, E.BUILTIN.L2_NORMALIZATION)),
                   r"op 3 L2_NORMALIZATION: operator L2_NORMALIZATION is not supported.*FULLY_CONNECTED"),
    "quantize op": (lambda b: E.edit(b, lambda m: E.set_op(m, 0, E.BUILTIN.QUANTIZE)),
                    r"op 0 QUANTIZE: input and output shapes differ"),
    "int16 model": (lambda b: E.edit(b, _int16_kws), r"(?s)^(?!.*float).*op 0 QUANTIZE: tensor .* has int16 "
                    r"activations.*TFLITE_BUILTINS_INT8"),
    "lstm op": (lambda b: E.edit(b, lambda m: E.set_op(m, 2, E.BUILTIN.UNIDIRECTIONAL_SEQUENCE_LSTM)),
                r"op 2 UNIDIRECTIONAL_SEQUENCE_LSTM: recurrent operator .* not supported"),
    "every problem at once": (lambda b: E.edit(b, _two_bad_ops),
                              r"2 problems.*\n  op 1 SVDF: recurrent.*\n  op 3 L2_NORMALIZATION: "
                              r"operator L2_NORMALIZATION is not supported"),
    "custom op": (lambda b: E.edit(b, lambda m: E.set_op(m, 6, E.BUILTIN.CUSTOM)), r"op 6 CUSTOM"),
    "batch 4": (lambda b: E.edit(b, _batch4), r"op 0 CONV_2D: .*batch_size=1"),
    "two subgraphs": (lambda b: E.edit(b, _two_subgraphs), r"2 subgraphs"),
    "tanh activation": (lambda b: E.edit(b, _tanh), r"op 5 FULLY_CONNECTED: fused activation TANH"),
    "zero scale": (lambda b: E.edit(b, _no_scale), r"op 2 CONV_2D: .*scale that is not a positive"),
    "overflowing shape": (lambda b: E.edit(b, _huge_shape), r"op 5 FULLY_CONNECTED: weights .* hold 2048 values"),
    "branching graph": (lambda b: E.edit(b, _branch), r"op 6 FULLY_CONNECTED: output tensor holds 10 values"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_gives_actionable_model_error(example_bytes, case):
    make, pattern = BAD[case]
    with pytest.raises(ModelError, match=pattern):
        tinylora.load_tflite(make(example_bytes))


def test_missing_file_and_wrong_type():
    with pytest.raises(ModelError, match="cannot read model file"):
        tinylora.load_tflite("/nonexistent/model.tflite")
    with pytest.raises(ModelError, match="expected a .tflite path or bytes"):
        tinylora.load_tflite(12)


def test_model_error_is_a_value_error():
    assert issubclass(ModelError, ValueError)


# ---------------------------------------------------------------- fuzz

@st.composite
def mutations(draw, size):
    edits = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, 255)),
                          min_size=1, max_size=6))
    cut = draw(st.one_of(st.none(), st.integers(0, size)))
    return edits, cut


@settings(max_examples=600)
@given(data=st.data())
def test_fuzzed_bytes_load_and_run_or_raise_model_error(example_bytes, data):
    edits, cut = data.draw(mutations(len(example_bytes)))
    buf = bytearray(example_bytes)
    for pos, value in edits:
        buf[pos] = value
    if cut is not None:
        buf = buf[:cut]
    try:
        m = tinylora.load_tflite(bytes(buf))
    except ModelError:
        return
    out = m.forward(np.zeros((2,) + m.input_shape, np.int8))
    assert out.shape == (2,) + m.output_shape and out.dtype == np.int8
