"""The training step as data: its operations (:class:`ScheduleOp`) and the names of the buffers they
read and write. The numpy executor runs the schedule, the planner places its buffers, the generator
prints it: nothing else decides what a step is."""
from __future__ import annotations

from dataclasses import dataclass


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
    return "x" if i < 0 else f"act{i}"


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
