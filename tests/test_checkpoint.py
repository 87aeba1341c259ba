"""Checkpoints: sub-1 KB, bit-exact resume, torn writes, bit flips, foreign data."""
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylora import CheckpointError, LoRAConfig, Trainer, tasks
from tinylora.formats.checkpoint import CheckpointStore, sequence_newer


@pytest.fixture(scope="module")
def data(model):
    t = tasks.task("remap")
    return model.quantize(t["x_train"][:64]), t["y_train"][:64]


def _trainer(model, data, seed=0, **kw):
    return Trainer(model, kw.pop("config", LoRAConfig()), seed=seed, lr=0.02,
                   calibration=data[0][:32], **kw)


def test_default_checkpoint_fits_1024_bytes(model, data):
    t = _trainer(model, data)
    assert len(t.checkpoint()) <= 1024
    store = CheckpointStore()
    store.save(t.checkpoint())
    assert len(store.medium) == 2048   # two 1 KB slots and nothing else


@settings(max_examples=20)
@given(k=st.integers(0, 12), seed=st.integers(0, 50),
       opts=st.sampled_from([{}, {"accum_steps": 3, "momentum": 0.75}, {"grad_density": 0.2}]))
def test_resume_from_any_step_is_bit_exact(model, data, k, seed, opts):
    X, Y = data
    n = 12
    full = _trainer(model, data, seed, **opts)
    for i in range(n):
        if i == k:
            saved = full.checkpoint()
        full.step(X[i], Y[i])
    if k == n:
        saved = full.checkpoint()
    resumed = _trainer(model, data, seed, **opts)   # a fresh trainer with the same model and config
    resumed.restore(saved)
    for i in range(k, n):
        resumed.step(X[i], Y[i])
    assert resumed.adapter.to_bytes() == full.adapter.to_bytes()
    assert resumed.checkpoint() == full.checkpoint()


def test_resume_restores_into_a_trainer_that_has_moved_on(model, data):
    X, Y = data
    a = _trainer(model, data)
    for i in range(5):
        a.step(X[i], Y[i])
    saved = a.checkpoint()
    for i in range(5, 9):
        a.step(X[i], Y[i])
    a.restore(saved)            # roll back
    b = _trainer(model, data)
    for i in range(5):
        b.step(X[i], Y[i])
    assert a.checkpoint() == b.checkpoint()


def _torn_writes_leave_previous(store_factory, first, second):
    """Tear the write of `second` after every byte: until the last byte lands, the store
    still loads `first`; then it loads `second`."""
    store = store_factory()
    store.save(first)
    before = store.load()
    writes = store.plan_writes(second)
    total = sum(len(d) for _, d in writes)
    for k in range(total + 1):
        s = store_factory()
        s.save(first)
        s.save(second, tear_at=k)
        got = s.load()
        if k < total:
            assert got == before, k
        else:
            assert got[16:-4] == second[16:-4] and got[12:16] != before[12:16]  # new payload, next sequence
    return total


def test_torn_write_at_every_byte_keeps_the_previous_checkpoint(model, data):
    X, Y = data
    t = _trainer(model, data)
    first = t.checkpoint()
    t.step(X[0], Y[0])
    second = t.checkpoint()
    n = _torn_writes_leave_previous(CheckpointStore, first, second)
    assert n == len(second)


def test_torn_write_of_a_split_checkpoint(model, data):
    X, Y = data
    t = _trainer(model, data, config=LoRAConfig(rank=6))
    first = t.checkpoint()
    assert len(first) > 1024                       # too big for one record: record + adapter slot
    t.step(X[0], Y[0])
    second = t.checkpoint()
    factory = lambda: CheckpointStore(adapter_slot=2048)
    n = _torn_writes_leave_previous(factory, first, second)
    assert n > len(second)                         # adapter payload, then the small record
    s = factory()
    s.save(first)
    s.save(second)
    r = _trainer(model, data, config=LoRAConfig(rank=6))
    r.restore(s.load())
    assert r.checkpoint() == second


def test_every_single_bit_flip_is_caught(model, data):
    t = _trainer(model, data)
    t.step(data[0][0], data[1][0])
    blob = t.checkpoint()
    r = _trainer(model, data)
    before = r.checkpoint()
    for bit in range(len(blob) * 8):
        bad = bytearray(blob)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(CheckpointError):
            r.restore(bytes(bad))
    assert r.checkpoint() == before                 # nothing was loaded


def test_store_survives_a_flipped_bit_in_the_newest_slot(model, data):
    t = _trainer(model, data)
    store = CheckpointStore()
    store.save(t.checkpoint())
    first = store.load()
    t.step(data[0][0], data[1][0])
    store.save(t.checkpoint())
    newest_slot = 1
    store.medium[newest_slot * 1024 + 50] ^= 0x10
    assert store.load() == first


def test_foreign_and_garbage_checkpoints_are_refused(model, data):
    blob = _trainer(model, data).checkpoint()
    with pytest.raises(CheckpointError, match="another model or training configuration"):
        _trainer(model, data, config=LoRAConfig(rank=2)).restore(blob)
    with pytest.raises(CheckpointError, match="another model or training configuration"):
        Trainer(model, LoRAConfig(), lr=0.05, calibration=data[0][:32]).restore(blob)
    with pytest.raises(CheckpointError, match="not a tinylora checkpoint"):
        _trainer(model, data).restore(b"X" * 100)
    with pytest.raises(CheckpointError, match="shorter"):
        _trainer(model, data).restore(b"TLCK")
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        CheckpointStore().load()


def test_sequence_numbers_wrap_around(model, data):
    """A record crafted with sequence 0xFFFFFFFF does not beat the checkpoints saved after
    it: sequence numbers compare with serial-number arithmetic (RFC 1982), as in C."""
    assert sequence_newer(0, 0xFFFFFFFF) and not sequence_newer(0xFFFFFFFF, 0)
    assert sequence_newer(5, 4) and not sequence_newer(4, 4) and not sequence_newer(0x80000000, 0)
    t = _trainer(model, data)
    store = CheckpointStore()
    store.save(t.checkpoint())
    length = struct.unpack_from("<I", store.medium, 8)[0]
    store.medium[12:16] = b"\xff\xff\xff\xff"
    store.medium[length - 4:length] = struct.pack("<I", zlib.crc32(bytes(store.medium[:length - 4])))
    crafted = store.load()
    for _ in range(3):
        t.step(data[0][0], data[1][0])
        store.save(t.checkpoint())
        got = store.load()
        assert got != crafted and got[16:-4] == t.checkpoint()[16:-4]
