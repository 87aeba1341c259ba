"""Issue 13: the adapter file, format 2 (docs/adapter.md): round trips, every refusal of the
reader's check list, version-1 conversion, and resuming a Trainer from a file bit-exactly."""
import hashlib
import struct
import zlib

import numpy as np
import pytest
from support import edit, randmodel

from tinylora import Adapter, AdapterError, ConfigError, LoRAConfig, ModelError, Trainer, load_tflite, tasks
from tinylora.cli import main
from tinylora.formats import adapter_v1


@pytest.fixture(scope="module")
def data(model):
    t = tasks.task("sensor")
    return model.quantize(t["x_train"][:48]), t["y_train"][:48]


def _trained(model, data, steps=12, config=None, **kw):
    x, y = data
    t = Trainer(model, config or LoRAConfig(rank=2), calibration=x, lr=0.01, **kw)
    for i in range(steps):
        t.step(x[i], y[i])
    return t


@pytest.fixture(scope="module")
def small(model, data):
    """The bytes of a small adapter: rank 1 on the last FC layer (10 x 32)."""
    return _trained(model, data, config=LoRAConfig(rank=1, targets=(6,))).adapter.to_bytes()


def _seal(body: bytes) -> bytes:
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def _crafted(blob: bytes, offset: int, fmt: str, value) -> bytes:
    body = bytearray(blob[:-4])
    struct.pack_into(fmt, body, offset, value)
    return _seal(body)


# ----------------------------------------------------------------------------------- round trip

def test_round_trip_both_forms(model, data, tmp_path):
    t = _trained(model, data)
    a = t.adapter
    blob = a.to_bytes()
    assert blob[:4] == b"TLAD" and struct.unpack_from("<HHI", blob, 4) == (2, 1, len(blob))
    assert blob[12:44] == hashlib.sha256(model.source).digest() and blob[44] == 0
    assert struct.unpack_from("<HI", blob, 46) == (2, 12)           # L, updates
    assert len(blob) == 64 + 2 * 28 + 2 * (2 * 64 + 32 * 2 + 2 * 32 + 10 * 2) + 4
    back = Adapter.load(blob)
    assert back == a and back.to_bytes() == blob and Adapter.from_bytes(blob, model) == a
    deploy = a.to_bytes(form="deploy")
    assert len(deploy) == 64 + 2 * 28 + (2 * 64 + 32 * 2 + 2 * 32 + 10 * 2) + 4
    d = Adapter.load(deploy)
    assert d.form == "deploy" and d.to_bytes() == deploy and d.to_bytes(form="deploy") == deploy
    with pytest.raises(AdapterError, match="deploy-form adapter holds int8 values only"):
        d.to_bytes(form="masters")
    path = a.save(tmp_path / "a.tla")
    assert path.read_bytes() == blob and sorted(p.name for p in tmp_path.iterdir()) == ["a.tla"]
    assert Adapter.load(path) == a and Adapter.load(str(path)) == a
    a.save(path, form="deploy")
    assert path.read_bytes() == deploy


def test_mse_loss_is_recorded_and_resumes():
    rng = np.random.default_rng(3)
    mb = randmodel.random_model(rng, "mlp", widths=[24, 6], softmax=False, edge="none")
    m = load_tflite(mb)
    x = randmodel.random_input(rng, mb, 8)
    targets = rng.integers(-128, 128, (8, 6)).astype(np.int8)
    whole, first = (Trainer(m, LoRAConfig(rank=2, loss="mse"), lr=0.05, calibration=x) for _ in range(2))
    for i in range(8):
        whole.step(x[i], targets[i])
        if i < 4:
            first.step(x[i], targets[i])
    blob = first.adapter.to_bytes()
    assert blob[44] == 1 and Adapter.load(blob).loss == "mse"
    with pytest.raises(AdapterError, match="loss 'mse'; the config asks for 'xent'"):
        Adapter.load(blob).check(m, LoRAConfig(rank=2, loss="xent"))
    resumed = Trainer(m, adapter=blob, lr=0.05)
    for i in range(4, 8):
        resumed.step(x[i], targets[i])
    assert resumed.loss == "mse" and resumed.adapter == whole.adapter


# ------------------------------------------------------------------------------- refusals

def test_truncated_at_every_length(small):
    assert len(small) == 64 + 28 + 2 * (32 + 10) + 4
    for n in range(len(small)):
        with pytest.raises(AdapterError, match="truncated"):
            Adapter.load(small[:n])
    with pytest.raises(AdapterError, match="truncated or padded"):
        Adapter.load(small + b"\0")


def test_a_bit_flip_at_every_byte_is_refused(small):
    for i in range(len(small)):
        bad = bytearray(small)
        bad[i] ^= 1 << (i % 8)
        with pytest.raises(AdapterError, match="damaged|truncated|magic|version"):
            Adapter.load(bytes(bad))


@pytest.mark.parametrize("offset, fmt, value, text", [
    (0, "<4s", b"TLCK", "bad magic"),
    (4, "<H", 3, "format version 3"),
    (6, "<H", 0, "form 0 is unknown"),
    (6, "<H", 3, "form 3 is unknown"),
    (44, "<B", 2, "loss code 2"),
    (46, "<H", 0, "names no layer"),
    (46, "<H", 9, "9 layer descriptors do not fit"),
    (64 + 2, "<H", 0, "rank 0"),
    (64 + 4, "<I", 33, "payload is 84 bytes; the layer descriptors need 86"),
    (64 + 12, "<f", float("nan"), "scales must be finite"),
    (64 + 16, "<f", -1.0, "scales must be finite"),
])
def test_crafted_headers_are_refused(small, offset, fmt, value, text):
    with pytest.raises(AdapterError, match=text):
        Adapter.load(_crafted(small, offset, fmt, value))


def test_crafted_layers_are_refused(model, data):
    blob = _trained(model, data, steps=2).adapter.to_bytes()
    with pytest.raises(AdapterError, match="index 5 is not above the previous 5"):
        Adapter.load(_crafted(blob, 64 + 28, "<H", 5))
    with pytest.raises(AdapterError, match="names layer 99"):
        Adapter.load(_crafted(blob, 64 + 28, "<H", 99)).check(model)
    with pytest.raises(AdapterError, match="not a FULLY_CONNECTED or 1x1 CONV_2D"):
        Adapter.load(_crafted(_crafted(blob, 64, "<H", 1), 64 + 28, "<H", 2)).check(model)
    with pytest.raises(ModelError):     # AdapterError keeps the base its callers caught
        Adapter.load(b"TLAD")
    with pytest.raises(AdapterError, match="got int"):
        Adapter.load(7)
    with pytest.raises(AdapterError, match="cannot read the adapter file"):
        Adapter.load("/nonexistent/a.tla")


def test_another_model_names_both_hashes(model, example_bytes, small):
    other = load_tflite(edit.edit(example_bytes, lambda m: setattr(m, "description", b"another model")))
    mine, theirs = hashlib.sha256(model.source).hexdigest(), hashlib.sha256(other.source).hexdigest()
    with pytest.raises(AdapterError, match=f"SHA-256 is {mine}, this model's is {theirs}"):
        Adapter.load(small).check(other)
    with pytest.raises(AdapterError, match="another base model"):
        Trainer(other, adapter=small)


def test_another_config_names_both(model, data):
    t = _trained(model, data, steps=2)
    a = Adapter.load(t.adapter.to_bytes())
    assert a.check(model, LoRAConfig(rank=2)) is a and a.check(model, t) is a
    for config, text in [(LoRAConfig(rank=3), "rank 2, alpha 2; the config asks for rank 3, alpha 3"),
                         (LoRAConfig(rank=2, alpha=4.0), "rank 2, alpha 2; the config asks for rank 2, alpha 4"),
                         (LoRAConfig(rank=2, targets=(6,)), r"adapts layers \[5, 6\]; the config targets \[6\]"),
                         (LoRAConfig(rank=2, loss="mse"), "loss 'xent'; the config asks for 'mse'")]:
        with pytest.raises(AdapterError, match=text):
            a.check(model, config)
    recalibrated = Trainer(model, LoRAConfig(rank=2), calibration=data[0][:4])  # other scales
    with pytest.raises(AdapterError, match="adapter config differs: the file has layers"):
        a.check(model, recalibrated)
    with pytest.raises(AdapterError, match="rank 2, alpha 2; the config asks for rank 3"):
        Trainer(model, LoRAConfig(rank=3), adapter=a)
    with pytest.raises(AdapterError, match="the trainer asks for 'mse'"):
        Trainer(model, adapter=a, loss="mse")


# ------------------------------------------------------------------------------- version 1

def test_version_1_files_are_converted(model, example_bytes, data):
    t = _trained(model, data)
    v1 = adapter_v1.encode(t.adapter.layers, zlib.crc32(model.source))
    a = Adapter.load(v1)
    assert a.model_sha256 is None and a.loss is None and "version 1: CRC32" in a.describe()
    with pytest.raises(AdapterError, match="call adapter.check\\(model\\)"):
        a.to_bytes()
    a.check(model)
    assert a.loss == "xent" and a.model_sha256 == hashlib.sha256(model.source).digest()
    assert a.to_bytes()[:-4] == t.adapter.to_bytes()[:48] + b"\0" * 4 + t.adapter.to_bytes()[52:-4]
    resumed = Trainer(model, adapter=v1)
    assert np.array_equal(resumed.logits(data[0]), t.logits(data[0]))
    other = load_tflite(edit.edit(example_bytes, lambda m: setattr(m, "description", b"x")))
    with pytest.raises(AdapterError, match=f"CRC32 {zlib.crc32(model.source):08x}; this model's is"):
        Adapter.load(v1).check(other)
    with pytest.raises(AdapterError, match="version 1.*damaged"):
        Adapter.load(v1[:-1] + bytes([v1[-1] ^ 1]))


# ------------------------------------------------------------------------------- resuming

@pytest.mark.parametrize("kw", [{}, {"grad_density": 0.5}, {"recompute": "all"}])
def test_resume_equals_one_trainer(model, data, kw):
    x, y = data
    whole = _trained(model, data, steps=30, **kw)
    first = _trained(model, data, steps=18, **kw)
    blob = first.adapter.to_bytes()
    resumed = Trainer(model, adapter=blob, lr=0.01, **kw)
    assert resumed.adapter.to_bytes() == blob and resumed.updates == 18
    for i in range(18, 30):
        resumed.step(x[i], y[i])
    assert resumed.adapter.to_bytes() == whole.adapter.to_bytes()
    assert np.array_equal(resumed.predict(x), whole.predict(x))


def test_predict_with_a_loaded_adapter_and_the_deploy_form(model, data, tmp_path):
    x, _ = data
    t = _trained(model, data, steps=20)
    path = t.adapter.save(tmp_path / "a.tla")
    loaded = Trainer(model, LoRAConfig(rank=2), adapter=path)
    assert np.array_equal(loaded.logits(x), t.logits(x))
    deploy = Trainer(model, adapter=t.adapter.to_bytes(form="deploy"))
    assert deploy.inference_only and np.array_equal(deploy.logits(x), t.logits(x))
    assert not np.array_equal(Trainer(model, LoRAConfig(rank=2)).logits(x), t.logits(x))
    assert deploy.adapter.to_bytes() == t.adapter.to_bytes(form="deploy")
    with pytest.raises(ConfigError, match="deploy-form adapter .* cannot train; load the masters form"):
        deploy.step(x[0], 1)
    with pytest.raises(ConfigError, match="cannot train"):
        deploy.fit(x[:2], [1, 2])


# ------------------------------------------------------------------------------- command line

def test_train_out_writes_format_2_and_inspect_reads_both(model, tmp_path, capsys):
    out = tmp_path / "a.tla"
    assert main(["train", "--task", "sensor", "--epochs", "1", "--rank", "2", "--quiet", "--out", str(out)]) == 0
    a = Adapter.load(out)
    assert out.read_bytes()[4:6] == b"\x02\x00" and a.form == "masters" and a.check(model) is a
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    assert "format 2, masters form" in text and "layer 6: rank 2, A 2x32, B 10x2" in text
    v1 = tmp_path / "old.bin"
    v1.write_bytes(adapter_v1.encode(a.layers, zlib.crc32(model.source)))
    assert main(["inspect", str(v1)]) == 0
    assert "version 1: CRC32" in capsys.readouterr().out


# ------------------------------------------------------------------------------- eval

def test_eval_keeps_its_default_and_takes_any_model_adapter_and_data(model, data, tmp_path, capsys):
    assert main(["eval"]) == 0
    assert capsys.readouterr().out.startswith("int8 accuracy on the digits test split (359 images): 0.9")
    t = _trained(model, data, steps=30)
    path = t.adapter.save(tmp_path / "a.tla")
    x, y = data
    np.savez(tmp_path / "d.npz", x=x, y=y)
    assert main(["eval", "--model", str(model_path(tmp_path, model)), "--adapter", str(path),
                 "--data", str(tmp_path / "d.npz")]) == 0
    want = float(np.mean(t.predict(x) == y))
    assert f"with adapter {path}: {want:.4f}" in capsys.readouterr().out
    assert main(["eval", "--data", str(tmp_path / "d.npz")]) == 0
    base = float(np.mean(np.argmax(model.forward(x), -1) == y))
    assert f"(48 samples): {base:.4f}" in capsys.readouterr().out


def model_path(tmp_path, model):
    p = tmp_path / "m.tflite"
    p.write_bytes(model.source)
    return p


def test_eval_of_an_mse_model(tmp_path, capsys):
    rng = np.random.default_rng(5)
    mb = randmodel.random_model(rng, "mlp", widths=[16, 4], softmax=False, edge="none")
    m = load_tflite(mb)
    (tmp_path / "r.tflite").write_bytes(mb)
    x = randmodel.random_input(rng, mb, 6)
    target = rng.normal(size=(6, 4))
    np.savez(tmp_path / "r.npz", x=x, y=target)
    args = ["eval", "--model", str(tmp_path / "r.tflite"), "--data", str(tmp_path / "r.npz")]
    assert main(args) == 2
    assert "not SOFTMAX: say what its outputs are with --loss" in capsys.readouterr().err
    assert main(args + ["--loss", "mse"]) == 0
    q = m.layers[-1].output_q
    real = (m.forward(x).astype(float) - int(q.zero_point[0])) * float(q.scale[0])
    out = capsys.readouterr().out
    assert f"mean squared error {np.mean((real - target) ** 2):.6g}" in out
    assert f"mean absolute error {np.mean(np.abs(real - target)):.6g}" in out
    t = Trainer(m, LoRAConfig(rank=2, loss="mse"), lr=0.05, calibration=x)
    t.step(x[0], rng.integers(-128, 128, 4).astype(np.int8))
    t.adapter.save(tmp_path / "r.tla")
    assert main(args + ["--adapter", str(tmp_path / "r.tla")]) == 0     # the adapter says mse
    real = (t.logits(x).astype(float) - int(q.zero_point[0])) * float(q.scale[0])
    assert f"mean squared error {np.mean((real - target) ** 2):.6g}" in capsys.readouterr().out
    np.savez(tmp_path / "bad.npz", x=x, y=target[:, :3])
    assert main(["eval", "--model", str(tmp_path / "r.tflite"), "--data", str(tmp_path / "bad.npz"),
                 "--loss", "mse"]) == 2
    assert "needs one target of the output's shape (4,)" in capsys.readouterr().err
