"""Whole zoo models (tests/support/zoo.py) in tinylora's reference: the DAG loader, the float
ends, the arena's liveness over the DAG and the refusals of what is not supported yet.

``Model.forward`` must equal tflite-micro on 200 random inputs per model: 0 differing bytes,
float32 ends included.
"""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from tests.support import oracles, zoo
from tinylora import ConfigError, InputError, LoRAConfig, load_tflite
from tinylora.codegen.frozen import plan_frozen
from tinylora.codegen.step import plan_step
from tinylora.commands import cmd_inspect
from tinylora.planning.arena import inference_plan
from tinylora.ref import lora
from tinylora.ref.trainer import Trainer

pytestmark = pytest.mark.slow  # converts the zoo's Keras models (~45 s on 2 busy cores)

N_INPUTS = 200


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "zoo-cache"  # one conversion per session
    return {name: zoo.build(name, cache) for name in zoo.MODELS}


def _random_inputs(model, rng, n):
    shape = (n,) + model.input_shape
    if model.input_dtype == "FLOAT32":
        return (rng.standard_normal(shape) * 2).astype(np.float32)
    return rng.integers(-128, 128, size=shape).astype(np.int8)


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_forward_equals_tflm_on_200_inputs(models, name):
    model = load_tflite(models[name])
    rng = np.random.default_rng(sum(map(ord, name)))
    x = _random_inputs(model, rng, N_INPUTS)
    want = oracles.tflm_outputs(models[name], x)
    got = np.concatenate([model.forward(x[i:i + 50]) for i in range(0, N_INPUTS, 50)]).reshape(N_INPUTS, -1)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, got.shape, want.shape)
    diff = int((got.view(np.uint8) != want.view(np.uint8)).sum())
    assert diff == 0, f"{name}: {diff} of {got.nbytes} bytes differ from TFLM"
    first = model.forward(x[:8], upto=1).reshape(8, -1)
    assert len(np.unique(first, axis=0)) > 1, "the random inputs do not reach the model"


def test_float_ends_and_dag(models):
    ae = load_tflite(models["autoencoder_float_io"])
    assert (ae.input_dtype, ae.output_dtype) == ("FLOAT32", "FLOAT32")
    assert ae.layers[0].kind == "QUANTIZE" and ae.layers[-1].kind == "DEQUANTIZE"
    with pytest.raises(InputError, match="float32"):
        ae.forward(np.zeros(ae.input_shape, np.int8))
    assert load_tflite(models["autoencoder"]).is_chain
    resnet = load_tflite(models["resnet8"])
    assert not resnet.is_chain
    adds = [l for l in resnet.layers if l.kind == "ADD"]
    assert len(adds) == 3 and all(len(l.inputs) == 2 for l in adds)


def test_inference_arena_keeps_residual_inputs_alive(models):
    for name in ("resnet8", "mbv2_block"):
        model = load_tflite(models[name])
        plan = inference_plan(model)
        by_tensor = {model.input_tensor: plan.buffers[0]}
        by_tensor.update({l.output: plan.buffers[1 + k] for k, l in enumerate(model.layers)})
        for layer in model.layers:
            for t in layer.inputs:
                assert by_tensor[t].first < layer.index <= by_tensor[t].last, (name, layer.index)
        # a skip tensor outlives the next op: the DAG needs more than two live activations
        longest = max(b.last - b.first for b in plan.buffers)
        assert longest > 1, name


def test_inspect_lists_every_zoo_model_as_supported(models, tmp_path, capsys):
    for name, data in models.items():
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(data)
        assert cmd_inspect(argparse.Namespace(model=str(path))) == 0, name
        assert "every op is supported" in capsys.readouterr().out


def test_numpy_trains_the_dags_and_the_generated_step_trains_through_them(models):
    resnet = load_tflite(models["resnet8"])
    assert list(Trainer(resnet).adapters)   # residual graphs train in numpy (test_dag_train.py)
    pointwise = [layer.index for layer in resnet.layers if lora.is_adaptable(layer)
                 and layer.kind == "CONV_2D"]
    below_a_fork = Trainer(resnet, LoRAConfig(targets=pointwise[:1]))
    kinds = [op["kind"] for op in plan_step(below_a_fork).ops]   # the frozen ops' C backward
    assert "calls" in kinds, kinds
    autoencoder = Trainer(load_tflite(models["autoencoder"]), loss="mse")
    mse_ops = [op for op in plan_step(autoencoder).ops if op["kind"] == "loss"]   # MSE in C too
    assert [(op["loss"], op["classes"], op["probs"]) for op in mse_ops] == [("mse", 640, None)]
    float_io = plan_step(Trainer(load_tflite(models["autoencoder_float_io"]), loss="mse"))
    first = float_io.ops[0]   # the input QUANTIZE reads the float32 input in the arena
    assert first["step"]["call"] == "tl_quantize_f32_s8" and first["src"].startswith("TL_AT(float, ")
    assert [op["classes"] for op in float_io.ops if op["kind"] == "loss"] == [640]
    # the C forward runs the whole DAG (tests/test_codegen_zoo.py compares its bytes)
    calls = [s["call"] for s in plan_frozen(resnet).steps]
    assert calls.count("tl_add_s8") == 3 and "tl_avg_pool_s8" in calls


def test_head_training_below_a_new_op_runs_in_numpy_and_in_the_generated_step(models):
    """DS-CNN's AVERAGE_POOL_2D lies below its FC head: the numpy trainer runs it forward,
    and so does the generated step (tests/test_codegen_zoo.py compares its bytes)."""
    m = load_tflite(models["ds_cnn"])
    t = Trainer(m, LoRAConfig(rank=2), lr=0.5)
    assert list(t.adapters) == [10] and m.layers[9].kind == "AVERAGE_POOL_2D"
    rng = np.random.default_rng(2)
    x = rng.integers(-128, 128, size=(2,) + m.input_shape).astype(np.int8)
    label = int(np.argmin(m.forward(x[0])))
    first = int(t.step(x[0], label))
    for _ in range(15):
        last = int(t.step(x[0], label))
    assert last < first, (first, last)
    frozen = [op["step"]["call"] for op in plan_step(t).ops if op["kind"] == "frozen"]
    assert "tl_avg_pool_s8" in frozen
    pd = Trainer(load_tflite(models["person_detect_like"]))
    assert [pd.model.layers[i].kind for i in pd.adapters] == ["CONV_2D"]  # its last 1x1 conv


def test_regression_models_train_with_mse_and_are_not_taken_as_classes(models):
    ae = load_tflite(models["autoencoder"])
    with pytest.raises(ConfigError, match="will not guess its loss"):
        Trainer(ae)
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, size=(4,) + ae.input_shape).astype(np.int8)
    t = Trainer(ae, LoRAConfig(loss="mse", targets=(9,)), lr=0.03, calibration=x)
    # reconstruction: the target is the input itself, as int8 values at the output's scale
    target = np.clip(np.round(x[0].astype(float) * ae.input_scale / ae.output_scale)
                     + ae.output_zero_point, -128, 127).astype(np.int8)
    first = int(t.step(x[0], target))
    for _ in range(20):
        last = int(t.step(x[0], target))
    assert last < first, (first, last)
