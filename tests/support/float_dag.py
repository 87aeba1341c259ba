"""Float LoRA over a DAG in TensorFlow: the yardstick for the integer trainer on the zoo models.

The same frozen base (dequantized weights and biases; the int8 model's own frozen prefix,
dequantized, as the segment inputs), the same adapters (the integer A initialisation,
dequantized; B = the trainer's B), the same clamps (fused activations and int8 saturation, as
real ranges), the same loss (cross-entropy on beta * logits, or the mean squared error in the
output's real scale). TensorFlow's autodiff gives the gradients; ``fit`` is plain SGD with the
trainer's learning rate and sample order.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from tinylora.ref import lora
from tinylora.ref.backward_ops import output_range


def _deq(q, v):
    return (np.asarray(v, np.float64) - float(q.zero_point[0])) * float(q.scale[0])


def _saturation_rule(h, hq):
    """The int8 intermediate's rails pass only the gradient that moves h back into range."""
    @tf.custom_gradient
    def f(v):
        def grad(g):
            return tf.where(((hq == -128) & (g > 0)) | ((hq == 127) & (g < 0)), tf.zeros_like(g), g)
        return v, grad
    return f(h)


class FloatDag:
    def __init__(self, trainer, lr: float | None = None):
        self.t = trainer
        self.lr = trainer.lr if lr is None else lr
        self.A, self.B, self._trace = {}, {}, None
        for i, ad in trainer.adapters.items():
            self.A[i] = tf.Variable(lora.to_int8(ad.a_master) * ad.k.s_a, dtype=tf.float64)
            self.B[i] = tf.Variable(lora.to_int8(ad.b_master) * ad.k.s_b, dtype=tf.float64)

    # ----------------------------------------------------------------- forward

    def segment(self, x) -> dict:
        """The frozen prefix (int8, the model's own), dequantized: layer index -> real values."""
        bufs = self.t.prefix_buffers(x)
        out = {}
        for name, v in bufs.items():
            i = -1 if name == "x" else int(name[3:])
            q = self.t.model.layers[i].output_q if i >= 0 else None
            out[i] = tf.constant(np.asarray(v, np.float64) if q is None else _deq(q, v))
        return out

    def forward(self, env: dict, trace: dict | None = None):
        """The logits (real). With ``trace`` (:meth:`Trainer.trace` of the same sample) every
        activation and LoRA intermediate takes the integer forward's dequantized value while
        the gradient flows through the float op: float autodiff *at the same forward*."""
        env, self._trace = dict(env), trace
        for i in self.t.tainted:
            layer = self.t.model.layers[i]
            z = self._layer(layer, [env[p] for p in self.t.srcs[i]])
            env[i] = z if trace is None else self._snap(z, _deq(layer.output_q, trace[f"act{i}"]))
        return env[self.t.logits_layer]

    @staticmethod
    def _snap(z, value):
        return z + tf.stop_gradient(tf.constant(np.asarray(value, np.float64).reshape(z.shape)) - z)

    def _clamp(self, layer, z):
        """Clip to the output's real range; the gradient follows the integer trainer's rule
        (an activation bound blocks it, a saturation bound only the outward push)."""
        lo, hi, low_act, high_act = output_range(layer)
        if layer.weights is not None:
            lo, hi = layer.act_min, layer.act_max
            low_act, high_act = lora.activation_bounds(layer)
        lo, hi = _deq(layer.output_q, lo), _deq(layer.output_q, hi)
        at = None if self._trace is None else tf.constant(
            _deq(layer.output_q, self._trace[f"act{layer.index}"]).reshape(z.shape))

        @tf.custom_gradient
        def clip(v):
            u = v if at is None else at     # the integer forward decides which bound is hit
            def grad(g):
                block = ((u <= lo) & (low_act | (g > 0))) | ((u >= hi) & (high_act | (g < 0)))
                return tf.where(block, tf.zeros_like(g), g)
            return tf.clip_by_value(v, lo, hi), grad
        return clip(z)

    def _layer(self, layer, xs):
        kind, o = layer.kind, layer.options
        if kind in ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D"):
            return self._clamp(layer, self._weighted(layer, xs[0]))
        if kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            pool = tf.nn.avg_pool2d if kind == "AVERAGE_POOL_2D" else tf.nn.max_pool2d
            z = pool(xs[0], (o["filter_height"], o["filter_width"]), (o["stride_h"], o["stride_w"]),
                     o["padding"])
            return self._clamp(layer, z)
        if kind == "MEAN":
            return self._clamp(layer, tf.reduce_mean(xs[0], axis=o["axes"], keepdims=True)
                               if o["keep_dims"] else tf.reduce_mean(xs[0], axis=o["axes"]))
        if kind == "ADD":
            other = xs[1] if len(xs) > 1 else _deq(o["input_qs"][1], o["constant"])
            return self._clamp(layer, xs[0] + other)
        if kind in ("PAD", "PADV2"):
            return tf.pad(xs[0], o["paddings"], constant_values=float(_deq(layer.output_q, o["pad_value"])))
        if kind == "CONCATENATION":
            return tf.concat(xs, axis=o["axis"])
        if kind == "RESHAPE":
            y_per_x = float(layer.output_q.scale[0]) / float(layer.input_q.scale[0])
            zps = int(layer.input_q.zero_point[0]) - int(layer.output_q.zero_point[0])
            shift = float(layer.output_q.scale[0]) * zps
            return tf.reshape(xs[0], (1,) + tuple(layer.output_shape)) * y_per_x + shift
        if kind == "QUANTIZE":
            return self._clamp(layer, xs[0])
        if kind == "LOGISTIC":
            return tf.sigmoid(xs[0])
        if kind == "HARD_SWISH":
            return self._clamp(layer, xs[0] * tf.nn.relu6(xs[0] + 3) / 6)
        raise NotImplementedError(kind)

    def _weighted(self, layer, x):
        s_w = np.broadcast_to(layer.weights_q.scale.astype(np.float64),
                              (layer.weights.shape[3 if layer.kind == "DEPTHWISE_CONV_2D" else 0],))
        bias = 0.0 if layer.bias is None else layer.bias * float(layer.input_q.scale[0]) * s_w
        o = layer.options
        if layer.kind == "FULLY_CONNECTED":
            rows = tf.reshape(x, (-1, layer.weights.shape[1]))
            z = rows @ tf.constant((layer.weights * s_w[:, None]).T.astype(np.float64)) + bias
        elif layer.kind == "CONV_2D":
            w = np.transpose(layer.weights * s_w[:, None, None, None], (1, 2, 3, 0)).astype(np.float64)
            z = tf.nn.conv2d(x, w, (1, o["stride_h"], o["stride_w"], 1), o["padding"],
                             dilations=(1, o["dilation_h"], o["dilation_w"], 1)) + bias
        else:
            kh, kw = layer.kernel
            c = layer.input_shape[2]
            w = (layer.weights[0] * s_w).reshape(kh, kw, c, -1).astype(np.float64)
            z = tf.nn.depthwise_conv2d(x, w, (1, o["stride_h"], o["stride_w"], 1), o["padding"],
                                       dilations=(o["dilation_h"], o["dilation_w"])) + bias
        if layer.index in self.A:
            z = z + self._lora(layer, x, z.shape)
        return tf.reshape(z, (-1,) + tuple(layer.output_shape))

    def _lora(self, layer, x, shape):
        ad = self.t.adapters[layer.index]
        if layer.kind == "CONV_2D":
            x = x[:, ::layer.options["stride_h"], ::layer.options["stride_w"], :]
        rows = tf.reshape(x, (-1, layer.weights.shape[-1]))
        s_h = ad.k.s_h
        u = rows @ tf.transpose(self.A[layer.index])
        h = tf.clip_by_value(u, -128 * s_h, 127 * s_h)
        if self._trace is not None:
            h = self._snap(u, self._trace[f"h{layer.index}"].astype(np.float64) * s_h)
            hq = self._trace[f"h{layer.index}"].reshape(h.shape)
            h = _saturation_rule(h, hq)
        scale = self.t.config.alpha_of(layer) / ad.k.rank
        return tf.reshape(scale * (h @ tf.transpose(self.B[layer.index])), shape)

    # ----------------------------------------------------------------- loss, gradients, SGD

    def loss(self, logits, label):
        out_q = self.t.model.layers[self.t.logits_layer].output_q
        flat = tf.reshape(logits, (1, -1))
        if self.t.loss == "xent":
            return tf.nn.sparse_softmax_cross_entropy_with_logits([int(label)], self.t.beta * flat)[0]
        target = _deq(out_q, np.asarray(label).reshape(1, -1))
        return tf.reduce_mean((flat - target) ** 2)

    def gradients(self, env, label, trace: dict | None = None) -> dict:
        """Real dL/dA, dL/dB of one sample (``env``: one sample's :meth:`segment`)."""
        with tf.GradientTape() as tape:
            loss = self.loss(self.forward(env, trace), label)
        keys = sorted(self.A)
        grads = tape.gradient(loss, [self.A[i] for i in keys] + [self.B[i] for i in keys])
        n = len(keys)
        return {i: (grads[k].numpy(), grads[n + k].numpy()) for k, i in enumerate(keys)}

    def fit(self, x, labels, epochs: int = 1, seed: int = 0) -> None:
        seg = self.segment(x)
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            for idx in rng.permutation(len(labels)):
                env = {i: v[idx: idx + 1] for i, v in seg.items()}
                for i, (ga, gb) in self.gradients(env, labels[idx]).items():
                    self.A[i].assign_sub(self.lr * ga)
                    self.B[i].assign_sub(self.lr * gb)

    def predict_outputs(self, x) -> np.ndarray:
        seg = self.segment(x)
        outs = [self.forward({i: v[n: n + 1] for i, v in seg.items()}).numpy().reshape(-1)
                for n in range(len(x))]
        return np.array(outs)
