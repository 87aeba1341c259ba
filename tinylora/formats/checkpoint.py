"""Checkpoints that survive power loss and resume training bit-exactly.

The byte format (little-endian; the C runtime writes the same bytes; docs/checkpoint.md):

    offset size  field
    0      4     magic "TLCK"
    4      2     format version (1)
    6      2     flags: 1 = payload stored in the adapter slot, 2 = accumulators, 4 = momentum
    8      4     length of the whole record in bytes, CRC included
    12     4     sequence number (set by the store; 0 from Trainer.checkpoint())
    16     8     binding: first 8 bytes of SHA-256 over the model file and the training config
    24     4     step count
    28     4     PRNG state (xorshift32)
    32     4     learning-rate schedule position (optimizer updates applied)
    36     2     micro-batches into the current accumulation window
    38     2     number of adapted layers
    40     ...   payload: per layer (ascending index) A masters int16 [r, K], B masters int16
                 [C, r], then if flag 2 the int32 accumulators dA, dB, then if flag 4 the int32
                 momentum mA, mB.  With flag 1 the payload is instead: u32 length, u32 CRC32 of
                 the payload, which then lives in the adapter slot.
    end-4  4     CRC32 of every byte before it

A :class:`CheckpointStore` keeps two record slots (and, for adapters too large for a record
slot, two adapter slots) and writes them alternately with increasing sequence numbers: the
adapter first, then the record that points at it. A write torn at any byte leaves the slot
pair of the previous checkpoint intact, and loading picks the newest pair that checks out.
"""
from __future__ import annotations

import hashlib
import struct
import zlib

import numpy as np

from tinylora.errors import CheckpointError, InputError

MAGIC = b"TLCK"
VERSION = 1
HEADER = struct.Struct("<4sHHIIQIIIHH")     # 40 bytes
SEQ_AT, LEN_AT, FLAGS_AT = 12, 8, 6
FLAG_SPLIT, FLAG_ACCUM, FLAG_MOMENTUM = 1, 2, 4
RECORD_SLOT = 1024


def binding(trainer) -> int:
    """64-bit hash binding a checkpoint to the model bytes and everything that shapes training."""
    h = hashlib.sha256(trainer.model.source)
    h.update(repr(_config_fingerprint(trainer)).encode())
    return int.from_bytes(h.digest()[:8], "little")


def _config_fingerprint(t) -> tuple:
    layers = tuple((i, ad.k.rank, ad.a_master.shape, ad.b_master.shape,
                    np.float32(ad.k.s_a).tobytes().hex(), np.float32(ad.k.s_b).tobytes().hex(),
                    np.float32(ad.k.s_h).tobytes().hex(), t.config.alpha_of(ad.layer))
                   for i, ad in sorted(t.adapters.items()))
    return (VERSION, layers, t.lr_q, t.momentum_q, t.accum_steps, t.grad_threshold,
            t.grad_density, t.grad_capacity)


def _flags(t) -> int:
    return (FLAG_ACCUM if t.accum_steps > 1 else 0) | (FLAG_MOMENTUM if t.momentum_q[0] else 0)


def _fields(t, flags: int):
    """(name, dtype) of every payload array, in order."""
    out = []
    for i in sorted(t.adapters):
        names = ["A", "B"] + (["dA", "dB"] if flags & FLAG_ACCUM else []) + \
                (["mA", "mB"] if flags & FLAG_MOMENTUM else [])
        out += [(i, n, "<i2" if n in "AB" else "<i4") for n in names]
    return out


def sequence_newer(a: int, b: int) -> bool:
    """Whether sequence number ``a`` is newer than ``b``: serial-number arithmetic on 32 bits
    (RFC 1982), so that numbers wrap and no value (0xFFFFFFFF, say) beats every later one.
    ``a - b`` (mod 2**32) in [1, 2**31) is newer; a distance of exactly 2**31 is not."""
    return 0 < ((a - b) & 0xFFFFFFFF) < 0x80000000


def encode(t, sequence: int = 0) -> bytes:
    """The whole (inline) checkpoint of a trainer."""
    flags = _flags(t)
    payload = b"".join(t.adapters[i].arrays[n].astype(dt).tobytes() for i, n, dt in _fields(t, flags))
    head = HEADER.pack(MAGIC, VERSION, flags, 0, sequence, binding(t), t.step_count & 0xFFFFFFFF,
                       t.rng_state, t.updates & 0xFFFFFFFF, t.step_count % t.accum_steps,
                       len(t.adapters))
    return _seal(head + payload)


def _seal(body: bytes) -> bytes:
    """Set the length field and append the CRC32."""
    body = bytearray(body)
    struct.pack_into("<I", body, LEN_AT, len(body) + 4)
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def _unseal(data: bytes, what: str) -> bytes:
    if len(data) < HEADER.size + 4:
        raise CheckpointError(f"{what} is {len(data)} bytes, shorter than a checkpoint header")
    if data[:4] != MAGIC:
        raise CheckpointError(f"{what} does not start with {MAGIC!r}: not a tinylora checkpoint")
    if struct.unpack_from("<I", data, len(data) - 4)[0] != zlib.crc32(data[:-4]):
        raise CheckpointError(f"{what} is damaged (CRC32 mismatch): a torn write or a flipped bit")
    if struct.unpack_from("<I", data, LEN_AT)[0] != len(data):
        raise CheckpointError(f"{what} is damaged: its length field disagrees with its size")
    return data[:-4]


def decode(t, data: bytes) -> None:
    """Restore trainer `t` from an inline checkpoint; CheckpointError if it does not belong."""
    body = _unseal(bytes(data), "checkpoint")
    magic, version, flags, _len, _seq, bind, step, rng, updates, _pos, count = HEADER.unpack_from(body)
    if version != VERSION:
        raise CheckpointError(f"checkpoint format version {version}; this tinylora reads {VERSION}")
    if flags & FLAG_SPLIT:
        raise CheckpointError("this is a split record without its adapter: load it through "
                              "CheckpointStore.load()")
    if bind != binding(t):
        raise CheckpointError("checkpoint belongs to another model or training configuration "
                              "(binding hash differs): restore it into a trainer built with the "
                              "same model and config")
    if flags != _flags(t) or count != len(t.adapters):
        raise CheckpointError("checkpoint layout does not match this trainer's configuration")
    pos, arrays = HEADER.size, {}
    for i, n, dt in _fields(t, flags):
        target = t.adapters[i].arrays[n]
        size = target.size * np.dtype(dt).itemsize
        if pos + size > len(body):
            raise CheckpointError("checkpoint payload is shorter than this configuration needs")
        arrays[(i, n)] = np.frombuffer(body, dt, target.size, pos).reshape(target.shape)
        pos += size
    if pos != len(body):
        raise CheckpointError("checkpoint payload is longer than this configuration needs")
    for (i, n), v in arrays.items():
        t.adapters[i].arrays[n][...] = v
    if not flags & FLAG_ACCUM:
        for ad in t.adapters.values():
            ad.acc_a, ad.acc_b = 0, 0
    for ad in t.adapters.values():
        ad.refresh()
    t.step_count, t.rng_state, t.updates = step, rng, updates


# --------------------------------------------------------------------------- two-slot store

class CheckpointStore:
    """Two record slots (and two adapter slots) on a byte-addressable medium, written
    alternately. ``medium`` is any mutable byte buffer (RAM here, flash on the device);
    erased bytes read 0xFF."""

    def __init__(self, medium: bytearray | None = None, record_slot: int = RECORD_SLOT,
                 adapter_slot: int = 0):
        self.record_slot, self.adapter_slot = record_slot, adapter_slot
        size = 2 * (record_slot + adapter_slot)
        self.medium = medium if medium is not None else bytearray(b"\xff" * size)
        if len(self.medium) < size:
            raise InputError(f"the medium holds {len(self.medium)} bytes; two slots need {size}")

    def _record_at(self, k: int) -> int:
        return k * self.record_slot

    def _adapter_at(self, k: int) -> int:
        return 2 * self.record_slot + k * self.adapter_slot

    def plan_writes(self, checkpoint: bytes) -> list[tuple[int, bytes]]:
        """The (offset, bytes) writes that save `checkpoint`, in order (adapter, then record)."""
        body = _unseal(checkpoint, "checkpoint")
        latest = self._latest()
        k = 0 if latest is None else 1 - latest[0]
        seq = 1 if latest is None else (latest[1] + 1) & 0xFFFFFFFF
        head = bytearray(body[:HEADER.size])
        struct.pack_into("<I", head, SEQ_AT, seq)
        payload = body[HEADER.size:]
        if len(checkpoint) <= self.record_slot:
            return [(self._record_at(k), _seal(bytes(head) + payload))]
        if len(payload) > self.adapter_slot:
            raise CheckpointError(
                f"the checkpoint is {len(checkpoint)} B: more than a {self.record_slot} B record "
                f"slot, and its {len(payload)} B payload does not fit the {self.adapter_slot} B "
                f"adapter slot; make adapter_slot at least {len(payload)}")
        struct.pack_into("<H", head, FLAGS_AT, struct.unpack_from("<H", head, FLAGS_AT)[0] | FLAG_SPLIT)
        record = _seal(bytes(head) + struct.pack("<II", len(payload), zlib.crc32(payload)))
        return [(self._adapter_at(k), payload), (self._record_at(k), record)]

    def save(self, checkpoint: bytes, tear_at: int | None = None) -> None:
        """Write a checkpoint; `tear_at` simulates power loss after that many bytes."""
        written = 0
        for offset, data in self.plan_writes(checkpoint):
            slot = self.record_slot if offset < 2 * self.record_slot else self.adapter_slot
            self.medium[offset: offset + slot] = b"\xff" * slot          # erase
            for j in range(len(data)):
                if tear_at is not None and written >= tear_at:
                    return
                self.medium[offset + j] = data[j]
                written += 1

    def _read_record(self, k: int):
        """The record body in slot k (without its CRC), or None if it does not check out."""
        raw = bytes(self.medium[self._record_at(k): self._record_at(k) + self.record_slot])
        if raw[:4] != MAGIC:
            return None
        length = struct.unpack_from("<I", raw, LEN_AT)[0]
        if not HEADER.size + 4 <= length <= len(raw):
            return None
        try:
            return _unseal(raw[:length], "record")
        except CheckpointError:
            return None

    def _latest(self):
        """(slot, sequence, full inline checkpoint) of the newest complete checkpoint, or None."""
        best = None
        for k in (0, 1):
            body = self._read_record(k)
            if body is None:
                continue
            seq = struct.unpack_from("<I", body, SEQ_AT)[0]
            flags = struct.unpack_from("<H", body, FLAGS_AT)[0]
            if flags & FLAG_SPLIT:
                if len(body) != HEADER.size + 8:
                    continue
                length, crc = struct.unpack_from("<II", body, HEADER.size)
                start = self._adapter_at(k)
                if length > self.adapter_slot:
                    continue
                payload = bytes(self.medium[start: start + length])
                if zlib.crc32(payload) != crc:
                    continue
                head = bytearray(body[:HEADER.size])
                struct.pack_into("<H", head, FLAGS_AT, flags & ~FLAG_SPLIT)
                full = _seal(bytes(head) + payload)
            else:
                full = _seal(body)
            if best is None or sequence_newer(seq, best[1]):
                best = (k, seq, full)
        return best

    def load(self) -> bytes:
        """The newest complete checkpoint (inline form); CheckpointError if there is none."""
        latest = self._latest()
        if latest is None:
            raise CheckpointError("no complete checkpoint in either slot (never written, or both "
                                  "damaged)")
        return latest[2]
