"""The executor of a training step: one method per schedule op kind (forward, lora_forward,
loss, backward, update), each reading and writing the step's buffers by name. Mixed into
:class:`tinylora.ref.trainer.Trainer`, whose state (adapters, constants, schedule) they use."""
from __future__ import annotations

import numpy as np

from tinylora.ref import backward_ops, lora, quant
from tinylora.ref.dag import MERGE_GUARD_BITS, is_chain_path
from tinylora.ref.layers import Reshape
from tinylora.ref.lora import sparsify
from tinylora.ref.loss import mse_grad, xent_grad
from tinylora.ref.schedule import BufferName, act


class StepExecutor:
    """The ops of :attr:`Trainer.schedule` (``_op_<kind>(op, bufs)``); state lives in the Trainer."""

    def _op_forward(self, op, bufs):
        xs = [bufs[act(p)] for p in self.srcs[op.layer]]
        bufs[act(op.layer)] = self.model.layers[op.layer].run(xs)

    def _op_lora_forward(self, op, bufs):
        ad = self.adapters[op.layer]
        y, h = lora.lora_forward(ad.layer, bufs[act(self.srcs[op.layer][0])], ad.a8, ad.b8, ad.k)
        bufs[act(op.layer)], bufs[BufferName.h(op.layer)] = y, h

    def _op_loss(self, op, bufs):
        logits = bufs[act(op.layer)][0]
        if self.loss == "mse":
            g, loss = mse_grad(logits, bufs["label"], self.mse_q)
        else:
            g, loss = xent_grad(logits, bufs["label"], self.softmax)
        bufs[BufferName.grad(op.layer)] = (g[None], 0)
        bufs["loss"] = loss
        bufs["logits"] = logits.copy()

    def _op_backward(self, op, bufs):
        i = op.layer
        layer = self.model.layers[i]
        g, e = bufs[BufferName.grad(i)]
        if isinstance(layer, Reshape) and is_chain_path(layer):
            parts = [(g.reshape((1,) + layer.input_shape), e)]
        elif is_chain_path(layer):
            parts = [self._weighted_backward(op, bufs, g, e)]
        else:
            y = bufs[act(i)]
            xs = [bufs[act(p)] for p in self.srcs[i]] if backward_ops.reads_inputs(layer) else None
            g = backward_ops.clamp_mask(layer, y, g)
            parts = [lora.normalize(raw) for raw in
                     backward_ops.input_gradients(layer, g, xs, y, self.bw_consts[i])]
            parts = [(m, e + ex) for m, ex in parts]
        self._deliver(op, parts, bufs)

    def _deliver(self, op, parts, bufs):
        """Each input's gradient to its source: rescaled to the source's static scale where a
        fork's other consumer sets it, and added to what an earlier consumer wrote."""
        done = set()
        for slot, p in self._slots(op.layer):
            m, e = parts[slot]
            ratio = self.merge_ratio.get((op.layer, slot))
            if ratio is not None:
                m, ex = lora.normalize(lora.rescale(m, ratio[0], ratio[1] + MERGE_GUARD_BITS))
                e += ex - MERGE_GUARD_BITS
            name = BufferName.grad(p)
            if p in done or name in op.reads:
                m, e = backward_ops.merge(bufs[name], (m, e))
            bufs[name] = (m, e)
            done.add(p)

    def _weighted_backward(self, op, bufs, g, e):
        """FULLY_CONNECTED / 1x1 CONV_2D: adapter gradients and the input gradient (None
        at the lowest layer)."""
        i = op.layer
        layer = self.model.layers[i]
        g = lora.output_gradient_mask(layer, bufs[act(i)], g)
        c_out = layer.weights.shape[0]
        g_rows, eg = lora.normalize(g.reshape(-1, c_out))   # full 15-bit mantissas from here
        e += eg
        x_rows = lora.rows_view(layer, bufs[act(self.srcs[i][0])])[0].astype(np.int64)
        x_rows = x_rows - int(layer.input_q.zero_point[0])
        ad = self.adapters.get(i)
        dh = None
        if ad is not None:
            h = bufs[BufferName.h(i)][0].astype(np.int64)
            gb, eb = lora.normalize(g_rows.T @ h, 31)
            dh, eh = lora.normalize(lora.saturation_mask(h, g_rows @ ad.b8))
            ga, ea = lora.normalize(dh.T @ x_rows, 31)
            q, s = ad.k.m_update_b
            vb = lora.rescale(gb, q, s + e + eb)
            q, s = ad.k.m_update_a
            va = lora.rescale(ga, q, s + e + eh + ea)
        out = None
        if self._slots(i):   # the input gradient reads the A (and dh the B) the forward used
            ratio_q, ratio_s = self.input_grad[i]
            dx = lora.rescale(g_rows, ratio_q, ratio_s) @ lora.base_weights(layer)
            if dh is not None:
                q, s = ad.k.extra["lora_to_input"]
                dx = dx + lora.rescale(dh, q, s + eh) @ ad.a8
            dx, ex = lora.normalize(dx)
            out = self._to_input_shape(layer, dx), e + ex
        if ad is not None:
            self._emit(ad, va, vb)
        return out

    def _emit(self, ad, va, vb):
        """The weight gradients' update values: applied to the masters at once (fused: the
        int8 views refreshed after the whole backward of the layer), or written to the
        gradient buffer (one micro-batch per window: per-step scratch), or added to the
        persistent accumulator (accumulation), saturating."""
        if self.fused_now:
            for p, v in (("A", va), ("B", vb)):
                v = quant.saturate(v, quant.INT32_MIN, quant.INT32_MAX)
                delta = sparsify(quant.rounding_divide_by_pot(v, lora.ACCUM_FRAC_BITS),
                                 self.grad_threshold, None)
                ad.arrays[p][...] = quant.saturate(ad.arrays[p] - delta, lora.MASTER_MIN, lora.MASTER_MAX)
            ad.refresh()
            return
        carry = self.accum_steps > 1
        ad.acc_b = quant.saturate((ad.acc_b if carry else 0) + vb, quant.INT32_MIN, quant.INT32_MAX)
        ad.acc_a = quant.saturate((ad.acc_a if carry else 0) + va, quant.INT32_MIN, quant.INT32_MAX)

    def _to_input_shape(self, layer, dx_rows):
        shape = (1,) + layer.input_shape
        if layer.kind == "CONV_2D":
            sh, sw = layer.options["stride_h"], layer.options["stride_w"]
            full = np.zeros(shape, np.int64)
            view = full[:, ::sh, ::sw, :]
            full[:, ::sh, ::sw, :] = dx_rows.reshape(view.shape)
            return full
        return dx_rows.reshape(shape)

    def _op_update(self, op, bufs):
        if (self.step_count + 1) % self.accum_steps:
            return
        ad = self.adapters[op.layer]
        for p in "AB":
            self._apply(ad.arrays, p)
        ad.refresh()

    def _apply(self, arrays: dict, p: str) -> None:
        """master -= sparsify(delta); delta from the accumulator (and momentum); acc reset."""
        delta = quant.rounding_divide_by_pot(arrays["d" + p], lora.ACCUM_FRAC_BITS)
        if self.momentum_q[0]:
            mom = quant.saturate(lora.rescale(arrays["m" + p], *self.momentum_q) + delta,
                                 quant.INT32_MIN, quant.INT32_MAX)
            arrays["m" + p][...] = mom
            delta = mom
        delta = sparsify(delta, self.grad_threshold, self.capacity(arrays[p].size))
        arrays[p][...] = quant.saturate(arrays[p] - delta, lora.MASTER_MIN, lora.MASTER_MAX)
        arrays["d" + p][...] = 0
