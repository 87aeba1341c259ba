"""Boards are data: one TOML file per board in boards/ (shipped in the wheel)."""
from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass

from tinylora.errors import BoardError
from tinylora.resources import resource_dir

MAX_ARENA = 512 * 1024
REQUIRED = ("name", "title", "pio_board", "platform", "framework", "cpu", "isa", "ram_total_kb",
            "ram_app_kb", "reserve_kb", "flash_kb", "backend", "emulation")



@dataclass(frozen=True)
class Board:
    name: str
    title: str
    pio_board: str
    platform: str
    framework: str
    cpu: str
    isa: str
    ram_total_kb: int
    ram_app_kb: int
    reserve_kb: int
    flash_kb: int
    backend: str
    emulation: str
    static_limit_kb: int | None = None
    heap_arena: bool = False      # the generated app takes its arena from the heap, not .bss
    simd: str | None = None       # the SIMD unit the backend's optimised kernels use, if any
    console: dict | None = None   # the generated project's serial console (UART, pins)
    storage: dict | None = None   # where the generated project keeps checkpoints
    flash: dict | None = None     # flash layout: sectors, program region, code estimate
    adapters: dict | None = None  # adapter slots: address, slots, slot_size
    perf: dict | None = None      # clock_mhz, cpi, active_current_ma, voltage: time/energy estimates

    def __hash__(self) -> int:
        return hash(self.name)

    @property
    def ram_app(self) -> int:
        return self.ram_app_kb * 1024

    @property
    def arena_budget(self) -> int:
        """RAM the training arena may use: the app's RAM less the reserve, capped by a static
        placement limit (ESP32's dram0_0_seg) and by tinylora's 512 KB ceiling."""
        budget = (self.ram_app_kb - self.reserve_kb) * 1024
        if self.static_limit_kb is not None:
            budget = min(budget, self.static_limit_kb * 1024)
        return min(budget, MAX_ARENA)


def board_names() -> list[str]:
    return sorted(p.stem for p in resource_dir("boards").glob("*.toml"))


def load_board(name: str) -> Board:
    path = resource_dir("boards") / f"{name}.toml"
    if not str(name).replace("_", "").replace("-", "").isalnum() or not path.is_file():
        names = board_names()
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.4)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise BoardError(f"unknown board {name!r}.{hint} Boards: {', '.join(names)}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise BoardError(f"{path}: {e}") from None
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise BoardError(f"{path} lacks {', '.join(missing)}")
    unknown = set(data) - set(Board.__dataclass_fields__)
    if unknown:
        raise BoardError(f"{path} has unknown keys {sorted(unknown)}")
    return Board(**data)
