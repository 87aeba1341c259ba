"""Look-alikes of the public real-world models (tests/support/real_models.py: MLPerf Tiny as its
authors ship it, with uint8 / float32 ends and old converter paths; TFLM's hello_world,
micro_speech, person_detect; MCUNet's PADs, negative weight scales and requantizing RESHAPE):
``tinylora inspect`` accepts each, ``Model.forward`` equals TFLM byte for byte on 200 random
inputs, the generated forward equals it on the host (and one model on Cortex-M4), and the
training step either verifies on the host or is refused with a message that names why.
int16-activation, LSTM and SVDF models are refused naming the op.

``python scripts/check_real_models.py OUT`` runs the whole table (cortex-m4 and gen included).
"""
from __future__ import annotations

import numpy as np
import pytest
from support import oracles, real_models
from support.tools import require

from tinylora import ConfigError, ModelError, load_tflite, verify
from tinylora.cli import main as cli_main
from tinylora.codegen import project as gen
from tinylora.codegen.vectors import VectorSet
from tinylora.ref.trainer import LoRAConfig, Trainer
from tinylora.verify_forward import forward_inputs, verify_forward

pytestmark = pytest.mark.slow  # converts ~20 Keras models (about 2 minutes on 2 busy cores)

N_INPUTS = 200
SUPPORTED = [n for n in real_models.MODELS if n not in real_models.REFUSED]
# the training step refuses these, and its message must say why
STEP_REFUSALS = {   # verify's loss as a user leaves it: inferred from the model's end
    "hello_world_int8": "ends in FULLY_CONNECTED, not SOFTMAX, so tinylora will not guess",
    "hello_world_float_io": "ends in FULLY_CONNECTED, not SOFTMAX, so tinylora will not guess",
    "mcunet_like_negative_scales": "negative weight scales that do not fold",
}


# the generated forward on the host: one of each kind of end, edit and converter path (the
# script runs all of them); the training step: every refusal, and one model of each kind
C_FORWARD = ["kws_uint8_io", "hello_world_float_io", "mcunet_like_negative_scales",
             "mcunet_like_zero_pads", "micro_speech_new_shape_only", "fc_keep_dims",
             "kws_per_tensor", "person_detect", "micro_speech_depthwise"]
# classifiers that end in logits (no SOFTMAX): the loss is told, never guessed
LOGITS = {name: "xent" for name in ("kws_logits_nobias", "mcunet_like_zero_pads",
                                    "mcunet_like_negative_scales")}
C_STEP = [*STEP_REFUSALS, "person_detect", "micro_speech_depthwise", "kws_old_quantizer",
          "kws_per_tensor", "kws_logits_nobias", "mcunet_like_zero_pads", "fc_keep_dims",
          "kws_uint8_io", "ic_resnet8_uint8_io", "resnet8_old_quantizer_float_io"]
# the step in the model's own input type (float32 / uint8 ends, QUANTIZE as its first op) and
# MSE on one output: (model, loss) trained in one program per target
END_CASES = [("ad_float_io", "mse"), ("kws_float_io", "xent"), ("kws_uint8_io", "xent"),
             ("hello_world_int8", "mse")]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "zoo-cache"
    return {name: real_models.build(name, cache) for name in real_models.MODELS}


@pytest.fixture(scope="module")
def paths(models, tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    out = {}
    for name, data in models.items():
        out[name] = root / f"{name}.tflite"
        out[name].write_bytes(data)
    return out


@pytest.mark.parametrize("name", SUPPORTED)
def test_inspect_and_forward_equal_tflm(models, paths, name, capsys):
    assert cli_main(["inspect", str(paths[name])]) == 0
    assert "every op is supported" in capsys.readouterr().out
    data = models[name]
    model = load_tflite(data)
    x = forward_inputs(model, N_INPUTS, seed=sum(map(ord, name)))
    want = oracles.tflm_outputs(data, x)
    got = model.forward(x).reshape(N_INPUTS, -1)
    assert got.dtype == want.dtype and got.shape == want.shape, (got.dtype, want.dtype)
    diff = int((got.view(np.uint8) != want.view(np.uint8)).sum())
    assert diff == 0, f"{name}: {diff} of {got.nbytes} bytes differ from TFLM"
    first = model.forward(x[:8], upto=1).reshape(8, -1)
    assert len(np.unique(first, axis=0)) > 1, "the random inputs do not reach the model"


def test_the_ends_and_edits_are_what_the_converters_write(models):
    m = load_tflite(models["kws_uint8_io"])
    assert (m.input_dtype, m.output_dtype) == ("UINT8", "UINT8")
    assert m.layers[0].kind == m.layers[-1].kind == "QUANTIZE"
    assert load_tflite(models["ad_float_io"]).input_dtype == "FLOAT32"
    neg = load_tflite(models["mcunet_like_negative_scales"])
    assert any(l.options.get("signed_multipliers") for l in neg.layers)
    assert neg.layers[-1].kind == "RESHAPE" and neg.layers[-1].options.get("requantizes")
    pads = [l for l in load_tflite(models["mcunet_like_zero_pads"]).layers if l.kind == "PAD"]
    assert any(l.input_shape == l.output_shape for l in pads)
    fc = load_tflite(models["fc_keep_dims"]).layers[0]
    assert fc.kind == "FULLY_CONNECTED" and fc.options["keep_num_dims"]
    shapes = [l for l in load_tflite(models["micro_speech_new_shape_only"]).layers
              if l.kind == "RESHAPE"]
    assert shapes and all(len(l.inputs) == 1 for l in shapes)


@pytest.mark.parametrize("name", C_FORWARD)
def test_generated_forward_equals_numpy_on_host(paths, name):
    require("host")
    result = verify_forward("host", paths[name], inputs=8)
    assert result.ok and result.differing_bytes == 0, result.problems[:3]


def test_generated_forward_on_cortex_m4_uint8_ends_and_negative_scales(paths):
    require("cortex-m4")
    runs = [("kws_uint8_io", "portable"), ("mcunet_like_negative_scales", "portable"),
            ("mcunet_like_negative_scales", "cmsis-nn")]   # negative multipliers in CMSIS-NN
    for name, backend in runs:
        result = verify_forward("cortex-m4", paths[name], inputs=6, backend=backend)
        assert result.ok and result.differing_bytes == 0, (name, backend, result.problems[:3])


@pytest.mark.parametrize("name", C_STEP)
def test_training_step_verifies_or_is_refused_with_the_reason(paths, name):
    if name in STEP_REFUSALS:
        with pytest.raises((ConfigError, ModelError), match=STEP_REFUSALS[name]):
            verify.verify("host", paths[name], steps=2, loss=LOGITS.get(name))
        if name.startswith("hello_world"):   # told xent: one output is no classifier either
            with pytest.raises(ConfigError, match="one output: a regression model"):
                verify.verify("host", paths[name], steps=2, loss="xent")
        return
    require("host")
    result = verify.verify("host", paths[name], steps=2, loss=LOGITS.get(name))
    assert result.ok, result.summary()


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
def test_step_with_float_and_uint8_inputs_and_one_output_mse_equals_numpy(paths, target, tmp_path):
    require(target)
    cases = [verify.model_case(load_tflite(paths[name]), steps=3, loss=loss, prefix=f"m{k}")
             for k, (name, loss) in enumerate(END_CASES)]
    ae = cases[0]   # reconstruction: real float targets (the input itself), quantized as numpy does
    cases.append(verify.Case("m4", verify.model_case(ae.trainer.model, steps=3, loss="mse").trainer,
                             VectorSet(ae.vectors.inputs, ae.vectors.inputs)))
    x = [c.vectors.inputs for c in cases[:4]]
    assert [a.dtype for a in x] == [np.float32, np.float32, np.uint8, np.int8]
    assert x[0].std() > 0.5 and x[2].max() > 127   # real float values; uint8 beyond int8's range
    result = verify.run_cases(target, cases, tmp_path)
    assert result.ok, result.summary()
    assert [c.steps for c in result.cases] == [3] * 5 and result.differing_bytes == 0
    step_c = (tmp_path / "m0.c").read_text()
    assert "m0_step(m0_state *state, const float *input" in step_c   # the model's own type
    assert "tl_quantize_f32_s8(" in step_c and "tl_quantize_u8_s8(" in (tmp_path / "m2.c").read_text()


def test_gen_refuses_a_float_input_model_saying_the_app_stores_int8_samples(paths):
    with pytest.raises(ConfigError, match="takes float32 input .*application stores and "
                       "receives int8 samples only.*training step itself takes float32"):
        gen.plan_project("nucleo_f746zg", model_path=str(paths["kws_float_io"]))


@pytest.mark.parametrize("name", sorted(real_models.REFUSED))
def test_recurrent_and_int16_models_are_refused_naming_the_op(paths, name, capsys):
    assert cli_main(["inspect", str(paths[name])]) == 1
    assert real_models.REFUSED[name] in capsys.readouterr().out
    with pytest.raises(ModelError, match=real_models.REFUSED[name]):
        load_tflite(paths[name])


def test_uint8_output_end_is_not_taken_as_the_logits(models):
    m = load_tflite(models["kws_uint8_io"])
    t = Trainer(m, LoRAConfig(rank=2, loss="xent"))
    assert m.layers[t.logits_layer].kind == "FULLY_CONNECTED"   # below SOFTMAX and QUANTIZE
    with pytest.raises(ConfigError, match="cannot join it"):
        Trainer(load_tflite(models["mcunet_like_negative_scales"]),
                LoRAConfig(targets=(15,), loss="xent"))
