"""Trainer -> C: the training step as straight-line calls into the tl_ runtime.

:func:`generate_step` renders, for one :class:`tinylora.ref.trainer.Trainer` and its
:class:`tinylora.planning.arena.ArenaPlan`, two files:

``<prefix>.h``
    sizes (``<P>_ARENA_SIZE``, ``<P>_INPUT_SIZE``, ``<P>_CLASSES``, ``<P>_CHECKPOINT_SIZE``),
    every persistent buffer's arena offset, the checkpoint binding ``<P>_BINDING``, the state
    struct and the API:

        tl_status <p>_init(<p>_state *s, uint8_t *arena);          NULL: the static arena
        tl_status <p>_step(<p>_state *s, const int8_t *input, int32_t label,
                           int32_t *loss_q10, int8_t *logits);     logits may be NULL
        tl_status <p>_predict(<p>_state *s, const int8_t *input, int8_t *logits);
        tl_status <p>_checkpoint_save(const <p>_state *s, uint8_t *out, uint32_t cap,
                                           uint32_t *len);
        tl_status <p>_checkpoint_restore(<p>_state *s, const uint8_t *data, uint32_t len);

``<prefix>.c``
    the frozen constants (:func:`tinylora.codegen.frozen.plan_frozen`), one ``tl_lora_params``
    per FULLY_CONNECTED / 1x1 CONV_2D layer of the trained segment, the initial masters, and
    the functions above. The step is ``Trainer.schedule`` printed op by op; every buffer is
    ``arena + offset`` of the lifetime the plan gives that op (a read: the lifetime live at
    the op; a write: the one starting there). Update ops run only at the end of an
    accumulation window. The backward of a DAG's frozen ops (depthwise conv, pooling, ADD...)
    and a residual fork's rescale and merge are calls into ``tl_backward.h``
    (:mod:`tinylora.codegen.backward`).

:func:`generate_vectors` renders a test runner that trains on embedded samples and prints,
in the ``tl_report`` protocol, every step's logits and loss, a checkpoint half-way (then
restores it into a freshly initialised state and continues), the final masters, the final
checkpoint and ``predict``'s logits; :func:`expected_vectors` computes the same lines with
``Trainer.step`` (see :mod:`tinylora.verify`).

All decisions are made here; the templates only place the values.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from tinylora.codegen import c_comment, c_identifier, c_int, provenance, render
from tinylora.codegen.backward import CTYPE as _CTYPE
from tinylora.codegen.backward import at as _at
from tinylora.codegen.backward import delivery, frozen_backward_op
from tinylora.codegen.frozen import CTYPES, _Array, plan_frozen
from tinylora.codegen.vectors import VectorSet, expected_vectors, generate_shared_arena, generate_vectors
from tinylora.errors import ConfigError, InputError
from tinylora.formats import checkpoint as ckpt
from tinylora.planning import kernel_scratch
from tinylora.planning.arena import ALIGN, ArenaPlan, Buffer, plan_trainer
from tinylora.ref import lora
from tinylora.ref.dag import is_chain_path
from tinylora.ref.layers import Reshape
from tinylora.ref.schedule import BufferName
from tinylora.ref.trainer import Trainer, act

__all__ = ["StepPlan", "plan_step", "generate_step", "generate_vectors", "expected_vectors",
           "generate_shared_arena", "VectorSet"]

FUNCTION = "tinylora.codegen.step.generate_step"

MSE_MAX_OUTPUTS = 33025   # tl_train.h TL_MSE_MAX_OUTPUTS: 255^2 * n fits int32


@dataclass
class StepPlan:
    """Everything the generated training step is, as values (no C text beyond expressions)."""
    prefix: str
    macro: str
    trainer: Trainer
    plan: ArenaPlan
    arrays: list = field(default_factory=list)        # const arrays (frozen + training)
    lora_params: list = field(default_factory=list)   # one dict per FC-like segment layer
    persistent: list = field(default_factory=list)    # persistent buffers: offsets, init
    adapters: list = field(default_factory=list)      # per adapter: names of its arrays
    ops: list = field(default_factory=list)           # the step, op by op
    predict_ops: list = field(default_factory=list)   # the forward only
    exponents: list = field(default_factory=list)     # gradient exponent variables
    input_offset: int = 0
    logits_offset: int = 0

    @property
    def input_size(self) -> int:
        return int(np.prod(self.trainer.model.input_shape))

    @property
    def classes(self) -> int:
        return int(np.prod(self.trainer.model.layers[self.trainer.logits_layer].output_shape))

    @property
    def checkpoint_size(self) -> int:
        return len(self.trainer.checkpoint())


class _Lifetimes:
    """Which lifetime of each buffer an op uses (the plan's view of the schedule)."""

    def __init__(self, plan: ArenaPlan):
        self.scratch: dict[str, list[Buffer]] = {}
        self.persistent: dict[str, Buffer] = {}
        for b in plan.buffers:
            if b.kind == "persistent":
                self.persistent[b.name] = b
            else:
                self.scratch.setdefault(b.name, []).append(b)

    def read(self, name: str, t: int) -> Buffer:
        if name in self.persistent:
            return self.persistent[name]
        for b in self.scratch.get(name, ()):
            if b.first <= t <= b.last:
                return b
        raise InputError(f"the plan has no lifetime of {name} live at op {t}")

    def write(self, name: str, t: int) -> Buffer:
        if name in self.persistent:
            return self.persistent[name]
        for b in self.scratch.get(name, ()):
            if b.first == t:
                return b
        raise InputError(f"the plan has no lifetime of {name} starting at op {t}")

    def has(self, name: str) -> bool:
        return name in self.persistent or name in self.scratch


def _act_flags(layer) -> tuple[int, int]:
    """lora.output_gradient_mask's rule: is each clamp bound set by the fused activation?"""
    low, high = lora.activation_bounds(layer)
    return int(low), int(high)


def _geometry(layer) -> dict:
    depth, channels = int(layer.weights.shape[-1]), int(layer.weights.shape[0])
    if layer.kind == "CONV_2D":
        (ih, iw, _), (oh, ow, _) = layer.input_shape, layer.output_shape
        sh, sw = layer.options["stride_h"], layer.options["stride_w"]
    else:
        ih = oh = int(np.prod(layer.input_shape)) // depth
        iw = ow = sh = sw = 1
    return {"in_h": int(ih), "in_w": int(iw), "out_h": int(oh), "out_w": int(ow),
            "stride_h": int(sh), "stride_w": int(sw), "depth": depth, "channels": channels}


def _lora_params(sp: StepPlan, layer) -> dict:
    """The tl_lora_params initializer of one FC-like layer of the trained segment."""
    t, tag = sp.trainer, f"{sp.prefix}_l{layer.index}"
    ad = t.adapters.get(layer.index)
    low_act, high_act = _act_flags(layer)
    fields = dict(_geometry(layer))
    fields.update(rank=ad.k.rank if ad is not None else 0,
                  weights=f"{tag}_weights",
                  bias=f"{tag}_bias" if layer.bias is not None else "NULL",
                  output_quant=f"{{ {tag}_multiplier, {tag}_shift }}",
                  input_offset=-int(layer.input_q.zero_point[0]),
                  output_offset=int(layer.output_q.zero_point[0]),
                  act_min=layer.act_min, act_max=layer.act_max,
                  act_min_is_activation=low_act, act_max_is_activation=high_act)
    channels = fields["channels"]
    if ad is not None:
        k = ad.k
        sp.arrays.append(_Array(f"{tag}_join_multiplier", "int32_t", np.asarray(k.m_join[0], np.int64),
                                f"LoRA join multipliers M_join [{channels}] (Q31, single rounding)"))
        sp.arrays.append(_Array(f"{tag}_join_shift", "int32_t", np.asarray(k.m_join[1], np.int64),
                                f"LoRA join shifts [{channels}]"))
        fields.update(h_multiplier=c_int(k.m_h[0]), h_shift=c_int(k.m_h[1]),
                      join=f"{{ {tag}_join_multiplier, {tag}_join_shift }}",
                      update_a_multiplier=c_int(k.m_update_a[0]), update_a_shift=c_int(k.m_update_a[1]),
                      update_b_multiplier=c_int(k.m_update_b[0]), update_b_shift=c_int(k.m_update_b[1]),
                      to_input_multiplier=c_int(k.extra["lora_to_input"][0]),
                      to_input_shift=c_int(k.extra["lora_to_input"][1]))
    else:
        fields.update(h_multiplier=0, h_shift=0, join="{ NULL, NULL }",
                      update_a_multiplier=0, update_a_shift=0, update_b_multiplier=0,
                      update_b_shift=0, to_input_multiplier=0, to_input_shift=0)
    ratio_q, ratio_s = t.input_grad[layer.index]
    sp.arrays.append(_Array(f"{tag}_ratio_multiplier", "int32_t", np.asarray(ratio_q, np.int64),
                            f"input-gradient channel ratios s_w[c] / max s_w [{channels}] (Q31)"))
    sp.arrays.append(_Array(f"{tag}_ratio_shift", "int32_t", np.asarray(ratio_s, np.int64),
                            f"input-gradient channel ratio shifts [{channels}]"))
    fields["input_ratio"] = f"{{ {tag}_ratio_multiplier, {tag}_ratio_shift }}"
    order = ("in_h", "in_w", "out_h", "out_w", "stride_h", "stride_w", "depth", "channels", "rank",
             "weights", "bias", "output_quant", "input_offset", "output_offset", "act_min",
             "act_max", "act_min_is_activation", "act_max_is_activation", "h_multiplier",
             "h_shift", "join", "input_ratio", "update_a_multiplier", "update_a_shift",
             "update_b_multiplier", "update_b_shift", "to_input_multiplier", "to_input_shift")
    return {"name": f"{tag}_lora", "index": layer.index,
            "comment": c_comment(f"layer {layer.index} {layer.kind} {list(layer.input_shape)} -> "
                                 f"{list(layer.output_shape)} {layer.activation}"
                                 + (f", LoRA rank {ad.k.rank}" if ad else ", frozen (no adapter)")),
            "fields": [(key, fields[key]) for key in order]}


def _grad_buffer(sp: StepPlan, life: _Lifetimes, i: int, p: str, t: int, writing: bool) -> dict:
    """The tl_grad_buffer fields of parameter p ("A" or "B") of adapter i at op t."""
    tr = sp.trainer
    ad = tr.adapters[i]
    size = int(ad.arrays[p].size)
    cap = tr.capacity(size)
    sparse = tr.accum_steps == 1 and tr.capacity(1 << 30) is not None
    find = life.write if writing else life.read
    acc = pairs = mom = master = view = "NULL"
    if tr.fused:   # the backward updates the masters, and their int8 views, entry by entry
        master = _at(life.read(BufferName.adapter(p, i), t))
        view = _at(life.read(BufferName.adapter(p + "q", i), t))
    elif sparse:
        pairs = _at(find(f"s{p}{i}", t))
    else:
        acc = _at(find(BufferName.adapter("d" + p, i), t))
    if tr.momentum_q[0]:
        mom = _at(life.read(BufferName.adapter("m" + p, i), t))
    return {"acc": acc, "pairs": pairs, "capacity": int(cap or 0), "momentum": mom, "master": master,
            "view": view}


def _forward_op(sp: StepPlan, life: _Lifetimes, frozen_steps: dict, t: int, op) -> dict:
    model = sp.trainer.model
    layer = model.layers[op.layer]
    ins = [life.read(act(p), t) for p in sp.trainer.srcs[op.layer]]   # -1: the step's input
    src, dst = ins[0], life.write(act(op.layer), t)
    tag = " (recompute)" if op.recompute else ""
    comment = c_comment(f"op {t}: {op.op}[{op.layer}]{tag} {layer.kind} "
                        f"{list(layer.input_shape)} -> {list(layer.output_shape)}")
    if op.op == "lora_forward":
        h = life.write(BufferName.h(op.layer), t)
        return {
            "kind": "lora_forward",
            "comment": comment,
            "params": f"{sp.prefix}_l{op.layer}_lora",
            "input": _at(src),
            "a8": _at(life.read(BufferName.adapter("Aq", op.layer), t)),
            "b8": _at(life.read(BufferName.adapter("Bq", op.layer), t)),
            "output": _at(dst),
            "h": _at(h),
        }
    if isinstance(layer, Reshape):
        return {"kind": "copy", "comment": comment, "src": _at(src), "dst": _at(dst),
                "bytes": int(np.prod(layer.output_shape))}
    scratch = kernel_scratch.buffer_name(op.layer)  # the library's, planned in the arena
    ctx = None
    if life.has(scratch):
        k = life.read(scratch, t)
        ctx = {"buf": _at(k), "size": k.size}
    step = frozen_steps[op.layer]
    if step.get("form") in ("add", "concat"):   # every input: residual branches, a constant
        src = [_at(b) for b in ins] + ([step["constant"]] if step.get("constant") else [])
    else:
        src = _at(src)
    return {"kind": "frozen", "comment": comment, "step": step, "src": src, "dst": _at(dst),
            "ctx": ctx}


def _chain_backward(sp: StepPlan, life: _Lifetimes, t: int, op, comment: str) -> dict:
    """backward[i] of a FULLY_CONNECTED / 1x1 CONV_2D / plain RESHAPE layer, and the delivery
    of its input gradient (a fork's rescale and merge)."""
    tr, i = sp.trainer, op.layer
    layer = tr.model.layers[i]
    grad = life.read(BufferName.grad(i), t)
    grad_in = var = None
    after: list = []
    for slot, p in tr._slots(i):
        grad_in, var, after = delivery(sp, life, t, op, slot, p, set())
    if isinstance(layer, Reshape):
        return {"kind": "reshape_backward", "comment": comment,
                "count": int(np.prod(layer.output_shape)), "grad": _at(grad),
                "grad_in": grad_in, "exponent": f"exp_grad{i}", "exponent_in": var, "after": after}
    lora_t = None
    if i in tr.adapters:
        lora_t = {
            "a8": _at(life.read(BufferName.adapter("Aq", i), t)),
            "b8": _at(life.read(BufferName.adapter("Bq", i), t)),
            "h": _at(life.read(BufferName.h(i), t)),
            "dh": _at(life.write(BufferName.dh(i), t)),
            "da": _grad_buffer(sp, life, i, "A", t, writing=tr.accum_steps == 1),
            "db": _grad_buffer(sp, life, i, "B", t, writing=tr.accum_steps == 1),
        }
    return {"kind": "backward", "comment": comment,
            "params": f"{sp.prefix}_l{i}_lora",
            "input": _at(life.read(act(tr.srcs[i][0]), t)),
            "output": _at(life.read(act(i), t)), "grad": _at(grad),
            "exponent": f"exp_grad{i}", "lora": lora_t,
            "dx": _at(life.write(BufferName.dx(i), t)) if grad_in is not None else "NULL",
            "grad_in": grad_in if grad_in is not None else "NULL",
            "exponent_in": f"&{var}" if grad_in is not None else "NULL", "after": after}


def _step_ops(sp: StepPlan, life: _Lifetimes, frozen_steps: dict) -> None:
    tr = sp.trainer
    model = tr.model
    exponents = sp.exponents
    for t, op in enumerate(tr.schedule):
        i = op.layer
        if op.op in ("forward", "lora_forward"):
            sp.ops.append(dict(_forward_op(sp, life, frozen_steps, t, op), index=t))
            if t <= tr.logits_layer and not op.recompute:
                sp.predict_ops.append(sp.ops[-1])
            continue
        comment = c_comment(f"op {t}: {op}")
        if op.op == "loss":
            logits = life.read(act(i), t)
            grad = life.write(BufferName.grad(i), t)
            exponents.append(f"exp_grad{i}")
            sp.logits_offset = logits.offset
            probs = _at(life.write("probs", t)) if tr.loss == "xent" else None
            sp.ops.append({"kind": "loss", "loss": tr.loss, "comment": comment, "logits": _at(logits),
                           "probs": probs, "grad": _at(grad), "exponent": f"exp_grad{i}",
                           "classes": sp.classes})
        elif op.op == "backward":
            if is_chain_path(model.layers[i]):
                sp.ops.append(_chain_backward(sp, life, t, op, comment))
            else:
                sp.ops.append(frozen_backward_op(sp, life, t, op, comment))
        elif op.op == "update":
            ad = tr.adapters[i]
            params = []
            for p in "AB":
                params.append({"count": int(ad.arrays[p].size),
                               "grad": _grad_buffer(sp, life, i, p, t, writing=False),
                               "master": _at(life.read(BufferName.adapter(p, i), t)),
                               "view": _at(life.read(BufferName.adapter(p + "q", i), t))})
            sp.ops.append({"kind": "update", "comment": comment, "params": params})
        else:  # pragma: no cover - the schedule has no other kinds
            raise InputError(f"no C for schedule op {op}")


def plan_step(trainer: Trainer, plan: ArenaPlan | None = None, prefix: str = "tl_train") -> StepPlan:
    """The generated step's constants, buffers and calls for ``trainer`` and its arena ``plan``
    (default: :func:`tinylora.planning.arena.plan_trainer`, no budget check)."""
    prefix = c_identifier(prefix)
    outputs = int(np.prod(trainer.model.layers[trainer.logits_layer].output_shape))
    if trainer.loss == "mse" and outputs > MSE_MAX_OUTPUTS:
        raise ConfigError(f"the model has {outputs} outputs; the C MSE loss sums squared int8 "
                          f"errors in int32, so at most {MSE_MAX_OUTPUTS}: train this model in numpy")
    plan = plan if plan is not None else plan_trainer(trainer)
    if list(plan.ops) != [str(op) for op in trainer.schedule]:
        raise InputError("the arena plan was made for another schedule than this trainer's")
    sp = StepPlan(prefix, prefix.upper(), trainer, plan)
    frozen = plan_frozen(trainer.model, prefix)
    sp.arrays.extend(frozen.arrays)
    frozen_steps = {s["index"]: s for s in frozen.steps}
    life = _Lifetimes(plan)
    sp.input_offset = life.write("x", -1).offset
    for i in trainer.tainted:
        layer = trainer.model.layers[i]
        if is_chain_path(layer) and not isinstance(layer, Reshape):
            sp.lora_params.append(_lora_params(sp, layer))
    for i, ad in sorted(trainer.adapters.items()):
        names = {}
        for p, arr in (("A", ad.a_master), ("B", ad.b_master)):
            init = f"{prefix}_{p}{i}_init"
            sp.arrays.append(_Array(init, "int16_t", np.asarray(arr, np.int64),
                                    f"initial {p} masters of layer {i} {list(arr.shape)} "
                                    f"(int16, {lora.MASTER_FRAC_BITS} fraction bits)"))
            names[p] = init
        entry = {"index": i, "a_size": int(ad.a_master.size), "b_size": int(ad.b_master.size)}
        for name in ("A", "B", "Aq", "Bq", "dA", "dB", "mA", "mB"):
            b = life.persistent.get(BufferName.adapter(name, i))
            entry[name] = _at(b) if b is not None else "NULL"
            entry[f"{name}_offset"] = b.offset if b is not None else -1
        entry["a_init"], entry["b_init"] = names["A"], names["B"]
        sp.adapters.append(entry)
    for b in sorted((b for b in plan.buffers if b.kind == "persistent"), key=lambda b: b.offset):
        sp.persistent.append({"name": b.name, "macro": f"{sp.macro}_OFFSET_{b.name.upper()}",
                              "offset": b.offset, "count": int(np.prod(b.shape)),
                              "ctype": _CTYPE[b.dtype], "what": b.what,
                              "zero": b.what in ("accumulators", "momentum")})
    _step_ops(sp, life, frozen_steps)
    return sp


def uses_backward(sp: StepPlan) -> bool:
    """Whether the step calls the kernels of tl_backward.h (a DAG's frozen ops, a fork)."""
    return any(op["kind"] == "calls" or op.get("after") for op in sp.ops)


def _header_lines(sp: StepPlan, command: str | None, function: str) -> list[str]:
    t = sp.trainer
    model = t.model
    source_hash = hashlib.sha256(model.source).hexdigest() if model.source else "-"
    ranks = ", ".join(f"layer {i} rank {ad.k.rank}" for i, ad in sorted(t.adapters.items()))
    return provenance(function, command, [
        f"Model: sha256 {source_hash}, {len(model.layers)} layers "
        f"({', '.join(layer.kind for layer in model.layers)}).",
        f"LoRA: {ranks}; lr {t.lr:.9g} (q {t.lr_q[0]}, shift {t.lr_q[1]}); accum_steps "
        f"{t.accum_steps}; momentum q {t.momentum_q[0]}; grad threshold {t.grad_threshold}; "
        f"density {t.grad_density}; capacity {t.grad_capacity}; recompute {t.recompute}.",
        f"Arena: {sp.plan.total_bytes} B (persistent {sp.plan.persistent_bytes}, scratch "
        f"{sp.plan.scratch_bytes}); {len(t.schedule)} schedule ops.",
        "Bit-exact with tinylora.ref.trainer.Trainer.step (docs/numerics.md).",
    ])


def _input_end(sp: StepPlan) -> dict:
    """The step's and predict's input in the model's own type: int8, or float32 / uint8 that
    the model's first op (QUANTIZE, run as the first frozen op) converts to int8."""
    ctype = CTYPES.get(sp.trainer.model.input_dtype, "int8_t")
    size = f"{sp.macro}_INPUT_SIZE"
    return {"input_ctype": ctype, "input_what": sp.trainer.model.input_dtype.lower(),
            "input_bytes": size if ctype != "float" else f"sizeof(float) * {size}"}


def _context(sp: StepPlan, command: str | None) -> dict:
    t = sp.trainer
    flags = ckpt._flags(t)
    return {
        "header": _header_lines(sp, command, FUNCTION),
        "prefix": sp.prefix, "macro": sp.macro, "guard": f"{sp.macro}_H",
        "arena_size": sp.plan.total_bytes, "align": ALIGN,
        "input_size": sp.input_size, "classes": sp.classes, **_input_end(sp),
        "accum_steps": t.accum_steps, "checkpoint_size": sp.checkpoint_size,
        "binding": f"0x{ckpt.binding(t):016x}", "ckpt_flags": flags,
        "rng_state": f"0x{t.rng_state:08x}u",
        "input_offset": sp.input_offset, "logits_offset": sp.logits_offset,
        "persistent": sp.persistent, "adapters": sp.adapters,
        "arrays": [a.context() for a in sp.arrays], "lora_params": sp.lora_params,
        "loss": t.loss, "label_decl": "const int8_t *target" if t.loss == "mse" else "int32_t label",
        "softmax": {"input_multiplier": t.softmax[0], "input_left_shift": t.softmax[1],
                    "diff_min": t.softmax[2]} if t.loss == "xent" else None,
        "mse": {"loss_multiplier": t.mse_q[0], "loss_shift": t.mse_q[1]} if t.loss == "mse" else None,
        "optim": {"accumulate": int(t.accum_steps > 1), "threshold": t.grad_threshold,
                  "momentum_multiplier": c_int(t.momentum_q[0]), "momentum_shift": c_int(t.momentum_q[1])},
        "ops": sp.ops, "predict_ops": sp.predict_ops, "exponents": sp.exponents,
        "buffers": [{"name": b.name, "kind": b.kind, "dtype": b.dtype,
                     "shape": "x".join(map(str, b.shape)) or "1", "offset": b.offset,
                     "bytes": b.size,
                     "ops": f"{b.first}..{b.last}" if b.kind == "scratch" else "always"}
                    for b in sorted(sp.plan.buffers, key=lambda b: (b.kind != "persistent", b.offset, b.first))],
        "schedule": [c_comment(f"{j:3d} {label}") for j, label in enumerate(sp.plan.ops)],
    }


def generate_step(trainer: Trainer, plan: ArenaPlan | None = None, prefix: str = "tl_train",
                  command: str | None = None, static_arena: bool = True) -> dict[str, str]:
    """``{"<prefix>.h": text, "<prefix>.c": text}``: the model-specific C of a training step.
    Deterministic: the same trainer state, plan and arguments give the same bytes.
    ``static_arena=False``: the header defines ``<P>_NO_STATIC_ARENA``, so the step has no
    arena of its own and ``<p>_init`` needs the caller's (an application that places the
    arena itself, e.g. on the heap)."""
    return render_step(plan_step(trainer, plan, prefix), command, static_arena)


def render_step(sp: StepPlan, command: str | None = None, static_arena: bool = True,
                timing: bool = False) -> dict[str, str]:
    """:func:`generate_step` for a step already planned with :func:`plan_step`.
    ``timing=True`` (``tinylora bench`` only): the step and predict also call
    ``void tl_bench_op(uint32_t op)`` before every schedule op ``op`` and once more with the
    number of ops at the end; the default build's bytes do not change."""
    ctx = _context(sp, command)
    ctx["static_arena"] = bool(static_arena)
    ctx["timing"] = bool(timing)
    ctx["uses_ops"] = any("form" in op.get("step", {}) for op in sp.ops)  # tl_ops.h kernels
    ctx["uses_backward"] = uses_backward(sp)                                 # tl_backward.h
    for t, op in enumerate(sp.ops):
        op.setdefault("index", t)
    return {f"{sp.prefix}.h": render("c/train_step.h.j2", **ctx),
            f"{sp.prefix}.c": render("c/train_step.c.j2", **ctx)}




