"""What a fleet computes, without the network: the shared base, one client's local round and the
server's integer aggregation. The Flower apps (:mod:`tinylora.fleet.apps`) only move these
integers around, so everything here is testable (and reproducible) on its own.

Aggregation, defined to the bit: every federated entry is an int16 master (the adapter file's
payload). With updates u_k (int64) and integer weights w_k (local sample counts; 1 each under
DP), S = sum_k w_k u_k and W = sum_k w_k, the global entry is

    sign(S) * floor((|S| + floor(W / 2)) / W)        (round half away from zero)

saturated to [-32768, 32767]. Integer arithmetic only, so any machine gets the same bytes.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from tinylora import tasks
from tinylora.errors import ConfigError
from tinylora.examples import example_model
from tinylora.formats.adapter import Adapter
from tinylora.ref import lora
from tinylora.ref.config import LoRAConfig
from tinylora.ref.model import load_tflite
from tinylora.ref.trainer import Trainer

#: "ffa": A frozen at the shared seeded initialisation, only B federated (FFA-LoRA);
#: "both": A and B both trained and averaged separately (mean(B) mean(A) != mean(BA)).
MODES = ("ffa", "both")


@dataclass(frozen=True)
class FleetSpec:
    """One fleet run; every client and the server derive everything from it."""
    task: str = "sensor"
    clients: int = 3
    rounds: int = 2
    seed: int = 0
    rank: int = 8
    lr: float = 0.2
    local_steps: int = 64
    mode: str = "ffa"
    dp_noise: float = 0.0
    clip: float = 0.0

    def __post_init__(self):
        if self.task not in tasks.TASKS:
            raise ConfigError(f"unknown task {self.task!r}; tasks: {', '.join(tasks.TASKS)}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.clients < 1 or self.rounds < 0 or self.local_steps < 1:
            raise ConfigError("a fleet needs clients >= 1, rounds >= 0 and local_steps >= 1")
        if self.dp_noise < 0 or (self.dp_noise > 0 and not self.clip > 0):
            raise ConfigError("--dp-noise needs --clip C > 0 (the clipping norm, in int16 master units)")

    @property
    def dp(self) -> bool:
        return self.clip > 0

    def to_config(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, cfg) -> FleetSpec:
        """From a Flower run config / ConfigRecord (unknown keys are ignored)."""
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        kw = {k: cfg[k] for k in fields if k in cfg}
        for k, v in kw.items():
            kw[k] = {"int": int, "float": float, "str": str}[fields[k]](v)
        return cls(**kw)


def round_half_away(x) -> np.ndarray:
    """Real (possibly clipped or noised) values to integers, halves away from zero."""
    x = np.asarray(x, np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def aggregate(updates: list[tuple[np.ndarray, int]]) -> np.ndarray:
    """The integer weighted mean of the module docstring, as int16."""
    if not updates:
        raise ConfigError("nothing to aggregate: no client sent a valid update this round")
    w = np.array([int(n) for _, n in updates], np.int64)
    if np.any(w < 1):
        raise ConfigError(f"client weights must be >= 1, got {w.tolist()}")
    return integer_mean(sum(wk * np.asarray(u, np.int64) for (u, _), wk in zip(updates, w)), int(w.sum()))


def integer_mean(s, total: int) -> np.ndarray:
    """sign(S) floor((|S| + floor(W/2)) / W), saturated to int16: S the weighted sum, W the total weight."""
    s = np.asarray(s, np.int64)
    mean = np.sign(s) * ((np.abs(s) + total // 2) // total)
    return np.clip(mean, lora.MASTER_MIN, lora.MASTER_MAX).astype(np.int16)


class Fleet:
    """The shared base (model, calibration, seeded A) and the fleet's data for one FleetSpec."""

    def __init__(self, spec: FleetSpec):
        self.spec = spec
        self.model = load_tflite(example_model())
        self.data = tasks.fleet_task(spec.task, spec.clients, spec.seed)
        # Scales must be the same on every client: calibrate on public original-domain images.
        self.calibration = self.model.quantize(self.data["x_orig"][:64])
        self.x_test = self.model.quantize(self.data["x_test"])
        self._trainer = self.trainer()          # reused (reloaded) by every local round
        self.header = self.adapter_header(self._trainer)
        self.initial = self.masters(self._trainer)   # the seeded start every run shares

    @staticmethod
    def adapter_header(t: Trainer) -> bytes:
        """The adapter file's header and layer descriptors (format 2: base model SHA-256, loss,
        ranks, shapes, scales, alpha) with the `updates` field zeroed: what a client's update
        must match to be aggregated."""
        data = Adapter.from_trainer(t).to_bytes()
        n = 64 + 28 * len(t.adapters)
        return data[:48] + bytes(4) + data[52:n]

    def adapter(self, vec, updates: int = 0) -> Adapter:
        """The global adapter (adapter file format 2, int16 masters) for a master vector;
        `updates` (information only): the local steps that went into it."""
        t = self.load(self._trainer, vec)
        t.updates = int(updates)
        return Adapter.from_trainer(t)

    def trainer(self) -> Trainer:
        """A fresh trainer: every client and the server get the same seeded A and zero B."""
        s = self.spec
        t = Trainer(self.model, LoRAConfig(rank=s.rank), lr=s.lr, seed=s.seed + 1,
                    calibration=self.calibration)
        if s.mode == "ffa":
            for ad in t.adapters.values():
                ad.k.m_update_a = (0, 0)   # A never moves: only B is learned and federated
        return t

    def masters(self, t: Trainer | None = None) -> np.ndarray:
        """The federated int16 masters, flat, in adapter-file payload order (per layer: A then
        B for "both"; B only for "ffa")."""
        t = t or self._trainer
        parts = []   # (of the trainer last loaded when t is None: use .initial for the start)
        for _, ad in sorted(t.adapters.items()):
            if self.spec.mode == "both":
                parts.append(ad.a_master.reshape(-1))
            parts.append(ad.b_master.reshape(-1))
        return np.concatenate(parts).astype(np.int16)

    def load(self, t: Trainer, vec) -> Trainer:
        """Set the trainer's masters from a flat vector (accumulators cleared)."""
        vec = np.asarray(vec)
        if vec.shape != self.masters(t).shape:
            raise ConfigError(f"update has {vec.size} masters, this fleet's adapter has "
                              f"{self.masters(t).size}")
        pos = 0
        for _, ad in sorted(t.adapters.items()):
            for name in (("A", "B") if self.spec.mode == "both" else ("B",)):
                n = ad.arrays[name].size
                ad.arrays[name][...] = vec[pos: pos + n].reshape(ad.arrays[name].shape)
                ad.arrays["d" + name][...] = 0
                pos += n
            ad.refresh()
        return t

    def local_round(self, client: int, vec, rnd: int) -> tuple[np.ndarray, int]:
        """One client's round: start from the global masters, `local_steps` SGD steps on a
        seeded draw of its own shard; returns (its masters, its sample count)."""
        x, y, n = self.local_samples(client, rnd)
        if n == 0:
            return np.asarray(vec, np.int16), 0
        t = self.load(self._trainer, vec)
        t.fit(x, y, shuffle=False)
        return self.masters(t), n

    def local_samples(self, client: int, rnd: int) -> tuple[np.ndarray, np.ndarray, int]:
        """The int8 inputs and labels of one client's round, in training order (`local_steps`
        of them: a seeded draw of its shard), and the shard's size. A numpy client and a device
        client (tinylora.fleet.devices) train on exactly these."""
        x, y = self.data["shards"][client]
        if len(y) == 0:
            return x[:0], y[:0], 0
        rng = np.random.default_rng([self.spec.seed, client, rnd])
        reps = math.ceil(self.spec.local_steps / len(y))
        idx = np.concatenate([rng.permutation(len(y)) for _ in range(reps)])[: self.spec.local_steps]
        return self.model.quantize(x[idx]), y[idx], len(y)

    def vector(self, adapter: Adapter) -> np.ndarray:
        """The federated masters of an adapter file (form 1), flat: as :meth:`masters`."""
        parts = []
        for layer in adapter.layers:
            if self.spec.mode == "both":
                parts.append(np.asarray(layer["a"]).reshape(-1))
            parts.append(np.asarray(layer["b"]).reshape(-1))
        return np.concatenate(parts).astype(np.int16)

    def accuracy(self, vec) -> float:
        """Held-out accuracy of the global adapter (the test images of every client's domain)."""
        t = self.load(self._trainer, vec)
        return float(np.mean(t.predict(self.x_test) == self.data["y_test"]))

    def check_update(self, values, header: bytes) -> str | None:
        """Why a client's update cannot be aggregated (None: it can). `header`: the adapter
        file header the client sent with it."""
        header = bytes(header)
        if header[12:44] != self.header[12:44]:
            return (f"update is for another base model (SHA-256 {header[12:44].hex()[:16]}..., "
                    f"the fleet's {self.header[12:44].hex()[:16]}...)")
        if header[:48] + bytes(4) + header[52:] != self.header:
            return "update's adapter header (ranks, shapes, scales, alpha or loss) differs from the fleet's config"
        want = self.initial.shape
        v = np.asarray(values)
        if v.shape != want:
            return f"update has {v.size} masters, the fleet's adapter has {want[0]} (truncated or another config)"
        if not np.issubdtype(v.dtype, np.number) or not np.all(np.isfinite(v)):
            return "update holds non-numeric or non-finite values"
        if np.any(np.abs(v.astype(np.float64)) > 32768):
            return "update holds values outside the int16 master range"
        return None
