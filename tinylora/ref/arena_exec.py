"""Running the training step inside one byte array at an ArenaPlan's offsets (Trainer.run_in_arena):
a wrong plan corrupts results, so the planner is tested by the executor."""
from __future__ import annotations

import numpy as np


def arena_view(arena: np.ndarray, b) -> np.ndarray:
    return arena[b.offset: b.offset + b.size].view(b.dtype).reshape(b.shape)


class ArenaLifetimes:
    """Where each lifetime of each per-step buffer lives (from an ArenaPlan)."""

    def __init__(self, data: np.ndarray, scratch):
        self.data = data
        self.versions: dict[str, list] = {}
        for b in scratch:
            self.versions.setdefault(b.name, []).append(b)

    def at(self, name: str, t: int, writing: bool):
        for b in self.versions.get(name, ()):
            if (b.first == t) if writing else (b.first <= t <= b.last):
                return b
        return None


class ArenaBuffers(dict):
    """The executor's buffers, with every planned per-step buffer read from and written to
    the arena at the planned offset of its current lifetime."""

    def __init__(self, arena: ArenaLifetimes, now: int, initial: dict):
        super().__init__()
        self.arena, self.now, self.exponent = arena, now, {}
        for k, v in initial.items():
            self[k] = v

    def __setitem__(self, name, value):
        b = self.arena.at(name, self.now, writing=True)
        if b is None:
            return super().__setitem__(name, value)
        if isinstance(value, tuple):          # a gradient: int16 mantissas + exponent
            value, self.exponent[name] = value
        arena_view(self.arena.data, b)[...] = np.asarray(value).reshape(b.shape)
        super().__setitem__(name, None)

    def __getitem__(self, name):
        b = self.arena.at(name, self.now, writing=False)
        if b is None:
            return super().__getitem__(name)
        v = arena_view(self.arena.data, b).copy().astype(np.int64 if b.dtype == "int16" else b.dtype)
        v = v.reshape((1,) + tuple(b.shape))
        return (v, self.exponent[name]) if name in self.exponent else v
