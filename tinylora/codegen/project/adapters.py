"""Adapter slots of a generated project: what the firmware's adapter files must be (the C form
of docs/adapter.md's header checks) and how many slots of what size the board gives them.

The adapter region (firmware/app/tl_adapter.h) holds two active-record erase units, then the
slots. On the board it is the ``[adapters]`` region of boards/<board>.toml; under QEMU and in
the tests it is RAM, each slot the adapter file rounded up to :data:`RAM_UNIT` bytes."""
from __future__ import annotations

import struct
from dataclasses import dataclass

from tinylora.codegen import c_array_rows
from tinylora.formats.adapter import LOSSES, Adapter
from tinylora.planning.flash import FlashLayout

#: The erase unit of the RAM adapter region (QEMU, tests).
RAM_UNIT = 1024


def _f32_bits(value: float) -> str:
    return f"0x{struct.unpack('<I', struct.pack('<f', float(value)))[0]:08X}u"


def adapter_file_bytes(trainer) -> int:
    """Bytes of the trainer's form-1 (int16 masters) adapter file."""
    return len(Adapter.from_trainer(trainer).to_bytes("masters"))


def adapter_context(trainer) -> dict:
    """The template context of the adapter config in tl_app_model_train.c: the header fields
    and layer descriptors of the trainer's own file (tinylora.formats.adapter.Adapter)."""
    ad = Adapter.from_trainer(trainer)
    layers = []
    for l in ad.layers:
        rank, depth = l["a"].shape
        channels = l["b"].shape[0]
        layers.append({"index": l["index"], "rank": rank, "depth": depth, "channels": channels,
                       "s_a": _f32_bits(l["s_a"]), "s_b": _f32_bits(l["s_b"]),
                       "s_h": _f32_bits(l["s_h"]), "alpha": _f32_bits(l["alpha"]),
                       "what": f"layer {l['index']}: r {rank}, K {depth}, C {channels}"})
    return {"sha_rows": c_array_rows(list(ad.model_sha256)), "loss": LOSSES[ad.loss],
            "layers": layers}


@dataclass(frozen=True)
class SlotPlan:
    """How many adapter slots a project has, their sizes, and why (for the README)."""
    slots: int
    slot_size: int          # on the board
    ram_slot_size: int      # under QEMU and in the tests
    file_bytes: int         # one form-1 adapter file
    note: str
    erase_unit: int = 0     # of the board's adapter region (one active-record copy)

    @property
    def region_size(self) -> int:
        """Bytes of the board's adapter region: two record units, then the slots."""
        return 2 * self.erase_unit + self.slots * self.slot_size if self.slots else 0

    @property
    def ram_size(self) -> int:
        return 2 * RAM_UNIT + self.slots * self.ram_slot_size if self.slots else 0


def slot_plan(layout: FlashLayout, file_bytes: int, can_train: bool) -> SlotPlan:
    """The board's [adapters] slots, or none (and why): a build that cannot train has no masters
    to hold; a board without [adapters] has no slots; a file larger than a slot fits none."""
    ram_slot = -(-max(file_bytes, 1) // RAM_UNIT) * RAM_UNIT
    if not can_train:
        return SlotPlan(0, 0, 0, 0, "none: the frozen forward has no adapter masters")
    if not layout.adapter_slots:
        return SlotPlan(0, 0, 0, file_bytes, f"none: boards/{layout.board}.toml has no [adapters] slots")
    if file_bytes > layout.adapter_slot_size:
        return SlotPlan(0, 0, 0, file_bytes,
                        f"none: an adapter file of {file_bytes:,} B exceeds {layout.board}'s "
                        f"{layout.adapter_slot_size:,} B slots (a smaller rank fits)")
    region = layout.region("adapter slots")
    return SlotPlan(layout.adapter_slots, layout.adapter_slot_size, ram_slot, file_bytes,
                    f"{layout.adapter_slots} slots of {layout.adapter_slot_size:,} B for "
                    f"{file_bytes:,} B adapter files",
                    (region.size - layout.adapter_slots * layout.adapter_slot_size) // 2)
