"""The graph layer (tinylora.ref.graph): negative per-channel weight scales against TFLM, and
the refusals of models the reference cannot run or train yet."""
from __future__ import annotations

import numpy as np
import pytest
from support import edit as E
from support import oracles

import tinylora


def _negate_channels(m, op_index, channels, poison=False):
    """Negative scales on ``channels`` of op ``op_index``'s weights. Without ``poison`` the
    weights are negated too (same real values: the sign folds exactly); with it the weights
    stay and one weight becomes -128, which cannot fold (signed multipliers)."""
    sg = m.subgraphs[0]
    t = sg.tensors[sg.operators[op_index].inputs[1]]
    buf = m.buffers[t.buffer]
    w = np.frombuffer(bytes(buf.data), np.int8).reshape(t.shape).copy()
    scale = np.array(t.quantization.scale, np.float32)
    axis = t.quantization.quantizedDimension
    for c in channels:
        scale[c] = -scale[c]
        idx = [slice(None)] * w.ndim
        idx[axis] = c
        w[tuple(idx)] = w[tuple(idx)] if poison else -w[tuple(idx)]
        if poison:
            w[tuple(idx)].flat[0] = -128
    t.quantization.scale = scale.tolist()
    buf.data = np.frombuffer(w.tobytes(), np.uint8)


@pytest.mark.parametrize("poison", [False, True], ids=["folded", "signed multiplier"])
def test_negative_weight_scales_equal_tflm(example_bytes, poison):
    data = E.edit(example_bytes, lambda m: (_negate_channels(m, 0, [0, 3], poison),
                                            _negate_channels(m, 1, [2], poison)))
    model = tinylora.load_tflite(data)
    signed = bool(model.layers[0].options.get("signed_multipliers"))
    assert signed == poison
    if not poison:  # folded: the same layer as the original, weight for weight
        base = tinylora.load_tflite(example_bytes)
        assert np.array_equal(model.layers[0].weights, base.layers[0].weights)
        assert (model.layers[0].multiplier > 0).all()
    else:
        assert (model.layers[0].multiplier < 0).sum() == 2
    rng = np.random.default_rng(5)
    x = rng.integers(-128, 128, size=(200,) + model.input_shape).astype(np.int8)
    want = oracles.tflm_run(data, x)
    got = model.forward(x)
    assert int((got != want).sum()) == 0
    if poison:   # below every adapter the layer only runs forward (exact): training works;
        t = tinylora.Trainer(model)   # a backward through it is refused (ref/dag.py)
        assert 0 not in t.tainted and 1 not in t.tainted
        assert [int(t.step(x[0], 1)) for _ in range(2)][0] > 0
