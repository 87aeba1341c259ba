"""Issue 13: merging an adapter into a plain .tflite (tinylora.merge, `tinylora merge`): the file
loads in TFLM and LiteRT, tinylora's forward of it equals TFLM byte for byte, it has the base
model's ops and shapes, and its accuracy stays next to the unmerged adapter's."""
import hashlib
import sys

import numpy as np
import pytest
from support import edit, oracles, zoo

import tinylora
from tinylora import Adapter, AdapterError, LoRAConfig, Trainer, load_tflite, tasks
from tinylora.cli import main
from tinylora.errors import MissingDependencyError
from tinylora.merge import PROVENANCE, requantize_weights
from tinylora.tflite import reader


@pytest.fixture(scope="module")
def sensor(model):
    t = tasks.task("sensor")
    return (model.quantize(t["x_train"]), t["y_train"], model.quantize(t["x_test"]), t["y_test"])


@pytest.fixture(scope="module")
def trained(model, sensor):
    x, y, _, _ = sensor
    t = Trainer(model, LoRAConfig(rank=3), calibration=x[:64])
    t.fit(x[:400], y[:400], epochs=1)
    return t


def _structure(data: bytes):
    g = reader.parse(data)
    return ([(op.name, tuple(op.inputs), tuple(op.outputs)) for op in g.ops],
            [(t.name, tuple(t.shape), t.dtype) for t in g.tensors])


def test_merged_file_equals_tflm_and_keeps_the_base_structure(model, example_bytes, trained, sensor):
    merged = tinylora.merge(model, trained.adapter)
    assert merged[4:8] == b"TFL3" and merged == tinylora.merge(model, trained.adapter.to_bytes())
    assert _structure(merged) == _structure(example_bytes)      # same ops, tensors, shapes: same cost
    x = sensor[2]
    assert len(x) >= 200
    ours = load_tflite(merged).forward(x)
    tflm = oracles.tflm_run(merged, x).reshape(ours.shape)
    assert np.count_nonzero(ours != tflm) == 0
    litert = oracles.litert_ref_run(merged, x).reshape(ours.shape)  # loads; its FC rounds once (+-1 logit)
    assert np.mean(np.argmax(litert, -1) == np.argmax(ours, -1)) >= 0.98
    assert not np.array_equal(ours, model.forward(x))
    base_meta = {m.name for m in oracles_metadata(example_bytes)}
    names = {m.name for m in oracles_metadata(merged)}
    assert names == base_meta | {PROVENANCE.encode()}
    text = metadata_text(merged, PROVENANCE)
    assert f"tinylora {tinylora.__version__}" in text and hashlib.sha256(model.source).hexdigest() in text


def oracles_metadata(data: bytes):
    return edit.unpack(data).metadata or []


def metadata_text(data: bytes, name: str) -> str:
    m = edit.unpack(data)
    entry = next(e for e in m.metadata if e.name in (name, name.encode()))
    return bytes(m.buffers[entry.buffer].data).decode()


def test_only_the_adapted_weights_change_and_the_real_bias_stays(model, example_bytes, trained):
    base, merged = reader.parse(example_bytes), reader.parse(tinylora.merge(model, trained.adapter))
    changed = set()
    for op in base.ops:
        if op.index in trained.adapters:
            changed |= {op.inputs[1], op.inputs[2]}
    for i, (a, b) in enumerate(zip(base.tensors, merged.tensors)):
        same = (np.array_equal(a.data, b.data) if a.data is not None else b.data is None) and \
            np.array_equal(a.scale, b.scale)
        assert same != (i in changed), (i, a.name)
    for idx in trained.adapters:
        op = base.ops[idx]
        s_x = float(base.tensors[op.inputs[0]].scale[0])
        w_old, w_new = base.tensors[op.inputs[1]], merged.tensors[op.inputs[1]]
        b_old, b_new = base.tensors[op.inputs[2]], merged.tensors[op.inputs[2]]
        real_old = b_old.data.astype(float) * s_x * w_old.scale.astype(float)
        real_new = b_new.data.astype(float) * s_x * w_new.scale.astype(float)
        assert np.all(np.abs(real_new - real_old) <= 0.5 * s_x * w_new.scale + 1e-12)
        assert np.allclose(b_new.scale, (s_x * w_new.scale.astype(np.float64)).astype(np.float32))
        assert np.abs(w_new.data).reshape(len(w_new.scale), -1).max(axis=1).tolist() == [127] * len(w_new.scale)


def test_a_fresh_adapter_merges_to_the_base_model_bytes(model, sensor):
    fresh = Trainer(model, LoRAConfig(rank=2))          # B = 0: no change
    merged = load_tflite(tinylora.merge(model, fresh.adapter))
    assert np.array_equal(merged.forward(sensor[2]), model.forward(sensor[2]))


def test_merged_accuracy_is_next_to_the_adapter(model, trained, sensor):
    _, _, x, y = sensor
    merged = tinylora.merge(model, trained.adapter)
    unmerged = float(np.mean(trained.predict(x) == y))
    tflm = float(np.mean(np.argmax(oracles.tflm_run(merged, x).reshape(len(x), -1), -1) == y))
    base = float(np.mean(np.argmax(model.forward(x), -1) == y))
    assert unmerged > base + 0.1 and abs(tflm - unmerged) <= 0.01, (base, unmerged, tflm)


def test_requantize_weights_per_channel_and_per_tensor():
    w = np.array([[127, -50], [10, 0], [0, 0]], np.int8)
    s = np.array([0.1, 0.2, 0.3])
    delta = np.array([[0.0, 0.0], [0.0, -4.0], [0.0, 0.0]])
    q, new = requantize_weights(w, s, delta)
    assert q.tolist() == [[127, -50], [64, -127], [0, 0]] and new.dtype == np.float32
    assert np.allclose(new, [0.1, 4.0 / 127, 0.3])
    q1, new1 = requantize_weights(w, np.array([0.1]), np.full((3, 2), 1.0))
    assert new1.shape == (1,) and q1.max() == 127 and np.isclose(new1[0], 13.7 / 127)


def test_ds_cnn_pointwise_and_fc_merge_equal_tflm(tmp_path_factory):
    """A real architecture (MLPerf Tiny DS-CNN): an adapter on a 1x1 CONV_2D and the last FC."""
    data = zoo.build("ds_cnn", tmp_path_factory.mktemp("zoo"))
    m = load_tflite(data)
    pw = [l.index for l in m.layers if l.kind == "CONV_2D" and l.kernel == (1, 1)][-1]
    fc = [l.index for l in m.layers if l.kind == "FULLY_CONNECTED"][-1]
    rng = np.random.default_rng(1)
    layers = []
    for idx in (pw, fc):
        c_out, k = m.layers[idx].weights.shape[0], m.layers[idx].weights.shape[-1]
        layers.append(dict(index=idx, rank=2, s_a=1 / 64 / np.sqrt(k), s_b=0.02, s_h=0.05, alpha=2.0,
                           a=rng.integers(-64, 65, (2, k)) << 8, b=rng.integers(-127, 128, (c_out, 2)) << 8))
    adapter = Adapter(layers, hashlib.sha256(data).digest(), "xent")
    merged = tinylora.merge(m, Adapter.load(adapter.to_bytes()))
    assert _structure(merged) == _structure(data)
    x = rng.integers(-128, 128, (200,) + m.input_shape).astype(np.int8)
    ours = load_tflite(merged).forward(x)
    assert np.count_nonzero(ours != oracles.tflm_run(merged, x).reshape(ours.shape)) == 0
    assert not np.array_equal(ours, m.forward(x))


def test_merge_refuses_another_model_and_the_cli_writes_the_file(model, example_bytes, trained, tmp_path, capsys):
    other = edit.edit(example_bytes, lambda m: setattr(m, "description", b"another"))
    with pytest.raises(AdapterError, match="another base model"):
        tinylora.merge(other, trained.adapter)
    a = trained.adapter.save(tmp_path / "a.tla")
    out = tmp_path / "sub" / "merged.tflite"
    assert main(["merge", "--adapter", str(a), "--out", str(out)]) == 0
    assert out.read_bytes() == tinylora.merge(model, trained.adapter)
    assert "merged the adapter" in capsys.readouterr().out
    assert main(["merge", "--adapter", str(out), "--out", str(tmp_path / "x.tflite")]) == 2
    assert "not a tinylora adapter: bad magic" in capsys.readouterr().err
    deploy = tmp_path / "d.tla"
    trained.adapter.save(deploy, form="deploy")
    x = np.zeros((4,) + model.input_shape, np.int8)
    x[1:] = np.arange(-128, 127, 3)[: x[0].size].reshape(model.input_shape)[None]
    from_deploy = load_tflite(tinylora.merge(model, deploy))
    assert np.array_equal(from_deploy.forward(x), load_tflite(out.read_bytes()).forward(x))


def test_a_missing_writer_names_the_extra(model, trained, monkeypatch):
    monkeypatch.setitem(sys.modules, "flatbuffers", None)     # import flatbuffers -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install tinylora\[merge\]"):
        tinylora.merge(model, trained.adapter)
