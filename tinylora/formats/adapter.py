"""The adapter file (``Trainer.adapter.to_bytes()``): trained A/B masters and their scales for one
base model, with a CRC."""
from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np

from tinylora.errors import ModelError
from tinylora.ref.model import Model

if TYPE_CHECKING:   # the trainer uses this module: no import at run time
    from tinylora.ref.trainer import Trainer

ADAPTER_MAGIC = b"TLAD"
ADAPTER_VERSION = 1


class Adapter:
    """The trained adapter: per-layer int16 masters and the constants that interpret them.

    Byte format (little-endian): magic "TLAD", u16 version, u16 layer count, u32 CRC32
    of the model file; per layer: u16 layer index, u16 rank, u32 depth, u32 out channels,
    f32 s_A, f32 s_B, f32 s_h, f32 alpha; then A masters (rank x depth int16) and
    B masters (out x rank int16); finally u32 CRC32 of everything before it.
    """

    def __init__(self, layers: list[dict], model_crc: int):
        self.layers = layers
        self.model_crc = model_crc

    @classmethod
    def from_trainer(cls, t: Trainer) -> Adapter:
        layers = []
        for i, ad in sorted(t.adapters.items()):
            layers.append(dict(index=i, rank=ad.k.rank, s_a=ad.k.s_a, s_b=ad.k.s_b, s_h=ad.k.s_h,
                               alpha=t.config.alpha_of(ad.layer),
                               a=ad.a_master.copy(), b=ad.b_master.copy()))
        return cls(layers, zlib.crc32(t.model.source))

    def to_bytes(self) -> bytes:
        out = bytearray(ADAPTER_MAGIC + struct.pack("<HHI", ADAPTER_VERSION, len(self.layers), self.model_crc))
        for l in self.layers:
            r, depth = l["a"].shape
            out += struct.pack("<HHII4f", l["index"], r, depth, l["b"].shape[0],
                               l["s_a"], l["s_b"], l["s_h"], l["alpha"])
            out += l["a"].astype("<i2").tobytes() + l["b"].astype("<i2").tobytes()
        out += struct.pack("<I", zlib.crc32(bytes(out)))
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes, model: Model) -> Adapter:
        data = bytes(data)
        if len(data) < 16 or data[:4] != ADAPTER_MAGIC:
            raise ModelError("not a tinylora adapter (bad magic)")
        if struct.unpack_from("<I", data, len(data) - 4)[0] != zlib.crc32(data[:-4]):
            raise ModelError("adapter file is damaged (CRC mismatch)")
        version, count, crc = struct.unpack_from("<HHI", data, 4)
        if version != ADAPTER_VERSION:
            raise ModelError(f"adapter format version {version}; this tinylora reads {ADAPTER_VERSION}")
        if crc != zlib.crc32(model.source):
            raise ModelError("adapter was trained for a different base model")
        pos, layers = 12, []
        for _ in range(count):
            index, r, depth, c_out, s_a, s_b, s_h, alpha = struct.unpack_from("<HHII4f", data, pos)
            pos += 28
            a = np.frombuffer(data, "<i2", r * depth, pos).astype(np.int64).reshape(r, depth)
            pos += 2 * r * depth
            b = np.frombuffer(data, "<i2", c_out * r, pos).astype(np.int64).reshape(c_out, r)
            pos += 2 * c_out * r
            layers.append(dict(index=index, rank=r, s_a=s_a, s_b=s_b, s_h=s_h, alpha=alpha, a=a, b=b))
        return cls(layers, crc)

    def __eq__(self, other) -> bool:
        return isinstance(other, Adapter) and self.to_bytes() == other.to_bytes()
