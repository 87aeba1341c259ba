"""The training step as data: its operations (:class:`ScheduleOp`) and the names of the buffers they
read and write. The numpy executor runs the schedule, the planner places its buffers, the generator
prints it: nothing else decides what a step is."""
from __future__ import annotations

from dataclasses import dataclass

from tinylora.errors import InputError


@dataclass
class ScheduleOp:
    """One operation of a training step: what it does, to which layer, and its buffers."""
    op: str               # forward | lora_forward | loss | backward | update
    layer: int
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    recompute: bool = False

    def __str__(self) -> str:
        tag = " (recompute)" if self.recompute else ""
        return f"{self.op}[{self.layer}]{tag}: {', '.join(self.reads)} -> {', '.join(self.writes)}"


def act(i: int) -> str:
    """The int8 activation after layer ``i`` (``x``, the step's input, for i < 0)."""
    return "x" if i < 0 else f"act{i}"


#: The persistent arrays of one adapter: int16 masters, their int8 views, int32 update
#: accumulators, momentum.
ADAPTER_ARRAYS = ("A", "B", "Aq", "Bq", "dA", "dB", "mA", "mB")


class BufferName:
    """The one place that spells a training step's buffer names (the arena plan, the numpy
    executor and the generated C's offset macros all use these strings)."""

    act = staticmethod(act)

    @staticmethod
    def grad(i: int) -> str:
        """int16 gradient mantissas at layer ``i``'s output (with a shared exponent)."""
        return f"grad{i}"

    @staticmethod
    def h(i: int) -> str:
        """int8 LoRA intermediate x A^T of layer ``i``."""
        return f"h{i}"

    @staticmethod
    def dh(i: int) -> str:
        """int64 scratch: the gradient at ``h`` of layer ``i``."""
        return f"dh{i}"

    @staticmethod
    def dx(i: int) -> str:
        """int64 scratch: the input gradient of layer ``i`` before normalisation."""
        return f"dx{i}"

    @staticmethod
    def adapter(kind: str, i: int) -> str:
        """A persistent array (one of :data:`ADAPTER_ARRAYS`) of the adapter on layer ``i``."""
        if kind not in ADAPTER_ARRAYS:
            raise InputError(f"no adapter array {kind!r}; one of {ADAPTER_ARRAYS}")
        return f"{kind}{i}"


def is_step_buffer(name: str) -> bool:
    """Per-step buffers (activations, h, gradients): the ones that live and die in a step."""
    return name.startswith(("act", "h", "grad")) or name == "x"


def dead_after(schedule: list[ScheduleOp]) -> list[list[str]]:
    """For each op, the per-step buffers whose current value nobody reads afterwards."""
    dead = [[] for _ in schedule]
    for j, op in enumerate(schedule):
        for b in set(op.reads) | set(op.writes):
            if not is_step_buffer(b):
                continue
            later = None
            for k in range(j + 1, len(schedule)):
                if b in schedule[k].reads:
                    later = k
                    break
                if b in schedule[k].writes:
                    break
            if later is None:
                dead[j].append(b)
    return dead
