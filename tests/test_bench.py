"""`tinylora bench` and `tinylora plan --board B --estimate`: exact instruction counts under
QEMU -icount (tinylora.bench), their JSON, the counter decoding and the estimate arithmetic."""
from __future__ import annotations

import json
import re
import tomllib

import numpy as np
import pytest
from support.tools import require

import tinylora
from tinylora import bench
from tinylora.cli import main
from tinylora.codegen.step import generate_step, plan_step, render_step
from tinylora.errors import EmulationError, InputError
from tinylora.planning.boards import board_names, load_board
from tinylora.ref.trainer import LoRAConfig, Trainer
from tinylora.resources import resource_dir


@pytest.fixture(scope="module")
def trainer() -> Trainer:
    return Trainer(tinylora.load_tflite(tinylora.example_model()), LoRAConfig(rank=3), lr=0.02)


def _bench_json(capsys, target: str) -> dict:
    assert main(["bench", "--target", target, "--json", "--samples", "2"]) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "tinylora bench --target cortex-m4" in out and "callgrind" in out


def test_plan_help_shows_the_estimate(capsys):
    with pytest.raises(SystemExit):
        main(["plan", "--help"])
    assert "--board nucleo_f411re --estimate" in capsys.readouterr().out


@pytest.mark.parametrize("toolchain", ["cortex-m4", "xtensa"])
def test_exact_counts_recover_instructions_through_wraparound(toolchain):
    rate, modulus = bench.COUNTERS[toolchain]
    n = np.array([0, 1, 37, 12_345, 6_000_000, 40_000_000])    # > 2^24 / 3.2 wraps SysTick
    coarse = np.floor(n * rate).astype(np.int64)
    fine = np.floor(n * rate * 2 ** bench.FINE_SHIFT).astype(np.int64) % modulus
    assert bench.exact_counts(toolchain, coarse, fine).tolist() == n.tolist()
    with pytest.raises(EmulationError, match="shift 0 and 7"):
        bench.exact_counts(toolchain, coarse + 1000, fine)     # the two runs disagree


def test_exact_counts_rdinstret_and_missing_marks():
    assert bench.exact_counts("rv32imc", np.array([5, -1]), None).tolist() == [5, -1]


def test_estimate_arithmetic():
    perf = {"clock_mhz": 100, "cpi": 1.5, "active_current_ma": 10.0, "voltage": 3.3}
    e = bench.estimate(perf, 1_000_000, 2_000_000)
    assert e["inference_ms"] == pytest.approx(15.0)      # 1e6 * 1.5 cycles / 100 MHz
    assert e["step_ms"] == pytest.approx(30.0)
    assert e["update_mj"] == pytest.approx(0.99)         # 3.3 V * 10 mA * 30 ms
    assert bench.estimate(perf, 1, 2_000_000, accum_steps=4)["update_mj"] == pytest.approx(3.96)
    with pytest.raises(InputError, match="cpi"):
        bench.estimate({"clock_mhz": 100, "active_current_ma": 1, "voltage": 3.3}, 1, 1)


def test_every_board_states_its_perf_figures_with_a_source():
    for name in board_names():
        perf = load_board(name).perf
        assert set(perf) == {"clock_mhz", "cpi", "active_current_ma", "voltage"}, name
        assert all(v > 0 for v in perf.values()), name
        text = (resource_dir("boards") / f"{name}.toml").read_text()
        block = text[text.index("[perf]"):]
        assert "ESTIMATE" in text[: text.index("[perf]")]
        for key in perf:
            line = next(ln for ln in block.splitlines() if ln.startswith(key))
            assert "#" in line and len(line.split("#", 1)[1].strip()) > 10, (name, key)
        assert tomllib.loads(text)["perf"] == perf


def test_variants_come_from_the_target_table():
    assert bench.bench_variant("cortex-m4").name == "cortex-m4"
    assert bench.bench_variant("cortex-m4", "cmsis-nn").backend == "cmsis-nn"
    with pytest.raises(InputError, match="callgrind"):
        bench.bench_variant("host")
    with pytest.raises(InputError, match="backends: esp-nn, esp-nn-ansi, portable"):
        bench.bench_variant("rv32imc", "cmsis-nn")
    # a library the target builds but the table has no variant for: the target's own build
    # (its defines kept: Cortex-M7 with the DSP path, rv32imc) plus the library's switch
    m7 = bench.bench_variant("cortex-m7", "cmsis-nn")
    assert (m7.toolchain, m7.backend, dict(m7.defines)) == ("cortex-m7", "cmsis-nn",
                                                            {"TL_USE_CMSIS_NN": 1})
    rv = bench.bench_variant("rv32imc", "esp-nn")
    assert (rv.toolchain, dict(rv.defines), rv.verify) == ("rv32imc", {"TL_USE_ESP_NN": 1}, False)


def test_timing_build_leaves_the_normal_bytes_alone(trainer):
    sp = plan_step(trainer, prefix="bench")
    normal = render_step(sp, "x")
    assert normal == generate_step(trainer, prefix="bench", command="x")
    assert "tl_bench_op" not in "".join(normal.values())
    timed = render_step(plan_step(trainer, prefix="bench"), "x", timing=True)["bench.c"]
    step_part, predict_part = timed.split("tl_status bench_predict(")
    n = len(trainer.schedule)
    assert re.findall(r"tl_bench_op\((\d+)u\)", step_part.split("tl_status bench_step(")[1]) == \
        [str(i) for i in range(n + 1)]
    predicted = re.findall(r"tl_bench_op\((\d+)u\)", predict_part)
    assert predicted[-1] == str(n) and len(predicted) == len(sp.predict_ops) + 1


def test_op_table_macs(trainer):
    rows = bench.op_table(trainer)
    assert [r["index"] for r in rows] == list(range(len(trainer.schedule)))
    first_pass = [r for r in rows if r["op"].startswith(("forward[", "lora_forward["))]
    lora = sum(ad.k.rank * sum(trainer.model.layers[i].weights.shape) for i, ad in trainer.adapters.items())
    assert sum(r["macs"] for r in first_pass) == trainer.model.macs + lora   # FC layers: one row
    kinds = {r["kind"] for r in rows}
    assert kinds >= {"CONV_2D", "lora_forward", "loss", "backward"}
    assert ("update" in kinds) is not trainer.fused   # fused: the backward updates the masters


def _check_schema(j: dict, trainer: Trainer) -> None:
    for key in ("inference_instructions", "training_step_instructions", "layers", "inference_layers"):
        assert key in j
    assert [r["index"] for r in j["layers"]] == list(range(len(trainer.schedule)))
    for r in j["layers"] + j["inference_layers"]:
        assert set(r) >= {"index", "kind", "macs", "instructions"}
        assert r["instructions"] > 0, r
    for total, layers in ((j["training_step_instructions"], j["layers"]),
                          (j["inference_instructions"], j["inference_layers"])):
        attributed = sum(r["instructions"] for r in layers)
        # the rest is the step's glue (checks, input copy, counters): small but not nothing
        assert 0.97 * total < attributed <= total, (attributed, total)
    assert j["training_step_instructions"] > j["inference_instructions"] > 10_000


def test_bench_rv32imc_is_deterministic_and_sums_to_the_total(capsys, trainer):
    require("rv32imc")
    first = _bench_json(capsys, "rv32imc")
    _check_schema(first, trainer)
    assert _bench_json(capsys, "rv32imc") == first


def test_bench_cortex_m4_two_shift_counter(capsys, trainer):
    require("cortex-m4")
    j = _bench_json(capsys, "cortex-m4")
    _check_schema(j, trainer)
    assert j["variant"] == "cortex-m4" and j["backend"] == "portable"


@pytest.mark.parametrize("target,backend", [("cortex-m7", "cmsis-nn"), ("rv32imc", "esp-nn")])
def test_bench_library_builds_on_every_target(capsys, trainer, target, backend):
    """The library builds benchmarks/models.py measures beyond the table's variants: the same
    JSON and the library's own variant."""
    require(target)
    assert main(["bench", "--target", target, "--backend", backend, "--json", "--samples",
                 "1"]) == 0
    lib = json.loads(capsys.readouterr().out)
    _check_schema(lib, trainer)
    assert lib["variant"] == f"{target}-{backend}" and lib["backend"] == backend


def test_bench_refuses_host_and_unknown_backends(capsys):
    assert main(["bench", "--target", "host"]) == 2
    assert "callgrind" in capsys.readouterr().err
    assert main(["bench", "--target", "rv32imc", "--backend", "cmsis-nn"]) == 2
    assert "backends: esp-nn, esp-nn-ansi, portable" in capsys.readouterr().err


def test_plan_estimate(capsys):
    require("rv32imc")
    assert main(["plan", "--board", "esp32c3", "--estimate"]) == 0
    out = capsys.readouterr().out
    assert "ESTIMATE for esp32c3" in out and "not measured" in out
    inf, inf_ms = re.search(r"inference\s+([\d,]+) instructions\s+([\d.]+) ms", out).groups()
    step, step_ms = re.search(r"training step\s+([\d,]+) instructions\s+([\d.]+) ms", out).groups()
    e = bench.estimate(load_board("esp32c3").perf, int(inf.replace(",", "")), int(step.replace(",", "")))
    assert float(inf_ms) == pytest.approx(e["inference_ms"], abs=1e-3)
    assert float(step_ms) == pytest.approx(e["step_ms"], abs=1e-3)
    assert f"{e['update_mj']:.4f} mJ" in out


def test_plan_estimate_needs_a_board(capsys):
    assert main(["plan", "--estimate"]) == 2
    assert "--estimate needs --board" in capsys.readouterr().err
