"""Every op the C generator emits, one single-op model each (built with test_newops' builder,
batch 1), through ``generate_frozen_c`` on the host and rv32imc: the generated forward equals
``Model.forward`` byte for byte. The zoo (tests/test_codegen_zoo.py) never reaches MAX_POOL_2D,
PAD / PADV2, CONCATENATION, int8 QUANTIZE, LOGISTIC, HARD_SWISH, or an ADD with a constant
(broadcast) operand; these do (and a requantizing RESHAPE alone: a chain, copied as before).
"""
from __future__ import annotations

import os
from types import SimpleNamespace as NS

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as fb
from test_newops import ACT, OneOp, rand_int8, rand_quant

from tinylora import emulate, load_tflite
from tinylora.codegen.frozen import generate_frozen_c, output_name, plan_frozen
from tinylora.codegen.selftest import runner_main_c
from tinylora.planning.forward import plan_forward
from tinylora.ref import pooling
from tinylora.ref.qparams import Quant

N_INPUTS = 12


def _pool(kind, rng):
    q = rand_quant(rng, 0.005, 0.1)
    g = OneOp()
    i, o = g.tensor([1, 7, 9, 5], quant=q), None
    oh, _ = pooling.pool_geometry(7, 3, 2, "SAME")
    ow, _ = pooling.pool_geometry(9, 2, 2, "SAME")
    o = g.tensor([1, oh, ow, 5], quant=q)
    opt = fb.Pool2DOptionsT()
    opt.padding, opt.strideH, opt.strideW, opt.filterHeight, opt.filterWidth = fb.Padding.SAME, 2, 2, 3, 2
    opt.fusedActivationFunction = ACT["RELU6"]
    return g.finish(getattr(fb.BuiltinOperator, kind), [i], o, fb.BuiltinOptions.Pool2DOptions, opt)


def _pad(kind, rng):
    q = rand_quant(rng)
    g = OneOp()
    i = g.tensor([1, 4, 3, 6], quant=q)
    inputs = [i, g.tensor([4, 2], fb.TensorType.INT32,
                          data=np.array([[0, 0], [1, 2], [0, 1], [2, 0]], np.int32))]
    if kind == "PADV2":
        inputs.append(g.tensor([1], quant=q, data=np.array([77], np.int8)))
    o = g.tensor([1, 7, 4, 8], quant=q)
    if kind == "PAD":
        return g.finish(fb.BuiltinOperator.PAD, inputs, o, fb.BuiltinOptions.PadOptions, fb.PadOptionsT())
    return g.finish(fb.BuiltinOperator.PADV2, inputs, o, fb.BuiltinOptions.PadV2Options, fb.PadV2OptionsT())


def _add_const(rng):
    q1, q2 = rand_quant(rng), rand_quant(rng)
    qo = rand_quant(rng, 0.5 * max(q1.scale, q2.scale), 4 * max(q1.scale, q2.scale))
    g = OneOp()
    a = g.tensor([1, 3, 4, 6], quant=q1)
    b = g.tensor([1, 1, 1, 6], quant=q2, data=rand_int8(rng, (6,)))
    o = g.tensor([1, 3, 4, 6], quant=qo)
    opt = fb.AddOptionsT()
    opt.fusedActivationFunction = ACT["RELU"]
    return g.finish(fb.BuiltinOperator.ADD, [a, b], o, fb.BuiltinOptions.AddOptions, opt)


def _concat(rng):
    q = rand_quant(rng)
    g = OneOp()
    i = g.tensor([1, 2, 3, 4], quant=q)
    o = g.tensor([1, 2, 6, 4], quant=q)
    opt = fb.ConcatenationOptionsT()
    opt.axis = 2
    return g.finish(fb.BuiltinOperator.CONCATENATION, [i, i], o,
                    fb.BuiltinOptions.ConcatenationOptions, opt, graph_inputs=[i])


def _unary(kind, rng):
    q_in = rand_quant(rng, 1e-3, 0.2)
    q_out = {"LOGISTIC": Quant(1.0 / 256, -128)}.get(kind, rand_quant(rng, q_in.scale / 4, q_in.scale * 4))
    g = OneOp()
    i = g.tensor([1, 300], quant=q_in)
    o = g.tensor([1, 300], quant=q_out)
    if kind == "RESHAPE":   # input straight to output, requantizing
        s = g.tensor([2], fb.TensorType.INT32, data=np.array([1, 300], np.int32))
        opt = fb.ReshapeOptionsT()
        opt.newShape = [1, 300]
        return g.finish(fb.BuiltinOperator.RESHAPE, [i, s], o, fb.BuiltinOptions.ReshapeOptions, opt)
    options = {"QUANTIZE": (fb.BuiltinOptions.QuantizeOptions, fb.QuantizeOptionsT()),
               "HARD_SWISH": (fb.BuiltinOptions.HardSwishOptions, fb.HardSwishOptionsT()),
               "LOGISTIC": (0, None)}[kind]
    return g.finish(getattr(fb.BuiltinOperator, kind), [i], o, *options)


MODELS = {
    "max_pool": lambda r: _pool("MAX_POOL_2D", r),
    "avg_pool": lambda r: _pool("AVERAGE_POOL_2D", r),
    "pad": lambda r: _pad("PAD", r),
    "padv2": lambda r: _pad("PADV2", r),
    "add_const": _add_const,
    "concat": _concat,
    "quantize": lambda r: _unary("QUANTIZE", r),
    "logistic": lambda r: _unary("LOGISTIC", r),
    "hard_swish": lambda r: _unary("HARD_SWISH", r),
    "reshape_copy": lambda r: _unary("RESHAPE", r),
}
CALLS = {"max_pool": "tl_max_pool_s8", "avg_pool": "tl_avg_pool_s8", "pad": "tl_pad_s8",
         "padv2": "tl_pad_s8", "add_const": "tl_add_s8", "concat": "tl_concat_s8",
         "quantize": "tl_quantize_s8", "logistic": "tl_logistic_s8",
         "hard_swish": "tl_hard_swish_s8", "reshape_copy": None}  # a chain: the copy loop


@pytest.fixture(scope="module")
def cases():
    out = {}
    for k, name in enumerate(MODELS):
        rng = np.random.default_rng(500 + k)
        model = load_tflite(MODELS[name](rng))
        x = rand_int8(rng, (N_INPUTS,) + tuple(model.input_shape))
        x[-2:] = rng.choice(np.array([-128, 127], np.int8), (2,) + tuple(model.input_shape))
        out[name] = (model, x, model.forward(x))
    return out


def test_each_model_calls_its_kernel(cases):
    for name, (model, _, _) in cases.items():
        want = [CALLS[name]] if CALLS[name] else []
        assert [s["call"] for s in plan_frozen(model).steps] == want, name


@pytest.mark.parametrize("target", ["host", "rv32imc"])
def test_single_op_forward_equals_numpy(cases, target, tmp_path):
    ok, why = emulate.available(target)
    if not ok:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(why)
        pytest.skip(why)
    files = []
    for name, (model, x, _) in cases.items():
        path = tmp_path / f"{name}.c"
        path.write_text(generate_frozen_c(model, x, prefix=name))
        files.append(path)
    (tmp_path / "main.c").write_text(runner_main_c([f"{n}_run_tests" for n in cases], quant_cases=False))
    elf = emulate.build(target, [*files, tmp_path / "main.c"], tmp_path)
    run = emulate.run(target, elf, timeout=300)
    report = emulate.parse_report(run.stdout, run.returncode)
    assert not report.errors
    for name, (_, x, want) in cases.items():
        for i in range(len(x)):
            got = report.values[output_name(name, i)]
            assert got == want[i].tobytes(), f"{name} sample {i}: C {got.hex()} vs {want[i].tobytes().hex()}"


# --------------------------------------------------------------------------- the DAG planner


def _graph(edges, output):
    """A stand-in model for the planner: (kind, inputs, output) per layer, 64-byte tensors."""
    layers = [NS(index=k, kind=kind, inputs=tuple(ins), output=out, output_shape=(64,),
                 output_dtype="INT8") for k, (kind, ins, out) in enumerate(edges)]
    return NS(layers=layers, input_tensor=0, output_tensor=output, input_shape=(64,),
              output_shape=(64,), input_dtype="INT8", output_dtype="INT8")


def test_planner_reshapes_alias_the_caller_buffers():
    fp = plan_forward(_graph([("RESHAPE", [0], 1), ("ADD", [1, 1], 2), ("RESHAPE", [2], 3)], 3))
    assert fp.aliased == {0, 2} and fp.buffers == []
    assert fp.slots[1].expr() == "input" and fp.slots[2].expr() == "output"
    copy = plan_forward(_graph([("RESHAPE", [0], 1)], 1))   # input straight to output: copies
    assert copy.aliased == set() and copy.slots[1].expr() == "output"


def test_planner_keeps_a_skip_connection_until_its_add():
    fp = plan_forward(_graph([("CONV_2D", [0], 1), ("CONV_2D", [1], 2), ("CONV_2D", [2], 3),
                              ("ADD", [1, 3], 4), ("SOFTMAX", [4], 5)], 5))
    life = {b.name: (b.first, b.last) for b in fp.buffers}
    assert life == {"t1": (0, 3), "t2": (1, 2), "t3": (2, 3), "t4": (3, 4)}
    # t1 lives through ops 0..3, so t2 and t3 cannot take its bytes; t2 is dead when t4 is born
    assert fp.slots[2] != fp.slots[1] and fp.slots[3] not in (fp.slots[1], fp.slots[2])
    assert fp.scratch_bytes == fp.peak_bytes == 3 * 64
