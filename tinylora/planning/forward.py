"""Where the generated forward keeps each tensor: liveness over the model's DAG.

The generated ``<prefix>_forward(input, output, scratch)`` reads the model input from the
caller's ``input`` and writes the model output into the caller's ``output``; every other
activation tensor lives in ``scratch`` from the op that writes it to the last op that reads it
(a residual branch's tensor stays live until its ADD or CONCATENATION). Lifetimes that overlap
in time never share bytes; offsets come from the arena planner's greedy placement
(:func:`tinylora.planning.arena.place`, several orders, the best kept).

A RESHAPE moves no bytes (TFLM copies them unchanged, also when the quantization differs): its
output is the same storage as its input (an *alias*), so the storage lives until the last
reader of either. Only a RESHAPE from the model's input straight to its output copies.

:func:`plan_forward` gives a :class:`ForwardPlan`; :meth:`ForwardPlan.report` compares its
peak with a TFLM arena figure when one is given (TFLM also keeps the input and output tensors
in its arena: :attr:`ForwardPlan.tflm_comparable_bytes` adds them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinylora.errors import ScheduleError
from tinylora.planning.arena import ALIGN, Buffer, place

__all__ = ["Slot", "ForwardPlan", "plan_forward"]


@dataclass(frozen=True)
class Slot:
    """Where one tensor's bytes are: the caller's ``input`` / ``output``, or ``scratch`` at
    ``offset``."""
    where: str
    offset: int = 0

    def expr(self) -> str:
        """The C expression of the tensor's first byte inside ``<prefix>_forward``."""
        if self.where != "scratch":
            return self.where
        return "scratch" if self.offset == 0 else f"scratch + {self.offset}"


@dataclass
class ForwardPlan:
    """Slots of every tensor the forward touches, and the scratch lifetimes placed."""
    slots: dict[int, Slot]
    buffers: list[Buffer]
    aliased: set[int] = field(default_factory=set)   # RESHAPE layers that move no bytes
    input_bytes: int = 0
    output_bytes: int = 0

    @property
    def scratch_bytes(self) -> int:
        """The scratch the forward needs (the end of the highest placed buffer)."""
        return max((b.offset + b.padded for b in self.buffers), default=0)

    @property
    def peak_bytes(self) -> int:
        """The largest sum of simultaneously live scratch: no placement needs less."""
        times = {t for b in self.buffers for t in (b.first, b.last)}
        return max((sum(b.padded for b in self.buffers if b.first <= t <= b.last) for t in times),
                   default=0)

    @property
    def tflm_comparable_bytes(self) -> int:
        """Scratch plus the input and output tensors (TFLM keeps those in its arena too)."""
        return self.scratch_bytes + self.input_bytes + self.output_bytes

    def report(self, tflm_arena: int | None = None) -> str:
        s = (f"forward scratch {self.scratch_bytes:,} B (peak of live tensors "
             f"{self.peak_bytes:,} B) + input {self.input_bytes:,} B + output "
             f"{self.output_bytes:,} B = {self.tflm_comparable_bytes:,} B")
        if tflm_arena:
            s += f"; TFLM's arena {tflm_arena:,} B ({self.tflm_comparable_bytes / tflm_arena:.2f}x)"
        return s


def _nbytes(shape, dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * (4 if dtype == "FLOAT32" else 1)


def _storage(model) -> tuple[dict[int, int], set[int]]:
    """tensor -> the tensor whose storage it shares (RESHAPE outputs alias their input)."""
    root: dict[int, int] = {}
    aliased = set()
    for layer in model.layers:
        src = root.get(layer.inputs[0], layer.inputs[0]) if layer.inputs else None
        if layer.kind == "RESHAPE" and not (src == model.input_tensor
                                            and layer.output == model.output_tensor):
            root[layer.output] = src
            aliased.add(layer.index)
    return root, aliased


def plan_forward(model) -> ForwardPlan:
    """The slots of ``model``'s tensors for its generated forward (see the module doc)."""
    root, aliased = _storage(model)
    find = lambda t: root.get(t, t)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    size: dict[int, int] = {}
    for layer in model.layers:
        r = find(layer.output)
        if layer.index not in aliased:
            first[r] = layer.index
            size[r] = _nbytes(layer.output_shape, layer.output_dtype)
        for t in layer.inputs:
            last[find(t)] = max(last.get(find(t), -1), layer.index)
    fixed = {find(model.input_tensor): Slot("input"), find(model.output_tensor): Slot("output")}
    buffers = []
    for r in sorted(first):
        if r not in fixed:
            buffers.append(Buffer(f"t{r}", "int8", (size[r],), first[r], last.get(r, first[r]),
                                  "scratch", "activation"))
    place(buffers)
    slots = {r: Slot("scratch", b.offset) for r, b in zip(sorted(r for r in first if r not in fixed),
                                                          buffers)}
    slots.update(fixed)
    tensors = {model.input_tensor, *(l.output for l in model.layers)}
    plan = ForwardPlan({t: slots[find(t)] for t in tensors if find(t) in slots}, buffers, aliased,
                       _nbytes(model.input_shape, model.input_dtype),
                       _nbytes(model.output_shape, model.output_dtype))
    _check(plan)
    return plan


def _check(plan: ForwardPlan) -> None:
    """Raise ScheduleError if a tensor is unaligned or shares bytes with one live with it."""
    for i, a in enumerate(plan.buffers):
        if a.offset % ALIGN:
            raise ScheduleError(f"tensor {a.name} at offset {a.offset} is not {ALIGN}-aligned")
        for b in plan.buffers[i + 1:]:
            if a.overlaps_in_time(b) and a.overlaps_in_memory(b):
                raise ScheduleError(f"tensors {a.name} and {b.name} are live together and overlap")
