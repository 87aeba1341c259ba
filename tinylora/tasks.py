"""Adaptation tasks on the bundled digits: domains the base model handles badly.

Each task gives real-valued (N, 8, 8, 1) images in [0, 1] and labels for training and
testing, plus the original domain for measuring forgetting. Everything is a pure function
of the seed.
"""
from __future__ import annotations

import numpy as np

from tinylora import datasets
from tinylora.errors import InputError


def _sensor(x: np.ndarray, seed: int) -> np.ndarray:
    """A different sensor: per-pixel gain (fixed pattern), a one-pixel mounting shift and a
    raised black level."""
    rng = np.random.default_rng(seed)
    gain = rng.uniform(0.3, 1.0, size=(8, 8, 1)).astype(np.float32)
    return np.clip(np.roll(x, 1, axis=2) * gain + np.float32(0.25), 0, 1)


#: A user's own labels for four of the classes (e.g. a keypad wired differently).
REMAP = np.array([0, 7, 2, 8, 4, 5, 6, 1, 3, 9])


def task(name: str, seed: int = 0) -> dict:
    sp = datasets.digits_split(seed)
    if name == "sensor":
        return dict(name=name, description="per-pixel gain, 1-pixel shift, black level +0.25",
                    x_train=_sensor(sp["x_train"], seed + 7), y_train=sp["y_train"].astype(np.int64),
                    x_test=_sensor(sp["x_test"], seed + 7), y_test=sp["y_test"].astype(np.int64),
                    x_orig=sp["x_test"], y_orig=sp["y_test"].astype(np.int64))
    if name == "remap":
        return dict(name=name, description="user's labels: 1<->7 and 3<->8 swapped",
                    x_train=sp["x_train"], y_train=REMAP[sp["y_train"]],
                    x_test=sp["x_test"], y_test=REMAP[sp["y_test"]],
                    x_orig=sp["x_test"], y_orig=sp["y_test"].astype(np.int64))
    raise InputError(f"unknown task {name!r}; tasks: {', '.join(TASKS)}")


TASKS = ("sensor", "remap")
