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


# --------------------------------------------------------------------------- fleets (non-IID)

#: Classes each fleet client sees (label skew): a window of consecutive classes.
CLIENT_CLASSES = 4


def client_classes(client: int) -> np.ndarray:
    """The label subset of fleet client `client`: CLIENT_CLASSES consecutive classes, shifted by
    3 per client, so any 4 neighbouring clients cover all ten."""
    return (3 * client + np.arange(CLIENT_CLASSES)) % 10


def _client_sensor(x: np.ndarray, seed: int, client: int) -> np.ndarray:
    """The fleet's sensor model (1-pixel shift, black level +0.25) with each unit's own
    per-pixel gain pattern (seeded by the client number)."""
    return _sensor(x, seed + 7 + 1000 * (client + 1))


def fleet_task(name: str, clients: int, seed: int = 0) -> dict:
    """`task(name)` split over `clients` devices, non-IID: each client holds a disjoint shard of
    the training set drawn only from its own label subset (:func:`client_classes`); for `sensor`
    each client's images also carry its own gain pattern. The held-out test set mixes every
    client's domain (test image n through client n % clients' sensor). Pure function of the seed.

    Returns the task dict plus ``shards``: a list of (x, y) per client."""
    if not isinstance(clients, int) or clients < 1:
        raise InputError(f"a fleet needs at least 1 client, got {clients!r}")
    t = task(name, seed)
    sp = datasets.digits_split(seed)
    y_true = sp["y_train"].astype(np.int64)          # the digit shown (labels may be remapped)
    holders = [[c for c in range(clients) if d in client_classes(c)] for d in range(10)]
    rng = np.random.default_rng(seed + 101)
    owner = np.array([holders[d][rng.integers(len(holders[d]))] if holders[d] else -1 for d in y_true])
    shards = []
    for c in range(clients):
        idx = np.flatnonzero(owner == c)
        x = sp["x_train"][idx]
        shards.append((_client_sensor(x, seed, c) if name == "sensor" else t["x_train"][idx],
                       t["y_train"][idx]))
    if name == "sensor":
        x_test = np.stack([_client_sensor(x[None], seed, n % clients)[0] for n, x in enumerate(sp["x_test"])])
        t = dict(t, x_test=x_test)
    return dict(t, shards=shards, clients=clients,
                description=t["description"] + f"; {clients} clients, {CLIENT_CLASSES} classes each")
