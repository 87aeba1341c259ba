"""The adapter file, format 2 (``.tla``; docs/adapter.md): the trained A/B of one base model,
the LoRA constants that interpret them, the model's SHA-256 and a CRC32.

    offset size  field (little-endian)
    0      4     magic "TLAD"
    4      2     format version = 2 (version 1 is read and converted, never written)
    6      2     form: 1 = masters (int16, resumable), 2 = deploy (int8 = to_int8(master))
    8      4     total length in bytes, CRC included
    12     32    SHA-256 of the base model's .tflite bytes
    44     1     loss: 0 = softmax cross-entropy, 1 = mean squared error
    45     1     reserved, 0
    46     2     L = number of adapted layers (>= 1), ascending layer index
    48     4     optimizer updates the adapter has had (information)
    52     12    reserved, 0
    64     28*L  per layer: u16 index, u16 rank r, u32 K, u32 C, f32 s_A, s_B, s_h, alpha
    ...          payload per layer: A [r, K] then B [C, r], int16 (form 1) or int8 (form 2)
    end-4  4     CRC32 of every byte before it
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import struct
import tempfile
import zlib
from typing import TYPE_CHECKING

import numpy as np

from tinylora.errors import AdapterError, InputError
from tinylora.formats import adapter_v1
from tinylora.ref import lora
from tinylora.ref.config import LoRAConfig, short_name
from tinylora.ref.layers import Layer
from tinylora.ref.model import Model

if TYPE_CHECKING:   # the trainer uses this module: no import at run time
    from tinylora.ref.trainer import Trainer

ADAPTER_MAGIC = b"TLAD"
ADAPTER_VERSION = 2
FORMS = {"masters": 1, "deploy": 2}
LOSSES = {"xent": 0, "mse": 1}
HEADER = struct.Struct("<4sHHI32sBBHI12x")      # 64 bytes
LAYER = struct.Struct("<HHII4f")               # 28 bytes
MIN_SIZE = HEADER.size + 4


def _sha(model_bytes: bytes) -> bytes:
    return hashlib.sha256(model_bytes).digest()


def _f32(v) -> float:
    return float(np.float32(v))


class Adapter:
    """A trained adapter: per layer (ascending index) a dict with index, rank, s_a, s_b, s_h,
    alpha and the arrays a [r, K], b [C, r] (int16 masters, or the int8 deploy values when
    ``form == "deploy"``). ``model_sha256`` is None only for a converted version-1 file until
    :meth:`check` has seen its model."""

    def __init__(self, layers: list[dict], model_sha256: bytes | None, loss: str | None,
                 form: str = "masters", updates: int = 0, model_crc32: int | None = None):
        self.layers = layers
        self.model_sha256 = model_sha256
        self.loss = loss
        self.form = form
        self.updates = int(updates)
        self.model_crc32 = model_crc32    # version 1 only: the model it names

    # ------------------------------------------------------------------ writing

    @classmethod
    def from_trainer(cls, t: Trainer) -> Adapter:
        layers = []
        for i, ad in sorted(t.adapters.items()):
            layers.append(dict(index=i, rank=ad.k.rank, s_a=ad.k.s_a, s_b=ad.k.s_b, s_h=ad.k.s_h,
                               alpha=_f32(t.config.alpha_of(ad.layer)),
                               a=ad.a_master.astype(np.int64), b=ad.b_master.astype(np.int64)))
        form = "deploy" if getattr(t, "inference_only", False) else "masters"
        if form == "deploy":
            for l in layers:
                l["a"], l["b"] = lora.to_int8(l["a"]), lora.to_int8(l["b"])
        return cls(layers, _sha(t.model.source), t.loss, form, t.updates)

    def to_bytes(self, form: str | None = None) -> bytes:
        """The file's bytes, in `form` ("masters" or "deploy"; default: the adapter's own)."""
        form = form or self.form
        if form not in FORMS:
            raise InputError(f"form must be 'masters' or 'deploy', got {form!r}")
        if form == "masters" and self.form == "deploy":
            raise AdapterError("a deploy-form adapter holds int8 values only: it cannot be written "
                               "as masters; keep the masters file (form='masters') to resume training")
        if self.model_sha256 is None or self.loss is None:
            raise AdapterError("this adapter came from a version-1 file, which names its model by "
                               "CRC32 only: call adapter.check(model) with its base model first")
        dtype = "<i2" if form == "masters" else "<i1"
        body = bytearray(HEADER.pack(ADAPTER_MAGIC, ADAPTER_VERSION, FORMS[form], 0, self.model_sha256,
                                     LOSSES[self.loss], 0, len(self.layers), self.updates & 0xFFFFFFFF))
        for l in self.layers:
            r, depth = l["a"].shape
            body += LAYER.pack(l["index"], r, depth, l["b"].shape[0], l["s_a"], l["s_b"], l["s_h"], l["alpha"])
        for l in self.layers:
            a, b = l["a"], l["b"]
            if form == "deploy" and self.form == "masters":
                a, b = lora.to_int8(a), lora.to_int8(b)
            body += np.asarray(a).astype(dtype).tobytes() + np.asarray(b).astype(dtype).tobytes()
        struct.pack_into("<I", body, 8, len(body) + 4)
        return bytes(body) + struct.pack("<I", zlib.crc32(body))

    def save(self, path, form: str | None = None) -> pathlib.Path:
        """Write the file atomically (a temporary file in the same folder, then os.replace)."""
        data, path = self.to_bytes(form), pathlib.Path(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            pathlib.Path(tmp).unlink(missing_ok=True)
            raise
        return path

    # ------------------------------------------------------------------ reading

    @classmethod
    def load(cls, source) -> Adapter:
        """Read an adapter from a path or bytes: format 2, or version 1 converted (its model
        hash unknown until :meth:`check`). AdapterError names what is wrong with the bytes."""
        if isinstance(source, (str, os.PathLike)):
            try:
                source = pathlib.Path(source).read_bytes()
            except OSError as e:
                raise AdapterError(f"cannot read the adapter file {source}: {e.strerror}") from None
        if not isinstance(source, (bytes, bytearray, memoryview)):
            raise AdapterError(f"an adapter is a .tla path or its bytes (Adapter.to_bytes()), got "
                               f"{type(source).__name__}")
        data = bytes(source)
        if data[:4] == ADAPTER_MAGIC and data[4:6] == b"\x01\x00":
            return cls(*adapter_v1.parse(data))
        return cls._parse_v2(data)

    parse = load   # the old name (tinylora inspect used it)

    @classmethod
    def _parse_v2(cls, data: bytes) -> Adapter:
        n = len(data)
        if n < MIN_SIZE:
            raise AdapterError(f"adapter file is truncated: {n} bytes, shorter than the {MIN_SIZE} "
                               "of an empty one")
        if struct.unpack_from("<I", data, 8)[0] != n:
            if data[:4] != ADAPTER_MAGIC:   # a .tflite given as an adapter is not a damaged adapter
                raise AdapterError(f"not a tinylora adapter: bad magic {data[:4]!r} (expected "
                                   f"{ADAPTER_MAGIC!r}) and a length field that disagrees with the size")
            raise AdapterError(f"adapter file is truncated or padded: {n} bytes, its length field says "
                               f"{struct.unpack_from('<I', data, 8)[0]}")
        magic, version, form, _n, sha, loss, _r, count, updates = HEADER.unpack_from(data)
        if magic != ADAPTER_MAGIC:
            raise AdapterError(f"not a tinylora adapter: bad magic {magic!r} (expected {ADAPTER_MAGIC!r})")
        if version != ADAPTER_VERSION:
            raise AdapterError(f"adapter format version {version}; this tinylora reads versions 1 and "
                               f"{ADAPTER_VERSION}: upgrade tinylora")
        if struct.unpack_from("<I", data, n - 4)[0] != zlib.crc32(data[:-4]):
            raise AdapterError("adapter file is damaged (CRC32 mismatch): a torn write or a flipped bit")
        if form not in FORMS.values():
            raise AdapterError(f"adapter form {form} is unknown: 1 = masters, 2 = deploy")
        if loss not in LOSSES.values():
            raise AdapterError(f"adapter loss code {loss} is unknown: 0 = xent, 1 = mse")
        if count < 1:
            raise AdapterError("adapter file names no layer (L = 0): not one tinylora writes")
        form_name = "masters" if form == 1 else "deploy"
        layers = _read_layers(data, count, 2 if form == 1 else 1)
        return cls(layers, sha, "xent" if loss == 0 else "mse", form_name, updates)

    @classmethod
    def from_bytes(cls, data, model: Model, config=None) -> Adapter:
        """Read and check against `model` (and `config`): :meth:`load` then :meth:`check`."""
        return cls.load(data).check(model, config)

    # ------------------------------------------------------------------ checking

    def check(self, model: Model, config=None) -> Adapter:
        """Refuse (AdapterError naming both sides) an adapter of another base model, a layer the
        model lacks or of another shape, or, with `config` (a LoRAConfig, a Trainer or another
        Adapter), another rank, alpha, loss or (Trainer / Adapter) other scales. Returns self."""
        from_v1 = self.model_sha256 is None
        if from_v1:
            crc = zlib.crc32(model.source)
            if crc != self.model_crc32:
                raise AdapterError(f"adapter (version 1) was trained for the base model with CRC32 "
                                   f"{self.model_crc32:08x}; this model's is {crc:08x}")
        elif self.model_sha256 != _sha(model.source):
            raise AdapterError(f"adapter was trained for another base model: its SHA-256 is "
                               f"{self.model_sha256.hex()}, this model's is {_sha(model.source).hex()}")
        for l in self.layers:
            _check_layer(model, l)
        if from_v1:
            self.model_sha256 = _sha(model.source)
            if self.loss is None:
                self.loss = (getattr(config, "loss", None)
                             or ("xent" if model.layers[-1].kind == "SOFTMAX" else None))
                if self.loss is None:
                    raise AdapterError("a version-1 adapter does not state its loss and the model does "
                                       "not end in SOFTMAX: pass a config with loss='xent' or 'mse'")
        if config is not None:
            _check_config(self, model, config)
        return self

    def config(self) -> LoRAConfig:
        """The LoRAConfig the adapter was trained with (targets, ranks, alpha, loss)."""
        alphas = {l["alpha"] for l in self.layers}
        if len(alphas) != 1:
            raise AdapterError(f"adapter layers have different alphas {sorted(alphas)}: one LoRAConfig "
                               "cannot express that")
        return LoRAConfig(rank={l["index"]: l["rank"] for l in self.layers}, alpha=alphas.pop(),
                          targets=tuple(l["index"] for l in self.layers), loss=self.loss)

    def trainer_config(self, model: Model, config: LoRAConfig | None, loss: str | None) -> LoRAConfig:
        """The config a Trainer resuming from this adapter uses: `config` checked against the
        adapter (its targets default to the adapter's layers, its loss to the adapter's), or the
        adapter's own. AdapterError when they differ."""
        self.check(model, config)
        if loss is not None and loss != self.loss:
            raise AdapterError(f"adapter was trained with loss {self.loss!r}; the trainer asks for {loss!r}")
        if config is None:
            return self.config()
        return dataclasses.replace(config, loss=self.loss,
                                   targets=config.targets or tuple(l["index"] for l in self.layers))

    def layer_state(self, layer: Layer, alpha: float) -> tuple[lora.LayerConstants, np.ndarray, np.ndarray]:
        """(constants, A masters, B masters) of one adapted layer: the file's scales, not a new
        calibration; a deploy-form adapter's int8 values as masters (to_int8 gives them back)."""
        l = next((l for l in self.layers if l["index"] == layer.index), None)
        if l is None:
            raise AdapterError(f"the adapter has no layer {layer.index}: it adapts "
                               f"{[l['index'] for l in self.layers]}")
        k = lora.constants_for_scales(layer, l["rank"], alpha, l["s_a"], l["s_b"], l["s_h"])
        shift = lora.MASTER_FRAC_BITS if self.form == "deploy" else 0
        return k, l["a"] << shift, l["b"] << shift

    def describe(self) -> str:
        """What the adapter holds, one line per layer (``tinylora inspect adapter.tla``)."""
        sha = self.model_sha256.hex() if self.model_sha256 else f"(version 1: CRC32 {self.model_crc32:08x})"
        width = 2 if self.form == "masters" else 1
        head = (f"tinylora adapter (format {ADAPTER_VERSION}, {self.form} form) for the base model "
                f"with SHA-256 {sha}: {len(self.layers)} layer(s), loss {self.loss or 'not stated'}, "
                f"{self.updates} updates")
        if self.model_sha256 is not None and self.loss is not None:
            head += f", {len(self.to_bytes())} bytes"
        lines = [head]
        for l in self.layers:
            (r, depth), c_out = l["a"].shape, l["b"].shape[0]
            lines.append(f"  layer {l['index']}: rank {r}, A {r}x{depth}, B {c_out}x{r} "
                         f"({width * (r * depth + c_out * r)} bytes of int{8 * width}), alpha {l['alpha']:g}, "
                         f"s_A {l['s_a']:.6g} s_B {l['s_b']:.6g} s_h {l['s_h']:.6g}")
        return "\n".join(lines)

    def __eq__(self, other) -> bool:
        return (isinstance(other, Adapter) and self.form == other.form and self.loss == other.loss
                and self.model_sha256 == other.model_sha256 and self.updates == other.updates
                and _descriptors(self) == _descriptors(other)
                and all(np.array_equal(x[k], y[k]) for x, y in zip(self.layers, other.layers) for k in "ab"))

    __hash__ = None


def _read_layers(data: bytes, count: int, width: int) -> list[dict]:
    end = len(data) - 4
    if HEADER.size + LAYER.size * count > end:
        raise AdapterError(f"adapter file is truncated: {count} layer descriptors do not fit in its "
                           f"{len(data)} bytes")
    layers, pos, last = [], HEADER.size + LAYER.size * count, -1
    for n in range(count):
        index, r, depth, c_out, s_a, s_b, s_h, alpha = LAYER.unpack_from(data, HEADER.size + LAYER.size * n)
        if index <= last:
            raise AdapterError(f"adapter layer {n}: index {index} is not above the previous {last} "
                               "(layers are in ascending index): damaged or not written by tinylora")
        if not (1 <= r <= 255 and depth >= 1 and c_out >= 1):
            raise AdapterError(f"adapter layer {index}: rank {r}, K {depth}, C {c_out} are not a LoRA "
                               "shape (rank 1..255, K and C >= 1)")
        if not all(np.isfinite(v) and v > 0 for v in (s_a, s_b, s_h)) or not np.isfinite(alpha):
            raise AdapterError(f"adapter layer {index}: scales must be finite and > 0, alpha finite")
        last = index
        layers.append(dict(index=index, rank=r, s_a=s_a, s_b=s_b, s_h=s_h, alpha=alpha, shape=(r, depth, c_out)))
    need = pos + sum(width * (r * k + c * r) for r, k, c in (l["shape"] for l in layers))
    if need != end:
        raise AdapterError(f"adapter payload is {end - pos} bytes; the layer descriptors need "
                           f"{need - pos}: damaged or not written by tinylora")
    dtype = "<i2" if width == 2 else "<i1"
    for l in layers:
        r, depth, c_out = l.pop("shape")
        l["a"] = np.frombuffer(data, dtype, r * depth, pos).astype(np.int64).reshape(r, depth)
        pos += width * r * depth
        l["b"] = np.frombuffer(data, dtype, c_out * r, pos).astype(np.int64).reshape(c_out, r)
        pos += width * c_out * r
    return layers


def _check_layer(model: Model, l: dict) -> None:
    i, (_r, depth), c_out = l["index"], l["a"].shape, l["b"].shape[0]
    if i >= len(model.layers) or not lora.is_adaptable(model.layers[i]):
        raise AdapterError(f"adapter names layer {i}, which is not a FULLY_CONNECTED or 1x1 "
                           f"CONV_2D layer of this model ({len(model.layers)} layers)")
    w = model.layers[i].weights.shape
    if (depth, c_out) != (w[-1], w[0]):
        raise AdapterError(f"adapter layer {i} is {c_out}x{depth}; the model's layer {i} is "
                           f"{w[0]}x{w[-1]}: not an adapter of this model")


def _descriptors(a: Adapter) -> list[tuple]:
    return [(l["index"], l["rank"], _f32(l["s_a"]), _f32(l["s_b"]), _f32(l["s_h"]), _f32(l["alpha"]))
            for l in a.layers]


def _check_config(adapter: Adapter, model: Model, config) -> None:
    """The adapter against a LoRAConfig (targets, rank, alpha, loss) or a Trainer / Adapter
    (also the scales, bit-exact f32): AdapterError naming both."""
    if isinstance(config, Adapter) or hasattr(config, "adapters"):
        other = config if isinstance(config, Adapter) else Adapter.from_trainer(config)
        mine, theirs = _descriptors(adapter), _descriptors(other)
        if mine != theirs or adapter.loss != other.loss:
            raise AdapterError(f"adapter config differs: the file has layers (index, rank, s_A, s_B, "
                               f"s_h, alpha) {mine} and loss {adapter.loss}; expected {theirs} and "
                               f"loss {other.loss}")
        return
    if not isinstance(config, LoRAConfig):
        raise InputError(f"config must be a LoRAConfig, a Trainer or an Adapter, got {type(config).__name__}")
    for l in adapter.layers:
        layer = model.layers[l["index"]]
        rank, alpha = config.rank_of(layer), _f32(config.alpha_of(layer))
        if (rank, alpha) != (l["rank"], _f32(l["alpha"])):
            raise AdapterError(f"adapter layer {l['index']} has rank {l['rank']}, alpha {l['alpha']:g}; "
                               f"the config asks for rank {rank}, alpha {alpha:g}: use the config it "
                               "was trained with")
    if config.targets is not None:
        wanted = sorted(_target_index(model, t) for t in config.targets)
        have = [l["index"] for l in adapter.layers]
        if wanted != have:
            raise AdapterError(f"adapter adapts layers {have}; the config targets {wanted}")
    if config.loss is not None and config.loss != adapter.loss:
        raise AdapterError(f"adapter was trained with loss {adapter.loss!r}; the config asks for "
                           f"{config.loss!r}")


def _target_index(model: Model, key) -> int:
    for layer in model.layers:
        if key in (layer.index, layer.name, short_name(layer.name)):
            return layer.index
    raise AdapterError(f"the config targets {key!r}, which is no layer of the model")
