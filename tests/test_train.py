"""The integer LoRA trainer: invariants, gradients and saturation."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import randmodel
from support.gradcase import gradient_case

import tinylora
from tinylora import datasets
from tinylora.codegen import step as step_module
from tinylora.codegen.step import generate_step, plan_step
from tinylora.errors import ConfigError, InputError
from tinylora.formats.adapter import Adapter
from tinylora.ref import lora, quant
from tinylora.ref.config import LoRAConfig
from tinylora.ref.lora import sparsify
from tinylora.ref.trainer import Trainer


@pytest.fixture(scope="module")
def data(model):
    sp = datasets.digits_split(0)
    return model.quantize(sp["x_train"][:300]), sp["y_train"][:300].astype(int)


def _train(model, data, steps=60, **kw):
    X, Y = data
    kw.setdefault("lr", 0.01)
    t = Trainer(model, kw.pop("config", LoRAConfig(rank=4)), calibration=X[:32], **kw)
    losses = [t.step(X[i % len(X)], Y[i % len(Y)]) for i in range(steps)]
    return t, losses


def test_fresh_adapter_equals_base_model(model, data):
    t = Trainer(model, LoRAConfig(rank=4), calibration=data[0][:32])
    noise = np.random.default_rng(0).integers(-128, 128, (200, 8, 8, 1)).astype(np.int8)
    x = np.concatenate([data[0], noise])
    base = model.forward(x, upto=t.logits_layer + 1)
    assert np.array_equal(t.logits(x), base)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_recompute_changes_no_bit(model, data, seed):
    runs = {mode: _train(model, data, seed=seed, recompute=mode) for mode in ("none", "all", "auto")}
    ref_bytes, ref_loss = runs["none"][0].adapter.to_bytes(), runs["none"][1]
    for mode, (t, losses) in runs.items():
        assert t.adapter.to_bytes() == ref_bytes, mode
        assert losses == ref_loss, mode
    assert len(runs["all"][0].schedule) > len(runs["none"][0].schedule)  # it really recomputes


def test_recompute_all_frees_and_regenerates(model, data):
    t = Trainer(model, LoRAConfig(rank=2), recompute="all", calibration=data[0][:32])
    recomputed = [op for op in t.schedule if op.recompute]
    assert recomputed and all(op.op in ("forward", "lora_forward") for op in recomputed)


def test_same_seed_same_bytes_other_seed_differs(model, data):
    a = _train(model, data, seed=5)[0].adapter.to_bytes()
    b = _train(model, data, seed=5)[0].adapter.to_bytes()
    c = _train(model, data, seed=6)[0].adapter.to_bytes()
    assert a == b and a != c


def test_threshold_zero_equals_dense_and_threshold_prunes(model, data):
    dense = _train(model, data)[0].adapter.to_bytes()
    zero = _train(model, data, grad_threshold=0, grad_density=1.0)[0].adapter.to_bytes()
    assert zero == dense
    assert _train(model, data, grad_threshold=50)[0].adapter.to_bytes() != dense


@settings(max_examples=300)
@given(st.lists(st.integers(-2**31, 2**31 - 1), min_size=1, max_size=60),
       st.integers(0, 2**20), st.one_of(st.none(), st.floats(0.01, 1.0)))
def test_sparsify_keeps_the_largest_with_index_ties(values, threshold, density):
    delta = np.array(values, np.int64)
    out = sparsify(delta, threshold, None if density is None else int(np.ceil(density * delta.size)))
    kept = np.flatnonzero(out)
    assert np.array_equal(out[kept], delta[kept])
    assert np.all(np.abs(delta[kept]) >= threshold)
    if density is None:
        assert set(kept) == set(np.flatnonzero((np.abs(delta) >= threshold) & (delta != 0)))
        assert threshold > 0 or np.array_equal(out, delta)   # threshold 0: dense, exactly
    else:
        k = int(np.ceil(density * delta.size))
        assert len(kept) <= k
        dropped = [i for i in range(delta.size) if i not in set(kept) and abs(delta[i]) >= max(threshold, 1)]
        for i in dropped:  # anything dropped is no larger than what was kept (ties: lower index wins)
            assert all(abs(delta[j]) > abs(delta[i]) or (abs(delta[j]) == abs(delta[i]) and j < i) for j in kept)


def test_sparse_training_applies_at_most_density(model, data):
    t = Trainer(model, LoRAConfig(rank=4), lr=0.01, grad_density=0.1, calibration=data[0][:32])
    X, Y = data
    for i in range(20):
        before = {k: (ad.a_master.copy(), ad.b_master.copy()) for k, ad in t.adapters.items()}
        t.step(X[i], Y[i])
        for k, ad in t.adapters.items():
            for old, new in zip(before[k], (ad.a_master, ad.b_master)):
                assert np.count_nonzero(old != new) <= np.ceil(0.1 * old.size)


def test_accumulation_updates_every_k_steps(model, data):
    X, Y = data
    t = Trainer(model, LoRAConfig(rank=4), lr=0.05, accum_steps=4, calibration=X[:32])
    Y = (Y + 1) % 10  # wrong labels: large gradients
    snap = lambda: b"".join(ad.b_master.tobytes() for ad in t.adapters.values())
    seen = [snap()]
    for i in range(8):
        t.step(X[i], Y[i])
        seen.append(snap())
    assert seen[0] == seen[1] == seen[2] == seen[3] != seen[4]
    assert seen[4] == seen[5] == seen[6] == seen[7] != seen[8]


def test_momentum_changes_the_trajectory(model, data):
    plain = _train(model, data)[0].adapter.to_bytes()
    assert _train(model, data, momentum=0.9)[0].adapter.to_bytes() != plain


def test_adapter_bytes_round_trip(model, data):
    t = _train(model, data)[0]
    blob = t.adapter.to_bytes()
    assert Adapter.from_bytes(blob, model).to_bytes() == blob
    with pytest.raises(tinylora.ModelError, match="damaged"):
        Adapter.from_bytes(blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:], model)


def test_per_layer_ranks_and_bad_configs(model, data):
    t = Trainer(model, LoRAConfig(rank={5: 2, 6: 6}))
    assert {i: ad.k.rank for i, ad in t.adapters.items()} == {5: 2, 6: 6}
    with pytest.raises(ConfigError, match="cannot take a LoRA adapter"):
        Trainer(model, LoRAConfig(targets=(1,)))      # a depthwise conv
    t = Trainer(model, LoRAConfig(targets=(2, 6)))     # a depthwise conv lies between: it
    assert t.tainted == [2, 3, 4, 5, 6]                # has a backward now (issue 11)
    assert [op.layer for op in t.schedule if op.op == "backward"] == [6, 5, 4, 3, 2]
    with pytest.raises(ConfigError, match="no layer"):
        Trainer(model, LoRAConfig(targets=("nope",)))


def test_one_by_one_conv_target_trains():
    rng = np.random.default_rng(4)
    mb = randmodel.random_model(rng, "cnn", input_shape=(6, 5, 3), softmax=True, edge="none",
                                convs=[{"op": "CONV_2D", "kernel": (1, 1), "stride": (1, 1),
                                        "out_channels": 6}], fc_widths=[5])
    m = tinylora.load_tflite(mb)
    assert m.layers[0].kind == "CONV_2D" and m.layers[0].kernel == (1, 1)
    x = randmodel.random_input(rng, mb, 40)
    cfg = LoRAConfig(rank=2, targets=(0, m.layers[-2].index))
    t = Trainer(m, cfg, lr=0.05, calibration=x)
    a0 = t.adapters[0].a_master.copy()
    t.fit(x, np.arange(40) % 5, epochs=2)
    assert np.any(t.adapters[0].b_master) and np.any(t.adapters[0].a_master != a0)


# ---------------------------------------------------------------- gradient correctness

@settings(max_examples=25)
@given(seed=st.integers(0, 10_000))
def test_int8_gradients_agree_with_float_autodiff(seed):
    cosines, _ = gradient_case(seed)   # empty when every output sits on a clamp
    for layer, name, cos in cosines:
        assert cos >= 0.99, (layer, name, cos)


# ---------------------------------------------------------------- saturation

def _lora_forward_bigint(layer, x, a8, b8, k):
    """An independent, element-by-element formulation with Python integers (saturating)."""
    zp_x = int(layer.input_q.zero_point[0])
    w = lora.base_weights(layer)
    out = []
    for row in lora.rows_view(layer, x)[0]:
        xo = [int(v) - zp_x for v in row]
        h = []
        for j in range(a8.shape[0]):
            u = sum(int(a8[j, kk]) * xo[kk] for kk in range(len(xo)))
            h.append(max(-128, min(127, _rescale_ref(u, *k.m_h))))
        ys = []
        for c in range(w.shape[0]):
            acc = sum(int(w[c, kk]) * xo[kk] for kk in range(len(xo))) + (
                int(layer.bias[c]) if layer.bias is not None else 0
            )
            acc = (acc + 2**31) % 2**32 - 2**31
            v = sum(int(b8[c, j]) * h[j] for j in range(len(h)))
            acc = max(-2**31, min(2**31 - 1, acc + _rescale_ref(v, int(k.m_join[0][c]), int(k.m_join[1][c]))))
            y = int(quant.requantize(acc, layer.multiplier[c], layer.shift[c])) + int(layer.output_q.zero_point[0])
            ys.append(max(layer.act_min, min(layer.act_max, y)))
        out.append(ys)
    return out


def _rescale_ref(x, q, shift):
    from fractions import Fraction
    v = Fraction(x * q) * Fraction(2) ** (shift - 31) + Fraction(1, 2)
    return max(-2**31, min(2**31 - 1, v.numerator // v.denominator))


@settings(max_examples=40)
@given(seed=st.integers(0, 10_000), extreme=st.booleans())
def test_lora_forward_saturates_like_big_integer_reference(seed, extreme):
    rng = np.random.default_rng(seed)
    mb = randmodel.random_model(rng, "mlp", widths=[int(rng.integers(2, 24))], softmax=False)
    m = tinylora.load_tflite(mb)
    layer = m.layers[0]
    t = Trainer(m, LoRAConfig(rank=int(rng.integers(1, 5)), loss="xent"), seed=seed)
    ad = t.adapters[0]
    lim = 127 if extreme else 40
    a8 = rng.choice([-127, 127], ad.a8.shape) if extreme else rng.integers(-lim, lim + 1, ad.a8.shape)
    b8 = rng.choice([-127, 127], ad.b8.shape) if extreme else rng.integers(-lim, lim + 1, ad.b8.shape)
    x = rng.choice([-128, 127], (1,) + m.input_shape).astype(np.int8) if extreme else randmodel.random_input(rng, mb, 1)
    y, _ = lora.lora_forward(layer, x, a8, b8, ad.k)
    assert y.reshape(-1).tolist() == [v for row in _lora_forward_bigint(layer, x, a8, b8, ad.k) for v in row]


@settings(max_examples=15)
@given(seed=st.integers(0, 1000), lr=st.sampled_from([1e2, 1e4, 1e6]))
def test_extreme_learning_rates_saturate_without_wrapping(model, data, seed, lr):
    X, Y = data
    rng = np.random.default_rng(seed)
    t = Trainer(model, LoRAConfig(rank=4), lr=lr, seed=seed, calibration=X[:16])
    xs = rng.choice([-128, 127], (6,) + model.input_shape).astype(np.int8)
    for x in xs:
        t.step(x, int(rng.integers(0, 10)))
        for ad in t.adapters.values():
            for master in (ad.a_master, ad.b_master):
                assert master.min() >= lora.MASTER_MIN and master.max() <= lora.MASTER_MAX
            assert np.abs(ad.a8).max() <= 127 and np.abs(ad.b8).max() <= 127
        logits = t.logits(xs)
        assert logits.dtype == np.int8
    # huge steps pin parameters at the rails instead of wrapping around to the other sign
    rails = sum(int(np.count_nonzero(np.abs(ad.b_master) >= lora.MASTER_MAX - 1)) for ad in t.adapters.values())
    assert rails > 0


def test_fit_equals_one_step_per_sample(model, data):
    X, Y = data
    a = Trainer(model, LoRAConfig(), lr=0.01, calibration=X[:32])
    b = Trainer(model, LoRAConfig(), lr=0.01, calibration=X[:32])
    a.fit(X[:50], Y[:50], epochs=1, shuffle=False)
    for x, y in zip(X[:50], Y[:50]):
        b.step(x, y)
    assert a.adapter.to_bytes() == b.adapter.to_bytes() and a.step_count == b.step_count == 50


def test_gradient_cases_are_not_vacuous():
    """The comparison above has something to compare for nearly every seed."""
    compared = sum(bool(gradient_case(seed)[0]) for seed in range(20))
    assert compared >= 17


def test_step_returns_the_loss_and_the_logits_of_its_forward(model, data):
    X, Y = data
    t = Trainer(model, LoRAConfig(rank=4), lr=0.01, calibration=X[:32])
    for i in range(5):
        before = np.asarray(t.logits(X[i: i + 1]), np.int8).reshape(-1)
        result = t.step(X[i], Y[i])
        assert isinstance(result, int) and result == result.loss > 0
        np.testing.assert_array_equal(result.logits, before)


# ---------------------------------------------------------------- mean squared error

@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_mse_gradients_agree_with_float_autodiff(seed):
    cosines, _ = gradient_case(seed, loss="mse")
    for layer, name, cos in cosines:
        assert cos >= 0.99, (layer, name, cos)


def test_mse_loss_value_and_learning(monkeypatch):
    rng = np.random.default_rng(3)
    mb = randmodel.random_model(rng, "mlp", widths=[24, 6], softmax=False, edge="none")
    m = tinylora.load_tflite(mb)
    x = randmodel.random_input(rng, mb, 32)
    with pytest.raises(ConfigError, match="not SOFTMAX.*loss='mse'"):
        Trainer(m)
    t = Trainer(m, LoRAConfig(rank=2, loss="mse"), lr=0.008, calibration=x)
    assert t.config.loss == "mse" and Trainer(m, loss="mse").loss == "mse"
    target = np.clip(m.forward(x[:1])[0].astype(int) + 40, -128, 127).astype(np.int8)
    s = float(m.layers[t.logits_layer].output_q.scale[0])
    first = t.step(x[0], target)
    y = first.logits.astype(float)
    want = np.mean((y - target) ** 2) * s * s * 1024
    assert abs(int(first) - want) <= 1 + 1e-6 * want, (int(first), want)
    losses = [int(t.step(x[0], target)) for _ in range(40)]
    assert losses[-1] < 0.5 * int(first), (int(first), losses[-5:])
    with pytest.raises(InputError, match="int8 target"):
        t.step(x[0], 3)
    c_step = generate_step(t)["tl_train.c"]
    assert "tl_mse_grad_s8(&tl_train_mse, 6," in c_step and "tl_xent_grad_s8" not in c_step
    monkeypatch.setattr(step_module, "MSE_MAX_OUTPUTS", 5)
    with pytest.raises(ConfigError, match="6 outputs.*at most 5"):
        plan_step(t)


def test_mse_refused_through_a_softmax(model):
    with pytest.raises(ConfigError, match="no backward through a softmax"):
        Trainer(model, LoRAConfig(loss="mse"))
    with pytest.raises(ConfigError, match="loss must be one of"):
        Trainer(model, loss="l1")


def test_default_target_of_a_model_without_fc_is_its_last_1x1_conv():
    rng = np.random.default_rng(8)
    mb = randmodel.random_model(rng, "cnn", input_shape=(6, 6, 3), softmax=True, edge="none",
                                convs=[{"op": "CONV_2D", "kernel": (1, 1), "stride": (1, 1),
                                        "out_channels": 5},
                                       {"op": "CONV_2D", "kernel": (1, 1), "stride": (1, 1),
                                        "out_channels": 4}], fc_widths=[])
    m = tinylora.load_tflite(mb)
    assert "FULLY_CONNECTED" not in [l.kind for l in m.layers]
    t = Trainer(m, LoRAConfig(rank=2))
    assert list(t.adapters) == [1]
