"""The trainer's head: which loss (:func:`tinylora.ref.loss.choose_loss`), which layer gives
the logits or outputs, the loss's constants, and what a label is (a class number for
cross-entropy, an int8 target array in the model's output space for MSE). Mixed into
:class:`tinylora.ref.trainer.Trainer`."""
from __future__ import annotations

import numpy as np

from tinylora.errors import ConfigError, InputError
from tinylora.ref import checks
from tinylora.ref.layers import Softmax
from tinylora.ref.loss import choose_loss, mse_constants
from tinylora.ref.softmax import softmax_params


class HeadMixin:
    def _setup_head(self, loss: str | None) -> None:
        layers = self.model.layers
        last = len(layers) - 1
        if layers[last].kind == "DEQUANTIZE" or (   # a float or uint8 end: the loss is taken
                layers[last].kind == "QUANTIZE" and layers[last].output_dtype == "UINT8"):
            last -= 1                            # on its int8 input, in that tensor's scale
        self.loss = choose_loss(loss, layers[last].kind)
        beta = 1.0
        if isinstance(layers[last], Softmax):
            if self.loss == "mse":
                raise ConfigError("loss='mse' on a model that ends in SOFTMAX: tinylora has no "
                                  "backward through a softmax; use loss='xent' (class labels)")
            beta = float(layers[last].options["beta"])
            last -= 1
        if last < 0:
            raise ConfigError("the model has no layer before its softmax to train")
        self.logits_layer = last
        self.beta = beta
        out_q = layers[last].output_q
        if self.loss == "xent":
            self.softmax = softmax_params(float(out_q.scale[0]), beta)
            self.loss_scale = beta / 256.0   # real dL/dlogit per gradient unit
        else:
            self.softmax = None
            n = int(np.prod(layers[last].output_shape))
            self.loss_scale, self.mse_q = mse_constants(float(out_q.scale[0]), n)

    def require_classes(self) -> None:
        """Cross-entropy over one output learns nothing (its softmax is always 1): refuse it
        where a tool would pick 'xent' for the user (verify, gen) on a model without a
        SOFTMAX of its own (a regression model such as hello_world)."""
        above = self.model.layers[self.logits_layer + 1:]
        if self.loss == "xent" and not any(l.kind == "SOFTMAX" for l in above) and \
                int(np.prod(self.model.layers[self.logits_layer].output_shape)) < 2:
            raise ConfigError("loss='xent' needs at least 2 classes, but the model has one "
                              "output: a regression model; train it with loss='mse' (targets "
                              "in the output space)")

    def _label(self, label):
        """A class number (cross-entropy) or an int8 target of the output's shape (MSE)."""
        if self.loss == "xent":
            return checks.label(label, self.model.classes)   # targets in the output space: loss='mse'
        out = self.model.layers[self.logits_layer]
        shape = out.output_shape
        t = np.asarray(label)
        if self.model.output_dtype == "FLOAT32" and np.issubdtype(t.dtype, np.floating) \
                and t.shape == shape:   # real targets of a float-output model: its own quantization
            v = checks.finite(t, "target").astype(np.float64) / float(out.output_q.scale[0])
            t = np.sign(v) * np.floor(np.abs(v) + 0.5) + int(out.output_q.zero_point[0])
            return np.clip(t, -128, 127).astype(np.int8)
        if not np.issubdtype(t.dtype, np.integer) or t.shape != shape or (
                t.size and (t.min() < -128 or t.max() > 127)):
            raise InputError(f"with loss='mse' a label is the int8 target output, shape {shape} "
                             "(float32 real values for a model with a float output) "
                             f"(quantize real targets with the output's scale and zero point), "
                             f"got dtype {t.dtype} shape {t.shape}")
        return t.astype(np.int8)

    def _labels(self, Y, count: int):
        """One label per sample: class numbers (cross-entropy) or targets (MSE)."""
        if self.loss == "xent":
            return checks.labels(Y, self.model.classes, count=count, what="Y")
        if len(Y) != count:
            raise InputError(f"Y: {len(Y)} targets for {count} samples: give one per sample")
        return [self._label(y) for y in Y]
