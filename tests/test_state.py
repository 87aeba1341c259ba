"""Training state that fits next to the model (issue 11, item 6): the fused update and the
default rank rule.

The fused update applies each weight-gradient entry to the int16 masters as the backward forms
it (no int32 gradient buffer); docs/numerics.md section 5 states why it gives the bytes of the
unfused step exactly. These tests train the same samples both ways and compare every byte, check
the plan holds no gradient memory, and pin the rule that picks default ranks.
"""
from __future__ import annotations

import numpy as np
import pytest

import tinylora
from tests.support import randmodel
from tinylora import LoRAConfig, Trainer, tasks
from tinylora.errors import ConfigError
from tinylora.planning.arena import plan_trainer
from tinylora.ref import config as cfg
from tinylora.ref.layers import FullyConnected
from tinylora.ref.model import load_tflite


def _train_both(model, x, y, steps, **kw):
    """(fused trainer, unfused trainer, per-step (loss, logits) of each) on the same samples."""
    runs = []
    for fuse in (True, False):
        t = Trainer(model, fuse_update=fuse, calibration=x[:16], **kw)
        assert t.fused is fuse
        runs.append((t, [(int(r), r.logits.tobytes()) for r in (t.step(x[i], int(y[i]))
                                                                   for i in range(steps))]))
    return runs


def _assert_same_state(a: Trainer, b: Trainer):
    for i in a.adapters:
        for name in ("A", "B", "Aq", "Bq"):
            assert np.array_equal(a.adapters[i].arrays[name], b.adapters[i].arrays[name]), (i, name)
    assert a.checkpoint() == b.checkpoint()


@pytest.fixture(scope="module")
def example():
    model = tinylora.load_tflite(tinylora.example_model())
    task = tasks.task("sensor")
    return model, model.quantize(task["x_train"][:60]), task["y_train"][:60]


@pytest.mark.parametrize("threshold", [0, 3])
@pytest.mark.parametrize("recompute", ["none", "all"])
def test_fused_step_equals_unfused_on_the_example(example, threshold, recompute):
    model, x, y = example
    (fused, fl), (plain, pl) = _train_both(model, x, y, 60, lr=0.02, grad_threshold=threshold,
                                            recompute=recompute)
    assert fl == pl
    _assert_same_state(fused, plain)
    # the adapters did move (a test that could fail): the masters left their start
    assert any(np.any(ad.b_master != 0) for ad in fused.adapters.values())


def _conv_model(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return randmodel.random_model(
        rng, "cnn", input_shape=(6, 6, 3), softmax=True, edge="none",
        convs=[{"op": "CONV_2D", "kernel": (3, 3), "stride": (1, 1), "out_channels": 6},
               {"op": "CONV_2D", "kernel": (1, 1), "stride": (2, 2), "out_channels": 8,
                "dilation": (1, 1)}],
        fc_widths=[12, 5])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fused_step_equals_unfused_with_a_conv_adapter_below(seed):
    """Three adapters (a strided 1x1 conv and two FCs): each backward updates its own layer
    while the gradient still flows to the layers below through the A of the forward."""
    model = load_tflite(_conv_model(seed))
    targets = tuple(l.index for l in model.layers
                    if l.kind in ("FULLY_CONNECTED",) or (l.kind == "CONV_2D" and l.kernel == (1, 1)))
    assert len(targets) == 3
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, (40,) + tuple(model.input_shape)).astype(np.int8)
    y = rng.integers(0, 5, 40)
    (fused, fl), (plain, pl) = _train_both(model, x, y, 40, lr=0.05,
                                            config=LoRAConfig(rank=2, targets=targets))
    assert fl == pl
    _assert_same_state(fused, plain)


def test_fused_is_the_default_only_where_nothing_needs_the_gradient(example):
    model, x, _ = example
    assert Trainer(model).fused
    assert Trainer(model, grad_threshold=5).fused
    for kw in (dict(accum_steps=2), dict(momentum=0.9), dict(grad_density=0.5),
               dict(grad_capacity=4)):
        assert not Trainer(model, **kw).fused, kw
        with pytest.raises(ConfigError, match="fuse_update=True"):
            Trainer(model, fuse_update=True, **kw)


def test_fused_plan_holds_no_gradient_memory(example):
    model, x, _ = example
    fused = Trainer(model, calibration=x[:16])
    plain = Trainer(model, calibration=x[:16], fuse_update=False)
    pf, pp = plan_trainer(fused), plan_trainer(plain)
    assert not any(b.name.startswith(("dA", "dB", "sA", "sB")) for b in pf.buffers)
    assert any(b.name.startswith("dA") for b in pp.buffers)
    assert "update" not in {op.op for op in fused.schedule}
    # persistent state: int16 master + int8 view per parameter, nothing else
    params = sum(ad.a_master.size + ad.b_master.size for ad in fused.adapters.values())
    assert 3 * params <= pf.persistent_bytes < 3 * params + 4 * 16
    # the planner's bound is persistent + the peak of live scratch, and the plan meets it here
    assert pf.lower_bound_bytes == pf.persistent_bytes + pf.peak[1]
    assert pf.total_bytes < pp.total_bytes and pf.lower_bound_bytes < pp.lower_bound_bytes
    pf.check()


def test_gradients_leave_a_fused_trainer_unchanged(example):
    model, x, y = example
    t = Trainer(model, calibration=x[:16])
    t.step(x[0], int(y[0]))
    before = t.checkpoint()
    grads = t.gradients(x[1], int(y[1]))
    assert t.checkpoint() == before and t.fused_now
    assert any(np.any(gb != 0) for _, gb in grads.values())


# ------------------------------------------------------------------ the default rank rule

def _fc(depth: int, c_out: int):
    layer = FullyConnected.__new__(FullyConnected)
    layer.weights = np.zeros((c_out, depth), np.int8)
    return layer


@pytest.mark.parametrize("depth, c_out, rank", [
    (4000, 4, 1),     # micro_speech's head: rank 3 would be 75% of the layer
    (64, 32, 3), (32, 10, 3),   # the bundled example keeps rank 3 on both FCs
    (16, 16, 3), (16, 1, 1), (1, 16, 1), (8, 8, 2), (6, 6, 1), (128, 8, 2), (640, 128, 3),
])
def test_default_rank_rule(depth, c_out, rank):
    layer = _fc(depth, c_out)
    assert cfg.default_rank(layer) == rank == LoRAConfig().rank_of(layer)
    r = rank
    assert r == 1 or (r <= -(-min(depth, c_out) // cfg.RANK_DIVISOR)
                      and r * (depth + c_out) <= cfg.PARAM_SHARE * depth * c_out)
    assert LoRAConfig(rank=3).rank_of(layer) == 3   # an explicit rank is the user's


def test_default_config_of_the_example_is_unchanged(example):
    model, x, _ = example
    t = Trainer(model, calibration=x[:16])
    assert {i: ad.k.rank for i, ad in t.adapters.items()} == {5: 3, 6: 3}
    assert len(t.checkpoint()) <= 1024


def test_auto_rank_stays_low_rank(example):
    """auto-rank grows ranks by sensitivity per byte, never past the rule's cap: with room to
    spare the example's 32->10 head stops at 3 (rank 10 would be as big as the layer)."""
    from tinylora.planning.autorank import auto_rank
    model, x, _ = example
    r = auto_rank(model, budget=512 * 1024, calibration=x[:16])
    caps = {i: cfg.rank_cap(model.layers[i]) for i in r.config.rank}
    assert r.config.rank == caps == {5: 8, 6: 3}
    assert "low-rank rule" in r.explanation
