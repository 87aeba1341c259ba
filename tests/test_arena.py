"""Static arena plans: placement, budgets, auto-rank, and the trainer running inside the plan."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import randmodel

import tinylora
from tinylora import BudgetError, LoRAConfig, Trainer, tasks
from tinylora.planning.arena import checked_plan, inference_plan
from tinylora.planning.autorank import auto_rank
from tinylora.planning.boards import BoardError, board_names, load_board


@pytest.fixture(scope="module")
def data(model):
    t = tasks.task("sensor")
    return model.quantize(t["x_train"][:120]), t["y_train"][:120]


def _pair(model, data, **kw):
    X = data[0]
    make = lambda: Trainer(model, kw.get("config", LoRAConfig()), calibration=X[:32],
                           **{k: v for k, v in kw.items() if k != "config"})
    return make(), make()


@pytest.mark.parametrize("kw", [
    dict(), dict(recompute="all"), dict(recompute="auto"), dict(grad_density=0.1),
    dict(accum_steps=3, momentum=0.5), dict(config=LoRAConfig(rank=5)),
])
def test_trainer_inside_the_planned_arena_gives_the_same_bytes(model, data, kw):
    inside, free = _pair(model, data, **kw)
    plan = checked_plan(inside)
    plan.check()
    assert plan.total_bytes <= 1.10 * plan.lower_bound_bytes
    arena = inside.run_in_arena(plan)
    X, Y = data
    for i in range(40):
        assert inside.step(X[i], Y[i]) == free.step(X[i], Y[i])
    assert inside.adapter.to_bytes() == free.adapter.to_bytes()
    assert np.any(arena)   # the state really lives in the arena


def test_a_plan_with_overlapping_live_buffers_fails(model, data):
    inside, free = _pair(model, data, lr=0.05)   # large steps: a corrupted gradient shows
    plan = checked_plan(inside)
    seg = next(b for b in plan.buffers if b.name == "act4")           # the segment input
    clash = next(b for b in plan.buffers if b.name == "act5" and b.first > seg.first)
    assert seg.overlaps_in_time(clash)
    clash.offset = seg.offset                                          # a wrong plan
    with pytest.raises(tinylora.errors.ScheduleError, match="overlap"):
        plan.check()
    inside.run_in_arena(plan)
    X, Y = data
    for i in range(20):
        inside.step(X[i], Y[i]), free.step(X[i], Y[i])
    assert inside.adapter.to_bytes() != free.adapter.to_bytes()


@settings(max_examples=12)
@given(seed=st.integers(0, 10_000), recompute=st.sampled_from(["none", "all"]))
def test_random_models_run_inside_their_plans(seed, recompute):
    rng = np.random.default_rng(seed)
    mb = randmodel.random_model(rng, "mlp", widths=[int(rng.integers(4, 40)), int(rng.integers(2, 12))],
                                softmax=bool(rng.integers(0, 2)))
    m = tinylora.load_tflite(mb)
    x = randmodel.random_input(rng, mb, 12)
    y = rng.integers(0, m.layers[-1].output_shape[-1], 12)
    cfg = LoRAConfig(rank=int(rng.integers(1, 5)), loss="xent")
    a = Trainer(m, cfg, recompute=recompute, lr=0.05, calibration=x)
    b = Trainer(m, cfg, recompute=recompute, lr=0.05, calibration=x)
    plan = checked_plan(a)
    assert plan.total_bytes <= 1.10 * plan.lower_bound_bytes
    a.run_in_arena(plan)
    for xi, yi in zip(x, y):
        assert a.step(xi, yi) == b.step(xi, yi)
    assert a.adapter.to_bytes() == b.adapter.to_bytes()


def test_budget_error_breaks_down_and_suggests_what_fits(model):
    with pytest.raises(BudgetError) as e:
        tinylora.plan(model, LoRAConfig(rank=8), budget=2500)
    msg = str(e.value)
    assert "2,500" in msg and "persistent" in msg and "scratch" in msg and "peak" in msg
    assert "These would fit" in msg and "--rank" in msg
    assert e.value.plan.total_bytes > 2500
    # what it suggests really fits
    assert tinylora.plan(model, LoRAConfig(rank=1, targets=(6,)), budget=2500).total_bytes <= 2500


def test_board_budgets(model):
    for name in board_names():
        board = load_board(name)
        assert 0 < board.arena_budget <= 512 * 1024
        assert tinylora.plan(model, board=name).budget == board.arena_budget
    assert load_board("esp32").arena_budget <= 160 * 1024       # dram0_0_seg static limit
    with pytest.raises(BoardError, match="Did you mean 'esp32s3'"):
        load_board("esp32s2")


@pytest.mark.parametrize("kb", [16, 32, 64, 128, 512])
def test_auto_rank_fits_each_budget(model, data, kb):
    r = auto_rank(model, budget=kb * 1024, calibration=data[0][:16], labels=data[1][:16])
    assert r.plan.total_bytes <= kb * 1024
    assert set(r.config.targets) <= {5, 6} and all(v >= 1 for v in r.config.rank.values())
    assert "sensitivity" in r.explanation and "chose ranks" in r.explanation


def test_auto_rank_uses_more_of_a_larger_budget_and_explains_the_smallest_it_cannot(model, data):
    small = auto_rank(model, budget=2048, calibration=data[0][:16])
    large = auto_rank(model, budget=8192, calibration=data[0][:16])
    assert sum(large.config.rank.values()) > sum(small.config.rank.values())
    assert small.plan.total_bytes <= 2048 < large.plan.total_bytes <= 8192
    with pytest.raises(BudgetError, match="no configuration fits 512 B.*smallest.*needs"):
        auto_rank(model, budget=512, calibration=data[0][:16])


def test_auto_rank_is_deterministic(model, data):
    a = auto_rank(model, budget=4096, calibration=data[0][:16])
    b = auto_rank(model, budget=4096, calibration=data[0][:16])
    assert a.config == b.config and a.recompute == b.recompute


def test_inference_plan_is_smaller_than_training(model):
    train = tinylora.plan(model)
    infer = inference_plan(model)
    infer.check()
    assert 0 < infer.total_bytes < train.total_bytes


def test_plot_svg(model, tmp_path):
    p = tinylora.plan(model)
    p.plot(tmp_path / "arena.svg")
    svg = (tmp_path / "arena.svg").read_text()
    assert svg.startswith("<svg") and svg.count("<rect") == len(p.buffers)
    with pytest.raises(ValueError, match=".svg or .png"):
        p.plot(tmp_path / "arena.jpg")


def test_plot_png(model, tmp_path):
    tinylora.plan(model).plot(tmp_path / "arena.png")
    assert (tmp_path / "arena.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plan(capsys):
    from tinylora.cli import main
    assert main(["plan", "--budget", "1500"]) == 2
    assert "These would fit" in capsys.readouterr().err
    assert main(["plan", "--rank", "2"]) == 0
    out = capsys.readouterr().out
    assert "lower bound" in out and "inference only" in out
