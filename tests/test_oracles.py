"""Model.forward against the real kernels: every output byte, 0 mismatches.

Oracles: the tflite-micro interpreter (TFLM's reference int8 kernels: what runs on the
chip) and desktop LiteRT's BUILTIN_REF resolver under its per-op rounding rule.
"""
import numpy as np
import pytest
from support import keras_zoo, oracles, randmodel

import tinylora
from tinylora import datasets

FAMILIES = randmodel.FAMILIES


def _compare(model_bytes, x, oracle="tflm"):
    m = tinylora.load_tflite(model_bytes)
    if oracle == "tflm":
        want, got = oracles.tflm_run(model_bytes, x), m.forward(x)
    else:
        want, got = oracles.litert_ref_run(model_bytes, x), m.forward(x, rounding="litert")
    want = want.reshape(got.shape)
    bad = int(np.count_nonzero(got != want))
    assert bad == 0, (f"{bad} of {got.size} outputs differ from {oracle}\n"
                      f"{randmodel.describe(model_bytes)}")
    return got.size


def test_bundled_model_matches_tflm_on_every_digit_and_noise(example_bytes):
    m = tinylora.load_tflite(example_bytes)
    images, _ = datasets.load_digits()
    digits = datasets.to_model_input(m, images[..., None].astype(np.float32) / 16)
    noise = np.random.default_rng(0).integers(-128, 128, (500,) + m.input_shape).astype(np.int8)
    assert _compare(example_bytes, np.concatenate([digits, noise])) == (1797 + 500) * 10


def test_bundled_model_matches_litert_reference(example_bytes):
    x = np.random.default_rng(1).integers(-128, 128, (300, 8, 8, 1)).astype(np.int8)
    assert _compare(example_bytes, x, oracle="litert") == 3000


@pytest.mark.parametrize("family", FAMILIES)
def test_random_models_match_tflm(family):
    rng = np.random.default_rng(1000 + FAMILIES.index(family))
    compared = 0
    for _ in range(100):
        model = randmodel.random_model(rng, family)
        compared += _compare(model, randmodel.random_input(rng, model, 4))
    print(f"{family}: {compared} outputs compared with TFLM, 0 differ")
    if family == "wide":
        assert compared >= 1_000_000


@pytest.mark.parametrize("family", FAMILIES)
def test_random_models_match_litert_reference(family):
    rng = np.random.default_rng(2000 + FAMILIES.index(family))
    for _ in range(40):
        model = randmodel.random_model(rng, family)
        _compare(model, randmodel.random_input(rng, model, 4), oracle="litert")


@pytest.mark.parametrize("op", ["FULLY_CONNECTED", "CONV_2D"])
def test_per_tensor_multiplier_is_formed_in_double(op):
    """Models built so that the two candidate multiplier rules give different bytes."""
    rng = np.random.default_rng(4000)
    for _ in range(10):
        model, x, expected = randmodel.multiplier_probe_model(rng, op)
        assert expected["double_product"] != expected["float32_product"]
        got = int(tinylora.load_tflite(model).forward(x).ravel()[0])
        assert got == int(oracles.tflm_run(model, x).ravel()[0]) == expected["double_product"]


def test_litert_rounding_rule_is_needed_for_fully_connected():
    """The per-op rule is real: on FC models double rounding differs from LiteRT somewhere."""
    rng = np.random.default_rng(3000)
    differ = 0
    for _ in range(40):
        model = randmodel.random_model(rng, "mlp")
        x = randmodel.random_input(rng, model, 16)
        m = tinylora.load_tflite(model)
        differ += int(np.count_nonzero(m.forward(x) != oracles.litert_ref_run(model, x).reshape(-1, *m.output_shape)))
    assert differ > 0


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("keras_zoo")


@pytest.mark.parametrize("name", sorted(keras_zoo.ZOO))
def test_keras_converted_models_match_tflm(name, zoo_cache):
    model = keras_zoo.build(name, zoo_cache)
    rng = np.random.default_rng(sorted(keras_zoo.ZOO).index(name))
    shape = tinylora.load_tflite(model).input_shape
    x = rng.integers(-128, 128, (64,) + shape).astype(np.int8)
    _compare(model, x)
    _compare(model, x[:16], oracle="litert")
