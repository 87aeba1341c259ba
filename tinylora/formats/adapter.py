"""The adapter file (``Trainer.adapter.to_bytes()``): trained A/B masters and their scales for one
base model, with a CRC."""
from __future__ import annotations

import math
import struct
import zlib
from typing import TYPE_CHECKING

import numpy as np

from tinylora.errors import ModelError
from tinylora.ref.lora import is_adaptable
from tinylora.ref.model import Model

if TYPE_CHECKING:   # the trainer uses this module: no import at run time
    from tinylora.ref.trainer import Trainer

ADAPTER_MAGIC = b"TLAD"
ADAPTER_VERSION = 1
_HEADER = struct.Struct("<HHII4f")   # per layer: index, rank, depth, out, s_A, s_B, s_h, alpha


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
    def parse(cls, data) -> Adapter:
        """Read an adapter file's structure without a model (for ``tinylora inspect``):
        ModelError for anything that is not a whole, undamaged adapter of this format."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ModelError(f"an adapter is bytes (Adapter.to_bytes(), the file `tinylora train "
                             f"--out` writes), got {type(data).__name__}")
        data = bytes(data)
        if len(data) < 16 or data[:4] != ADAPTER_MAGIC:
            raise ModelError("not a tinylora adapter (bad magic)")
        if struct.unpack_from("<I", data, len(data) - 4)[0] != zlib.crc32(data[:-4]):
            raise ModelError("adapter file is damaged (CRC mismatch)")
        version, count, crc = struct.unpack_from("<HHI", data, 4)
        if version != ADAPTER_VERSION:
            raise ModelError(f"adapter format version {version}; this tinylora reads {ADAPTER_VERSION}")
        if count == 0:
            raise ModelError("adapter file names no layer: it is not one `train --out` writes")
        pos, end, layers = 12, len(data) - 4, []
        for n in range(count):
            if pos + _HEADER.size > end:
                raise ModelError(f"adapter file is truncated: layer {n + 1} of {count} is missing")
            index, r, depth, c_out, s_a, s_b, s_h, alpha = _HEADER.unpack_from(data, pos)
            pos += _HEADER.size
            size = 2 * (r * depth + c_out * r)
            if not (1 <= r <= 255 and depth >= 1 and c_out >= 1) or pos + size > end:
                raise ModelError(f"adapter layer {index}: rank {r}, depth {depth}, {c_out} outputs "
                                 "do not fit the file: it is damaged or not written by tinylora")
            if not all(math.isfinite(v) and v > 0 for v in (s_a, s_b, s_h)) or not math.isfinite(alpha):
                raise ModelError(f"adapter layer {index}: scales must be finite and > 0")
            a = np.frombuffer(data, "<i2", r * depth, pos).astype(np.int64).reshape(r, depth)
            pos += 2 * r * depth
            b = np.frombuffer(data, "<i2", c_out * r, pos).astype(np.int64).reshape(c_out, r)
            pos += 2 * c_out * r
            layers.append(dict(index=index, rank=r, s_a=s_a, s_b=s_b, s_h=s_h, alpha=alpha, a=a, b=b))
        if pos != end:
            raise ModelError(f"adapter file has {end - pos} bytes after its last layer: damaged")
        if len({l["index"] for l in layers}) != count:
            raise ModelError("adapter file names a layer twice: damaged or not written by tinylora")
        return cls(layers, crc)

    @classmethod
    def from_bytes(cls, data, model: Model, config=None) -> Adapter:
        """Read an adapter for `model` (and, when given, the LoRAConfig it must match): ModelError
        for a damaged file, another model, a layer the model lacks or of another shape or rank."""
        adapter = cls.parse(data)
        if adapter.model_crc != zlib.crc32(model.source):
            raise ModelError("adapter was trained for a different base model")
        for l in adapter.layers:
            i, (r, depth), c_out = l["index"], l["a"].shape, l["b"].shape[0]
            if i >= len(model.layers) or not is_adaptable(model.layers[i]):
                raise ModelError(f"adapter names layer {i}, which is not a FULLY_CONNECTED or 1x1 "
                                 f"CONV_2D layer of this model ({len(model.layers)} layers)")
            w = model.layers[i].weights.shape
            if (depth, c_out) != (w[-1], w[0]):
                raise ModelError(f"adapter layer {i} is {c_out}x{depth}; the model's layer {i} is "
                                 f"{w[0]}x{w[-1]}: not an adapter of this model")
            if config is not None and config.rank_of(model.layers[i]) != r:
                raise ModelError(f"adapter layer {i} has rank {r}; the config asks for rank "
                                 f"{config.rank_of(model.layers[i])}: use the config it was trained with")
        return adapter

    def describe(self) -> str:
        """What the adapter holds, one line per layer (``tinylora inspect adapter.bin``)."""
        lines = [f"tinylora adapter (format {ADAPTER_VERSION}) for the base model with CRC32 "
                 f"{self.model_crc:08x}: {len(self.layers)} layer(s), {len(self.to_bytes())} bytes"]
        for l in self.layers:
            (r, depth), c_out = l["a"].shape, l["b"].shape[0]
            lines.append(f"  layer {l['index']}: rank {r}, A {r}x{depth}, B {c_out}x{r} "
                         f"({2 * (r * depth + c_out * r)} bytes of int16 masters), alpha {l['alpha']:g}")
        return "\n".join(lines)

    def __eq__(self, other) -> bool:
        return isinstance(other, Adapter) and self.to_bytes() == other.to_bytes()
