"""Static arena plans: every byte of a training step at an offset decided on the host.

The trainer's schedule (:attr:`tinylora.ref.trainer.Trainer.schedule`) says which op reads and
writes which buffer. Each value a buffer holds between its write and its last read is one
*lifetime*; lifetimes that overlap in time must not overlap in memory. Persistent state
(adapter masters, int8 views, accumulators, momentum) lives for ever, at the start of the
arena; per-step scratch is placed after it by an offline greedy planner (TFLM's idea:
largest first, lowest offset that fits), tried in several orders, the best kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinylora.errors import BudgetError, ConfigError, ScheduleError
from tinylora.planning.boards import load_board
from tinylora.planning.kernel_scratch import buffer_name, frozen_layer_scratch
from tinylora.planning.plotting import plot_plan
from tinylora.ref.dag import is_chain_path
from tinylora.ref.lora import lora_rows, row_scratch_shape
from tinylora.ref.schedule import BufferName
from tinylora.ref.trainer import LoRAConfig, Trainer, act

#: frozen ops whose input gradient sums several output gradients (a 64-bit scratch in C)
GATHERING_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D")

ALIGN = 16
DEFAULT_BUDGET = 512 * 1024


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


@dataclass
class Buffer:
    """One lifetime of one buffer. first/last are schedule op indices (-1: the step's input)."""
    name: str
    dtype: str
    shape: tuple[int, ...]
    first: int
    last: int
    kind: str                 # "persistent" | "scratch"
    what: str = ""
    offset: int = -1

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize

    @property
    def padded(self) -> int:
        return _align(self.size)

    def overlaps_in_time(self, other: Buffer) -> bool:
        return not (self.last < other.first or other.last < self.first)

    def overlaps_in_memory(self, other: Buffer) -> bool:
        return not (self.offset + self.padded <= other.offset or other.offset + other.padded <= self.offset)


@dataclass
class ArenaPlan:
    buffers: list[Buffer]
    ops: list[str]                          # the schedule, one label per op
    budget: int = DEFAULT_BUDGET
    budget_source: str = "default"
    flash_bytes: int = 0                    # frozen weights and constants (const, not arena)
    notes: list[str] = field(default_factory=list)

    @property
    def persistent_bytes(self) -> int:
        return sum(b.padded for b in self.buffers if b.kind == "persistent")

    @property
    def scratch_bytes(self) -> int:
        scratch = [b for b in self.buffers if b.kind == "scratch"]
        return max((b.offset + b.padded for b in scratch), default=self.persistent_bytes) - self.persistent_bytes

    @property
    def total_bytes(self) -> int:
        return self.persistent_bytes + self.scratch_bytes

    def live_at(self, t: int) -> list[Buffer]:
        return [b for b in self.buffers if b.kind == "scratch" and b.first <= t <= b.last]

    @property
    def peak(self) -> tuple[int, int]:
        """(op index, bytes) of the largest sum of simultaneously live scratch."""
        best = (-1, 0)
        for t in range(-1, len(self.ops)):
            total = sum(b.padded for b in self.live_at(t))
            if total > best[1]:
                best = (t, total)
        return best

    @property
    def lower_bound_bytes(self) -> int:
        """No placement can beat persistent state plus the peak of live scratch."""
        return self.persistent_bytes + self.peak[1]

    def check(self) -> None:
        """Raise AssertionError if two buffers that live at the same time share bytes."""
        scratch = [b for b in self.buffers if b.kind == "scratch"]
        for i, a in enumerate(scratch):
            if a.offset < self.persistent_bytes or a.offset % ALIGN:
                raise ScheduleError(f"{a.name} at offset {a.offset} is inside persistent state or unaligned")
            for b in scratch[i + 1:]:
                if a.overlaps_in_time(b) and a.overlaps_in_memory(b):
                    raise ScheduleError(f"{a.name} and {b.name} are live together and overlap")

    def breakdown(self) -> str:
        per = {}
        for b in self.buffers:
            if b.kind == "persistent":
                per[b.what] = per.get(b.what, 0) + b.padded
        t, peak = self.peak
        live = sorted(self.live_at(t), key=lambda b: -b.padded)
        parts = ", ".join(f"{k} {v:,}" for k, v in per.items())
        top = ", ".join(f"{b.name} {b.padded:,}" for b in live[:6])
        at = self.ops[t] if 0 <= t < len(self.ops) else "input"
        return (f"persistent {self.persistent_bytes:,} B ({parts}); scratch {self.scratch_bytes:,} B "
                f"(peak {peak:,} B at op {t} {at}: {top})")

    def report(self) -> str:
        lines = [f"arena {self.total_bytes:,} B = persistent {self.persistent_bytes:,} + scratch "
                 f"{self.scratch_bytes:,}; lower bound {self.lower_bound_bytes:,} B "
                 f"({self.total_bytes / max(self.lower_bound_bytes, 1):.3f}x); budget "
                 f"{self.budget:,} B ({self.budget_source}); frozen weights in flash "
                 f"{self.flash_bytes:,} B", ""]
        rows = [(b.name, b.kind, b.what, b.dtype, "x".join(map(str, b.shape)) or "1", f"{b.size:,}",
                 f"{b.offset:,}", f"{b.first}..{b.last}" if b.kind == "scratch" else "always")
                for b in sorted(self.buffers, key=lambda b: (b.kind != "persistent", b.offset))]
        header = ("buffer", "kind", "what", "dtype", "shape", "bytes", "offset", "ops")
        widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
        for r in [header, tuple("-" * w for w in widths)] + rows:
            lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
        lines += ["", "schedule:"] + [f"  {i:3d} {label}" for i, label in enumerate(self.ops)]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def plot(self, path) -> None:
        """Draw the arena (offset, vertical) over the step's timeline (op, horizontal).
        ``.svg`` needs nothing; ``.png`` needs matplotlib."""
        plot_plan(self, path)


# ----------------------------------------------------------------------------- placement

def place(buffers: list[Buffer]) -> list[Buffer]:
    """Offsets for every buffer: persistent ones packed first, scratch by a greedy planner."""
    offset = 0
    for b in buffers:
        if b.kind == "persistent":
            b.offset = offset
            offset += b.padded
    scratch = [b for b in buffers if b.kind == "scratch"]
    orders = [
        lambda b: (-b.padded, b.first, b.name),                      # TFLM's: largest first
        lambda b: (-(b.last - b.first), -b.padded, b.name),          # longest-lived first
        lambda b: (b.first, -b.padded, b.name),                      # in time order
        lambda b: (-b.padded * (b.last - b.first + 1), b.name),      # largest area first
    ]
    best = None
    for key in orders:
        trial = {id(b): off for b, off in _greedy(sorted(scratch, key=key), offset)}
        end = max((trial[id(b)] + b.padded for b in scratch), default=offset)
        if best is None or end < best[0]:
            best = (end, trial)
    for b in scratch:
        b.offset = best[1][id(b)]
    return buffers


def _greedy(order: list[Buffer], base: int):
    placed: list[tuple[Buffer, int]] = []
    for b in order:
        clashes = sorted((off, off + p.padded) for p, off in placed if p.overlaps_in_time(b))
        candidate = base
        for lo, hi in clashes:            # lowest gap that holds b
            if candidate + b.padded <= lo:
                break
            candidate = max(candidate, hi)
        placed.append((b, candidate))
    return placed


# ----------------------------------------------------------------------------- from a trainer

def lifetimes(trainer, backend: str = "portable") -> list[Buffer]:
    """Every buffer lifetime of the trainer's training step, persistent state included; with an
    optimised library ``backend``, the kernel scratch each frozen layer's call needs."""
    sched = trainer.schedule
    shapes = _step_buffer_shapes(trainer)
    out: list[Buffer] = []
    current: dict[str, Buffer] = {}

    def open_(name, t):
        dtype, shape, what = shapes[name]
        b = Buffer(name, dtype, shape, t, t, "scratch", what)
        current[name] = b
        out.append(b)

    open_("x", -1)
    sparse = trainer.capacity(1 << 30) is not None
    for t, op in enumerate(sched):
        for name in op.reads:
            if name in current:
                current[name].last = t
        for name in op.writes:
            if name in shapes:
                open_(name, t)
        for name, dtype, shape, what in _op_scratch(trainer, op, sparse):
            out.append(Buffer(name, dtype, shape, t, t, "scratch", what))
        if op.op == "forward" and backend != "portable":
            need = frozen_layer_scratch(backend, trainer.model.layers[op.layer])
            if need:
                out.append(Buffer(buffer_name(op.layer), "int8", (need,), t, t, "scratch",
                                  f"kernel scratch ({backend})"))
        if (op.op == "backward" and op.layer in trainer.adapters and trainer.accum_steps == 1
                and not trainer.fused):       # fused: the backward updates the masters itself
            ad = trainer.adapters[op.layer]   # per-step gradient buffers: backward .. update
            upd = next(k for k, o in enumerate(sched) if o.op == "update" and o.layer == op.layer)
            for p, arr in (("A", ad.a_master), ("B", ad.b_master)):
                if sparse:
                    cap = trainer.capacity(arr.size)
                    out.append(Buffer(f"s{p}{op.layer}", "int32", (cap, 2), t, upd, "scratch",
                                      "sparse gradient (index, value)"))
                else:
                    out.append(Buffer(BufferName.adapter("d" + p, op.layer), "int32", arr.shape, t, upd, "scratch",
                                      "gradient accumulator"))
    for i, ad in sorted(trainer.adapters.items()):
        for name, arr in ad.arrays.items():
            if name.startswith("d") and trainer.accum_steps == 1:
                continue   # per-step (placed above); persistent only across micro-batches
            what = {"A": "masters", "B": "masters", "Aq": "int8 views", "Bq": "int8 views",
                    "dA": "accumulators", "dB": "accumulators", "mA": "momentum", "mB": "momentum"}[name]
            out.append(
                Buffer(BufferName.adapter(name, i), str(arr.dtype), arr.shape, -1, len(sched), "persistent", what)
            )
    return out


def _step_buffer_shapes(trainer) -> dict[str, tuple[str, tuple, str]]:
    layers = trainer.model.layers
    x_type = {"FLOAT32": "float32", "UINT8": "uint8"}.get(trainer.model.input_dtype, "int8")
    shapes = {"x": (x_type, trainer.model.input_shape, "input")}
    tainted = set(trainer.tainted)
    for layer in layers[: trainer.logits_layer + 1]:
        shapes[act(layer.index)] = ("int8", layer.output_shape, "activation")
        if layer.index in tainted:
            shapes[BufferName.grad(layer.index)] = ("int16", layer.output_shape, "gradient")
    for i, ad in trainer.adapters.items():
        shapes[BufferName.h(i)] = ("int8", (lora_rows(ad.layer), ad.k.rank), "LoRA intermediate")
    return shapes


def _op_scratch(trainer, op, sparse: bool):
    """Op-internal scratch the C kernels use (numpy keeps these in temporaries)."""
    layers = trainer.model.layers
    if op.op == "loss":   # MSE reads the caller's target and needs no scratch
        return [("probs", "int8", layers[op.layer].output_shape, "softmax probabilities")] \
            if trainer.loss == "xent" else []
    if op.op != "backward" or layers[op.layer].kind == "RESHAPE":
        return []
    layer = layers[op.layer]
    if not is_chain_path(layer):   # frozen ops: a 64-bit sum where inputs gather several outputs
        if layer.kind in GATHERING_OPS and trainer._slots(op.layer):   # k x k conv sums can pass
            wide = "int64" if layer.kind == "CONV_2D" else "int32"      # 2^31; one channel's can't
            shape = row_scratch_shape(layer.input_shape, 4) if layer.kind == "DEPTHWISE_CONV_2D" else layer.input_shape
            return [(BufferName.dx(op.layer), wide, shape, f"input gradient ({wide})")]
        return []
    rows, depth = lora_rows(layer), layer.weights.shape[-1]
    out = []
    if op.layer in trainer.adapters:
        out.append((BufferName.dh(op.layer), "int64", (rows, trainer.adapters[op.layer].k.rank), "LoRA backward"))
    if trainer._slots(op.layer):
        out.append((BufferName.dx(op.layer), "int64", row_scratch_shape((rows, depth), 8), "input gradient (64-bit)"))
    return out


def plan_trainer(trainer, budget: int | None = None, budget_source: str = "",
                 backend: str = "portable") -> ArenaPlan:
    """The arena plan of one training step (frozen kernels of ``backend``: its kernel scratch
    is planned like every other buffer, planning/kernel_scratch.py)."""
    bufs = place(lifetimes(trainer, backend))
    plan = ArenaPlan(bufs, [str(op) for op in trainer.schedule],
                     budget=DEFAULT_BUDGET if budget is None else int(budget),
                     budget_source=budget_source or ("given" if budget is not None else "default 512 KB"),
                     flash_bytes=flash_bytes(trainer.model))
    plan.notes.append("scratch lifetimes follow the schedule; op-internal scratch (dh, dx, probs) "
                      "is what the C kernels use, counted here")
    plan.check()
    return plan


def flash_bytes(model) -> int:
    """Frozen weights, biases and per-channel constants (they live in flash as const)."""
    total = 0
    for layer in model.layers:
        if layer.weights is not None:
            total += layer.weights.size + (0 if layer.bias is None else 4 * layer.bias.size)
            total += 8 * layer.weights.shape[0 if layer.kind != "DEPTHWISE_CONV_2D" else 3]
    return total


def inference_plan(model) -> ArenaPlan:
    """The same planner on inference alone (forward ops, activations only), with liveness over
    the DAG: a tensor lives from the op that writes it to the last op that reads it (the
    model output to the end). For a chain this is "until the next layer"."""
    last_read = {t: layer.index for layer in model.layers for t in layer.inputs}
    end = len(model.layers) - 1

    def dtype(d: str) -> str:
        return "float32" if d == "FLOAT32" else "int8"

    bufs = [Buffer("x", dtype(model.input_dtype), model.input_shape, -1,
                   last_read.get(model.input_tensor, 0), "scratch", "input")]
    for layer in model.layers:
        last = end if layer.output == model.output_tensor else last_read.get(layer.output,
                                                                             layer.index)
        bufs.append(Buffer(act(layer.index), dtype(layer.output_dtype), layer.output_shape,
                           layer.index, last, "scratch", "activation"))
    plan = ArenaPlan(place(bufs), [f"forward[{l.index}] {l.kind}" for l in model.layers],
                     flash_bytes=flash_bytes(model))
    plan.check()
    return plan


def check_budget(plan: ArenaPlan, suggest=None) -> ArenaPlan:
    """Raise BudgetError (with a breakdown and what would fit) when the plan is over budget."""
    if plan.total_bytes <= plan.budget:
        return plan
    msg = (f"the training step needs {plan.total_bytes:,} B of RAM but the budget is "
           f"{plan.budget:,} B ({plan.budget_source}): {plan.breakdown()}.")
    fits = suggest() if suggest is not None else []
    if fits:
        msg += " These would fit: " + "; ".join(f"{label} ({n:,} B)" for label, n in fits) + "."
    else:
        msg += " Nothing smaller fits either: lower the budget's other uses or pick a larger board."
    msg += (" On the command line: a lower --rank, or --auto-rank (it chooses per-layer ranks and "
            "recomputation that fit); in Python: LoRAConfig(rank=..., targets=...) and "
            "Trainer(recompute='all').")
    raise BudgetError(msg, plan=plan)


def checked_plan(trainer, budget: int | None = None, board: str | None = None,
                 backend: str = "portable") -> ArenaPlan:
    """The static arena plan of one training step of ``trainer`` with the frozen kernels of
    ``backend``; BudgetError if it exceeds the budget (default 512 KB, or the named board's
    arena budget), naming smaller configs that fit."""
    source = ""
    if board is not None:
        b = load_board(board)
        budget, source = b.arena_budget, f"{b.name}: {b.ram_app // 1024} KB for the app"
    p = plan_trainer(trainer, budget, source, backend)
    return check_budget(p, suggest=lambda: _alternatives(trainer, p.budget, backend))


def _alternatives(trainer, budget: int, backend: str = "portable") -> list[tuple[str, int]]:
    """Smaller configurations of the same trainer that fit `budget`: (label, bytes)."""
    fits = []
    base = dict(lr=trainer.lr, seed=trainer.seed, accum_steps=trainer.accum_steps,
                grad_density=trainer.grad_density, grad_capacity=trainer.grad_capacity)
    ranks = {i: ad.k.rank for i, ad in trainer.adapters.items()}
    top = max(ranks)
    trials = [("recompute all", trainer.config, "all")]
    r = max(ranks.values())
    while r > 1:
        r //= 2
        trials.append(
            (f"rank {r}", LoRAConfig(rank=r, alpha=trainer.config.alpha, targets=tuple(ranks)), trainer.recompute)
        )
        trials.append(
            (f"rank {r} + recompute all", LoRAConfig(rank=r, alpha=trainer.config.alpha, targets=tuple(ranks)), "all")
        )
    if len(ranks) > 1:
        only = f"only layer {top} (LoRAConfig targets=({top},))"
        trials.append((f"{only}, rank {ranks[top]}", LoRAConfig(rank=ranks[top], targets=(top,)), trainer.recompute))
        trials.append((f"{only}, rank 1", LoRAConfig(rank=1, targets=(top,)), trainer.recompute))
    seen = {_setting(trainer)}   # each suggestion once, and never the configuration that failed
    for label, cfg, rc in trials:
        try:
            t = Trainer(trainer.model, cfg, recompute=rc, **base)
            n = plan_trainer(t, backend=backend).total_bytes
        except (ConfigError, BudgetError):
            continue
        if _setting(t) in seen:
            continue
        seen.add(_setting(t))
        if n <= budget:
            fits.append((label, n))
    return fits[:4]


def _setting(t) -> tuple:
    """What decides a trainer's arena: its per-layer ranks and its recomputation."""
    return tuple((i, ad.k.rank) for i, ad in sorted(t.adapters.items())), t.recompute
