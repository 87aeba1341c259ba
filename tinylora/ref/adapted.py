"""The persistent state of one adapter (:class:`AdaptedLayer`), in the device's dtypes."""
from __future__ import annotations

import numpy as np

from tinylora.ref import lora
from tinylora.ref.layers import Layer


class AdaptedLayer:
    """Persistent state of one adapter, in the device's dtypes: int16 masters A and B, their
    int8 views Aq and Bq (what the forward multiplies with), int32 update accumulators
    dA and dB, and int32 momentum mA and mB when momentum is on. Updates are in place, so the
    arrays can be views into a planned arena."""

    def __init__(self, layer: Layer, k: lora.LayerConstants, a_master, b_master, momentum: bool):
        self.layer, self.k = layer, k
        r, depth, c_out = a_master.shape[0], a_master.shape[1], b_master.shape[0]
        self.arrays = {"A": np.asarray(a_master, np.int16), "B": np.asarray(b_master, np.int16),
                       "Aq": np.zeros((r, depth), np.int8), "Bq": np.zeros((c_out, r), np.int8),
                       "dA": np.zeros((r, depth), np.int32), "dB": np.zeros((c_out, r), np.int32)}
        if momentum:
            self.arrays["mA"] = np.zeros((r, depth), np.int32)
            self.arrays["mB"] = np.zeros((c_out, r), np.int32)
        self.refresh()

    a_master = property(lambda self: self.arrays["A"], lambda self, v: self._set("A", v))
    b_master = property(lambda self: self.arrays["B"], lambda self, v: self._set("B", v))
    a8 = property(lambda self: self.arrays["Aq"])
    b8 = property(lambda self: self.arrays["Bq"])
    acc_a = property(lambda self: self.arrays["dA"], lambda self, v: self._set("dA", v))
    acc_b = property(lambda self: self.arrays["dB"], lambda self, v: self._set("dB", v))

    def _set(self, name: str, value) -> None:
        self.arrays[name][...] = value

    def refresh(self) -> None:
        self.arrays["Aq"][...] = lora.to_int8(self.arrays["A"])
        self.arrays["Bq"][...] = lora.to_int8(self.arrays["B"])

    def bind(self, views: dict[str, np.ndarray]) -> None:
        """Move every array into the given views (same shapes and dtypes), keeping values."""
        for name, view in views.items():
            view[...] = self.arrays[name]
            self.arrays[name] = view
