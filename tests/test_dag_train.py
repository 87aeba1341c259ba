"""Training through DAGs and the ops issue 11 adds (tinylora/ref/backward_ops.py, ref/dag.py).

Each op's integer backward is checked against TensorFlow's autodiff of the same op in float, at
the dequantized inputs (cosine > 0.99, no clamp active); then whole zoo models train: residual
forks, adapters on every pointwise layer, the float-ended autoencoder with MSE.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf  # noqa: E402  (the float autodiff oracle)

from tests.support import zoo
from tests.support.gradcase import cosine
from tinylora.ref import backward_ops, lora
from tinylora.ref.layers import Conv2D, FullyConnected, QuantParams, Reshape
from tinylora.ref.oplayers import Add, Concatenation, HardSwish, Logistic, Mean, Pad, Pool2D, Quantize


def qp(scale, zp=0) -> QuantParams:
    return QuantParams(np.atleast_1d(np.float32(scale)), np.atleast_1d(np.int64(zp)))


def real(x, q: QuantParams):
    return (x.astype(np.float64) - float(q.zero_point[0])) * float(q.scale[0])


def grad_check(layer, xs, y, g_out, float_fn, in_qs, k=None):
    """cosine between the integer input gradients (times their static factor) and TF's."""
    k = backward_ops.constants(layer, [x.shape[1:] for x in xs]) if k is None else k
    k["shapes"] = [x.shape for x in xs]
    raws = backward_ops.input_gradients(layer, g_out, xs, y, k)
    factors = backward_ops.input_factors(layer, len(xs))
    xr = [tf.constant(real(x, q)) for x, q in zip(xs, in_qs)]
    with tf.GradientTape() as tape:
        for v in xr:
            tape.watch(v)
        out = float_fn(*xr)
    want = tape.gradient(out, xr, output_gradients=tf.constant(g_out.astype(np.float64)))
    return [cosine(r * f, w.numpy()) for r, f, w in zip(raws, factors, want)]


def _conv_layer(rng, kind, h, c_in, c_out, kernel, stride, padding, mult=1):
    o = dict(stride_h=stride, stride_w=stride, dilation_h=1, dilation_w=1, padding=padding,
             depth_multiplier=mult)
    if kind == "CONV_2D":
        w = rng.integers(-127, 128, (c_out, kernel, kernel, c_in)).astype(np.int8)
    else:
        c_out = c_in * mult
        w = rng.integers(-127, 128, (1, kernel, kernel, c_out)).astype(np.int8)
    oh = (h + stride - 1) // stride if padding == "SAME" else (h - kernel + stride) // stride
    s_w = rng.uniform(0.002, 0.02, c_out).astype(np.float32)
    return Conv2D(index=0, name="c", kind=kind, input_shape=(h, h, c_in),
                  output_shape=(oh, oh, c_out), input_q=qp(0.05, 3), output_q=qp(0.1, -5),
                  weights=w, weights_q=QuantParams(s_w, np.zeros(c_out, np.int64)), options=o)


@pytest.mark.parametrize("kind,kernel,stride,padding,mult", [
    ("CONV_2D", 3, 1, "SAME", 1), ("CONV_2D", 3, 2, "SAME", 1), ("CONV_2D", 5, 2, "VALID", 1),
    ("DEPTHWISE_CONV_2D", 3, 1, "SAME", 1), ("DEPTHWISE_CONV_2D", 3, 2, "SAME", 2),
    ("DEPTHWISE_CONV_2D", 3, 2, "VALID", 1)])
def test_frozen_conv_input_gradient_matches_autodiff(kind, kernel, stride, padding, mult):
    rng = np.random.default_rng(kernel * 10 + stride + mult)
    layer = _conv_layer(rng, kind, 9, 4, 6, kernel, stride, padding, mult)
    x = rng.integers(-128, 128, (1, 9, 9, 4)).astype(np.int8)
    g = rng.integers(-20000, 20000, (1,) + layer.output_shape)
    s_w = layer.weights_q.scale.astype(np.float64)
    strides = [1, stride, stride, 1]
    if kind == "CONV_2D":
        w = layer.weights.astype(np.float64) * s_w[:, None, None, None]
        fn = lambda v: tf.nn.conv2d(v, np.transpose(w, (1, 2, 3, 0)), strides, padding)  # noqa: E731
    else:
        w = layer.weights[0].astype(np.float64) * s_w    # per output channel: the last axis
        fn = lambda v: tf.nn.depthwise_conv2d(v, w.reshape(kernel, kernel, 4, mult), strides, padding)  # noqa: E731
    (cos,) = grad_check(layer, [x], None, g, fn, [layer.input_q])
    assert cos > 0.99, cos


def _pool(kind, shape, f, s, padding):
    from tinylora.ref.pooling import pool_geometry
    oh, _ = pool_geometry(shape[0], f, s, padding)
    ow, _ = pool_geometry(shape[1], f, s, padding)
    return Pool2D(index=0, name="p", kind=kind, input_shape=shape, output_shape=(oh, ow, shape[2]),
                  input_q=qp(0.05, 2), output_q=qp(0.05, 2), activation="NONE",
                  options=dict(filter_height=f, filter_width=f, stride_h=s, stride_w=s, padding=padding))


@pytest.mark.parametrize("kind", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("f,s,padding", [(2, 2, "VALID"), (3, 2, "SAME"), (3, 1, "SAME"), (6, 1, "VALID")])
def test_pooling_gradient_matches_autodiff(kind, f, s, padding):
    rng = np.random.default_rng(f * 7 + s)
    layer = _pool(kind, (6, 6, 4), f, s, padding)
    # distinct values per channel: max pooling's winner is unambiguous
    x = np.stack([rng.permutation(256)[:36] - 128 for _ in range(4)], -1).reshape(1, 6, 6, 4).astype(np.int8)
    y = layer.run([x])
    g = rng.integers(-20000, 20000, y.shape)
    pool = tf.nn.avg_pool2d if kind == "AVERAGE_POOL_2D" else tf.nn.max_pool2d
    (cos,) = grad_check(layer, [x], y, g, lambda v: pool(v, f, s, padding), [layer.input_q])
    assert cos > 0.99, cos


def test_mean_add_pad_concat_reshape_quantize_gradients_match_autodiff():
    rng = np.random.default_rng(5)
    x = rng.integers(-100, 100, (1, 5, 4, 3)).astype(np.int8)
    x2 = rng.integers(-100, 100, (1, 5, 4, 3)).astype(np.int8)
    common = dict(index=0, name="n", input_shape=(5, 4, 3), input_q=qp(0.05, 2))
    cases = [
        (Mean(kind="MEAN", output_shape=(1, 1, 3), output_q=qp(0.01, 1),
              options=dict(axes=(1, 2), keep_dims=True), **common),
         [x], lambda v: tf.reduce_mean(v, axis=(1, 2), keepdims=True)),
        (Add(kind="ADD", output_shape=(5, 4, 3), output_q=qp(0.1, 0),
             options=dict(constant=None, input_qs=[qp(0.05, 2)] * 2), **common),
         [x, x2], lambda a, b: a + b),
        (Pad(kind="PAD", output_shape=(7, 5, 3), output_q=qp(0.05, 2),
             options=dict(paddings=[(0, 0), (1, 1), (0, 1), (0, 0)], pad_value=2), **common),
         [x], lambda v: tf.pad(v, [[0, 0], [1, 1], [0, 1], [0, 0]])),
        (Concatenation(kind="CONCATENATION", output_shape=(5, 4, 6), output_q=qp(0.05, 2),
                       options=dict(axis=3), **common),
         [x, x2], lambda a, b: tf.concat([a, b], axis=3)),
        (Reshape(kind="RESHAPE", output_shape=(60,), output_q=qp(0.2, 7),
                 options=dict(requantizes=True), **common),
         [x], lambda v: tf.reshape(v, (1, 60)) * (0.2 / 0.05)),
        (Quantize(kind="QUANTIZE", output_shape=(5, 4, 3), output_q=qp(0.07, -3),
                  options=dict(from_float=False), **common),
         [x], lambda v: v),
    ]
    for layer, xs, fn in cases:
        y = layer.run(xs)
        g = rng.integers(-20000, 20000, y.shape)
        cos = grad_check(layer, xs, y, g, fn, [layer.input_q] * len(xs))
        assert min(cos) > 0.99, (layer.kind, cos)


@pytest.mark.parametrize("kind", ["LOGISTIC", "HARD_SWISH"])
def test_activation_gradients_match_autodiff(kind):
    rng = np.random.default_rng(3)
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)
    in_q = qp(0.04, -10)
    common = dict(index=0, name="a", kind=kind, input_shape=(256,), output_shape=(256,), input_q=in_q)
    if kind == "LOGISTIC":
        layer = Logistic(output_q=qp(1 / 256, -128), **common)
        fn = tf.sigmoid
    else:
        layer = HardSwish(output_q=qp(0.03, -20), **common)
        fn = lambda v: v * tf.nn.relu6(v + 3) / 6  # noqa: E731
    y = layer.run([x])
    g = rng.integers(-20000, 20000, y.shape)
    (cos,) = grad_check(layer, [x], y, g, fn, [in_q])
    assert cos > 0.99, cos


def test_clamp_rule_equals_the_chain_rule_on_weighted_layers():
    rng = np.random.default_rng(1)
    for act, zp in (("RELU", -128), ("RELU", 5), ("RELU6", -100), ("NONE", 0)):
        from tinylora.ref.quant import activation_range
        lo, hi = activation_range(act, 0.05, zp)
        layer = FullyConnected(index=0, name="f", kind="FULLY_CONNECTED", input_shape=(4,),
                               output_shape=(64,), input_q=qp(0.1), output_q=qp(0.05, zp),
                               activation=act, act_min=lo, act_max=hi)
        y = rng.integers(lo, hi + 1, (1, 64))
        y[0, :8], y[0, 8:16] = lo, hi
        g = rng.integers(-9, 10, (1, 64))
        assert np.array_equal(backward_ops.clamp_mask(layer, y, g), lora.output_gradient_mask(layer, y, g))


def test_fork_merge_aligns_exponents_and_rounds_half_away():
    a = (np.array([16384, -3, 5]), 2)
    b = (np.array([2, 3, -1]), 0)       # 2/4 -> 1 (half away), 3/4 -> 1, -1/4 -> 0
    m, e = backward_ops.merge(a, b)
    assert (m * 2.0 ** e).tolist() == [(16384 + 1) * 4, (-3 + 1) * 4, (5 + 0) * 4]


# --------------------------------------------------------------------------- whole models


@pytest.fixture(scope="module")
def zoo_models(tmp_path_factory):
    import tinylora
    cache, models = tmp_path_factory.mktemp("zoo"), {}

    class Lazy(dict):   # each model converted on first use (cached for the module)
        def __missing__(self, name):
            self[name] = tinylora.load_tflite(zoo.build(name, cache))
            return self[name]
    return Lazy(models)


def _two_class_task(m, n, seed=0):
    """Images of noise around a dark or a bright level: class 0 or 1 (learnable from the
    pooled features of any of the zoo's CNNs)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    level = np.where(y == 1, 0.7, -0.7).reshape((n,) + (1,) * len(m.input_shape))
    return m.quantize(rng.standard_normal((n,) + m.input_shape) * 0.5 + level), y


def pointwise(m):
    return tuple(l.index for l in m.layers if lora.is_adaptable(l))


def test_residual_cnn_learns_with_lora_on_pointwise_layers(zoo_models):
    import tinylora
    m = zoo_models["resnet8"]
    x, y = _two_class_task(m, 80)
    t = tinylora.Trainer(m, tinylora.LoRAConfig(rank=4, targets=pointwise(m)), lr=0.05,
                         calibration=x[:8], seed=1)
    assert len(t.adapters) == 3 and any(len(t.srcs[i]) == 2 for i in t.tainted)   # ADDs
    forks = [p for p in t.tainted if sum(p in t.srcs[i] for i in t.tainted) > 1]
    assert forks and t.merge_ratio, "a residual fork whose two gradients merge"
    before = np.mean(t.predict(x[48:]) == y[48:])
    t.fit(x[:48], y[:48], epochs=6)   # the first epochs push down the 8 unused classes; 6 reach 1.0 on seeds 0-3
    after = np.mean(t.predict(x[48:]) == y[48:])
    assert after >= 0.9 and after > before + 0.2, (before, after)


@pytest.mark.parametrize("name", ["resnet8"])
def test_dag_recompute_changes_no_bit_and_plan_meets_its_bound(zoo_models, name):
    import tinylora
    from tinylora.planning.arena import plan_trainer
    m = zoo_models[name]
    x, y = _two_class_task(m, 2, seed=2)
    runs = {}
    for mode in ("none", "all"):
        t = tinylora.Trainer(m, tinylora.LoRAConfig(rank=2, targets=pointwise(m)), lr=0.05,
                             recompute=mode, calibration=x)
        plan = plan_trainer(t)
        plan.check()
        t.run_in_arena(plan)       # every buffer at its planned offset: a wrong plan corrupts
        runs[mode] = ([int(t.step(x[i], int(y[i]))) for i in range(2)],
                      [ad.b_master.copy() for ad in t.adapters.values()], plan)
    assert runs["none"][0] == runs["all"][0]
    assert all(np.array_equal(a, b) for a, b in zip(runs["none"][1], runs["all"][1]))
    assert any(b.any() for b in runs["none"][1])
    for mode, (_, _, plan) in runs.items():
        assert plan.total_bytes == plan.lower_bound_bytes, (mode, plan.total_bytes, plan.lower_bound_bytes)
    assert runs["all"][2].peak[1] < runs["none"][2].peak[1]


def test_float_ended_autoencoder_trains_with_mse_on_real_targets(zoo_models):
    import tinylora
    m = zoo_models["autoencoder_float_io"]
    assert m.input_dtype == m.output_dtype == "FLOAT32"
    rng = np.random.default_rng(4)
    proto = rng.standard_normal(640).astype(np.float32)
    x = (proto + 0.1 * rng.standard_normal((16, 640))).astype(np.float32)
    with pytest.raises(tinylora.ConfigError, match="will not guess"):
        tinylora.Trainer(m)
    # real targets inside the output's range: the base reconstruction moved by a fixed pattern
    # (MSE sums over 640 outputs of scale ~0.003: the real gradient is small, lr large)
    target = np.clip(m.forward(x) + 0.1 * np.sign(proto), -0.3, 0.3).astype(np.float32)
    t = tinylora.Trainer(m, tinylora.LoRAConfig(rank=2, loss="mse"), lr=0.1, calibration=x[:8])
    assert t.logits_layer == len(m.layers) - 2          # the DEQUANTIZE's int8 input
    losses = [h["loss"] for h in t.fit(x, target, epochs=3)]
    assert losses[-1] < 0.3 * losses[0], losses


@pytest.mark.parametrize("name", ["resnet8", "mbv2_block", "ds_cnn", "person_detect_like"])
def test_dag_gradients_agree_with_float_autodiff_at_the_same_forward(zoo_models, name):
    """Adapters on every pointwise layer: each tensor's integer gradient against TensorFlow's
    autodiff of the dequantized DAG at the integer forward (residual forks, depthwise and
    strided convs, pooling, MEAN, requantizing RESHAPE between them)."""
    import tinylora
    from tests.support.float_dag import FloatDag
    m = zoo_models[name]
    rng = np.random.default_rng(7)
    x = m.quantize(rng.standard_normal((4,) + m.input_shape) * 0.5)
    t = tinylora.Trainer(m, tinylora.LoRAConfig(rank=2, targets=pointwise(m)), lr=0.1, calibration=x)
    for ad in t.adapters.values():
        ad.b_master = rng.integers(-60, 61, ad.b_master.shape) << lora.MASTER_FRAC_BITS
        ad.refresh()
    label = int(np.argmin(t.logits(x[:1])[0]))
    got = t.gradients(x[0], label)
    f = FloatDag(t)
    want = f.gradients({k: v[:1] for k, v in f.segment(x[:1]).items()}, label, t.trace(x[0], label))
    biggest = max(np.linalg.norm(w) for pair in want.values() for w in pair)
    checked = 0
    for i in sorted(got):
        for g_int, g_float, what in zip(got[i], want[i], "AB"):
            if np.linalg.norm(g_float) > 1e-3 * biggest:   # below: lr * gradient < one unit
                assert cosine(g_int, g_float) > 0.99, (i, what, cosine(g_int, g_float))
                checked += 1
    below_a_fork = [i for i in t.adapters if any(len(t.srcs[j]) > 1 for j in t.tainted if j > i)]
    assert checked >= len(t.adapters), checked
    assert name not in ("resnet8", "mbv2_block") or below_a_fork


def _cli(*argv):
    from tinylora.cli import main
    return main([str(a) for a in argv])


def test_cli_loss_option_for_models_without_softmax(zoo_models, tmp_path, capsys):
    ae = tmp_path / "ae.tflite"
    ae.write_bytes(zoo_models["autoencoder_float_io"].source)
    assert _cli("plan", "--model", ae) != 0
    assert "--loss mse" in capsys.readouterr().err
    assert _cli("plan", "--model", ae, "--loss", "mse") == 0
    assert "backward[" in capsys.readouterr().out   # the training schedule (fused: no update ops)
    hw = tmp_path / "hw.tflite"
    hw.write_bytes(zoo_models["hello_world"].source)
    x = np.random.default_rng(0).uniform(0, 6.28, (48, 1)).astype(np.float32)
    data = tmp_path / "sine.npz"
    np.savez(data, x_train=x[:32], y_train=0.1 * np.sin(x[:32]), x_test=x[32:], y_test=0.1 * np.sin(x[32:]))
    assert _cli("train", "--model", hw, "--data", data, "--loss", "mse", "--epochs", 1, "--rank", 1,
                "--out", tmp_path / "a.bin") == 0
    out = capsys.readouterr().out
    assert "test MSE (base int8)" in out and "test MSE (adapted)" in out and (tmp_path / "a.bin").stat().st_size > 0
    assert _cli("train", "--model", hw, "--loss", "mse") != 0
    assert "--data" in capsys.readouterr().err


def test_c_generator_trains_through_a_depthwise_conv(model):
    import tinylora
    from tinylora.codegen.step import generate_step
    t = tinylora.Trainer(model, tinylora.LoRAConfig(targets=(2, 6)))   # a depthwise conv between
    assert t.step(np.zeros(model.input_shape, np.int8), 1) >= 0        # numpy trains through it
    assert "tl_depthwise_conv_backward_s16(" in generate_step(t)["tl_train.c"]   # so does the C
    assert "tl_backward.h" not in generate_step(tinylora.Trainer(
        model, tinylora.LoRAConfig(targets=(5, 6))))["tl_train.c"]   # FCs: C as before


def test_dag_checkpoint_and_adapter_round_trip(zoo_models):
    import tinylora
    m = zoo_models["resnet8"]
    x, y = _two_class_task(m, 3, seed=3)
    cfg = tinylora.LoRAConfig(rank=2, targets=pointwise(m))
    a = tinylora.Trainer(m, cfg, lr=0.05, calibration=x)
    a.step(x[0], int(y[0]))
    blob = a.checkpoint()
    b = tinylora.Trainer(m, cfg, lr=0.05, calibration=x)
    b.restore(blob)
    assert [int(a.step(x[i], int(y[i]))) for i in (1, 2)] == [int(b.step(x[i], int(y[i]))) for i in (1, 2)]
    assert a.adapter.to_bytes() == b.adapter.to_bytes()
