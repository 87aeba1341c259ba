"""A complete PlatformIO project for one board: ``tinylora gen``.

:func:`plan_project` decides everything (board, model, LoRA configuration, arena plan
checked against the board's budget, embedded samples, every file's bytes) without touching
the disk; :func:`write_project` writes it, keeping the user's ``USER CODE`` regions and
refusing to overwrite anything else a user changed. Nothing is written when the plan does
not fit the board (:class:`~tinylora.errors.BudgetError`) or when a file would be lost.

Project layout::

    platformio.ini            the board's environment and the QEMU environments
    README.md                 flash, monitor, test, the serial protocol, the output
    src/main.c                the application (USER CODE regions are kept on regeneration)
    lib/tinylora/             runtime + generated model code (library.json)
    lib/tl_app/               portable app parts: checkpoint storage interface, serial protocol
    lib/tl_board/             board support: console, time, arena placement, storage backends
    lib/cmsis_nn/             STM32 only: the CMSIS-NN vendoring point (empty)
    test/                     on-device tests (bit-exact vectors, storage, protocol)
    tools/platform-tinylora-qemu/   the local PlatformIO platform of the QEMU environments
    CMakeLists.txt, src/CMakeLists.txt, src/idf_component.yml, sdkconfig.defaults,
    partitions.csv            ESP-IDF boards only
    .tinylora/manifest.json   what tinylora wrote (hashes), to detect edits

**The model code.** Everything in ``lib/tinylora/src`` besides the copied runtime, plus its
on-device tests, is a :class:`ModelCode`, made by :func:`model_code`:
:func:`training_model_code`, the generated training step of :mod:`tinylora.codegen.step`
(``tl_trainer.{h,c}``) behind the application's model interface (``tl_app_model.h``, glue
``tl_app_model_train.c``: training, predictions, checkpoints through the two-slot store of
``tl_checkpoint.c`` on the board's ``tl_storage``), with its bit-exact training vectors and
checkpoint tests as ``test/test_training`` and the frozen forward's vectors as
``test/test_model``. :func:`frozen_model_code` (predictions only) plugs in the same way
(``plan_project(..., model_code_factory=frozen_model_code)``).

:func:`simulate_app` is the application's console output as numpy computes it (the lines a
QEMU run must print, and the README's example).
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from .. import __version__
from ..boards import Board, load_board
from ..errors import BudgetError
from ..resources import resource_dir
from . import c_array_rows, c_comment, provenance, render

__all__ = ["ModelCode", "Project", "ProjectError", "QEMU_ENVS", "model_code",
           "frozen_model_code", "training_model_code", "simulate_app", "plan_project",
           "write_project", "generate_project", "check_names", "canonical", "MANIFEST"]

FUNCTION = "tinylora.codegen.project.generate_project"
MANIFEST = ".tinylora/manifest.json"
PLATFORM_DIR = "tools/platform-tinylora-qemu"
#: ESP-NN, pinned (ESP Component Registry, espressif/esp-nn); CMSIS-NN's release to vendor.
ESP_NN_VERSION = "1.1.2"
CMSIS_NN_VERSION = "7.0.0"
#: Runtime files every project carries (firmware/ -> lib/tinylora/src).
RUNTIME = ("tl_types.h", "tl_quant.h", "tl_quant.c", "tl_kernels.h", "tl_kernels.c",
           "tl_kernels_backend.h", "tl_kernels_cmsis_nn.c", "tl_kernels_esp_nn.c")
#: ... and the training step's (kernels of the backward and update, checkpoints).
TRAINING_RUNTIME = RUNTIME + ("tl_train.h", "tl_train.c", "tl_checkpoint.h", "tl_checkpoint.c")

# The application's plain C files (firmware/app, firmware/boards): output path -> firmware/ path.
# The generator copies them under the provenance header; nothing in them varies per project.
STATIC_C = {
    "src/main.c": "app/main.c",
    "lib/tinylora/src/tl_app_model.h": "app/tl_app_model.h",
    "lib/tl_app/src/tl_storage.h": "app/tl_storage.h",
    "lib/tl_app/src/tl_storage.c": "app/tl_storage.c",
    "lib/tl_app/src/tl_protocol.h": "app/tl_protocol.h",
    "lib/tl_app/src/tl_protocol.c": "app/tl_protocol.c",
    "lib/tl_board/src/tl_board.h": "boards/tl_board.h",
    "lib/tl_board/src/tl_board_common.c": "boards/tl_board_common.c",
    "lib/tl_board/src/tl_board_qemu.c": "boards/tl_board_qemu.c",
    "lib/tl_board/src/tl_board_espidf.c": "boards/tl_board_espidf.c",
    "lib/tl_board/src/tl_board_stm32.c": "boards/tl_board_stm32.c",
    "lib/tl_board/src/tl_storage_esp_partition.c": "boards/tl_storage_esp_partition.c",
    "lib/tl_board/src/tl_storage_esp_nvs.c": "boards/tl_storage_esp_nvs.c",
    "lib/tl_board/src/tl_storage_stm32_flash.c": "boards/tl_storage_stm32_flash.c",
    "test/tl_unit.h": "app/test/tl_unit.h",
    "test/tl_unit.c": "app/test/tl_unit.c",
    "test/test_storage/test_main.c": "app/test/test_storage.c",
    "test/test_protocol/test_main.c": "app/test/test_protocol.c",
}
#: The QEMU storage medium (RAM with flash rules): small enough for the Xtensa sim's 256 KB
#: (grown to two checkpoint slots when a checkpoint needs more).
RAM_STORAGE = {"size": 16384, "erase_unit": 1024}
#: The prefix of the generated training step's C names (tl_trainer_step, TL_TRAINER_...).
STEP_PREFIX = "tl_trainer"
#: test/test_training: steps of the bit-exact vectors (cycling through the embedded samples),
#: the step after which the checkpoint is taken and restored, predictions compared.
VECTOR_STEPS = 32
VECTOR_PREDICT = 4
#: The learning rate of generated projects. The app trains a few passes over a few dozen
#: embedded samples at boot, then one step per serial sample: tinylora train's default
#: (0.004, best over many epochs of a whole data set) barely moves the adapters in 96 steps
#: (bundled task: 17/32 before and after), 0.02 does (17/32 -> 23/32), as in tinylora verify.
GEN_LR = 0.02
#: The platforms and frameworks the generated projects know, with PlatformIO's names.
FRAMEWORKS = {"espressif32": ("espidf",), "ststm32": ("stm32cube",)}


class ProjectError(ValueError):
    """Writing the project would lose a user's changes, or a name does not check out."""


@dataclass(frozen=True)
class QemuEnv:
    env: str
    board: str          # board JSON of the local platform
    emulation: str      # tinylora.emulate target name / boards' `emulation`
    title: str
    command: tuple[str, ...]


_ELF = "${platformio.build_dir}/${this.__env__}/firmware.elf"
_TIMEOUT = ("timeout", "120")
# No -nographic: its stdio chardev makes QEMU's standard input non-blocking, and newlib's
# semihosting read then takes "nothing waiting yet" for the end of the input.
_ARM = ("-display", "none", "-serial", "none", "-monitor", "none", "-semihosting-config",
        "enable=on,target=native", "-kernel", _ELF)
QEMU_ENVS = (
    QemuEnv("qemu_cm4", "tl_qemu_cm4", "cortex-m4", "QEMU mps2-an386, Arm Cortex-M4F",
            _TIMEOUT + ("qemu-system-arm", "-M", "mps2-an386") + _ARM),
    QemuEnv("qemu_cm7", "tl_qemu_cm7", "cortex-m7", "QEMU mps2-an500, Arm Cortex-M7",
            _TIMEOUT + ("qemu-system-arm", "-M", "mps2-an500") + _ARM),
    QemuEnv("qemu_xtensa", "tl_qemu_lx106", "xtensa",
            "QEMU sim, Xtensa LX106 (the ESP32 family's ISA; no ESP32-S3 SIMD)",
            _TIMEOUT + ("qemu-system-xtensa", "-M", "sim", "-cpu", "lx106", "-nographic",
                        "-monitor", "none", "-semihosting", "-kernel", _ELF)),
    QemuEnv("qemu_rv32imc", "tl_qemu_rv32imc", "rv32imc", "QEMU virt, RISC-V rv32imc (the ESP32-C3's ISA)",
            _TIMEOUT + ("qemu-system-riscv32", "-M", "virt", "-display", "none", "-serial", "none",
                        "-monitor", "none", "-bios", "none", "-chardev", "stdio,id=semihosting",
                        "-semihosting-config", "enable=on,target=native,chardev=semihosting",
                        "-kernel", _ELF)),
)


@dataclass
class ModelCode:
    """A project's model code: what goes into ``lib/tinylora/src`` besides the copied runtime
    and into ``test/``, implementing ``tl_app_model.h``.

    lib_files:   path under lib/tinylora/src -> text
    test_files:  path under test/ -> text (whole test folders: ``test_<name>/...``)
    runtime:     firmware/ files to copy into lib/tinylora/src (RUNTIME and any more)
    can_train:   the code trains and checkpoints (TL_APP_CAN_TRAIN)
    arena_bytes: what it needs of the arena (at most the project's arena)
    description: one line for tl_app_config.h and the README
    checkpoint_bytes: size of one checkpoint (0: no checkpoints)
    test_cases:  suite -> number of Unity cases its tests report
    """
    lib_files: dict[str, str]
    test_files: dict[str, str]
    runtime: tuple[str, ...] = RUNTIME
    can_train: bool = False
    arena_bytes: int = 0
    description: str = ""
    checkpoint_bytes: int = 0
    test_cases: dict[str, int] = field(default_factory=dict)


@dataclass
class Project:
    """Everything ``tinylora gen`` decided; ``files`` maps relative paths to bytes."""
    board: Board
    model_name: str
    config_text: str
    arena_bytes: int
    training_arena_bytes: int
    budget: int
    plan_report: str
    samples: int
    code: ModelCode
    epochs: int = 3
    checkpoint_every: int = 1
    lr: float = 0.0
    #: the Trainer the model code was made for, untouched (its fresh state: the device's at
    #: first boot)
    trainer: object = None
    #: the application's console lines after boot (no '#' lines), as numpy computes them
    expected_output: list[str] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    regions: dict[str, tuple[str, ...]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------- helpers

def _header(path: str, command: str | None, details: Iterable[str] = ()) -> list[str]:
    lines = provenance(FUNCTION, command, [f"File: {path}", *details])
    if path in _REGION_FILES:
        lines[-1] = "Edit only inside USER CODE regions: tinylora gen keeps those, regenerates the rest."
    return lines


def _json_text(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _stm32_family(board: Board) -> str | None:
    if board.platform != "ststm32":
        return None
    m = re.match(r"nucleo_([fhlg])(\d)", board.pio_board)
    if not m:
        raise ProjectError(f"board {board.name}: cannot tell the STM32 family of {board.pio_board!r}")
    return f"{m.group(1).upper()}{m.group(2)}"


def _pin(name: str) -> tuple[str, int]:
    m = re.fullmatch(r"P([A-K])(\d{1,2})", name)
    if not m:
        raise ProjectError(f"{name!r} is not an STM32 pin name (like PA2)")
    return m.group(1), int(m.group(2))


def _aligned(rows: list[tuple[str, str]]) -> list[str]:
    """Shell commands with their comments in one column."""
    width = max(len(cmd) for cmd, _ in rows)
    return [f"{cmd.ljust(width)}  # {comment}" for cmd, comment in rows]


def _hex(v: int) -> str:
    return f"0x{int(v):X}"


# ---------------------------------------------------------------------------------- model code

def _argmax_first(outputs: np.ndarray) -> np.ndarray:
    return np.argmax(outputs, axis=-1)


def _forward_common(fplan) -> dict:
    return dict(prefix=fplan.prefix, macro=fplan.prefix.upper(), input_size=fplan.input_size,
                output_size=fplan.output_size, scratch_size=fplan.scratch_size)


def _test_model_main(model, fplan, samples: np.ndarray, app_classes: np.ndarray, source: str,
                     command: str | None) -> str:
    """test/test_model/test_main.c: the frozen forward's vectors (Model.forward on
    ``samples``) and the classes the application's model interface must predict
    (``app_classes``, computed by ``source``)."""
    outputs = np.asarray(model.forward(samples), np.int8).reshape(len(samples), -1)
    return render(
        "project/test/test_model/test_main.c.j2",
        header=_header("test/test_model/test_main.c", command,
                       ["Expected outputs: tinylora.Model.forward (numpy), bit for bit."]),
        count=len(samples), output_rows=c_array_rows(outputs),
        class_rows=c_array_rows(app_classes), app_classes_source=source,
        name_rows=_name_rows([f"forward_sample_{i:02d}" for i in range(len(samples))]),
        **_forward_common(fplan))


def frozen_model_code(model, trainer=None, samples: np.ndarray | None = None, labels=None,
                      command: str | None = None, prefix: str = "tl_model") -> ModelCode:
    """The frozen forward behind ``tl_app_model.h`` (predictions only: no training, no
    checkpoints), and its bit-exact vectors as ``test/test_model`` (outputs of
    :meth:`tinylora.Model.forward` on ``samples``). A :data:`ModelCodeFactory`: ``trainer``
    and ``labels`` are not used."""
    from .frozen import generate_frozen_c, plan_frozen
    fplan = plan_frozen(model, prefix)
    common = _forward_common(fplan)
    lib = {
        "tl_model.c": generate_frozen_c(model, None, prefix, command),
        "tl_model.h": render("project/lib/tinylora/tl_model.h.j2",
                             header=_header("lib/tinylora/src/tl_model.h", command), **common),
        "tl_app_model_frozen.c": render(
            "project/lib/tinylora/tl_app_model_frozen.c.j2",
            header=_header("lib/tinylora/src/tl_app_model_frozen.c", command), **common),
    }
    classes = _argmax_first(np.asarray(model.forward(samples)).reshape(len(samples), -1))
    tests = {"test_model/test_main.c": _test_model_main(model, fplan, samples, classes,
                                                        "tinylora.Model.forward", command)}
    return ModelCode(lib, tests, RUNTIME, can_train=False,
                     arena_bytes=fplan.scratch_size + fplan.output_size,
                     description="frozen int8 forward (predictions only, no training)",
                     test_cases={"test_model": len(samples) + 3})


def _frozen_test_model(model, samples: np.ndarray, app_classes: np.ndarray, source: str,
                       command: str | None) -> dict[str, str]:
    """test/test_model of a build whose lib has no frozen forward: the frozen forward's C
    (prefix tl_model) in the test folder, next to its vectors."""
    from .frozen import generate_frozen_c, plan_frozen
    fplan = plan_frozen(model, "tl_model")
    return {
        "test_model/tl_model.c": generate_frozen_c(model, None, "tl_model", command),
        "test_model/tl_model.h": render("project/lib/tinylora/tl_model.h.j2",
                                        header=_header("test/test_model/tl_model.h", command),
                                        **_forward_common(fplan)),
        "test_model/test_main.c": _test_model_main(model, fplan, samples, app_classes, source,
                                                   command),
    }


def _name_rows(names: list[str], per_row: int = 4) -> list[str]:
    quoted = [f'"{n}"' for n in names]
    rows = [", ".join(quoted[i:i + per_row]) for i in range(0, len(quoted), per_row)]
    return [r + ("," if k < len(rows) - 1 else "") for k, r in enumerate(rows)]


def training_model_code(model, trainer, samples: np.ndarray, labels: np.ndarray,
                        command: str | None = None) -> ModelCode:
    """The generated training step behind ``tl_app_model.h``, with its tests.

    lib: ``tl_trainer.{h,c}`` (:func:`tinylora.codegen.step.generate_step`, without a static
    arena: the application passes the board's) and ``tl_app_model_train.c``; runtime
    :data:`TRAINING_RUNTIME`. test: ``test_training`` (:data:`VECTOR_STEPS` steps on the
    embedded samples compared with ``Trainer.step``, checkpoints and the two-slot store on
    RAM storage, torn writes) and ``test_model`` (the frozen forward's vectors).
    ``trainer`` is not changed (the expected values come from copies of it)."""
    from ..arena import ALIGN
    from ..checkpoint import CheckpointStore
    from .step import generate_step, plan_step

    x, _ = model._check_input(np.asarray(samples))
    y = np.asarray(labels, np.int64).reshape(-1)
    sp = plan_step(trainer, prefix=STEP_PREFIX)
    macro = sp.macro
    lib = dict(generate_step(trainer, prefix=STEP_PREFIX, command=command, static_arena=False))
    lib["tl_app_model_train.c"] = render(
        "project/lib/tinylora/tl_app_model_train.c.j2",
        header=_header("lib/tinylora/src/tl_app_model_train.c", command),
        prefix=STEP_PREFIX, macro=macro)

    # the vectors: numpy's Trainer on a copy, the step sequence of test_training
    t = copy.deepcopy(trainer)
    n, half, count = VECTOR_STEPS, VECTOR_STEPS // 2, len(y)
    logits, losses, ckpt_mid = [], [], b""
    for i in range(n):
        if i == half:
            ckpt_mid = t.checkpoint()
        bufs = {"x": x[i % count: i % count + 1], "label": int(y[i % count])}
        losses.append(int(t._run(bufs, 0)))
        logits.append(np.asarray(bufs["logits"], np.int8).reshape(-1))
    ckpt_final = t.checkpoint()
    predict = min(VECTOR_PREDICT, count)
    predicted = np.asarray(t.logits(x[:predict]), np.int8).reshape(predict, -1)
    store = CheckpointStore(record_slot=len(ckpt_mid))
    (at_mid, stored_mid), = store.plan_writes(ckpt_mid)
    store.save(ckpt_mid)
    (at_final, stored_final), = store.plan_writes(ckpt_final)
    if (at_mid, at_final) != (0, len(ckpt_mid)):   # pragma: no cover - the store's layout
        raise ProjectError("unexpected checkpoint store layout")
    masters = []
    for i, ad in sorted(t.adapters.items()):
        for p in "AB":
            arr = ad.arrays[p]
            masters.append({"name": f"{p}{i}", "offset": f"{macro}_OFFSET_{p}{i}",
                            "count": int(arr.size), "rows": c_array_rows(arr),
                            "what": f"{p} masters of layer {i} (int16 {list(arr.shape)})"})
    step_names = [f"training_step_{i:02d}" for i in range(n)]

    def u8(data: bytes) -> list[str]:
        return c_array_rows(np.frombuffer(data, np.uint8))

    tests = {
        "test_training/test_main.c": render(
            "project/test/test_training/test_main.c.j2",
            header=_header("test/test_training/test_main.c", command,
                           ["Expected values: tinylora.train.Trainer.step and "
                            "tinylora.checkpoint (numpy), bit for bit."]),
            prefix=STEP_PREFIX, macro=macro, steps=n, restore_at=half, predict=predict,
            unit=RAM_STORAGE["erase_unit"],
            logits_rows=c_array_rows(np.stack(logits)), loss_rows=c_array_rows(losses),
            ckpt_mid_rows=u8(ckpt_mid), ckpt_final_rows=u8(ckpt_final),
            stored_mid_rows=u8(stored_mid), stored_final_rows=u8(stored_final),
            masters=masters, predict_rows=c_array_rows(predicted),
            name_rows=_name_rows(step_names)),
    }
    app_classes = np.argmax(np.asarray(trainer.logits(x)).reshape(count, -1), axis=-1)
    tests.update(_frozen_test_model(model, x, app_classes, "tinylora.train.Trainer.logits "
                                    "(the adapters' initial state)", command))
    ckpt = len(ckpt_final)
    cases = {"test_training": n + 2 + len(masters) + 13, "test_model": count + 3}
    return ModelCode(lib, tests, TRAINING_RUNTIME, can_train=True,
                     # the step's arena, the checkpoint buffer, and room to align the start
                     arena_bytes=sp.plan.total_bytes + ckpt + ALIGN - 1,
                     description=f"generated training step ({STEP_PREFIX}.c, bit-exact with "
                                 "tinylora.train.Trainer.step) with checkpoints",
                     checkpoint_bytes=ckpt, test_cases=cases)


#: The one place where a project's model code is chosen: (model, trainer, samples, labels,
#: command=...) -> ModelCode.
ModelCodeFactory = Callable[..., ModelCode]


def model_code(model, trainer, samples: np.ndarray, labels: np.ndarray,
               command: str | None = None) -> ModelCode:
    """The model code of a project (see the module docstring): the training step."""
    return training_model_code(model, trainer, samples, labels, command=command)


# ---------------------------------------------------------------------------------- the app

def _q10(value: int) -> str:
    """tl_print_q10: three decimals, rounded down."""
    sign = "-" if value < 0 else ""
    m = abs(int(value))
    return f"{sign}{m >> 10}.{((m & 1023) * 1000) >> 10:03d}"


def _percent(part: int, whole: int) -> str:
    """tl_print_percent: one decimal, rounded down."""
    while part > 4000000:
        part, whole = part >> 1, whole >> 1
    permille = part * 1000 // whole if whole > 0 else 0
    return f"{permille // 10}.{permille % 10}%"


def _first_argmax(logits) -> int:
    return int(np.argmax(np.asarray(logits).reshape(-1)))


def simulate_app(trainer, samples: np.ndarray, labels: np.ndarray, epochs: int,
                 checkpoint_every: int, checkpoint_bytes: int, storage: str,
                 can_train: bool = True, serial: Iterable[tuple] = (), model=None,
                 resume_at: int = 0) -> list[str]:
    """The console lines of the generated application (src/main.c), as numpy computes them:
    every line but the ``#`` information lines, in order, from a boot with an empty storage
    or (``resume_at``) with the checkpoint written after that many boot training steps.

    ``serial``: the commands arriving after the boot training, as ``("S", label, sample)``,
    ``("P", sample)``, ``("E",)``, ``("C",)``, ``("?",)`` (prints a ``#`` line: nothing
    here) or ``("!", reason)`` for a line the protocol refuses. ``trainer`` is not changed.
    With ``can_train=False`` (the frozen forward) predictions are ``model.forward``'s."""
    t = copy.deepcopy(trainer)
    x, _ = t.model._check_input(np.asarray(samples))
    y = np.asarray(labels, np.int64).reshape(-1)
    count = len(y)
    out: list[str] = []
    steps = saved = 0

    def predict(inp) -> int:
        if can_train:
            return _first_argmax(t.logits(inp[None]))
        return _first_argmax(np.asarray((model or t.model).forward(inp[None])))

    def evaluate():
        correct = sum(predict(x[i]) == int(y[i]) for i in range(count))
        out.append(f"A 0 {correct}/{count} {_percent(correct, count)}")

    def train(inp, label) -> tuple[int, int]:
        nonlocal steps
        bufs = {"x": inp[None], "label": int(label)}
        loss = int(t._run(bufs, 0))
        steps += 1
        return _first_argmax(bufs["logits"]), loss

    def checkpoint():
        nonlocal saved
        if can_train and steps != saved:
            saved = steps
            out.append(f"C {steps} {checkpoint_bytes} {storage}")

    def checkpoint_due():
        if can_train and steps % checkpoint_every == 0:
            checkpoint()

    if resume_at and can_train:   # the restored checkpoint: boot training steps taken before
        for k in range(resume_at):
            train(x[k % count], y[k % count])
        saved = steps
    evaluate()
    if can_train:
        boot = epochs * count
        report_every = count // 4 if count >= 8 else 1
        if steps < boot:
            while steps < boot:
                epoch, first = steps // count + 1, steps % count
                seen = correct = loss_sum = 0
                for i in range(first, count):
                    predicted, loss = train(x[i], y[i])
                    seen += 1
                    correct += predicted == int(y[i])
                    loss_sum += loss
                    if (i + 1) % report_every == 0 or i + 1 == count:
                        out.append(f"P {epoch} {i + 1}/{count} correct {correct} mean loss "
                                   f"{_q10(loss_sum // seen)}")
                    checkpoint_due()
                out.append(f"A {epoch} {correct}/{seen} {_percent(correct, seen)}")
            checkpoint()
        evaluate()
    for command in serial:
        kind = command[0]
        if kind in ("S", "P"):
            inp = np.asarray(command[-1], np.int8).reshape(x.shape[1:])
            if kind == "S" and can_train:
                predicted, loss = train(inp, command[1])
                out.append(f"R {int(command[1])} {predicted} {_q10(loss)}")
                checkpoint_due()
            else:
                label = str(int(command[1])) if kind == "S" else "-"
                out.append(f"R {label} {predict(inp)} -")
        elif kind == "E":
            evaluate()
        elif kind == "C":
            checkpoint()
        elif kind == "!":
            out.append(f"! {command[1]}")
        elif kind != "?":
            raise ValueError(f"unknown serial command {command!r}")
    checkpoint()   # the input ended
    return out


# ---------------------------------------------------------------------------------- samples

def _default_samples(model, model_path: str | None, data: str | None, count: int):
    """(int8 samples, labels, description) embedded in the application."""
    if data is not None:
        with np.load(data) as z:
            names = set(z.files)
            if {"x_train", "y_train"} <= names:
                x, y = z["x_train"], z["y_train"]
            elif {"x", "y"} <= names:
                x, y = z["x"], z["y"]
            else:
                raise ValueError(f"{data} lacks x_train and y_train (or x and y)")
        x = x if np.issubdtype(x.dtype, np.integer) else model.quantize(x)
        x, _ = model._check_input(np.asarray(x)[:count])
        return x.astype(np.int8), np.asarray(y[:count]).astype(np.int64), f"the first {len(x)} of {Path(data).name}"
    if model_path is None:
        from .. import tasks
        t = tasks.task("sensor", 0)
        x = model.quantize(t["x_train"][:count])
        return (x.astype(np.int8), t["y_train"][:count].astype(np.int64),
                f"{len(x)} digits of the bundled 'sensor' task ({t['description']})")
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (count,) + tuple(model.input_shape)).astype(np.int8)
    y = _argmax_first(np.asarray(model.forward(x)).reshape(count, -1))
    return x, y.astype(np.int64), (f"{count} random inputs labelled with the model's own "
                                   "predictions (give --data for real samples)")


# ---------------------------------------------------------------------------------- planning

def plan_project(board: str | Board, model_path: str | None = None, rank: int = 3,
                 auto_rank: bool = False, data: str | None = None, samples: int = 32,
                 epochs: int = 3, command: str | None = None,
                 model_code_factory: ModelCodeFactory | None = None,
                 lr: float = GEN_LR) -> Project:
    """Decide the whole project for ``board`` (nothing is written).

    Raises :class:`~tinylora.errors.BudgetError` if the training step's arena does not fit
    the board's arena budget, :class:`~tinylora.boards.BoardError` for an unknown board.
    """
    from .. import load_tflite
    from ..examples import example_model
    from ..train import LoRAConfig, Trainer

    b = board if isinstance(board, Board) else load_board(board)
    if b.platform not in FRAMEWORKS or b.framework not in FRAMEWORKS[b.platform]:
        raise ProjectError(f"board {b.name}: platform {b.platform!r} / framework {b.framework!r} "
                           f"is not one tinylora generates projects for ({FRAMEWORKS})")
    if samples < 1 or samples > 4096:
        raise ValueError("samples must be in [1, 4096]")
    if epochs < 1 or epochs > 1000:
        raise ValueError("epochs must be in [1, 1000]")
    path = model_path if model_path is not None else str(example_model())
    model = load_tflite(path)
    x, y, samples_note = _default_samples(model, model_path, data, samples)
    classes = int(np.prod(model.output_shape))
    if np.any(y < 0) or np.any(y >= classes) or np.any(y > 255):
        raise ValueError(f"labels must be class numbers in [0, {min(classes, 256)})")

    # The plan is checked against the board's budget before anything else happens.
    if auto_rank:
        from ..autorank import auto_rank as choose
        result = choose(model, budget=b.arena_budget, calibration=x[:32])
        config, recompute = result.config, result.recompute
        config_text = f"auto-rank for {b.name}: {result.config.rank}, recompute {recompute}"
    else:
        config, recompute = LoRAConfig(rank=rank), "none"
        config_text = f"rank {rank} on every FULLY_CONNECTED layer"
    if not 0 < lr < 1:
        raise ValueError("lr must be in (0, 1)")
    trainer = Trainer(model, config, lr=lr, recompute=recompute, calibration=x[:64])
    # BudgetError when it does not fit (a Board given as data: its own budget)
    plan = trainer.plan(board=b.name) if not isinstance(board, Board) else \
        trainer.plan(budget=b.arena_budget)

    factory = model_code_factory or model_code
    code = factory(model, trainer, x, y, command=command)
    arena = max(plan.total_bytes, code.arena_bytes)
    arena = (arena + 7) // 8 * 8
    if arena > b.arena_budget:
        raise BudgetError(f"the model code needs an arena of {arena:,} B but {b.name}'s budget is "
                          f"{b.arena_budget:,} B: choose a smaller model or a larger board",
                          plan=plan)

    if code.checkpoint_bytes:
        storage = b.storage or {}
        unit = int(storage.get("erase_unit", 0) or 0)
        slot = -(-code.checkpoint_bytes // unit) * unit if unit else 0
        if not unit or 2 * slot > int(storage.get("size", 0)):
            raise BudgetError(f"a checkpoint of {code.checkpoint_bytes:,} B needs two slots of "
                              f"{slot:,} B (whole {unit:,} B erase units), more than {b.name}'s "
                              f"checkpoint storage of {int(storage.get('size', 0)):,} B: "
                              "choose a smaller rank or model", plan=plan)

    name = Path(path).name if model_path is not None else f"bundled {Path(path).name}"
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]
    every = max(1, len(x))
    project = Project(board=b, model_name=f"{name} (sha256 {digest})", config_text=config_text,
                      arena_bytes=arena, training_arena_bytes=plan.total_bytes,
                      budget=b.arena_budget, plan_report=plan.report(), samples=len(x), code=code,
                      epochs=epochs, checkpoint_every=every, lr=trainer.lr, trainer=trainer)
    project.expected_output = simulate_app(trainer, x, y, epochs, every, code.checkpoint_bytes,
                                           _storage_name(b), can_train=code.can_train,
                                           model=model)
    project.files = _render_files(project, model, x, y, samples_note, epochs, command)
    project.regions = {p: tuple(_region_names(t.decode())) for p, t in project.files.items()
                       if p in _REGION_FILES}
    return project


_REGION_FILES = ("src/main.c", "platformio.ini")


def _storage_name(b: Board) -> str:
    """The name the board's tl_storage prints (lib/tl_board's backends)."""
    kind = (b.storage or {}).get("kind", "")
    if kind == "esp-partition":
        return f"ESP32 partition {b.storage['label']}"
    if kind == "stm32-flash":
        return "STM32 internal flash"
    return "RAM"


def _ram_storage(checkpoint_bytes: int) -> dict:
    """The QEMU / test RAM medium: RAM_STORAGE, grown to two checkpoint slots if needed."""
    unit = RAM_STORAGE["erase_unit"]
    slot = -(-max(checkpoint_bytes, 1) // unit) * unit
    return {"size": max(RAM_STORAGE["size"], 2 * slot), "erase_unit": unit}


def _render_files(p: Project, model, x, y, samples_note: str, epochs: int,
                  command: str | None) -> dict[str, bytes]:
    b = p.board
    esp = b.platform == "espressif32"
    family = _stm32_family(b)
    files: dict[str, str | bytes] = {}

    def add(path: str, template: str, **context):
        files[path] = render(template, header=_header(path, command), **context)

    def copy(path: str):   # a plain C file of firmware/ (STATIC_C), under the provenance header
        files[path] = (render("project/_static.j2", header=_header(path, command))
                       + (resource_dir("firmware") / STATIC_C[path]).read_text())

    # --- board data for the templates
    storage = dict(b.storage or {})
    console = dict(b.console or {})
    if not storage or not console:
        raise ProjectError(f"board {b.name}: boards/{b.name}.toml needs [console] and [storage]")
    storage["size_hex"] = _hex(storage["size"])
    storage["erase_unit_hex"] = _hex(storage["erase_unit"])
    if "address" in storage:
        storage["address_hex"] = f"0x{int(storage['address']):08X}"
    if storage["size"] % storage["erase_unit"] or storage["size"] < 2 * storage["erase_unit"]:
        raise ProjectError(f"board {b.name}: storage must be at least two whole erase units")
    stm32 = None
    if family:
        tx_port, tx_pin = _pin(console["tx"])
        rx_port, rx_pin = _pin(console["rx"])
        if tx_port != rx_port:
            raise ProjectError(f"board {b.name}: console TX and RX must share a GPIO port")
        console.update(port=tx_port, tx_pin=tx_pin, rx_pin=rx_pin)
        stm32 = {"family": family, "hal_header": f"stm32{family.lower()}xx_hal.h"}
    own = b.emulation
    width = max(len(b.name), *(len(q.env) for q in QEMU_ENVS))
    qemu = [{"env": q.env, "board": q.board, "title": q.title, "own": q.emulation == own,
             "pad": " " * (width - len(q.env)), "command": q.command} for q in QEMU_ENVS]
    if esp:
        board_options = ["board_build.partitions = partitions.csv",
                         "monitor_filters = esp32_exception_decoder"]
    else:
        board_options = ["upload_protocol = stlink", "build_flags =", f"    -D TL_STM32_{family}",
                         "; CMSIS-NN: vendor it into lib/cmsis_nn (lib/cmsis_nn/README.md). The",
                         "; runtime's TL_USE_CMSIS_NN dispatch is verified only against a test",
                         "; double, and this project does not yet register kernel scratch",
                         "; (tl_kernels_set_scratch): keep -D TL_USE_CMSIS_NN off for now."]
    ctx = dict(board=b, esp=esp, stm32=stm32, storage=storage, console=console,
               ram_storage=_ram_storage(p.code.checkpoint_bytes), qemu=qemu,
               board_options=board_options,
               board_pad=" " * (width - len(b.name)), version=__version__,
               esp_nn_version=ESP_NN_VERSION, cmsis_nn_version=CMSIS_NN_VERSION,
               # decisions made here, not in templates: which ESP-NN kernels the chip gets
               # (the board's backend) and whether the arena comes from the heap (the original
               # ESP32: tl_board.h's CONFIG_IDF_TARGET_ESP32 branch)
               esp_nn_kernels=("the ESP32-S3 SIMD path" if b.backend == "esp-nn"
                               else "ANSI C on this chip"),
               heap_arena=esp and b.name == "esp32",
               cmsis_nn_tag=f"v{CMSIS_NN_VERSION}")

    # --- the project
    add("platformio.ini", "project/platformio.ini.j2", **ctx)
    add(".gitignore", "project/gitignore.j2")
    copy("src/main.c")
    if esp:
        add("CMakeLists.txt", "project/CMakeLists.txt.j2")
        add("src/CMakeLists.txt", "project/src/CMakeLists.txt.j2")
        add("src/idf_component.yml", "project/src/idf_component.yml.j2", **ctx)
        add("sdkconfig.defaults", "project/sdkconfig.defaults.j2")
        app_partition = "0x200000" if b.flash_kb >= 4096 else "0x100000"
        add("partitions.csv", "project/partitions.csv.j2", app_partition_size=app_partition, **ctx)
    else:
        files["lib/cmsis_nn/library.json"] = render("project/lib/cmsis_nn/library.json.j2", **ctx)
        add("lib/cmsis_nn/README.md", "project/lib/cmsis_nn/README.md.j2", **ctx)

    # --- lib/tinylora: runtime + model code + application interface
    fw = resource_dir("firmware")
    for name in p.code.runtime:   # public headers in firmware/include, the rest in firmware/src
        folder = "include" if (fw / "include" / name).is_file() else "src"
        files[f"lib/tinylora/src/{name}"] = (fw / folder / name).read_bytes()
    for name, text in sorted(p.code.lib_files.items()):
        files[f"lib/tinylora/src/{name}"] = text
    files["lib/tinylora/library.json"] = render("project/lib/tinylora/library.json.j2", **ctx)
    copy("lib/tinylora/src/tl_app_model.h")
    app = {"model": c_comment(p.model_name).replace('"', "'"), "input_size": x[0].size,
           "classes": int(np.prod(model.output_shape)), "arena_size": p.arena_bytes,
           "arena_note": c_comment(f"training step plan {p.training_arena_bytes}, model code "
                                   f"{p.code.arena_bytes}; {b.name}'s budget {b.arena_budget}"),
           "can_train": int(p.code.can_train), "code_note": c_comment(p.code.description),
           "samples": len(x), "samples_note": c_comment(samples_note), "epochs": epochs,
           "checkpoint_every": p.checkpoint_every}
    add("lib/tinylora/src/tl_app_config.h", "project/lib/tinylora/tl_app_config.h.j2", app=app)
    add("lib/tinylora/src/tl_app_samples.c", "project/lib/tinylora/tl_app_samples.c.j2",
        samples_note=c_comment(samples_note), rows=c_array_rows(x.reshape(len(x), -1)),
        label_rows=c_array_rows(y))

    # --- lib/tl_app, lib/tl_board
    for lib, names in (("tl_app", ("tl_storage.h", "tl_storage.c", "tl_protocol.h", "tl_protocol.c")),
                       ("tl_board", ("tl_board.h", "tl_board_config.h", "tl_board_common.c",
                                     "tl_board_qemu.c", "tl_board_espidf.c", "tl_board_stm32.c",
                                     "tl_storage_esp_partition.c", "tl_storage_esp_nvs.c",
                                     "tl_storage_stm32_flash.c"))):
        files[f"lib/{lib}/library.json"] = render(f"project/lib/{lib}/library.json.j2", **ctx)
        for name in names:
            if f"lib/{lib}/src/{name}" in STATIC_C:
                copy(f"lib/{lib}/src/{name}")
            else:
                add(f"lib/{lib}/src/{name}", f"project/lib/{lib}/{name}.j2", **ctx)

    # --- test/
    copy("test/tl_unit.h")
    copy("test/tl_unit.c")
    add("test/test_custom_runner.py", "project/test/test_custom_runner.py.j2")
    copy("test/test_storage/test_main.c")
    copy("test/test_protocol/test_main.c")
    for name, text in sorted(p.code.test_files.items()):
        files[f"test/{name}"] = text

    # --- the local QEMU platform, with the targets' startup code and linker scripts
    platform = fw / "pio" / "platform-tinylora-qemu"
    for src in sorted(platform.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts:
            files[f"{PLATFORM_DIR}/{src.relative_to(platform).as_posix()}"] = src.read_bytes()
    for rel in ("cortex-m/mps2.ld", "cortex-m/startup.c", "stdio/tl_target_stdio.c",
                "xtensa/start.S", "xtensa/tl_target.c", "xtensa/xtensa-sim.ld"):
        files[f"{PLATFORM_DIR}/targets/{rel}"] = (fw / "targets" / rel).read_bytes()
    files[f"{PLATFORM_DIR}/targets/include/tl_report.h"] = (fw / "testing" / "tl_report.h").read_bytes()

    # --- README last: it lists the files
    unit = int(storage["erase_unit"])
    slot = -(-max(p.code.checkpoint_bytes, 1) // unit) * unit
    suites = sorted({f.split("/")[1] for f in files if f.startswith("test/test_") and f.count("/") == 2})
    cases = {**p.code.test_cases, "test_storage": 7, "test_protocol": 8}
    add("README.md", "project/README.md.j2", project=p, samples_note=samples_note,
        epochs=epochs, test_suites=suites, test_cases=cases,
        test_total=sum(cases.get(t, 0) for t in suites), ckpt_slot=slot,
        ckpt_slot_hex=_hex(slot), storage_name=_storage_name(b),
        lr=f"{p.lr:.6g}", vector_steps=VECTOR_STEPS, boot_steps=epochs * len(x),
        uniform_loss=f"{math.log(app['classes']):.3f}",
        qemu_own=next(q for q in qemu if q["own"]), classes=app["classes"],
        test_commands=_aligned([(f"pio test -e {b.name}", "on the connected board (flashes the test firmware)")]
                               + [(f"pio test -e {q['env']}", q["title"]) for q in qemu]),
        input_size=app["input_size"], **ctx)

    out = {}
    for path, content in sorted(files.items()):
        data = content.encode("utf-8") if isinstance(content, str) else content
        if path.endswith((".c", ".h", ".ini", ".md", ".json", ".py", ".yml", ".csv", ".txt")) \
                and b"\r" in data:
            raise ProjectError(f"{path}: generated text must use \\n line ends")
        out[path] = data
    return out


# ---------------------------------------------------------------------------------- user regions

_BEGIN = re.compile(r"^\s*(?:/\*|;|#)\s*USER CODE BEGIN (\S+)")
_END = re.compile(r"^\s*(?:/\*|;|#)\s*USER CODE END (\S+)")


def _split_regions(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """(lines with every region emptied, {region name: its lines})."""
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    regions: dict[str, list[str]] = {}
    current = None
    for line in lines:
        if current is None:
            out.append(line)
            m = _BEGIN.match(line)
            if m:
                current = m.group(1)
                if current in regions:
                    raise ProjectError(f"USER CODE region {current!r} appears twice")
                regions[current] = []
        else:
            m = _END.match(line)
            if m and m.group(1) == current:
                out.append(line)
                current = None
            elif _BEGIN.match(line):
                raise ProjectError(f"USER CODE region {current!r} is not closed")
            else:
                regions[current].append(line)
    if current is not None:
        raise ProjectError(f"USER CODE region {current!r} is not closed")
    return out, regions


def _region_names(text: str) -> list[str]:
    return list(_split_regions(text)[1])


def canonical(data: bytes) -> bytes:
    """A file's bytes with the contents of its USER CODE regions removed (what the manifest
    hashes: edits inside the regions are the user's, edits elsewhere are not)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    if "USER CODE BEGIN" not in text:
        return data
    try:
        return "".join(_split_regions(text)[0]).encode("utf-8")
    except ProjectError:
        return data + b"\0broken-regions"


def _merge(new: bytes, old: bytes, path: str) -> bytes:
    """``new`` with the contents of ``old``'s USER CODE regions."""
    old_regions = _split_regions(old.decode("utf-8"))[1]
    lines, new_regions = _split_regions(new.decode("utf-8"))
    lost = [n for n, body in old_regions.items() if n not in new_regions and "".join(body).strip()]
    if lost:
        raise ProjectError(f"{path}: USER CODE region(s) {', '.join(lost)} would be lost "
                           "(the new file has no such region)")
    out = []
    for line in lines:
        out.append(line)
        m = _BEGIN.match(line)
        if m:
            out.extend(old_regions.get(m.group(1), []))
    return "".join(out).encode("utf-8")


def _digest(data: bytes) -> str:
    return hashlib.sha256(canonical(data)).hexdigest()


# ---------------------------------------------------------------------------------- writing

@dataclass
class WriteReport:
    out_dir: Path
    written: list[str]
    unchanged: list[str]
    removed: list[str]
    preserved_regions: dict[str, list[str]]


def write_project(project: Project, out_dir: Path | str, force: bool = False) -> WriteReport:
    """Write ``project`` into ``out_dir``.

    A file already there is replaced only if tinylora wrote it (``.tinylora/manifest.json``)
    and nobody changed it outside its USER CODE regions, whose contents are carried over.
    Files of an earlier generation that this one no longer has are deleted on the same
    condition. Anything else is a :class:`ProjectError` listing every conflict, and then
    nothing is written -- unless ``force``, which overwrites (regions are still kept).
    """
    out = Path(out_dir)
    manifest_path = out / MANIFEST
    old_manifest: dict[str, str] = {}
    if manifest_path.is_file():
        try:
            old_manifest = json.loads(manifest_path.read_text())["files"]
        except (ValueError, KeyError, TypeError):
            raise ProjectError(f"{manifest_path} is damaged: restore it or delete the project "
                               "folder (or use --force)") from None
    conflicts: list[str] = []
    final: dict[str, bytes] = {}
    preserved: dict[str, list[str]] = {}
    for rel, data in project.files.items():
        target = out / rel
        if target.is_dir():
            conflicts.append(f"{rel}: a folder is in the way")
            continue
        if not target.is_file():
            final[rel] = data
            continue
        old = target.read_bytes()
        if rel in old_manifest:
            if _digest(old) != old_manifest[rel] and not force:
                conflicts.append(f"{rel}: changed outside its USER CODE regions since tinylora "
                                 "wrote it")
                continue
        elif old != data and canonical(old) != canonical(data) and not force:
            conflicts.append(f"{rel}: exists and was not written by tinylora")
            continue
        if rel in _REGION_FILES:
            try:
                merged = _merge(data, old, rel)
            except ProjectError as e:
                if not force:
                    conflicts.append(str(e))
                    continue
                merged = data
            kept = [n for n, body in _split_regions(old.decode())[1].items() if "".join(body).strip()]
            if kept:
                preserved[rel] = kept
            final[rel] = merged
        else:
            final[rel] = data
    stale = sorted(set(old_manifest) - set(project.files))
    removable = []
    for rel in stale:
        target = out / rel
        if not target.is_file():
            continue
        if _digest(target.read_bytes()) != old_manifest[rel] and not force:
            conflicts.append(f"{rel}: no longer generated, but changed since tinylora wrote it")
        else:
            removable.append(rel)
    if conflicts:
        raise ProjectError("tinylora gen would overwrite your changes; nothing was written:\n  "
                           + "\n  ".join(conflicts)
                           + "\nMove your changes into USER CODE regions, restore the files, "
                             "choose another --out, or use --force to overwrite.")

    written, unchanged = [], []
    for rel, data in final.items():
        target = out / rel
        if target.is_file() and target.read_bytes() == data:
            unchanged.append(rel)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(rel)
    for rel in removable:
        (out / rel).unlink()
    manifest = {"generator": f"tinylora {__version__}", "board": project.board.name,
                "note": "sha256 of each file tinylora wrote, USER CODE regions excluded: "
                        "tinylora gen uses it to find edits it must not overwrite",
                "files": {rel: _digest(data) for rel, data in sorted(final.items())}}
    text = _json_text(manifest).encode()
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    if not manifest_path.is_file() or manifest_path.read_bytes() != text:
        manifest_path.write_bytes(text)
    return WriteReport(out, sorted(written), sorted(unchanged), removable, preserved)


def generate_project(board: str, out_dir: Path | str, force: bool = False, **options):
    """:func:`plan_project` then :func:`write_project`; returns (project, report)."""
    project = plan_project(board, **options)
    return project, write_project(project, out_dir, force=force)


# ---------------------------------------------------------------------------------- checks

def check_names(project_dir: Path | str, board: str | Board) -> list[str]:
    """Problems with the names in a generated ``platformio.ini``: the board environment's
    platform, board and framework must be the board data's (PlatformIO cannot check them
    offline), and each QEMU environment's board must exist in the project's local platform.
    Returns [] when everything checks out."""
    import configparser
    b = board if isinstance(board, Board) else load_board(board)
    root = Path(project_dir)
    ini = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=(";",))
    ini.read(root / "platformio.ini")
    problems = []
    section = f"env:{b.name}"
    if section not in ini:
        return [f"platformio.ini has no [{section}]"]
    for key, want in (("platform", b.platform), ("board", b.pio_board), ("framework", b.framework)):
        got = ini[section].get(key, "").strip()
        if got != want:
            problems.append(f"[{section}] {key} = {got!r}, the board data says {want!r}")
    framework = ini[section].get("framework", "").strip()
    if framework not in FRAMEWORKS.get(ini[section].get("platform", "").strip(), ()):
        problems.append(f"[{section}] framework {framework!r} does not belong to its platform")
    platform_json = root / PLATFORM_DIR / "platform.json"
    try:
        platform_name = json.loads(platform_json.read_text())["name"]
    except (OSError, ValueError, KeyError):
        return problems + [f"{platform_json} is missing or broken"]
    for q in QEMU_ENVS:
        sec = f"env:{q.env}"
        if sec not in ini:
            problems.append(f"platformio.ini has no [{sec}]")
            continue
        board_id = ini[sec].get("board", "").strip()
        if not (root / PLATFORM_DIR / "boards" / f"{board_id}.json").is_file():
            problems.append(f"[{sec}] board {board_id!r} is not a board of {platform_name}")
        if ini[sec].get("extends", "").strip() != "qemu":
            problems.append(f"[{sec}] does not extend [qemu]")
    if ini.get("qemu", "platform", fallback="") != f"symlink://${{PROJECT_DIR}}/{PLATFORM_DIR}":
        problems.append("[qemu] platform does not point at the project's local platform")
    return problems
