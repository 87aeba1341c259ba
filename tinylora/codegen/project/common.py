"""Constants, data classes and small formatting helpers shared by the project generator."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from tinylora.codegen import provenance
from tinylora.errors import ProjectError
from tinylora.planning.boards import Board
from tinylora.targets import LIBRARIES, PIO_ENVS

FUNCTION = "tinylora.codegen.project.generate_project"


MANIFEST = ".tinylora/manifest.json"


PLATFORM_DIR = "tools/platform-tinylora-qemu"


#: ESP-NN, pinned (ESP Component Registry, espressif/esp-nn); CMSIS-NN's release to vendor.
ESP_NN_VERSION = LIBRARIES["esp-nn"].version.lstrip("v")


CMSIS_NN_VERSION = LIBRARIES["cmsis-nn"].version.lstrip("v")


#: Runtime files every project carries (firmware/ -> lib/tinylora/src).
RUNTIME = ("tl_types.h", "tl_quant.h", "tl_quant.c", "tl_kernels.h", "tl_kernels.c",
           "tl_kernels_backend.h", "tl_kernels_cmsis_nn.c", "tl_kernels_esp_nn.c", "tl_storage.h",
           "tl_storage.c", "tl_checkpoint.h", "tl_checkpoint.c")


#: ... and, for a model with the ops of issue 11 (pooling, ADD, PAD, ...), their kernels.
OPS_RUNTIME = ("tl_ops.h", "tl_ops.c")


#: ... and the training step's (kernels of the backward and update).
TRAINING_RUNTIME = RUNTIME + ("tl_train.h", "tl_train.c")


#: ... and, for a step that trains through frozen ops of a DAG (adapters below a depthwise
#: conv, a pooling, a residual fork...), their backward.
BACKWARD_RUNTIME = ("tl_backward.h", "tl_backward.c")


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


@dataclass(frozen=True)
class QemuEnv:
    env: str
    board: str          # board JSON of the local platform
    emulation: str      # tinylora.emulate target name / boards' `emulation`
    title: str
    command: tuple[str, ...]


_ELF = "${platformio.build_dir}/${this.__env__}/firmware.elf"


_TIMEOUT = ("timeout", "120")


#: The QEMU environments of platformio.ini: tinylora.targets' toolchains, run under a timeout.
QEMU_ENVS = tuple(QemuEnv(t.pio.env, t.pio.board, t.name, t.pio.title, _TIMEOUT + t.qemu + (_ELF,))
                  for t in PIO_ENVS)


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
    adapter_bytes: size of one form-1 adapter file (0: no adapters, the frozen forward)
    test_cases:  suite -> number of Unity cases its tests report
    """
    lib_files: dict[str, str]
    test_files: dict[str, str]
    runtime: tuple[str, ...] = RUNTIME
    can_train: bool = False
    arena_bytes: int = 0
    description: str = ""
    checkpoint_bytes: int = 0
    adapter_bytes: int = 0
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
    #: the program image against the board's flash layout (tinylora.planning.flash.FlashBudget)
    flash: object = None
    #: the frozen kernels (codegen/project/kernels.py) and the largest kernel scratch one frozen
    #: call takes from the arena for them
    backend: str = "portable"
    kernel_scratch: int = 0
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


def _name_rows(names: list[str], per_row: int = 4) -> list[str]:
    quoted = [f'"{n}"' for n in names]
    rows = [", ".join(quoted[i:i + per_row]) for i in range(0, len(quoted), per_row)]
    return [r + ("," if k < len(rows) - 1 else "") for k, r in enumerate(rows)]


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
