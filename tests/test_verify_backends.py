"""``tinylora verify --backend``: the frozen layers on CMSIS-NN v7.0.0 and ESP-NN v1.1.2, built
from their unmodified sources (``CMSIS_NN_DIR`` / ``ESP_NN_DIR``, set by conftest.py and
scripts/test.sh from ``../shared/third_party``), give the numpy reference's bytes.

- the bundled model and 20 random models (MLPs and CNNs with CONV_2D / DEPTHWISE_CONV_2D of
  random geometry) per (target, backend): 0 differing bytes, and the ELF links the library's
  kernels (its symbols are there);
- the kernel scratch tinylora plans in Python (planning/kernel_scratch.py, mirrored from the
  library sources) equals what the C asks the real library for, over random geometries;
- a 1x1 CONV_2D with padding never reaches ESP-NN's 1x1 routine (which ignores padding): the
  bytes equal the portable build's, and a copy of the glue without that guard gives others;
- a missing library tree is an error that names the variable and the fix;
- the arena planner sizes each frozen call's kernel scratch from the same geometry as the
  generated C, and ``tinylora plan`` shows it.
"""
from __future__ import annotations

import os
import re
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from support.randmodel import describe, random_input, random_model
from test_verify import _assert_ok, _random_config, _require

import tinylora
from tinylora import cli, emulate, libraries, targets, verify
from tinylora.codegen.frozen import plan_frozen
from tinylora.codegen.vectors import VectorSet
from tinylora.errors import ConfigError, InputError
from tinylora.planning.arena import checked_plan
from tinylora.planning.kernel_scratch import frozen_call, layer_scratch, max_scratch
from tinylora.ref.trainer import LoRAConfig, Trainer

#: (verify target, backend) pairs of the issue's done-when list (+ ESP-NN's ANSI C on host).
RUNS = [("cortex-m4", "cmsis-nn"), ("cortex-m7", "cmsis-nn"), ("xtensa", "esp-nn"),
        ("rv32imc", "esp-nn"), ("host", "esp-nn-ansi")]
#: A kernel each backend's ELF must contain (linked, so called: the builds --gc-sections).
SYMBOLS = {"cmsis-nn": ("arm_convolve_wrapper_s8", "arm_depthwise_conv_wrapper_s8",
                        "arm_fully_connected_per_channel_s8"),
           "esp-nn": ("esp_nn_conv_s8_opt", "esp_nn_depthwise_conv_s8_opt"),
           "esp-nn-ansi": ("esp_nn_conv_s8_ansi", "esp_nn_depthwise_conv_s8_ansi")}
RANDOM_MODELS = 20
STEPS = 6


def _random_cases(tag: str, n: int, first: int = 0) -> list[verify.Case]:
    """n random models (alternately MLPs and small CNNs) with random training configurations."""
    rng = np.random.default_rng(zlib.crc32(tag.encode()))
    cases = []
    while len(cases) < n:
        k = first + len(cases)
        if k % 2:
            data = random_model(rng, "mlp", softmax=bool(rng.integers(0, 2)))
        else:
            shape = (int(rng.integers(3, 11)), int(rng.integers(3, 11)), int(rng.integers(1, 9)))
            data = random_model(rng, "cnn", input_shape=shape, softmax=bool(rng.integers(0, 2)))
        try:
            model = tinylora.load_tflite(data)
            x = random_input(rng, data, STEPS, ("uniform", "extreme", "narrow")[k % 3])
            args = _random_config(rng, model)
            trainer = Trainer(model, calibration=x, **args)
        except (tinylora.ModelError, ConfigError):
            continue
        classes = int(np.prod(model.layers[trainer.logits_layer].output_shape))
        y = rng.integers(0, classes, STEPS)
        vectors = VectorSet(x, y, restore_at=int(rng.integers(0, STEPS + 1)))
        cases.append(verify.Case(f"r{k}", trainer, vectors, f"{args}\n{describe(data)}"))
    return cases


def _symbols(target: str, elf: Path) -> set[str]:
    nm = targets.TOOLCHAINS[verify.TARGETS[target][0]].nm
    out = subprocess.run([nm, str(elf)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if len(line.split()) == 3}


@pytest.mark.parametrize("target,backend", RUNS, ids=[f"{t}-{b}" for t, b in RUNS])
def test_bundled_and_random_models(target, backend, tmp_path):
    _require(target)
    half = RANDOM_MODELS // 2
    batches = [[verify.example_case(30, prefix="example"), *_random_cases(target + backend, half)],
               _random_cases(target + backend + "/2", RANDOM_MODELS - half, first=half)]
    kinds = {l.kind for b in batches for c in b for l in c.trainer.model.layers}
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= kinds
    for k, cases in enumerate(batches):
        result = verify.run_cases(target, cases, tmp_path / str(k), backend=backend)
        _assert_ok(result)
        assert result.backend == backend and result.bytes_compared > 1000 * len(cases)
        elf = tmp_path / str(k) / f"{verify.TARGETS[target][0]}.elf"
        missing = set(SYMBOLS[backend]) - _symbols(target, elf)
        assert not missing, f"{backend} kernels not linked: {missing}"


def test_portable_program_has_no_library(tmp_path):
    """The default backend plans no kernel scratch: every frozen call gets a NULL context."""
    files, _, scratch = verify.write_program([verify.example_case(2)], tmp_path)
    text = "".join(f.read_text() for f in files)
    assert scratch == 0 and "tl_context ctx" not in text and "tl_conv2d_s8(NULL, " in text


def test_library_program_passes_planned_scratch(tmp_path):
    """With CMSIS-NN each frozen call that needs scratch gets a tl_context on its own arena
    buffer (the plan's kernel scratch), no global registration; the others get NULL."""
    case = verify.example_case(2)
    files, _, scratch = verify.write_program([case], tmp_path, backend="cmsis-nn")
    text = "".join(f.read_text() for f in files)
    kernel = [b for b in checked_plan(case.trainer, backend="cmsis-nn").buffers
              if b.what.startswith("kernel scratch")]
    assert kernel and scratch == max(b.size for b in kernel)
    for b in kernel:
        assert f"const tl_context ctx = {{ TL_AT(int8_t, {b.offset}), {b.size}u }};" in text
    assert "set_scratch" not in text and "tl_depthwise_conv2d_s8(NULL, " in text  # 3x3: none


# ----------------------------------------------------------------------------- scratch

def _geometries(rng: np.random.Generator, n: int):
    """Random CONV_2D / DEPTHWISE_CONV_2D frozen steps (dicts as plan_frozen makes them)."""
    for _ in range(n):
        dw = bool(rng.integers(0, 2))
        k = (int(rng.choice([1, 1, 2, 3, 3, 5])), int(rng.choice([1, 1, 3, 3, 4])))
        c = int(rng.integers(1, 20))
        mult = int(rng.choice([1, 1, 1, 2])) if dw else 1
        oc = c * mult if dw else int(rng.integers(1, 20))
        h, w = int(rng.integers(1, 12)), int(rng.integers(1, 12))
        p = {"stride_h": int(rng.integers(1, 3)), "stride_w": int(rng.integers(1, 3)),
             "pad_h": int(rng.choice([0, 0, 1, 2])), "pad_w": int(rng.choice([0, 0, 1, 2])),
             "dilation_h": int(rng.choice([1, 1, 1, 2])), "dilation_w": int(rng.choice([1, 1, 2]))}
        if dw:
            p["depth_multiplier"] = mult
        oh = max(1, (h + 2 * p["pad_h"] - (k[0] - 1) * p["dilation_h"] - 1) // p["stride_h"] + 1)
        ow = max(1, (w + 2 * p["pad_w"] - (k[1] - 1) * p["dilation_w"] - 1) // p["stride_w"] + 1)
        yield {"kind": "DEPTHWISE_CONV_2D" if dw else "CONV_2D", "params": p,
               "input_dims": {"n": 1, "h": h, "w": w, "c": c},
               "filter_dims": {"n": 1, "h": k[0], "w": k[1], "c": oc} if dw else
               {"n": oc, "h": k[0], "w": k[1], "c": c},
               "output_dims": {"n": 1, "h": oh, "w": ow, "c": oc}}


def _scratch_program(steps) -> str:
    lines = ['#include "tl_kernels.h"', '#include "tl_report.h"', "int main(void)", "{",
             f"    static int32_t v[{len(steps)}];"]
    for i, s in enumerate(steps):
        p = ", ".join(f".{k} = {v}" for k, v in s["params"].items())
        d = {k: "{" + ", ".join(str(s[k][x]) for x in "nhwc") + "}"
             for k in ("input_dims", "filter_dims", "output_dims")}
        dw = s["kind"] == "DEPTHWISE_CONV_2D"
        lines += ["    {", f"        const {'tl_dw_conv_params' if dw else 'tl_conv_params'} p = {{{p}}};",
                  *(f"        const tl_dims {k} = {v};" for k, v in d.items()),
                  f"        v[{i}] = (int32_t){'tl_depthwise_conv2d_s8' if dw else 'tl_conv2d_s8'}"
                  "_scratch_size(&p, &input_dims, &filter_dims, &output_dims);", "    }"]
    lines += [f'    tl_report_i32("scratch", v, {len(steps)});', "    return tl_report_done();", "}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("target,backend", [("cortex-m4", "cmsis-nn"), ("cortex-m7", "cmsis-nn"),
                                            ("host", "esp-nn"), ("host", "esp-nn-ansi")])
def test_scratch_plan_equals_the_library(target, backend, tmp_path):
    _require(target)
    steps = list(_geometries(np.random.default_rng(7), 300))
    want = [layer_scratch(backend, s) for s in steps]
    if backend == "cmsis-nn":   # the mirror is exercised: several sizes, zero and non-zero
        assert len(set(want)) > 10 and 0 in want
    src = tmp_path / "scratch.c"
    src.write_text(_scratch_program(steps))
    emu, defines, lib = targets.backend_build(target, backend)
    archive, includes = libraries.build_library(emu, lib)
    elf = emulate.build(emu, [src], tmp_path, defines, include_dirs=includes, libs=[archive])
    result = emulate.run(emu, elf)
    got = emulate.parse_report(result.stdout, result.returncode).int32("scratch").tolist()
    bad = [(s, g, w) for s, g, w in zip(steps, got, want) if g != w]
    assert not bad, f"{len(bad)} differ, first: {bad[:3]}"


def test_bundled_model_scratch():
    """The bundled CNN's 3x3 conv needs im2col scratch on CMSIS-NN; ESP-NN needs none."""
    steps = plan_frozen(tinylora.load_tflite(tinylora.example_model())).steps
    assert max_scratch("cmsis-nn", steps) > 0
    assert max_scratch("esp-nn", steps) == max_scratch("portable", steps) == 0


# ----------------------------------------------------------------------------- ESP-NN 1x1

ONE_BY_ONE = r"""
#include "tl_kernels.h"
#include "tl_report.h"
int main(void)
{
    static const int8_t x[5 * 4 * 3] = { %(x)s };
    static const int8_t w[6 * 3] = { %(w)s };
    static const int32_t bias[6] = { 100, -200, 300, 0, 7, -9 };
    static const int32_t mult[6] = { 1518500250, 1518500250, 1073741824, 1900000000, 1300000000, 1700000000 };
    static const int32_t shift[6] = { -7, -8, -6, -7, -8, -7 };
    const tl_per_channel_quant q = { mult, shift };
    const tl_conv_params p = { .input_offset = 5, .output_offset = -3, .stride_h = 1, .stride_w = 1,
                               .pad_h = 1, .pad_w = 1, .dilation_h = 1, .dilation_w = 1,
                               .act_min = -128, .act_max = 127 };
    const tl_dims in = { 1, 5, 4, 3 }, f = { 6, 1, 1, 3 }, out = { 1, 7, 6, 6 };
    static int8_t y[7 * 6 * 6];
    int status = tl_conv2d_s8(NULL, &p, &q, &in, x, &f, w, bias, &out, y);
    if (status != TL_OK) {
        tl_report_error("conv1x1", 0, status);
    } else {
        tl_report_s8("conv1x1", y, sizeof(y));
    }
    return tl_report_done();
}
"""


def _one_by_one(tmp_path: Path, backend: str, glue: Path | None = None) -> bytes:
    rng = np.random.default_rng(11)
    src = tmp_path / f"{backend}-{glue is not None}" / "conv1x1.c"
    src.parent.mkdir(parents=True)
    src.write_text(ONE_BY_ONE % {"x": ", ".join(map(str, rng.integers(-128, 128, 60))),
                                 "w": ", ".join(map(str, rng.integers(-127, 128, 18)))})
    emu, defines, lib = targets.backend_build("host", backend)
    includes, libs = [], []
    if lib is not None:
        archive, includes = libraries.build_library(emu, lib)
        libs = [archive]
    sources, runtime = [src], True
    if glue is not None:   # the runtime with this copy of the ESP-NN glue
        sources += [glue if p.name == glue.name else p for p in emulate.runtime_sources()]
        runtime = False
    elf = emulate.build(emu, sources, src.parent, defines, runtime=runtime,
                        include_dirs=[*includes, emulate.firmware_dir() / "src"], libs=libs)
    result = emulate.run(emu, elf)
    return emulate.parse_report(result.stdout, result.returncode).values["conv1x1"]


def test_padded_1x1_conv_never_reaches_esp_nn_1x1(tmp_path):
    _require("host")
    portable = _one_by_one(tmp_path, "portable")
    assert _one_by_one(tmp_path, "esp-nn") == portable
    # without the guard, the generic-opt 1x1 routine ignores the padding: other bytes
    glue = emulate.firmware_dir() / "src" / "tl_kernels_esp_nn.c"
    text = glue.read_text()
    guard = "return !padded_1x1 && "
    assert text.count(guard) == 1
    mutant = tmp_path / "mutant" / glue.name
    mutant.parent.mkdir()
    mutant.write_text(text.replace(guard, "(void)padded_1x1;\n    return "))
    assert _one_by_one(tmp_path, "esp-nn", mutant) != portable


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("value,message", [(None, "CMSIS_NN_DIR is not set"),
                                           ("/nonexistent/cmsis", "no such directory"),
                                           (".", "not a CMSIS-NN tree")])
def test_missing_library_is_an_error(value, message, monkeypatch, tmp_path):
    if value is None:
        monkeypatch.delenv("CMSIS_NN_DIR", raising=False)
    else:
        monkeypatch.setenv("CMSIS_NN_DIR", str(tmp_path) if value == "." else value)
    with pytest.raises(InputError, match=re.escape(message)) as e:
        verify.run_cases("cortex-m4", [verify.example_case(2)], tmp_path / "out", backend="cmsis-nn")
    assert "export CMSIS_NN_DIR=" in str(e.value) and "--backend portable" in str(e.value)


def test_backend_must_run_on_the_target():
    with pytest.raises(InputError, match="does not run on target cortex-m4"):
        targets.backend_build("cortex-m4", "esp-nn")
    with pytest.raises(InputError, match="unknown backend"):
        targets.backend_build("host", "tflm")


def test_libraries_come_from_the_environment():
    """The tests run the real trees (conftest / scripts/test.sh point the variables there)."""
    for lib in targets.LIBRARIES.values():
        root = libraries.library_dir(lib)
        assert (root / lib.marker).is_file() and os.environ[lib.env]


# ----------------------------------------------------------------------------- the planner

def test_planner_geometry_equals_the_generated_calls():
    """planning/kernel_scratch.frozen_call (what the arena planner sizes) describes each layer's
    call exactly as the generated C makes it (codegen/frozen.plan_frozen), on random models."""
    rng = np.random.default_rng(3)
    compared = set()
    for k in range(12):
        data = random_model(rng, "cnn" if k % 3 else "wide")
        model = tinylora.load_tflite(data)
        calls = {s["index"]: s for s in plan_frozen(model).steps}
        for layer in model.layers:
            mine = frozen_call(layer)
            if mine is None:
                continue
            step = calls[layer.index]
            for key in ("input_dims", "filter_dims", "output_dims"):
                assert mine[key] == step[key], (layer.kind, key)
            assert all(step["params"][p] == v for p, v in mine["params"].items()), layer.kind
            compared.add(layer.kind)
    assert compared == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}


def test_arena_plans_kernel_scratch():
    """With CMSIS-NN the plan holds one kernel-scratch buffer per frozen call that needs one,
    live for that op only, of the size the C asks for; portable plans hold none."""
    model = tinylora.load_tflite(tinylora.example_model())
    trainer = Trainer(model, LoRAConfig(rank=3))
    steps = {s["index"]: s for s in plan_frozen(model).steps}
    plan = checked_plan(trainer, backend="cmsis-nn")
    kernel = [b for b in plan.buffers if b.what == "kernel scratch (cmsis-nn)"]
    assert kernel and all(b.first == b.last for b in kernel)
    for b in kernel:
        assert b.size == layer_scratch("cmsis-nn", steps[int(b.name[1:])]) > 0
    assert not any(b.what.startswith("kernel") for b in checked_plan(trainer).buffers)
    assert not any(b.what.startswith("kernel") for b in checked_plan(trainer, backend="esp-nn").buffers)


def test_cli_plan_shows_kernel_scratch(capsys):
    assert cli.main(["plan", "--board", "nucleo_f411re"]) == 0
    out = capsys.readouterr().out
    assert "frozen kernels: cmsis-nn" in out and "kernel scratch (cmsis-nn)" in out
    assert cli.main(["plan", "--board", "nucleo_f411re", "--backend", "portable"]) == 0
    assert "kernel scratch (" not in capsys.readouterr().out


def test_cli_verify_backend(capsys, monkeypatch):
    _require("host")
    assert cli.main(["verify", "--target", "host", "--backend", "esp-nn", "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "frozen layers through esp-nn" in out and ": 0 differ" in out
    monkeypatch.setenv("ESP_NN_DIR", "/nonexistent/esp-nn")
    assert cli.main(["verify", "--target", "host", "--backend", "esp-nn", "--steps", "3"]) == 2
    assert "ESP_NN_DIR=/nonexistent/esp-nn: no such directory" in capsys.readouterr().err
