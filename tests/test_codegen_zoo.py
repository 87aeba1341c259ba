"""The generated C forward of every zoo model (tests/support/zoo.py: DS-CNN, MobileNetV1-0.25,
ResNet-8, the autoencoders with int8 and float32 ends, a MobileNetV2 block, a person-detection
model without FC, hello_world) equals ``Model.forward`` (itself equal to TFLM) byte for byte,
on the host and under QEMU on Cortex-M4 (portable), Cortex-M7, Xtensa LX106 and rv32imc, and
with the frozen ops dispatched to the REAL CMSIS-NN (Cortex-M4) and ESP-NN (Xtensa): pooling
and ADD calls are counted at link time (``-Wl,--wrap``), so a build that silently stayed
portable fails.

Each model runs on N_INPUTS inputs (random int8, extremes, or float32 for float ends); the
models are packed into as few programs as fit the targets' memory. The planner tests check
the DAG liveness (a residual branch stays live until its ADD; no two live tensors share
bytes; RESHAPE moves no bytes) and report its peak against TFLM's own arena.

The training step with LoRA on the head over a frozen prefix of any ops (DS-CNN's final FC
over its pooling, person_detect's last 1x1 conv, MobileNet's FC) is generated and run the same
way (``tinylora.verify.run_cases``): logits, loss, checkpoints and masters after TRAIN_STEPS
steps equal ``Trainer.step`` byte for byte on every target and backend.

``tinylora gen --board esp32s3 --model ds_cnn.tflite`` writes a project that carries the
new kernels (tl_ops.c) and whose QEMU builds and ``pio test`` suites pass offline.

``pytest tests/test_codegen_zoo.py -s`` prints the bytes compared and the arena table.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from support import backends, zoo
from support.tools import require
from test_ops_c import CMSIS_CALLS, ESP_CALLS, wraps_c

from tinylora import emulate, load_tflite, verify
from tinylora.codegen.frozen import generate_frozen_c, output_name, plan_frozen
from tinylora.codegen.selftest import runner_main_c
from tinylora.planning.arena import plan_trainer
from tinylora.planning.forward import plan_forward
from tinylora.ref import lora

pytestmark = pytest.mark.slow  # converts the zoo's Keras models, then emulates them

N_INPUTS = 20
FLASH_PER_PROGRAM = 640 * 1024   # constants + test vectors (rv32imc's test image has 1 MiB)
RAM_PER_PROGRAM = 140 * 1024     # scratch + buffers (Xtensa's dataram has 256 KiB)

# (id, emulate target, defines, library backend, wrapped calls that must be reached)
VARIANTS = [
    ("host", "host", None, None, ()),
    ("cortex-m4", "cortex-m4", {"TL_NO_DSP": 1}, None, ()),
    ("cortex-m7", "cortex-m7", None, None, ()),
    ("xtensa", "xtensa", None, None, ()),
    ("rv32imc", "rv32imc", None, None, ()),
    ("cortex-m4-cmsis-nn", "cortex-m4", None, "cmsis-nn",
     tuple(c for c in CMSIS_CALLS if c != "arm_max_pool_s8")),
    ("xtensa-esp-nn", "xtensa", None, "esp-nn",
     tuple(c for c in ESP_CALLS if c != "esp_nn_max_pool_s8_ansi")),
]


@pytest.fixture(scope="module")
def zoo_bytes(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "zoo-cache"  # shared with test_zoo*.py
    return {name: zoo.build(name, cache) for name in zoo.MODELS}


def _inputs(model, seed: int, n: int = N_INPUTS) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n,) + tuple(model.input_shape)
    if model.input_dtype == "FLOAT32":
        x = rng.standard_normal(shape).astype(np.float32) * 2
        x[-2:] *= 1000  # saturating ends
        return x.astype(np.float32)
    x = rng.integers(-128, 128, shape).astype(np.int8)
    x[-3:] = rng.choice(np.array([-128, -127, 126, 127], np.int8), (3,) + shape[1:])
    return x


@pytest.fixture(scope="module")
def cases(zoo_bytes):
    """name -> (model, inputs, expected outputs, frozen plan)."""
    out = {}
    for k, name in enumerate(sorted(zoo_bytes)):
        model = load_tflite(zoo_bytes[name])
        x = _inputs(model, 1000 + k)
        out[name] = (model, x, model.forward(x), plan_frozen(model, name))
    return out


def _programs(cases) -> list[list[str]]:
    """First-fit decreasing: the models grouped so that each program fits every target."""
    def need(name):
        model, x, y, plan = cases[name]
        return plan.const_bytes + x.nbytes, plan.scratch_size + x[0].nbytes + y[0].nbytes
    groups: list[list] = []
    for name in sorted(cases, key=lambda n: -need(n)[0]):
        flash, ram = need(name)
        for g in groups:
            if g[1] + flash <= FLASH_PER_PROGRAM and g[2] + ram <= RAM_PER_PROGRAM:
                g[0].append(name)
                g[1] += flash
                g[2] += ram
                break
        else:
            groups.append([[name], flash, ram])
    return [g[0] for g in groups]


_RESULTS: dict[str, list] = {}


def _run_variant(variant, cases, root) -> list[tuple[list[str], emulate.Report]]:
    vid, target, defines, lib, calls = variant
    if vid in _RESULTS:
        return _RESULTS[vid]
    results = []
    for p, names in enumerate(_programs(cases)):
        out = root / vid / f"p{p}"
        out.mkdir(parents=True)
        files = []
        for name in names:
            model, x, _, _ = cases[name]
            path = out / f"{name}.c"
            path.write_text(generate_frozen_c(model, x, prefix=name, backend=lib or "portable"))
            files.append(path)
        runners = [f"{n}_run_tests" for n in names]
        if lib is None:
            (out / "main.c").write_text(runner_main_c(runners, quant_cases=False))
            elf = emulate.build(target, [*files, out / "main.c"], out, defines)
        else:
            backend = backends.BACKENDS[lib]
            header = "arm_nnfunctions.h" if lib == "cmsis-nn" else "esp_nn.h"
            (out / "wraps.c").write_text(
                wraps_c(calls, header)
                + f'\n#include "tl_report.h"\nvoid tl_zoo_calls(void);\nvoid tl_zoo_calls(void)\n'
                f'{{\n    tl_report_i32("calls", tl_test_calls, {len(calls)});\n}}\n')
            all_runners = runners + ["tl_zoo_calls"]
            (out / "main.c").write_text(runner_main_c(all_runners, quant_cases=False))
            sources = [*files, out / "wraps.c", out / "main.c"]
            sources += [f"-Wl,--wrap={c}" for c in calls]
            elf = backends.build(target, backend, sources, out, defines)
        result = emulate.run(target, elf, timeout=900)
        results.append((names, emulate.parse_report(result.stdout, result.returncode)))
    _RESULTS[vid] = results
    return results


@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_generated_forward_equals_numpy(variant, cases, tmp_path_factory):
    require(variant[1])
    results = _run_variant(variant, cases, tmp_path_factory.mktemp("zoo_c"))
    compared = 0
    calls = np.zeros(len(variant[4]), np.int64)
    seen = set()
    for names, report in results:
        assert not report.errors, f"{variant[0]}: kernel errors {report.errors}"
        for name in names:
            _, x, want, _ = cases[name]
            for i in range(len(x)):
                got = report.values[output_name(name, i)]
                expect = want[i].tobytes()
                assert got == expect, (
                    f"{variant[0]} {name} sample {i}: C {got[:24].hex()} vs numpy "
                    f"{expect[:24].hex()} ({sum(a != b for a, b in zip(got, expect))} bytes differ)")
                compared += len(expect)
            seen.add(name)
        if variant[4]:
            calls += report.int32("calls")
    assert seen == set(zoo.MODELS)
    print(f"\n{variant[0]}: {len(seen)} models x {N_INPUTS} inputs, {compared:,} bytes, 0 differ"
          + (f"; library calls {dict(zip(variant[4], calls.tolist()))}" if variant[4] else ""))
    # the library's pooling and ADD really ran (DS-CNN, MobileNet, ResNet-8 pool; ResNet-8 and
    # the MobileNetV2 block add)
    assert all(calls > 0), dict(zip(variant[4], calls.tolist()))


def test_every_new_op_is_generated(cases):
    """The zoo reaches the new kernels: pooling, ADD, MEAN, QUANTIZE / DEQUANTIZE ends."""
    calls = {s["call"] for _, _, _, plan in cases.values() for s in plan.steps}
    assert {"tl_avg_pool_s8", "tl_add_s8", "tl_mean_s8", "tl_quantize_f32_s8",
            "tl_dequantize_s8_f32"} <= calls, calls


def test_residual_branch_lives_until_its_add(cases):
    model = cases["resnet8"][0]
    plan = plan_forward(model)
    adds = [layer for layer in model.layers if layer.kind == "ADD"]
    assert len(adds) == 3
    live = {b.name: b for b in plan.buffers}
    for add in adds:
        for t in add.inputs:
            b = live[f"t{t}"]
            assert b.last == add.index, (t, b)
    # the skip connection of the first block is written long before its ADD
    skip = live[f"t{adds[0].inputs[0]}"]
    assert adds[0].index - skip.first >= 2
    for i, a in enumerate(plan.buffers):
        for b in plan.buffers[i + 1:]:
            assert not (a.overlaps_in_time(b) and a.overlaps_in_memory(b)), (a, b)


def test_reshape_moves_no_bytes(cases):
    model, _, _, plan = cases["person_detect_like"]  # conv 1x1 -> RESHAPE -> SOFTMAX
    reshapes = [layer for layer in model.layers if layer.kind == "RESHAPE"]
    assert reshapes and {layer.index for layer in reshapes} <= plan.forward.aliased
    assert not any(s["kind"] == "RESHAPE" for s in plan.steps)
    fp = plan.forward
    for layer in reshapes:
        assert fp.slots[layer.output] == fp.slots[layer.inputs[0]]


def test_arena_against_tflm(zoo_bytes, cases):
    """The planner's scratch never exceeds the sum of the tensors and meets its peak lower
    bound within 10%; with input and output it stays at or below TFLM's arena plus 25%."""
    rows = []
    for name in sorted(cases):
        model, _, _, plan = cases[name]
        fp = plan_forward(model)
        tflm = zoo.tflm_arena(zoo_bytes[name])
        total = sum(b.padded for b in fp.buffers)
        assert fp.peak_bytes <= fp.scratch_bytes <= total
        assert fp.scratch_bytes <= 1.1 * fp.peak_bytes + 64, name
        assert fp.tflm_comparable_bytes <= 1.25 * tflm["total"], (name, fp.report(tflm["total"]))
        rows.append(f"{name:20s} {fp.report(tflm['total'])}")
    print("\n" + "\n".join(rows))


@pytest.mark.parametrize("name", ["resnet8", "autoencoder_float_io"])
def test_cli_verify_forward(zoo_bytes, name, tmp_path, capsys):
    """``tinylora verify --forward N``: the generated forward alone, for a model numpy cannot
    train yet (residual ADDs) and for float32 ends."""
    from tinylora.cli import main
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(zoo_bytes[name])
    assert main(["verify", "--target", "host", "--model", str(path), "--forward", "20"]) == 0
    out = capsys.readouterr().out
    model = load_tflite(zoo_bytes[name])
    nbytes = 20 * int(np.prod(model.output_shape)) * (4 if model.output_dtype == "FLOAT32" else 1)
    assert "on 20 inputs" in out and f"compared {nbytes:,} bytes: 0 differ" in out, out


# --------------------------------------------------------------------------- training step

TRAIN_MODELS = ("ds_cnn", "person_detect_like", "mobilenet_v1_025", "resnet8")   # resnet8: residual ADDs
TRAIN_STEPS = 8
# (id, verify target, backend)
TRAIN_VARIANTS = [("host", "host", "portable"), ("cortex-m4", "cortex-m4", "portable"),
                  ("cortex-m7", "cortex-m7", "portable"), ("xtensa", "xtensa", "portable"),
                  ("rv32imc", "rv32imc", "portable"), ("cortex-m4-cmsis-nn", "cortex-m4", "cmsis-nn"),
                  ("xtensa-esp-nn", "xtensa", "esp-nn"), ("rv32imc-esp-nn", "rv32imc", "esp-nn")]


def test_head_adapters_sit_above_a_frozen_prefix_of_new_ops(zoo_bytes):
    """The cases below do what they claim: the default adapters sit above a frozen prefix
    that holds the new ops (pooling), which the C runs forward only."""
    for k, name in enumerate(TRAIN_MODELS):
        case = verify.model_case(load_tflite(zoo_bytes[name]), steps=2, seed=k, prefix=name)
        t = case.trainer
        prefix = {layer.kind for layer in t.model.layers[: t.lowest]}
        assert "AVERAGE_POOL_2D" in prefix, (name, prefix)
        assert set(t.adapters) and min(t.adapters) == t.lowest


@pytest.mark.parametrize("variant", TRAIN_VARIANTS, ids=[v[0] for v in TRAIN_VARIANTS])
def test_training_step_equals_numpy(variant, zoo_bytes, tmp_path):
    vid, target, backend = variant
    require(verify.TARGETS[target][0])
    cases = [verify.model_case(load_tflite(zoo_bytes[name]), steps=TRAIN_STEPS, seed=k,
                               prefix=name) for k, name in enumerate(TRAIN_MODELS)]
    result = verify.run_cases(target, cases, tmp_path, backend=backend, timeout=900)
    assert result.ok, result.summary()
    assert [c.steps for c in result.cases] == [TRAIN_STEPS] * len(TRAIN_MODELS)
    assert result.bytes_compared > 0 and result.differing_bytes == 0
    print(f"\n{vid}: " + result.summary().splitlines()[2].strip())


# LoRA on every FULLY_CONNECTED and 1x1 CONV_2D layer: the generated step trains through the
# frozen ops (tl_backward.c): depthwise and k x k conv input gradients, pooling, MEAN, the
# residual ADDs' forks (ResNet-8, the MobileNetV2 block), as Trainer.step does.
POINTWISE_MODELS = ("ds_cnn", "mobilenet_v1_025", "person_detect_like", "resnet8", "mbv2_block")
POINTWISE_STEPS = 3
POINTWISE_VARIANTS = [("host", "host"), ("cortex-m4", "cortex-m4")]
BACKWARD_KERNELS = ("tl_conv_backward_s16", "tl_depthwise_conv_backward_s16",
                    "tl_avg_pool_backward_s16", "tl_mean_backward_s16", "tl_add_backward_s16",
                    "tl_clamp_mask_s16", "tl_grad_rescale_s16", "tl_grad_merge_s16")


def _pointwise_cases(zoo_bytes):
    cases = [verify.model_case(load_tflite(zoo_bytes[name]), steps=POINTWISE_STEPS, seed=k,
                               prefix=f"pw_{name}", targets="pointwise", rank=2)
             for k, name in enumerate(POINTWISE_MODELS)]
    cases.append(verify.model_case(load_tflite(zoo_bytes["mbv2_block"]), steps=POINTWISE_STEPS,
                                   seed=9, prefix="mbv2_block"))   # the default config
    return cases


def test_pointwise_cases_train_through_every_frozen_op_kind(zoo_bytes):
    """The cases below reach every backward kernel the zoo's DAGs need, and put an adapter
    on each pointwise layer."""
    from tinylora.codegen.step import generate_step
    text = ""
    for case in _pointwise_cases(zoo_bytes):
        t = case.trainer
        pointwise = {layer.index for layer in t.model.layers if lora.is_adaptable(layer)}
        if case.prefix.startswith("pw_"):
            assert set(t.adapters) == pointwise, case.prefix
        text += generate_step(t, prefix=case.prefix)[f"{case.prefix}.c"]
    missing = [k for k in BACKWARD_KERNELS if f"{k}(" not in text]
    assert not missing, missing


def test_mobilenet_pointwise_sums_input_gradients_a_row_at_a_time(zoo_bytes):
    """MobileNet's 48x48 input gradients (its pointwise and depthwise layers) are summed a row
    at a time (the cases below run that C against numpy), so no [rows][K] 64-bit or
    [h][w][c] 32-bit scratch is the step's peak: with recompute all it fits the Xtensa
    emulator's 256 KB (was 317,312 B at the default rank, dx of layer 2 147,456 B)."""
    model = load_tflite(zoo_bytes["mobilenet_v1_025"])
    case = verify.model_case(model, steps=1, targets="pointwise", recompute="all")
    plan = plan_trainer(case.trainer)
    dx = [b for b in plan.buffers if b.name.startswith("dx")]
    by_rows = {model.layers[int(b.name[2:])].kind for b in dx if len(b.shape) == 1}
    assert by_rows == {"CONV_2D", "DEPTHWISE_CONV_2D"}
    assert max(b.padded for b in dx) < 16 * 1024
    assert plan.total_bytes < 256 * 1024


@pytest.mark.parametrize("variant", POINTWISE_VARIANTS, ids=[v[0] for v in POINTWISE_VARIANTS])
def test_training_step_with_lora_on_every_pointwise_layer_equals_numpy(variant, zoo_bytes, tmp_path):
    vid, target = variant
    require(verify.TARGETS[target][0])
    cases = _pointwise_cases(zoo_bytes)
    result = verify.run_cases(target, cases, tmp_path, timeout=900)
    assert result.ok, result.summary()
    assert [c.steps for c in result.cases] == [POINTWISE_STEPS] * len(cases)
    assert result.bytes_compared > 0 and result.differing_bytes == 0
    print(f"\n{vid}: " + result.summary().splitlines()[2].strip())


def test_cli_verify_with_lora_on_pointwise_layers(zoo_bytes, tmp_path, capsys):
    """``tinylora verify --targets pointwise``: the residual MBv2 block trained through its
    depthwise convs, MEAN and ADD fork in C, compared with numpy."""
    from tinylora.cli import main
    path = tmp_path / "mbv2_block.tflite"
    path.write_bytes(zoo_bytes["mbv2_block"])
    assert main(["verify", "--target", "host", "--model", str(path), "--targets", "pointwise",
                 "--steps", "2", "--rank", "2"]) == 0
    out = capsys.readouterr().out
    assert "bytes in" in out and ": 0 differ" in out, out
    model = load_tflite(zoo_bytes["mbv2_block"])
    assert verify.lora_targets(model, "pointwise") == tuple(
        layer.index for layer in model.layers if lora.is_adaptable(layer))
    assert verify.lora_targets(model, " 3, 5,x ") == (3, 5, "x")
    assert verify.lora_targets(model, None) is None


# --------------------------------------------------------------------------- generated project

PROJECT_ENVS = ("qemu_cm4", "qemu_xtensa")


@pytest.fixture(scope="module")
def ds_cnn_project(zoo_bytes, tmp_path_factory):
    from tinylora.cli import main
    root = tmp_path_factory.mktemp("ds_cnn_project")
    path = root / "ds_cnn.tflite"
    path.write_bytes(zoo_bytes["ds_cnn"])
    assert main(["gen", "--board", "esp32s3", "--model", str(path), "--out",
                 str(root / "p")]) == 0
    return root / "p"


def test_ds_cnn_project_carries_the_new_kernels(ds_cnn_project):
    src = ds_cnn_project / "lib" / "tinylora" / "src"
    assert (src / "tl_ops.c").is_file() and (src / "tl_ops.h").is_file()
    assert "tl_avg_pool_s8(" in (src / "tl_trainer.c").read_text()


@pytest.mark.parametrize("env", PROJECT_ENVS)
def test_ds_cnn_project_builds_and_passes_pio_test(ds_cnn_project, env, tmp_path_factory):
    from tinylora import pio
    from tinylora.codegen import project as gen
    ok, why = pio.available()
    if not ok:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(why)
        pytest.skip(why)
    q = next(q for q in gen.QEMU_ENVS if q.env == env)
    require(q.emulation)
    core = tmp_path_factory.getbasetemp() / "pio-core-zoo"
    if not core.exists():
        core.mkdir()
        pio.prepare_core(core)
    assert "[SUCCESS]" in pio.run(ds_cnn_project, env, core, timeout=600).output
    tested = pio.test(ds_cnn_project, env, core, timeout=600, check=False)
    counts = pio.parse_test_summary(tested.output)
    assert counts["failed"] == counts["errored"] == counts["skipped"] == 0, tested.output[-3000:]
    assert counts["total"] == counts["succeeded"] >= 32 + 20, counts
    print(f"\n{env}: ds_cnn project pio test {counts['succeeded']}/{counts['total']} passed")
