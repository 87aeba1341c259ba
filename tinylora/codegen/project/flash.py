"""The flash a project's program image needs: the constants the generated C embeds, counted
from the same arrays the generator prints, checked against the board's program region
(:mod:`tinylora.planning.flash`)."""
from __future__ import annotations

import re

import numpy as np

from tinylora.codegen.frozen import plan_frozen
from tinylora.codegen.step import plan_step
from tinylora.planning.boards import Board
from tinylora.planning.flash import FlashBudget, check_flash, flash_budget

#: Bytes of each C element type the generator prints.
CTYPE_BYTES = {"int8_t": 1, "uint8_t": 1, "char": 1, "int16_t": 2, "uint16_t": 2,
               "int32_t": 4, "uint32_t": 4, "int64_t": 8, "uint64_t": 8}

#: A constant array the generator prints: `const <type> <name>[<size>] = { ... };`.
_C_ARRAY = re.compile(r"const\s+(\w+)\s+(\w+)\[[^\]]*\]\s*=\s*\{([^}]*)\};")

#: The frozen layers' arrays (tl_model_l5_weights, ...): a test suite's own copy of the model
#: replaces the library's in its firmware, so it is not counted twice.
_FROZEN = re.compile(r"_l\d+_(weights|bias|multiplier|shift)$")


def _array_bytes(arrays) -> int:
    return sum(a.size * CTYPE_BYTES[a.ctype] for a in arrays)


def model_bytes(trainer, trains: bool = True, plan=None) -> tuple[int, int]:
    """(frozen weights, LoRA constants) in bytes, from the arrays the generated C holds."""
    frozen = _array_bytes(plan_frozen(trainer.model).arrays)
    if not trains:
        return frozen, 0
    return frozen, _array_bytes(plan_step(trainer, plan).arrays) - frozen


def c_array_bytes(text: str, skip_frozen: bool = False) -> int:
    """Bytes of the constant arrays in generated C ``text`` (elements counted in the initialisers)."""
    total = 0
    for ctype, name, body in _C_ARRAY.findall(text):
        if ctype not in CTYPE_BYTES or (skip_frozen and _FROZEN.search(name)):
            continue
        total += len([v for v in body.split(",") if v.strip()]) * CTYPE_BYTES[ctype]
    return total


def test_vector_bytes(test_files: dict[str, str]) -> int:
    """The largest test suite's constants (test/<suite>/...), without its copy of the model."""
    suites: dict[str, int] = {}
    for path, text in test_files.items():
        suite = path.split("/")[0]
        suites[suite] = suites.get(suite, 0) + c_array_bytes(text, skip_frozen=True)
    return max(suites.values(), default=0)


def project_flash(board: Board, trainer, x: np.ndarray, y: np.ndarray, code, plan=None) -> FlashBudget:
    """The checked flash budget of a project (BudgetError with the breakdown if it does not fit)."""
    frozen, lora = model_bytes(trainer, code.can_train, plan)
    samples = int(x.size) * x.itemsize + len(y)
    budget = flash_budget(board, frozen, lora, samples, test_vector_bytes(code.test_files),
                          samples_note=f"{len(x)} samples of {x[0].size} B and their labels")
    return check_flash(budget, plan)
