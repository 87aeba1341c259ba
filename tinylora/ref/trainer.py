"""The on-device training step as data, and the numpy reference that executes it.

A :class:`Trainer` turns a model and a :class:`LoRAConfig` into a fixed *schedule*:
a list of :class:`ScheduleOp` (forward, LoRA forward, loss, recompute, backward,
update), each naming the buffers it reads and writes. :meth:`Trainer.step` runs
exactly that list; the arena planner places its buffers and the code generator
prints it as straight-line C, so the three cannot disagree about what a step is.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from tinylora.errors import ConfigError, InputError, ScheduleError
from tinylora.formats import checkpoint
from tinylora.formats.adapter import Adapter
from tinylora.ref import checks, lora, quant
from tinylora.ref.adapted import AdaptedLayer
from tinylora.ref.arena_exec import ArenaBuffers, ArenaLifetimes, arena_view
from tinylora.ref.config import RECOMPUTE_MODES, LoRAConfig, short_name
from tinylora.ref.dag import DagMixin
from tinylora.ref.executor import StepExecutor
from tinylora.ref.head import HeadMixin
from tinylora.ref.layers import Layer
from tinylora.ref.loss import loss_real
from tinylora.ref.model import Model
from tinylora.ref.schedule import BufferName, act, dead_after, is_step_buffer  # noqa: F401 (act: re-exported)


class Trainer(HeadMixin, DagMixin, StepExecutor):
    """Integer-only LoRA training of a frozen int8 model (the numpy reference)."""

    def __init__(self, model: Model, config: LoRAConfig | None = None, lr: float = 0.004,
                 grad_threshold: int = 0, grad_density: float | None = None,
                 recompute: str = "none", seed: int = 0, momentum: float = 0.0,
                 accum_steps: int = 1, calibration=None, grad_capacity: int | None = None,
                 loss: str | None = None, adapter=None, fuse_update: bool | None = None):
        self.model = model
        self._loaded = None if adapter is None else (adapter if isinstance(adapter, Adapter)
                                                     else Adapter.load(adapter))
        if self._loaded is not None:   # resume: the file's layers, scales, alpha, loss, masters
            config = self._loaded.trainer_config(model, config, loss)
        self.inference_only = self._loaded is not None and self._loaded.form == "deploy"
        self.config = config or LoRAConfig()
        if recompute not in RECOMPUTE_MODES:
            raise ConfigError(f"recompute must be one of {RECOMPUTE_MODES}, got {recompute!r}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ConfigError(f"lr (learning rate) must be a finite number > 0, got {lr!r}")
        if grad_density is not None and not 0 < grad_density <= 1:
            raise ConfigError(f"grad_density must be in (0, 1], got {grad_density}")
        if grad_threshold < 0:
            raise ConfigError("grad_threshold must be >= 0")
        if accum_steps < 1:
            raise ConfigError("accum_steps must be >= 1")
        if not 0 <= momentum < 1:
            raise ConfigError("momentum must be in [0, 1)")
        self.seed = seed
        self.grad_threshold = int(grad_threshold)
        self.grad_density = grad_density
        if grad_capacity is not None and grad_capacity < 1:
            raise ConfigError("grad_capacity must be >= 1 (entries per gradient tensor)")
        self.grad_capacity = grad_capacity
        self.accum_steps = int(accum_steps)
        self.lr_q = quant.quantize_multiplier(lr)
        self.lr = self.lr_q[0] * 2.0 ** (self.lr_q[1] - 31)   # the exact learning rate
        self.momentum_q = quant.quantize_multiplier(momentum) if momentum else (0, 0)
        self.fused = self._resolve_fused(fuse_update)
        self.fused_now = self.fused   # False only while gradients() reads the accumulators
        self.updates = self._loaded.updates if self._loaded is not None else 0
        self.step_count = self.updates * self.accum_steps
        self._setup_head(loss if loss is not None else self.config.loss)
        self.config = dataclasses.replace(self.config, loss=self.loss)  # copies keep it
        self._setup_graph()
        self._setup_targets(calibration)
        self.recompute = self._resolve_recompute(recompute)
        self.schedule = self._build_schedule()
        self._free_after = dead_after(self.schedule)
        self._arena = None

    # ----------------------------------------------------------------- structure

    def _resolve_fused(self, fuse_update: bool | None) -> bool:
        """Fused update (docs/numerics.md section 5): the backward applies each weight gradient
        to the masters as it forms it, so no int32 gradient buffer exists. Possible when nothing
        needs the whole gradient: one micro-batch per update, no momentum, no top-k capacity."""
        blockers = [what for what, on in (("accum_steps > 1", self.accum_steps > 1),
                                          ("momentum", bool(self.momentum_q[0])),
                                          ("a gradient capacity (grad_density / grad_capacity)",
                                           self.capacity(1 << 30) is not None)) if on]
        if fuse_update and blockers:
            raise ConfigError(f"fuse_update=True needs the whole gradient of a step to be unused "
                              f"after it is formed, but {' and '.join(blockers)} need(s) it: drop "
                              "fuse_update or those options")
        return not blockers if fuse_update is None else bool(fuse_update)

    def _setup_targets(self, calibration) -> None:
        layers = [l for l in self.model.layers[: self.logits_layer + 1] if l.index in self.needed]
        targets = self.config.targets
        if targets is None:
            layers = [l for l in layers if not l.options.get("signed_multipliers")]
            chosen = [l for l in layers if l.kind == "FULLY_CONNECTED"]
            if not chosen:  # no FC (person-detection-like heads): the last 1x1 conv
                chosen = [l for l in layers if lora.is_adaptable(l)][-1:]
        else:
            chosen = [self._find_layer(t) for t in targets]
        if not chosen:
            raise ConfigError("no target layers: the model has no FULLY_CONNECTED layer and no "
                              "1x1 CONV_2D layer; LoRA adapts only those")
        for layer in chosen:
            if not lora.is_adaptable(layer):
                raise ConfigError(f"layer {layer.index} {layer.kind} ({short_name(layer.name)}) cannot "
                                  "take a LoRA adapter: targets must be FULLY_CONNECTED or 1x1 CONV_2D")
            if layer.options.get("signed_multipliers"):
                raise ConfigError(f"layer {layer.index} {layer.kind} ({short_name(layer.name)}) has "
                                  "negative weight scales that do not fold into its weights (a "
                                  "weight of -128): LoRA cannot join it; choose another target")
        self.lowest = min(l.index for l in chosen)
        rms = self._calibrate(chosen, calibration) if self._loaded is None else {}
        rng = self._rng = lora.Xorshift32(self.seed)
        self.adapters: dict[int, AdaptedLayer] = {}
        for layer in sorted(chosen, key=lambda l: l.index):
            r = self.config.rank_of(layer)
            if not 1 <= r <= 255:
                raise ConfigError(f"rank {r} for layer {layer.index} must be in 1..255")
            depth, c_out = layer.weights.shape[-1], layer.weights.shape[0]
            a = rng.uniform_int(-lora.A_INIT, lora.A_INIT, r * depth).reshape(r, depth)  # drawn anyway:
            a, b = a << lora.MASTER_FRAC_BITS, np.zeros((c_out, r), np.int64)         # same PRNG state
            if self._loaded is None:
                k = lora.layer_constants(layer, r, self.config.alpha_of(layer), rms[layer.index])
            else:
                k, a, b = self._loaded.layer_state(layer, self.config.alpha_of(layer))
            self.adapters[layer.index] = AdaptedLayer(layer, k, a, b, momentum=bool(self.momentum_q[0]))
        self._setup_taint()
        self._backward_constants()

    def _find_layer(self, key) -> Layer:
        for layer in self.model.layers:
            if key in (layer.index, layer.name, short_name(layer.name)):
                return layer
        names = ", ".join(f"{l.index}:{short_name(l.name)}" for l in self.model.layers)
        raise ConfigError(f"no layer {key!r} in the model (layers: {names})")

    def _calibrate(self, chosen, calibration) -> dict[int, float]:
        """rms of (x - zp) at each target's input: from calibration samples, else assumed."""
        out = {}
        if calibration is not None:
            x = np.asarray(calibration)
            acts = self._run_layers({-1: self.model._check_input(x)[0]},
                                    max(l.index for l in chosen) - 1, False)
        for layer in chosen:
            zp = int(layer.input_q.zero_point[0])
            src = self.srcs[layer.index][0]
            if calibration is not None:
                x_off = lora.rows_view(layer, acts[src]).astype(np.float64) - zp
                out[layer.index] = float(np.sqrt(np.mean(x_off ** 2)))
            else:
                prev = self.model.layers[src] if src >= 0 else None
                lo, hi = (prev.act_min, prev.act_max) if prev is not None and prev.kind != "RESHAPE" else (-128, 127)
                out[layer.index] = (hi - lo) / 4
        return out

    # ----------------------------------------------------------------- execution

    def step(self, x, label: int) -> StepResult:
        """One training step on one sample (int8 input). Returns its loss in Q10 (a
        :class:`StepResult`: an ``int`` as before, with ``.loss`` and the step's ``.logits``)."""
        x, _ = self.model._check_input(x)
        if x.shape[0] != 1:
            raise InputError("step() takes one sample; use fit() for many")
        return self._run({"x": x, "label": self._label(label)}, start=0)

    def _run(self, bufs: dict, start: int) -> StepResult:
        if self.inference_only:
            raise ConfigError("this trainer holds a deploy-form adapter (int8 values, no masters): it "
                              "predicts but cannot train; load the masters form (.tla, form 1) to train")
        if self._arena is not None:
            bufs = ArenaBuffers(self._arena, start - 1, bufs)
        for j in range(start, len(self.schedule)):
            op = self.schedule[j]
            if self._arena is not None:
                bufs.now = j
            missing = [b for b in op.reads if is_step_buffer(b) and b not in bufs]
            if missing:
                raise ScheduleError(f"schedule op {op} reads {missing}, which are not live")
            getattr(self, f"_op_{op.op}")(op, bufs)
            for b in self._free_after[j]:   # what the schedule no longer needs is dropped, so
                bufs.pop(b, None)           # recomputation is real, not a no-op
        self.step_count += 1
        if self.step_count % self.accum_steps == 0:
            self.updates += 1
        return StepResult(bufs["loss"], bufs["logits"])


    def capacity(self, size: int) -> int | None:
        """How many gradient entries of a `size`-entry tensor one update may apply (None: all)."""
        if self.grad_density is not None:
            return max(1, math.ceil(self.grad_density * size))
        if self.grad_capacity is not None:
            return min(self.grad_capacity, size)
        return None

    def trace(self, x, label: int) -> dict:
        """Every buffer of one step's forward pass and loss (nothing is updated)."""
        x, _ = self.model._check_input(x)
        bufs = {"x": x[:1], "label": self._label(label)}
        for op in self.schedule:
            if op.op in ("forward", "lora_forward", "loss") and not op.recompute:
                getattr(self, f"_op_{op.op}")(op, bufs)
        return bufs

    def gradients(self, x, label: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The integer gradients of one sample, dequantized to real dL/dA, dL/dB (for tests
        and diagnostics; the adapter and step count are left unchanged)."""
        x, _ = self.model._check_input(x)
        saved = {i: (ad.acc_a.copy(), ad.acc_b.copy()) for i, ad in self.adapters.items()}
        for ad in self.adapters.values():
            ad.acc_a, ad.acc_b = 0, 0
        bufs = {"x": x[:1], "label": self._label(label)}
        self.fused_now = False   # the backward writes the accumulators, the masters stay
        try:
            for op in self.schedule:
                if op.op != "update":
                    getattr(self, f"_op_{op.op}")(op, bufs)
        finally:
            self.fused_now = self.fused
        unit = self.lr / self.accum_steps * 2.0 ** (lora.MASTER_FRAC_BITS + lora.ACCUM_FRAC_BITS)
        out = {}
        for i, ad in self.adapters.items():
            out[i] = (ad.acc_a.astype(np.float64) * ad.k.s_a / unit, ad.acc_b.astype(np.float64) * ad.k.s_b / unit)
            ad.acc_a, ad.acc_b = saved[i]
        return out

    # ----------------------------------------------------------------- state

    @property
    def rng_state(self) -> int:
        return self._rng.state

    @rng_state.setter
    def rng_state(self, value: int) -> None:
        self._rng.state = int(value)

    def checkpoint(self) -> bytes:
        """Everything needed to continue training bit-exactly (docs/checkpoint.md)."""
        return checkpoint.encode(self)

    def restore(self, data: bytes) -> None:
        """Continue from a checkpoint made by a trainer with the same model and config;
        CheckpointError for anything damaged or foreign (nothing is changed then)."""
        checkpoint.decode(self, data)

    # ----------------------------------------------------------------- memory

    def run_in_arena(self, plan) -> np.ndarray:
        """From now on keep every planned buffer inside one byte array at the plan's offsets
        (persistent state included). A wrong plan corrupts results; returns the arena."""
        arena = np.zeros(plan.total_bytes, np.uint8)
        by_name = {}
        for b in plan.buffers:
            by_name.setdefault(b.name, b)
        for i, ad in self.adapters.items():
            views = {}
            for name in ad.arrays:
                b = by_name.get(BufferName.adapter(name, i))
                if b is not None:
                    views[name] = arena_view(arena, b)
            ad.bind(views)
        self._arena = ArenaLifetimes(arena, [b for b in plan.buffers if b.kind == "scratch"])
        return arena

    # ----------------------------------------------------------------- conveniences

    def segment_inputs(self, x) -> np.ndarray:
        """The frozen prefix run once over many samples (it never changes): the input of the
        lowest adapter (see :meth:`prefix_buffers` for every buffer a DAG's step needs)."""
        x, _ = self.model._check_input(x)
        return self._run_layers({-1: x}, self.lowest - 1, False)[self.srcs[self.lowest][0]]

    def fit(self, X, Y, epochs: int = 1, shuffle: bool = True, callback=None) -> list[dict]:
        """Train on int8 inputs X (N, *input_shape) and labels Y; one step per sample."""
        X = checks.finite(X, "X")
        if X.ndim == 0 or len(X) == 0:
            raise InputError(f"fit() needs at least one sample, got X of shape {X.shape}")
        if not np.issubdtype(X.dtype, np.integer) and self.model.input_dtype == "INT8":
            X = self.model.quantize(X)
        Y = self._labels(Y, len(X))
        if int(epochs) != epochs or epochs < 0:
            raise InputError(f"epochs must be a whole number >= 0, got {epochs!r}")
        prefix = self.prefix_buffers(X)
        start = self._start()  # the schedule's ops before it are the frozen prefix
        rng = np.random.default_rng(self.seed)
        history = []
        for epoch in range(epochs):
            order = rng.permutation(len(Y)) if shuffle else np.arange(len(Y))
            total, correct = 0, 0
            for n, idx in enumerate(order):
                bufs = {name: v[idx: idx + 1] for name, v in prefix.items()}
                bufs["label"] = Y[idx]
                result = self._run(bufs, start)
                total += result.loss
                correct += int(self.loss == "xent" and np.argmax(result.logits) == Y[idx])
                if callback is not None:
                    callback(epoch, n + 1, len(order))
            history.append({"epoch": epoch + 1, "loss": loss_real(total) / len(Y),
                            "train_accuracy": correct / len(Y)})
        return history

    def logits(self, X) -> np.ndarray:
        """int8 logits of the adapted model (batched)."""
        x, _ = self.model._check_input(X)
        return self._run_layers({-1: x}, self.logits_layer, True)[self.logits_layer]

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X)
        if not np.issubdtype(X.dtype, np.integer) and self.model.input_dtype == "INT8":
            X = self.model.quantize(X)
        return np.argmax(self.logits(X), axis=-1)

    @property
    def adapter(self) -> Adapter:
        return Adapter.from_trainer(self)


class StepResult(int):
    """The result of :meth:`Trainer.step`: the loss in Q10 (the int itself, so code that
    treats the step's result as the loss keeps working) and the step's int8 logits."""

    logits: np.ndarray

    def __new__(cls, loss: int, logits) -> StepResult:
        result = super().__new__(cls, int(loss))
        result.logits = np.asarray(logits, np.int8).reshape(-1).copy()
        return result

    @property
    def loss(self) -> int:
        return int(self)


