"""The training step over a DAG: which layers need a backward, the static gradient scales, and
the schedule (forward, loss, recompute, backward, update) as data. Mixed into
:class:`tinylora.ref.trainer.Trainer`.

Layers are numbered as in the file (topological order). ``srcs[i]`` are the layers whose
outputs layer ``i`` reads (-1: the model input). A layer is *tainted* when it carries an adapter
or reads a tainted layer: its output depends on trainable parameters, so it needs a backward.
A chain is the special case ``srcs[i] == (i - 1,)``, and gives the schedule it always had.

Gradients reaching a tensor from several consumers (a residual fork) are summed: the tensor's
static scale is the largest of the contributions' scales, each smaller one is rescaled by its
ratio (single rounding, 16 guard bits) and the sum is taken at the larger exponent
(:func:`tinylora.ref.backward_ops.merge`).
"""
from __future__ import annotations

import numpy as np

from tinylora.errors import ConfigError
from tinylora.ref import backward_ops, lora
from tinylora.ref.config import short_name
from tinylora.ref.layers import Reshape
from tinylora.ref.schedule import BufferName, ScheduleOp, act, is_step_buffer

MERGE_GUARD_BITS = 16


def sources(model, top: int) -> dict[int, tuple[int, ...]]:
    """For each layer up to ``top``, the layers it reads (-1: the model input)."""
    out_of = {l.output: l.index for l in model.layers if l.inputs}
    return {l.index: tuple(out_of.get(t, -1) for t in l.inputs) if l.inputs else (l.index - 1,)
            for l in model.layers[: top + 1]}


def ancestors(srcs: dict, node: int) -> set[int]:
    """``node`` and every layer it depends on."""
    seen, todo = set(), [node]
    while todo:
        n = todo.pop()
        if n >= 0 and n not in seen:
            seen.add(n)
            todo.extend(srcs[n])
    return seen


def is_chain_path(layer) -> bool:
    """Layers whose backward is the original chain code (FC, 1x1 conv, a plain RESHAPE)."""
    if isinstance(layer, Reshape):
        return not layer.options.get("requantizes")
    return lora.is_adaptable(layer)


class DagMixin:
    # ----------------------------------------------------------------- structure

    def _setup_graph(self) -> None:
        self.srcs = sources(self.model, self.logits_layer)
        self.needed = ancestors(self.srcs, self.logits_layer)

    def _setup_taint(self) -> None:
        """The layers that need a backward; refuses one without (naming it and the fix)."""
        tainted = []
        for i in sorted(self.needed):
            if i in self.adapters or any(p in tainted for p in self.srcs[i]):
                tainted.append(i)
        self.tainted = tainted
        for i in tainted:
            layer = self.model.layers[i]
            if i not in self.adapters and not (is_chain_path(layer) or backward_ops.has_backward(layer)):
                raise ConfigError(
                    f"layer {i} {layer.kind} ({short_name(layer.name)}) lies between the adapters "
                    f"and the loss, and tinylora has no backward for it: choose targets above "
                    f"layer {i}")
            if layer.options.get("signed_multipliers"):
                raise ConfigError(
                    f"layer {i} {layer.kind} ({short_name(layer.name)}) has negative weight scales "
                    "that do not fold into its weights (a weight of -128): no backward through it; "
                    f"choose targets above layer {i}, or re-quantize its weights to [-127, 127] "
                    "(then the signs fold and it trains like any layer)")

    def _slots(self, i: int) -> list[tuple[int, int]]:
        """(input slot, source layer) of layer ``i`` whose source needs a gradient."""
        return [(k, p) for k, p in enumerate(self.srcs[i]) if p in self.tainted]

    def _frontier(self) -> list[int]:
        """Untainted layers (-1: the input) read by tainted ones: the segment inputs."""
        tainted = set(self.tainted)
        return sorted({p for i in tainted for p in self.srcs[i] if p not in tainted})

    # ----------------------------------------------------------------- constants

    def _backward_constants(self) -> None:
        """Static gradient scales, merge ratios and the per-op integer constants (before training)."""
        layers = self.model.layers
        f = 2.0 ** (lora.MASTER_FRAC_BITS + lora.ACCUM_FRAC_BITS)
        lr = self.lr / self.accum_steps
        self.grad_scale = {self.logits_layer: self.loss_scale}   # real dL/dy per gradient unit
        self.input_grad, self.merge_ratio, self.bw_consts = {}, {}, {}
        contrib: dict[int, list] = {}
        for i in reversed(self.tainted):
            layer = layers[i]
            if i in contrib:
                self._settle_scale(i, contrib.pop(i))
            scale = self.grad_scale[i]
            ad = self.adapters.get(i)
            if ad is not None:
                k = ad.k
                a_over_r = self.config.alpha_of(layer) / k.rank
                s_x = float(layer.input_q.scale[0])
                k.m_update_b = lora.multiplier(lr * a_over_r * scale * k.s_h * f / k.s_b, "B update")
                big = float(np.max(layer.weights_q.scale.astype(np.float64)))
                k.m_update_a = lora.multiplier(lr * a_over_r * scale * k.s_b * s_x * f / k.s_a, "A update")
                k.extra["lora_to_input"] = lora.multiplier(a_over_r * k.s_b * k.s_a / big, "input gradient")
            factors = self._factors(layer)
            for slot, p in self._slots(i):
                contrib.setdefault(p, []).append((i, slot, scale * factors[slot]))

    def _factors(self, layer) -> list[float]:
        i = layer.index
        if isinstance(layer, Reshape) and is_chain_path(layer):
            return [1.0]
        if is_chain_path(layer):
            s_w = np.broadcast_to(layer.weights_q.scale.astype(np.float64), (layer.weights.shape[0],))
            big = float(s_w.max())
            ratios = [lora.multiplier(sw / big, "channel ratio") for sw in s_w]
            self.input_grad[i] = (np.array([q for q, _ in ratios], np.int64),
                                  np.array([s for _, s in ratios], np.int64))
            return [big]
        shapes = [self.model.layers[p].output_shape if p >= 0 else self.model.input_shape
                  for p in self.srcs[i]]
        self.bw_consts[i] = backward_ops.constants(self.model.layers[i], shapes)
        self.bw_consts[i]["shapes"] = [(1,) + tuple(s) for s in shapes]
        return backward_ops.input_factors(self.model.layers[i], len(shapes))

    def _settle_scale(self, p: int, parts: list) -> None:
        scale = max(c for _, _, c in parts)
        self.grad_scale[p] = scale
        for i, slot, c in parts:
            if c != scale:
                self.merge_ratio[(i, slot)] = lora.multiplier(c / scale, "fork merge")

    def _resolve_recompute(self, mode: str) -> str:
        if mode != "auto":
            return mode
        seg_in = sum(int(np.prod(self.model.layers[p].output_shape if p >= 0 else self.model.input_shape))
                     for p in self._frontier())
        kept = sum(int(np.prod(self.model.layers[i].output_shape)) for i in self.tainted)
        kept += sum(ad.k.rank for ad in self.adapters.values())
        return "all" if kept > seg_in else "none"

    # ----------------------------------------------------------------- schedule

    def _build_schedule(self) -> list[ScheduleOp]:
        top = self.logits_layer
        ops = [self._forward_op(i) for i in range(top + 1) if i in self.needed]
        ops.append(ScheduleOp("loss", top, (act(top), "label"), (BufferName.grad(top), "loss")))
        tainted = set(self.tainted)
        delivered: set[int] = set()
        for i in reversed(self.tainted):
            if self.recompute == "all":
                again = sorted(ancestors(self.srcs, i) & tainted)
                ops += [self._forward_op(j, recompute=True) for j in again]
            ops.append(self._backward_op(i, delivered))
            if i in self.adapters and not self.fused:  # nothing below reads this adapter: update
                ops.append(ScheduleOp("update", i,
                                      (BufferName.adapter("dA", i), BufferName.adapter("dB", i)),
                                      (BufferName.adapter("A", i), BufferName.adapter("B", i))))
        return ops   # it right away, so its gradient buffers die before the next backward

    def _backward_op(self, i: int, delivered: set) -> ScheduleOp:
        layer = self.model.layers[i]
        reads = [BufferName.grad(i), act(i)]
        if is_chain_path(layer) or backward_ops.reads_inputs(layer):
            reads += [act(p) for p in dict.fromkeys(self.srcs[i])]
        writes, before = [], set(delivered)
        if i in self.adapters:
            reads += [BufferName.h(i), BufferName.adapter("A", i), BufferName.adapter("B", i)]
            kinds = ("A", "B") if self.fused else ("dA", "dB")   # fused: the masters themselves
            writes += [BufferName.adapter(k, i) for k in kinds]
        for _, p in self._slots(i):
            if p in before:
                reads.append(BufferName.grad(p))   # a second consumer: the gradients add up
            delivered.add(p)
            writes.insert(len(writes) - (2 if i in self.adapters else 0), BufferName.grad(p))
        return ScheduleOp("backward", i, tuple(dict.fromkeys(reads)), tuple(dict.fromkeys(writes)))

    def _forward_op(self, i: int, recompute: bool = False) -> ScheduleOp:
        ins = tuple(act(p) for p in dict.fromkeys(self.srcs[i]))
        if i in self.adapters:
            return ScheduleOp("lora_forward", i,
                              ins + (BufferName.adapter("A", i), BufferName.adapter("B", i)),
                              (act(i), BufferName.h(i)), recompute)
        return ScheduleOp("forward", i, ins, (act(i),), recompute)

    # ----------------------------------------------------------------- running

    def _start(self) -> int:
        """The schedule position of the first op that depends on an adapter."""
        low = self.tainted[0]
        return next(j for j, op in enumerate(self.schedule) if op.layer == low)

    def _live_in(self, start: int) -> list[str]:
        """The step buffers the schedule reads from ``start`` on that it did not write there."""
        written, need = set(), []
        for op in self.schedule[start:]:
            need += [b for b in op.reads if is_step_buffer(b) and b not in written and b not in need]
            written.update(op.writes)
        return need

    def _run_layers(self, env: dict, upto: int, adapted: bool, skip=()) -> dict:
        """Run layers 0..upto (those in ``needed``, not in ``skip``) on batched ``env``
        (layer index -> int8 output; -1 the input), with the adapters when ``adapted``."""
        for i in range(upto + 1):
            if i not in self.needed or i in skip or i in env:
                continue
            layer = self.model.layers[i]
            xs = [env[p] for p in self.srcs[i]]
            ad = self.adapters.get(i) if adapted else None
            env[i] = layer.run(xs) if ad is None else lora.lora_forward(layer, xs[0], ad.a8, ad.b8, ad.k)[0]
        return env

    def prefix_buffers(self, x) -> dict[str, np.ndarray]:
        """The frozen prefix run once over many samples: every buffer the schedule reads from
        its first adapter-dependent op on (it never changes). Keys are buffer names."""
        x, _ = self.model._check_input(x)
        need = [b for b in self._live_in(self._start()) if b != "label"]
        env = self._run_layers({-1: x}, self.logits_layer, False, skip=set(self.tainted))
        return {b: env[-1 if b == "x" else int(b[3:])] for b in need}


def require_c_input(model) -> None:
    """A generated project's application (its sample storage, serial protocol and main loop)
    handles int8 samples: ConfigError naming the input end of a model converted with a float32
    or uint8 input. (The generated training step itself takes the model's own input type.)"""
    if model.input_dtype != "INT8":
        first = next(l for l in model.layers if model.input_tensor in l.inputs)
        kind = model.input_dtype.lower()
        raise ConfigError(f"the model takes {kind} input (op {first.index} {first.kind} converts "
                          "it to int8): a generated project's application stores and receives "
                          f"int8 samples only. The generated training step itself takes {kind} "
                          "input (tinylora verify --model M trains it in C), and Trainer trains "
                          "it in numpy. For a project, convert with inference_input_type=tf.int8")
