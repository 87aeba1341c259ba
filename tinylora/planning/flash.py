"""Flash budgets: a board's flash layout (``[flash]``, ``[storage]``, ``[adapters]`` of
boards/*.toml), checked for consistency, and the program image a project needs (code estimate
plus embedded constants) checked against the layout's program region."""
from __future__ import annotations

from dataclasses import dataclass, field

from tinylora.errors import BoardError, BudgetError
from tinylora.planning.boards import Board

#: Adapter slots a board may have (TL_ADAPTER_MAX_SLOTS of firmware/app/tl_adapter.h).
MAX_ADAPTER_SLOTS = 64


@dataclass(frozen=True)
class Region:
    name: str
    start: int
    size: int

    @property
    def end(self) -> int:
        return self.start + self.size

    def describe(self) -> str:
        return f"{self.name} 0x{self.start:08X}..0x{self.end:08X} ({self.size:,} B)"


@dataclass(frozen=True)
class FlashLayout:
    """Where things live in a board's flash: the program (``app``), checkpoints, adapter slots
    (the region starts with two erase units for the active-adapter record)."""
    board: str
    base: int
    size: int
    boundaries: tuple[int, ...]       # every sector's start, and the flash's end
    regions: tuple[Region, ...]
    code_bytes: int                   # the board's code estimate (boards/*.toml code_kb)
    adapter_slots: int
    adapter_slot_size: int

    def region(self, name: str) -> Region:
        return next(r for r in self.regions if r.name == name)

    @property
    def app(self) -> Region:
        return self.region("program")

    def sector_sizes(self, region: Region) -> list[int]:
        b = self.boundaries
        return [b[i + 1] - b[i] for i in range(len(b) - 1) if region.start <= b[i] < region.end]


def _sector_boundaries(board: Board, flash: dict, base: int, size: int) -> tuple[int, ...]:
    if "sectors_kb" in flash:
        sizes = [int(s) * 1024 for s in flash["sectors_kb"]]
    elif "sector_kb" in flash:
        sizes = [int(flash["sector_kb"]) * 1024] * (size // (int(flash["sector_kb"]) * 1024))
    else:
        raise BoardError(f"boards/{board.name}.toml [flash] needs sectors_kb (a list) or sector_kb")
    if sum(sizes) != size or not all(sizes):
        raise BoardError(f"boards/{board.name}.toml: the sectors add up to {sum(sizes):,} B, "
                         f"not flash_kb = {board.flash_kb} KB: fix sectors_kb / sector_kb")
    bounds = [base]
    for s in sizes:
        bounds.append(bounds[-1] + s)
    return tuple(bounds)


def _record_unit(board: Board, bounds: tuple[int, ...]) -> int:
    """The erase unit at the start of the [adapters] region: each of the two copies of the
    active-adapter record (firmware/app/tl_adapter.h) takes one."""
    start = int((board.adapters or {}).get("address", -1))
    if start not in bounds[:-1]:
        raise BoardError(f"boards/{board.name}.toml [adapters] address does not start a sector")
    i = bounds.index(start)
    return bounds[i + 1] - bounds[i]


def _regions(board: Board, flash: dict, bounds: tuple[int, ...]) -> list[Region]:
    storage, adapters = board.storage or {}, board.adapters or {}
    regions = []
    if flash.get("reserved_size"):
        regions.append(Region("bootloader and tables", int(flash["base"]), int(flash["reserved_size"])))
    regions.append(Region("program", int(flash["app_address"]), int(flash["app_size"])))
    start = storage.get("address", storage.get("offset"))
    if start is None or "size" not in storage:
        raise BoardError(f"boards/{board.name}.toml [storage] needs address (or offset) and size")
    regions.append(Region("checkpoints", int(start), int(storage["size"])))
    if int(adapters.get("slots", 0)):   # two active-record units, then the slots
        regions.append(Region("adapter slots", int(adapters["address"]),
                              2 * _record_unit(board, bounds)
                              + int(adapters["slots"]) * int(adapters["slot_size"])))
    return regions


def flash_layout(board: Board) -> FlashLayout:
    """The board's flash layout, checked: every region inside the flash, on sector boundaries,
    no two overlapping, checkpoint and adapter slots made of whole erase units."""
    flash = board.flash
    where = f"boards/{board.name}.toml"
    if not flash:
        raise BoardError(f"{where} has no [flash] section (base, sectors, app_address, app_size, code_kb)")
    missing = [k for k in ("base", "app_address", "app_size", "code_kb") if k not in flash]
    if missing:
        raise BoardError(f"{where} [flash] lacks {', '.join(missing)}")
    base, size = int(flash["base"]), board.flash_kb * 1024
    bounds = _sector_boundaries(board, flash, base, size)
    regions = _regions(board, flash, bounds)
    for r in regions:
        if r.size <= 0 or r.start < base or r.end > base + size:
            raise BoardError(f"{where}: {r.describe()} is not inside the flash "
                             f"0x{base:08X}..0x{base + size:08X}")
        if r.start not in bounds or r.end not in bounds:
            raise BoardError(f"{where}: {r.describe()} does not start and end on sector boundaries: "
                             "align it to the [flash] sector map (an erase would reach past it)")
    ordered = sorted(regions, key=lambda r: r.start)
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.start < a.end:
            raise BoardError(f"{where}: {a.describe()} overlaps {b.describe()}: move or shrink one "
                             "(erasing one would erase the other)")
    layout = FlashLayout(board.name, base, size, bounds, tuple(regions), int(flash["code_kb"]) * 1024,
                         int((board.adapters or {}).get("slots", 0)),
                         int((board.adapters or {}).get("slot_size", 0)))
    unit = int((board.storage or {}).get("erase_unit", 0))
    if set(layout.sector_sizes(layout.region("checkpoints"))) != {unit}:
        raise BoardError(f"{where}: [storage] erase_unit {unit:,} B is not the size of the "
                         "checkpoint region's sectors")
    if layout.adapter_slots > MAX_ADAPTER_SLOTS:
        raise BoardError(f"{where}: [adapters] slots = {layout.adapter_slots}; the firmware keeps a "
                         f"checked state for at most {MAX_ADAPTER_SLOTS} (TL_ADAPTER_MAX_SLOTS): use fewer")
    if layout.adapter_slots:
        slots = layout.region("adapter slots")
        first = slots.start + 2 * _record_unit(board, bounds)
        for k in range(layout.adapter_slots + 1):
            if first + k * layout.adapter_slot_size not in bounds:
                raise BoardError(f"{where}: [adapters] slot {k} does not start on a sector boundary")
    return layout


@dataclass
class FlashBudget:
    """The program image a project needs, item by item, against the board's program region."""
    layout: FlashLayout
    items: list[tuple[str, int, str]] = field(default_factory=list)   # (what, bytes, how counted)

    @property
    def need(self) -> int:
        return sum(n for _, n, _ in self.items)

    @property
    def limit(self) -> int:
        return self.layout.app.size

    @property
    def fits(self) -> bool:
        return self.need <= self.limit

    def report(self) -> str:
        width = max(len(w) for w, _, _ in self.items)
        lines = [f"flash of {self.layout.board}: the program image against the program region"]
        lines += [f"  {w:<{width}}  {n:>11,} B  {how}" for w, n, how in self.items]
        verdict = "fits" if self.fits else f"does NOT fit: {self.need - self.limit:,} B too many"
        lines.append(f"  {'total':<{width}}  {self.need:>11,} B  {verdict} in the {self.limit:,} B "
                     f"program region (0x{self.layout.app.start:08X}..0x{self.layout.app.end:08X})")
        for r in self.layout.regions:
            if r.name != "program":
                lines.append(f"  also: {r.describe()}")
        return "\n".join(lines)


def flash_budget(board: Board, frozen: int, lora: int, samples: int, vectors: int | None = None,
                 samples_note: str = "") -> FlashBudget:
    """The breakdown for ``board``: code estimate, frozen weights, LoRA constants and the larger
    of the embedded samples (application) and the biggest test suite's vectors (test firmware)."""
    layout = flash_layout(board)
    budget = FlashBudget(layout)
    budget.items.append(("code (estimate)", layout.code_bytes,
                         f"boards/{board.name}.toml code_kb: runtime, app and framework, see docs/flash.md"))
    budget.items.append(("frozen weights", frozen, "int8 weights, int32 bias, multipliers, shifts"))
    budget.items.append(("LoRA constants", lora, "adapter initial values, rescale multipliers"))
    budget.items.append(("embedded samples", samples, samples_note or "the application's samples"))
    if vectors is not None:
        extra = max(0, vectors - samples)
        budget.items.append(("test vectors", extra, f"largest test suite {vectors:,} B, beyond the "
                             "samples (test firmware carries vectors instead of samples)"))
    return budget


def check_flash(budget: FlashBudget, plan=None) -> FlashBudget:
    """``budget``, or a BudgetError (one line: the breakdown and what to do)."""
    if budget.fits:
        return budget
    app, others = budget.layout.app, [r for r in budget.layout.regions if r.name != "program"]
    items = ", ".join(f"{w} {n:,} B" for w, n, _ in budget.items)
    raise BudgetError(
        f"the program image needs {budget.need:,} B of flash but {budget.layout.board}'s program "
        f"region is {budget.limit:,} B (0x{app.start:08X}..0x{app.end:08X}; beyond it: "
        f"{'; '.join(r.describe() for r in others)}): {items}; the code estimate is "
        f"boards/{budget.layout.board}.toml code_kb (docs/flash.md). "
        "Fix: a smaller model (fewer or narrower layers), fewer embedded samples "
        "(gen --samples), or a board with a larger program region (tinylora boards)", plan=plan)
