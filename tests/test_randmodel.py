"""Self-test of the random model generator and the oracle runners (no tinylora modules)."""

import numpy as np
import pytest
from support import oracles, randmodel

N_MODELS = 30


@pytest.mark.parametrize("kind", randmodel.FAMILIES)
def test_random_models_run_in_tflm(kind):
    for seed in range(N_MODELS):
        rng = np.random.default_rng([2024, seed])
        model = randmodel.random_model(rng, kind)
        x = randmodel.random_input(rng, model, 2)
        try:
            y = oracles.tflm_run(model, x)
        except Exception as e:  # pragma: no cover - message for the failure report
            pytest.fail(f"seed {seed}: {e}\n{randmodel.describe(model)}")
        assert y.dtype == np.int8
        assert y.shape == (2,) + randmodel.output_shape(model), randmodel.describe(model)


def test_litert_reference_agrees_on_convolutions():
    # Convolutions round the same way in both oracles (FULLY_CONNECTED does not).
    rng = np.random.default_rng(7)
    for op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        model = randmodel.random_model(rng, "wide", op=op)
        x = randmodel.random_input(rng, model, 2)
        np.testing.assert_array_equal(oracles.tflm_run(model, x), oracles.litert_ref_run(model, x))


def test_generator_is_deterministic():
    a = [randmodel.random_model(np.random.default_rng(s)) for s in range(5)]
    b = [randmodel.random_model(np.random.default_rng(s)) for s in range(5)]
    assert a == b


def test_model_layout():
    model = randmodel.random_model(np.random.default_rng(3), "cnn", softmax=True, edge="none")
    assert model[4:8] == b"TFL3"
    text = randmodel.describe(model)
    for word in ("RESHAPE", "FULLY_CONNECTED", "SOFTMAX", "fc0", "flatten"):
        assert word in text
    assert text.rstrip().endswith("scale=[0.00390625] zp=[-128]")
    assert len(randmodel.input_shape(model)) == 3 and len(randmodel.output_shape(model)) == 1


def test_random_input_shapes():
    rng = np.random.default_rng(0)
    for dist in ("uniform", "extreme", "narrow"):
        x = randmodel.random_input(rng, (4, 5, 3), 7, dist=dist)
        assert x.shape == (7, 4, 5, 3) and x.dtype == np.int8


def test_unknown_override_rejected():
    with pytest.raises(TypeError):
        randmodel.random_model(np.random.default_rng(0), "mlp", width=[3])


def test_large_softmax_refused():
    # Both interpreters abort the process on int8 softmax depths >= 512 with small logits.
    with pytest.raises(ValueError):
        randmodel.random_model(
            np.random.default_rng(0),
            "cnn",
            input_shape=(16, 16, 4),
            convs=[dict(op="CONV_2D", out_channels=4, padding="SAME", stride=(1, 1))],
            fc_widths=[],
            softmax=True,
        )


def test_arena_report():
    model = randmodel.random_model(np.random.default_rng(1), "mlp")
    report = oracles.tflm_arena_report(model)
    assert "Arena allocation total" in report
