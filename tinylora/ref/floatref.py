"""Float32 LoRA on the same frozen base: the yardstick the integer trainer is measured against.

Same architecture, rank, alpha, A initialisation (the integer init, dequantized), data
order and step count as :class:`tinylora.ref.trainer.Trainer`; the frozen prefix is the int8
model's own (dequantized segment input), the adapted segment runs in float32 with the
dequantized weights. Also gives float gradients for the gradient-correctness tests.
"""
from __future__ import annotations

import numpy as np

from tinylora.ref import lora
from tinylora.ref.layers import Reshape
from tinylora.ref.schedule import BufferName
from tinylora.ref.trainer import Trainer, act


def _deq(q, v):
    """Dequantize int8 values with per-tensor QuantParams (float32, one expression everywhere)."""
    return (np.asarray(v, np.float32) - np.float32(q.zero_point[0])) * np.float32(q.scale[0])


def _real_range(layer):
    return _deq(layer.output_q, layer.act_min), _deq(layer.output_q, layer.act_max)


def _clamp_grad(layer, pre, g):
    """The integer trainer's rule, in real numbers: an activation bound passes no gradient;
    a saturation-only bound passes the gradient that moves the value back into range."""
    lo, hi = _real_range(layer)
    low_is_act, high_is_act = lora.activation_bounds(layer)
    block = ((pre <= lo) & (low_is_act | (g > 0))) | ((pre >= hi) & (high_is_act | (g < 0)))
    return np.where(block, 0, g)


class FloatLoRA:
    def __init__(self, trainer: Trainer, lr: float):
        self.t = trainer
        self.lr = np.float32(lr)
        self.params = {}
        for i, ad in trainer.adapters.items():
            a = (lora.to_int8(ad.a_master) * ad.k.s_a).astype(np.float32)
            b = (lora.to_int8(ad.b_master) * ad.k.s_b).astype(np.float32)
            self.params[i] = {"A": a, "B": b, "s_h": np.float32(ad.k.s_h),
                              "scale": np.float32(trainer.config.alpha_of(ad.layer) / ad.k.rank)}

    def _layers(self):
        return self.t.model.layers[self.t.lowest: self.t.logits_layer + 1]

    def seg_real(self, seg_q):
        return _deq(self.t.model.layers[self.t.lowest].input_q, seg_q)

    def forward(self, x):
        """x: real segment input (N, *shape). Returns logits and a tape for backward."""
        tape = []
        for layer in self._layers():
            if isinstance(layer, Reshape):
                tape.append((layer, x, None, None))
                x = x.reshape((x.shape[0],) + layer.output_shape)
                continue
            rows = lora.rows_view(layer, x)
            w = (
                lora.base_weights(layer) * np.broadcast_to(layer.weights_q.scale, (layer.weights.shape[0],))[:, None]
            ).astype(np.float32)
            z = rows @ w.T
            if layer.bias is not None:
                z = z + (layer.bias * layer.input_q.scale[0] * layer.weights_q.scale).astype(np.float32)
            p = self.params.get(layer.index)
            h = h_pre = None
            if p is not None:
                h_pre = rows @ p["A"].T
                h = np.clip(h_pre, -128 * p["s_h"], 127 * p["s_h"])   # the int8 intermediate's range
                z = z + p["scale"] * (h @ p["B"].T)
            pre = z
            z = np.clip(z, *_real_range(layer))   # the fused activation and int8 saturation
            tape.append((layer, rows, (h, h_pre), pre))
            x = z.reshape((x.shape[0],) + layer.output_shape)
        return x.reshape(x.shape[0], -1), tape

    def gradients(self, x, labels):
        """Mean cross-entropy gradients of every adapter parameter: {layer: (dA, dB)}."""
        logits, tape = self.forward(x)
        return self.backward(logits, tape, labels)

    def gradients_at(self, trace: dict, label: int, collect: dict | None = None):
        """Float autodiff evaluated at the integer forward's own (dequantized) activations."""
        tape = []
        for layer in self._layers():
            x_q = trace[act(layer.index - 1)]
            x = _deq(layer.input_q, x_q)
            if isinstance(layer, Reshape):
                tape.append((layer, x, None, None))
                continue
            y = trace[act(layer.index)]
            pre = _deq(layer.output_q, y)
            h = None
            if layer.index in self.params:
                h_real = trace[BufferName.h(layer.index)].astype(np.float32) * self.params[layer.index]["s_h"]
                h = (h_real, h_real)
            tape.append((layer, lora.rows_view(layer, x), h, pre.reshape(x.shape[0], -1, layer.weights.shape[0])))
        top = self._layers()[-1]
        logits = _deq(top.output_q, trace[act(top.index)]).reshape(1, -1)
        return self.backward(logits, tape, np.array([label]), collect)

    def backward(self, logits, tape, labels, collect: dict | None = None):
        """Gradients of the adapters; with `collect`, also {layer: (dL/dz, layer input rows)}."""
        if getattr(self.t, "loss", "xent") == "mse":  # L = mean((y - t)^2), t int8 targets
            target = _deq(self._layers()[-1].output_q, np.asarray(labels)).reshape(logits.shape)
            g = (2.0 * (logits - target) / logits.shape[1] / len(labels)).astype(np.float32)
        else:
            z = self.t.beta * logits
            p = np.exp(z - z.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            g = p.copy()
            g[np.arange(len(labels)), labels] -= 1
            g = (self.t.beta * g / len(labels)).astype(np.float32)
        grads = {}
        for layer, rows, h, pre in reversed(tape):
            if isinstance(layer, Reshape):
                g = g.reshape((g.shape[0],) + layer.input_shape)
                continue
            g = _clamp_grad(layer, pre, g.reshape(pre.shape))
            if collect is not None:
                collect[layer.index] = (g, rows)
            h, h_pre = h if h is not None else (None, None)
            w = (
                lora.base_weights(layer) * np.broadcast_to(layer.weights_q.scale, (layer.weights.shape[0],))[:, None]
            ).astype(np.float32)
            dx = g @ w
            prm = self.params.get(layer.index)
            if prm is not None:
                dB = prm["scale"] * np.einsum("nrc,nrj->cj", g, h)
                dh = prm["scale"] * (g @ prm["B"])
                dh = np.where(
                    ((h_pre <= -128 * prm["s_h"]) & (dh > 0)) | ((h_pre >= 127 * prm["s_h"]) & (dh < 0)), 0, dh
                )
                dA = np.einsum("nrj,nrk->jk", dh, rows)
                dx = dx + dh @ prm["A"]
                grads[layer.index] = (dA, dB)
            g = dx.reshape((dx.shape[0],) + layer.input_shape)
        return grads

    def step(self, x, label):
        for i, (dA, dB) in self.gradients(x, np.array([label])).items():
            self.params[i]["A"] -= self.lr * dA
            self.params[i]["B"] -= self.lr * dB

    def fit(self, seg_q, Y, epochs: int, seed: int):
        x = self.seg_real(seg_q)
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            for idx in rng.permutation(len(Y)):
                self.step(x[idx: idx + 1], int(Y[idx]))

    def predict(self, seg_q):
        return np.argmax(self.forward(self.seg_real(seg_q))[0], axis=1)
