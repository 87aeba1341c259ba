"""The generated C training step equals the numpy reference, byte for byte, on every target.

One suite, parametrised over the targets of ``tinylora.verify.TARGETS`` (host, host with
UBSan+ASan, Cortex-M4 portable and DSP kernels, Cortex-M7, Xtensa LX106, RV32IMC):

- the bundled digits CNN, 50 steps on the 'sensor' task, dense and sparse (grad_density 0.1)
  x recompute "none" and "all": one program per target;
- random small models (``tests/support/randmodel.py``, mlp family, with and without softmax)
  with random training configurations (rank, targets, recompute, density / threshold /
  capacity, accumulation, momentum, learning rate), seeds chosen by hypothesis
  (derandomised): ``RANDOM_BATCHES`` programs of ``RANDOM_PER_BATCH`` models per target;
- the training path's objects contain no malloc / free / floating point (``nm``);
- generating twice gives the same bytes; the CLI reports and fails on differences.

Every compared result: each step's logits and Q10 loss, a mid-run checkpoint (restored into
a fresh state before training continues), the final int16 masters, the final checkpoint,
the refusal of a damaged checkpoint, and predict's logits.

A missing toolchain skips its target with the reason, except in CI (env var ``CI`` set),
where it fails.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.randmodel import describe, random_input, random_model
from support.tools import require

import tinylora
from tinylora import cli, emulate, targets, verify
from tinylora.codegen.step import generate_step
from tinylora.codegen.vectors import VectorSet, generate_vectors
from tinylora.errors import ConfigError
from tinylora.planning.arena import checked_plan
from tinylora.ref import lora
from tinylora.ref.trainer import LoRAConfig, Trainer

TARGETS = list(verify.TARGETS)
EXAMPLE_STEPS = 50
EXAMPLE_CONFIGS = [("dense_none", None, "none"), ("dense_all", None, "all"),
                   ("sparse_none", 0.1, "none"), ("sparse_all", 0.1, "all")]
RANDOM_BATCHES = int(os.environ.get("TINYLORA_VERIFY_BATCHES", 2))
RANDOM_PER_BATCH = int(os.environ.get("TINYLORA_VERIFY_MODELS", 10))
RANDOM_STEPS = 10


def _require(target: str) -> None:
    require(verify.TARGETS[target][0])


def _assert_ok(result: verify.VerifyResult) -> None:
    print(result.summary())   # shown with pytest -rP: bytes compared, timings
    assert result.ok, result.summary() + "\n" + "\n".join(
        f"{c.prefix}: {c.about}" for c in result.cases if not c.ok)
    assert result.differing_bytes == 0


def _masters(trainer: Trainer) -> dict:
    return {(i, p): ad.arrays[p].copy() for i, ad in trainer.adapters.items() for p in "AB"}


def _moved(before: dict, trainer: Trainer) -> dict:
    return {k: bool(np.any(trainer.adapters[k[0]].arrays[k[1]] != v)) for k, v in before.items()}


# ----------------------------------------------------------------------------- the example

@pytest.mark.parametrize("target", TARGETS)
def test_example_model(target, tmp_path):
    _require(target)
    cases = [verify.example_case(EXAMPLE_STEPS, recompute=rc, density=d, prefix=name)
             for name, d, rc in EXAMPLE_CONFIGS]
    before = [_masters(c.trainer) for c in cases]
    result = verify.run_cases(target, cases, tmp_path)
    _assert_ok(result)
    assert result.steps == len(EXAMPLE_CONFIGS) * EXAMPLE_STEPS
    per_case = {c.prefix: c.bytes_compared for c in result.cases}
    assert len(set(per_case.values())) == 1 and result.bytes_compared > 10_000, per_case
    for case, b in zip(cases, before):   # the comparison means something: every master moved
        moved = _moved(b, case.trainer)
        assert all(moved.values()), (case.prefix, moved)


# ----------------------------------------------------------------------------- random models

def _random_config(rng: np.random.Generator, model) -> dict:
    fcs = [l.index for l in model.layers if lora.is_adaptable(l)]
    targets = None
    if len(fcs) > 1 and rng.random() < 0.35:   # a subset: frozen FCs below or between adapters
        k = int(rng.integers(1, len(fcs)))
        targets = tuple(sorted(int(i) for i in rng.choice(fcs, k, replace=False)))
    args = dict(lr=float(np.exp(rng.uniform(np.log(0.01), np.log(2.0)))),
                recompute=("none", "all")[int(rng.integers(0, 2))],
                accum_steps=int(rng.choice([1, 1, 2, 3])),
                momentum=float(rng.choice([0.0, 0.0, 0.9])), seed=int(rng.integers(0, 1000)))
    sparsity = int(rng.integers(0, 4))
    if sparsity == 1:
        args["grad_density"] = float(rng.uniform(0.05, 0.6))
    elif sparsity == 2:
        args["grad_threshold"] = int(rng.integers(1, 20))
    elif sparsity == 3:
        args["grad_capacity"] = int(rng.integers(1, 10))
    return dict(config=LoRAConfig(rank=int(rng.integers(1, 5)), targets=targets, loss="xent"),
                **args)


def random_cases(seed: int, n: int, tag: str) -> list[verify.Case]:
    """n random mlp models with random training configurations, from one seed."""
    rng = np.random.default_rng([seed, zlib.crc32(tag.encode())])
    cases = []
    while len(cases) < n:
        data = random_model(rng, "mlp", softmax=bool(rng.integers(0, 2)))
        try:
            model = tinylora.load_tflite(data)
        except tinylora.ModelError:
            continue
        x = random_input(rng, data, RANDOM_STEPS, ("uniform", "extreme", "narrow")[len(cases) % 3])
        args = _random_config(rng, model)
        try:
            trainer = Trainer(model, calibration=x, **args)
        except ConfigError:
            continue
        classes = int(np.prod(model.layers[trainer.logits_layer].output_shape))
        y = rng.integers(0, classes, RANDOM_STEPS)
        vectors = VectorSet(x, y, restore_at=int(rng.integers(0, RANDOM_STEPS + 1)))
        cases.append(verify.Case(f"r{len(cases)}", trainer, vectors,
                                 f"{args}\n{describe(data)}"))
    return cases


@pytest.mark.parametrize("target", TARGETS)
@settings(max_examples=RANDOM_BATCHES)
@given(seed=st.integers(0, 2**32 - 1))
def test_random_models(target, seed, tmp_path_factory):
    _require(target)
    cases = random_cases(seed, RANDOM_PER_BATCH, target)
    before = [_masters(c.trainer) for c in cases]
    result = verify.run_cases(target, cases, tmp_path_factory.mktemp(f"rand-{target}"))
    _assert_ok(result)
    trained = sum(any(_moved(b, c.trainer).values()) for c, b in zip(cases, before))
    assert trained >= len(cases) // 2, f"only {trained} of {len(cases)} models' masters moved"


# ----------------------------------------------------------------------------- no malloc, no float

# What the training path may call that it does not define: the C library's block copies and
# the compilers' integer helpers (Debian's lx106 libgcc: 64-bit multiply).
ALLOWED_EXTERNAL = {"memcpy", "memset", "memmove", "__muldi3", "__aeabi_lmul", "__aeabi_llsl",
                    "__aeabi_llsr", "__aeabi_lasr", "__ashldi3", "__ashrdi3", "__lshrdi3"}
FORBIDDEN = re.compile(r"^(malloc|calloc|realloc|free|_malloc_r|_free_r|__aeabi_[fd].*|"
                       r"__aeabi_[ui]?l?2[fd]|__(add|sub|mul|div|neg|cmp|eq|ne|lt|le|gt|ge|unord|"
                       r"fix|fixuns|float|floatun|extend|trunc)[sdtx]f\d.*|.*printf.*)$")
NM = {name: targets.TOOLCHAINS[verify.TARGETS[name][0]].nm
      for name in ("host", "cortex-m4", "cortex-m4-dsp", "rv32imc", "xtensa")}


@pytest.mark.parametrize("target", list(NM))
def test_training_path_has_no_malloc_or_float(target, tmp_path):
    _require(target)
    nm = shutil.which(NM[target])
    if nm is None:
        pytest.skip(f"{NM[target]} not found")
    case = verify.example_case(4, density=0.1, recompute="all", prefix="ex")
    for name, text in generate_step(case.trainer, prefix="ex").items():
        (tmp_path / name).write_text(text)
    fw = emulate.firmware_dir()
    sources = [tmp_path / "ex.c", *(fw / "src" / n for n in ("tl_train.c", "tl_backward.c", "tl_checkpoint.c",
               "tl_quant.c", "tl_kernels.c", "tl_kernels_cmsis_nn.c", "tl_kernels_esp_nn.c"))]
    emu, defines, _ = verify.TARGETS[target]
    objects = emulate.compile_objects(emu, sources, tmp_path / "obj", defines,
                                      include_dirs=[tmp_path])
    listing = subprocess.run([nm, *map(str, objects)], capture_output=True, text=True,
                             check=True).stdout
    defined, undefined = set(), set()
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            undefined.add(parts[1])
        elif len(parts) == 3:
            defined.add(parts[2])
    external = undefined - defined
    assert not {s for s in defined | undefined if FORBIDDEN.match(s)}, sorted(defined | undefined)
    assert external <= ALLOWED_EXTERNAL, sorted(external - ALLOWED_EXTERNAL)
    assert "tl_lora_backward_s8" in defined and "ex_step" in defined
    assert "tl_depthwise_conv_backward_s16" in defined and "tl_grad_merge_s16" in defined
    if target.startswith("cortex-m"):   # hard-float ABI: no FPU arithmetic either
        objdump = shutil.which("arm-none-eabi-objdump")
        if objdump is not None:
            text = subprocess.run([objdump, "-d", *map(str, objects)], capture_output=True,
                                  text=True, check=True).stdout
            fpu = [l for l in text.splitlines() if re.search(r"\.f(16|32|64)\b|\bvcvt", l)]
            assert not fpu, fpu[:5]


# ----------------------------------------------------------------------------- generation, CLI

def test_generation_is_deterministic():
    def render():
        case = verify.example_case(6, density=0.1, recompute="all", prefix="ex")
        files = generate_step(case.trainer, prefix="ex", command="tinylora verify")
        files["ex_vectors.c"] = generate_vectors(case.trainer, case.vectors, prefix="ex")
        return files
    a, b = render(), render()
    assert a == b
    for text in a.values():
        assert text.startswith(f"/*\n * Generated by tinylora {tinylora.__version__}: ")
    assert " * Command: tinylora verify\n" in a["ex.c"] and " * Command: tinylora verify\n" in a["ex.h"]


def test_generated_offsets_follow_the_plan():
    case = verify.example_case(2, recompute="all", prefix="ex")
    plan = checked_plan(case.trainer)
    header = generate_step(case.trainer, plan, prefix="ex")["ex.h"]
    assert f"#define EX_ARENA_SIZE {plan.total_bytes}u" in header
    for b in plan.buffers:
        if b.kind == "persistent":
            assert f"#define EX_OFFSET_{b.name.upper()} {b.offset}u" in header


def test_cli_verify(capsys):
    _require("host")
    assert cli.main(["verify", "--target", "host", "--steps", "6", "--density", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "0 differ" in out and "OK" in out


def test_cli_verify_fails_on_a_difference(capsys, monkeypatch):
    _require("host")
    real = verify.expected_vectors

    def off_by_one(trainer, vectors, prefix):
        out = real(trainer, vectors, prefix)
        name = f"{prefix}_loss_3"
        out[name] = (int.from_bytes(out[name], "little", signed=True) + 1).to_bytes(4, "little", signed=True)
        return out

    monkeypatch.setattr(verify, "expected_vectors", off_by_one)
    assert cli.main(["verify", "--target", "host", "--steps", "6"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "1 differ" in out and "_loss_3" in out


def test_cli_verify_help(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["verify", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and all(t in out for t in TARGETS)


def test_cli_verify_own_model(tmp_path, capsys):
    _require("host")
    path = tmp_path / "mlp.tflite"
    path.write_bytes(random_model(np.random.default_rng(5), "mlp", softmax=True))
    assert cli.main(["verify", "--target", "host", "--model", str(path), "--steps", "8",
                     "--recompute", "all", "--keep", str(tmp_path / "keep")]) == 0
    assert "0 differ" in capsys.readouterr().out
    assert (tmp_path / "keep" / "model.c").is_file() and (tmp_path / "keep" / "model.h").is_file()


@pytest.mark.parametrize("target", ["host", "cortex-m4"])
def test_cli_verify_mse(target, tmp_path, capsys):
    """``--loss mse``: int8 targets instead of labels, tl_mse_grad_s8 in the step, every byte
    equal to numpy (the zoo autoencoder: benchmarks and the report)."""
    _require(target)
    path = tmp_path / "reg.tflite"
    path.write_bytes(random_model(np.random.default_rng(6), "mlp", widths=[24, 6], softmax=False, edge="none"))
    keep = tmp_path / "keep"
    assert cli.main(["verify", "--target", target, "--model", str(path), "--steps", "8", "--loss", "mse",
                     "--lr", "0.05", "--keep", str(keep)]) == 0
    out = capsys.readouterr().out
    assert "0 differ" in out and "compared 0 " not in out, out
    step = (keep / "model.c").read_text()
    assert "tl_mse_grad_s8(&model_mse, 6," in step and "tl_xent_grad_s8" not in step
    assert "const int8_t *target" in (keep / "model.h").read_text()
    # the bundled classifier has no MSE: refused with the reason, before any build
    assert cli.main(["verify", "--target", target, "--loss", "mse", "--steps", "2"]) == 2
    assert "the bundled model is a classifier" in capsys.readouterr().err
    # without --loss a model that does not end in SOFTMAX is refused, not trained as 6 classes
    assert cli.main(["verify", "--target", target, "--model", str(path), "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "will not guess its loss" in err and "--loss mse" in err and "Traceback" not in err
