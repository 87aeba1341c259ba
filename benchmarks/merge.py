"""Merged vs unmerged adapters: accuracy of the merged .tflite (run by TFLM) next to the adapter
run by tinylora's integer forward, on each learning task and on a real architecture (issue 13).

    python benchmarks/merge.py            # every row (about two minutes on 2 cores)
    python benchmarks/merge.py --quick    # fewer training samples

Rows: the bundled tasks 'sensor' and 'remap' and the bundled digits themselves (the base model's
own domain), LoRA rank 4 on every FULLY_CONNECTED layer; and a real architecture, the MLPerf
Tiny DS-CNN (tests/support/zoo.py's topology) trained in Keras on the digits resized to 49x10
and converted by TF, adapted to the 'sensor' task with LoRA on its last FC.
Columns: base model; the adapter unmerged (tinylora's integer forward); the merged .tflite run
by TFLM; the difference in points; the merge with float weights (no int8 requantization: what
is left is the adapter's own int8 intermediate h, rounded and saturated, which a linear merge
cannot reproduce); how often merged and unmerged predict the same class; the fraction of h at
its int8 limits (worst adapted layer); bytes in which tinylora's forward of the merged file
differs from TFLM's (must be 0).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import oracles, zoo  # noqa: E402

import tinylora  # noqa: E402
from tinylora import LoRAConfig, Trainer, datasets, tasks  # noqa: E402
from tinylora.formats.tflite_merge import delta_real  # noqa: E402
from tinylora.ref import lora  # noqa: E402


def float_merged_predict(t: Trainer, x: np.ndarray) -> np.ndarray:
    """Predictions of the merged weights W + (alpha/r) BA kept in float (no int8 requantization;
    the output stage rounds once): what the merge would give with unlimited weight precision."""
    act = t.segment_inputs(x)
    for layer in t.model.layers[t.lowest: t.logits_layer + 1]:
        ad = t.adapters.get(layer.index)
        if ad is None:
            act = layer.forward(act)
            continue
        entry = next(l for l in t.adapter.layers if l["index"] == layer.index)
        s_w = np.broadcast_to(layer.weights_q.scale.astype(np.float64), (layer.weights.shape[0],))
        w = lora.base_weights(layer) * s_w[:, None] + delta_real(entry)
        s_x, zp = float(layer.input_q.scale[0]), int(layer.input_q.zero_point[0])
        acc = s_x * (lora.rows_view(layer, act).astype(np.float64) - zp) @ w.T
        if layer.bias is not None:
            acc = acc + layer.bias * s_x * s_w
        y = np.round(acc / float(layer.output_q.scale[0])) + int(layer.output_q.zero_point[0])
        act = np.clip(y, layer.act_min, layer.act_max).astype(np.int8).reshape((len(x),) + layer.output_shape)
    return np.argmax(act.reshape(len(x), -1), -1)


def h_saturation(t: Trainer, x: np.ndarray) -> float:
    """The largest fraction, over the adapted layers, of the int8 intermediate h at its limits."""
    act, worst = t.segment_inputs(x), 0.0
    for layer in t.model.layers[t.lowest: t.logits_layer + 1]:
        ad = t.adapters.get(layer.index)
        if ad is None:
            act = layer.forward(act)
            continue
        act, h = lora.lora_forward(layer, act, ad.a8, ad.b8, ad.k)
        worst = max(worst, float(np.mean((h == 127) | (h == -128))))
    return worst


def measure(name: str, model, t: Trainer, x: np.ndarray, y: np.ndarray) -> list[str]:
    merged = tinylora.merge(model, t.adapter)
    unmerged_pred = t.predict(x)
    tflm = oracles.tflm_run(merged, x).reshape(len(x), -1)
    ours = tinylora.load_tflite(merged).forward(x).reshape(len(x), -1)
    merged_pred = np.argmax(tflm, -1)
    base = float(np.mean(np.argmax(model.forward(x).reshape(len(x), -1), -1) == y))
    un, me = float(np.mean(unmerged_pred == y)), float(np.mean(merged_pred == y))
    fl = float(np.mean(float_merged_predict(t, x) == y))
    return [name, str(len(x)), f"{base:.2%}", f"{un:.2%}", f"{me:.2%}", f"{100 * (me - un):+.2f}",
            f"{fl:.2%}", f"{np.mean(unmerged_pred == merged_pred):.2%}", f"{h_saturation(t, x):.1%}",
            str(int(np.count_nonzero(ours != tflm)))]


def bundled(name: str, args) -> list[str]:
    m = tinylora.load_tflite(tinylora.example_model())
    if name == "digits":
        sp = datasets.digits_split(seed=0)
        xtr, ytr, xte, yte = sp["x_train"], sp["y_train"], sp["x_test"], sp["y_test"]
    else:
        t = tasks.task(name)
        xtr, ytr, xte, yte = t["x_train"], t["y_train"], t["x_test"], t["y_test"]
    xtr, xte = m.quantize(xtr)[: args.samples], m.quantize(xte)
    t = Trainer(m, LoRAConfig(rank=4), lr=0.004, calibration=xtr[:64])
    t.fit(xtr, np.asarray(ytr)[: args.samples], epochs=args.epochs)
    return measure(name, m, t, xte, np.asarray(yte))


ROWS, COLS = np.arange(49) * 8 // 49, np.arange(10) * 8 // 10   # 8x8 digits -> DS-CNN's 49x10


def _to_ds_cnn(x: np.ndarray) -> np.ndarray:
    """Digits in [0, 1] resized to 49x10 and roughly standardized."""
    return (x[:, ROWS][:, :, COLS].astype(np.float32) - np.float32(0.3)) * np.float32(3.0)


def trained_ds_cnn(cache: pathlib.Path) -> bytes:
    """The MLPerf Tiny DS-CNN (tests/support/zoo.py's topology) trained in Keras on the bundled
    digits (nearest-neighbour resized to 49x10), converted to full int8; cached."""
    path = cache / "ds_cnn_digits.tflite"
    if path.is_file():
        return path.read_bytes()
    import keras
    import tensorflow as tf
    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    net = zoo.ds_cnn(keras)                     # batch 1 (for the converter); train a clone in batches
    train = keras.models.clone_model(net, input_tensors=keras.Input(net.inputs[0].shape[1:]))
    sp = datasets.digits_split(seed=0)
    x = _to_ds_cnn(sp["x_train"])
    train.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    train.fit(x, sp["y_train"], batch_size=32, epochs=20, verbose=0)
    net.set_weights(train.get_weights())
    conv = tf.lite.TFLiteConverter.from_keras_model(net)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([x[i: i + 1]] for i in range(64))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):
        data = bytes(conv.convert())
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def _digits_accuracy(m) -> float:
    sp = datasets.digits_split(seed=0)
    return float(np.mean(np.argmax(m.forward(m.quantize(_to_ds_cnn(sp["x_test"]))), -1) == sp["y_test"]))


def ds_cnn(args) -> list[str]:
    m = tinylora.load_tflite(trained_ds_cnn(ROOT / ".cache" / "merge"))
    t = tasks.task("sensor")
    xtr, xte = (m.quantize(_to_ds_cnn(t[k])) for k in ("x_train", "x_test"))
    fc = [l for l in m.layers if l.kind == "FULLY_CONNECTED"][-1]
    tr = Trainer(m, LoRAConfig(rank=4, targets=(fc.index,)), lr=0.004, calibration=xtr[:64])
    print(f"DS-CNN trained on the digits: int8 accuracy {_digits_accuracy(m):.2%} on the digits test split")
    tr.fit(xtr[: args.samples], t["y_train"][: args.samples], epochs=args.epochs)
    return measure("DS-CNN sensor (last FC)", m, tr, xte, t["y_test"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300 training samples, one epoch")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    args.samples = 300 if args.quick else 100000
    args.epochs = 1 if args.quick else args.epochs
    rows = [bundled(name, args) for name in ("sensor", "remap", "digits")]
    rows.append(ds_cnn(args))
    head = ["task", "test n", "base", "adapter (tinylora)", "merged (TFLM)", "points", "float merge",
            "same class", "h at limit", "tinylora != TFLM bytes"]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))


if __name__ == "__main__":
    main()
