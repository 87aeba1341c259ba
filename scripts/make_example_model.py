#!/usr/bin/env python
"""Regenerate the bundled digits data and example int8 CNN.

Writes, under ``tinylora/data/``:

* ``digits.npz``          scikit-learn's 8x8 digits (images uint8 0..16, labels uint8)
* ``digits_cnn.tflite``   a small CNN trained on ``digits_split(seed=0)["x_train"]``,
                          converted to full-integer int8 (int8 input and output)
* ``digits_cnn.json``     metadata: accuracies, sha256, versions, command

Usage (from the repository root)::

    python scripts/make_example_model.py

Needs tensorflow-cpu, scikit-learn and tflite-micro (the ``test`` extra).
Seeds are fixed, TF op determinism is on and TF runs single-threaded, so a
rerun on the same machine and versions should give the same bytes.
"""

from __future__ import annotations

import os

# Must be set before TensorFlow is imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ["PYTHONHASHSEED"] = "0"
os.environ["TF_DETERMINISTIC_OPS"] = "1"

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

DATA_DIR = REPO / "tinylora" / "data"
SEED = 0
EPOCHS = 60
BATCH_SIZE = 32


def write_digits(path: Path) -> None:
    """Save sklearn's digits as a compact npz (uint8 images 0..16, uint8 labels)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.asarray(d.images).astype(np.uint8)
    labels = np.asarray(d.target).astype(np.uint8)
    assert images.shape == (1797, 8, 8) and images.max() == 16
    assert np.array_equal(images, d.images)  # the values are integers 0..16
    path.parent.mkdir(parents=True, exist_ok=True)
    # np.savez_compressed stores fixed zip timestamps, so the file is reproducible.
    np.savez_compressed(path, images=images, labels=labels)


def build_cnn(keras, batch_size):
    """The example CNN; ``batch_size=1`` for conversion, ``None`` for training."""
    L = keras.layers
    inp = keras.Input(shape=(8, 8, 1), batch_size=batch_size, name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(inp)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6", name="dw1")(x)
    x = L.Conv2D(16, 1, activation="relu", name="pw1")(x)
    x = L.DepthwiseConv2D(3, strides=1, padding="valid", activation="relu", name="dw2")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(32, activation="relu", name="fc1")(x)
    x = L.Dense(10, name="logits")(x)
    out = L.Softmax(name="probs")(x)
    return keras.Model(inp, out, name="digits_cnn")


def list_ops(model_bytes: bytes) -> list[str]:
    """Builtin operator names of subgraph 0, in execution order (tinylora's own reader)."""
    from tinylora.tflite import reader as tflite

    return [op.name for op in tflite.parse(model_bytes).ops]


def tflm_accuracy(model_bytes: bytes, x_float: np.ndarray, y: np.ndarray) -> float:
    """Accuracy of the int8 model under the TFLM reference kernels, one sample at a time."""
    from tflite_micro.python.tflite_micro import runtime

    from tinylora.datasets import quantize_input

    interp = runtime.Interpreter.from_bytes(model_bytes, arena_size=64 * 1024)
    qp = interp.get_input_details(0)["quantization_parameters"]
    scale, zp = float(qp["scales"][0]), int(qp["zero_points"][0])
    xq = quantize_input(x_float, scale, zp)
    correct = 0
    for xi, yi in zip(xq, y):
        interp.set_input(xi[None], 0)
        interp.invoke()
        correct += int(np.argmax(interp.get_output(0)[0]) == yi)
    return correct / len(y)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=DATA_DIR)
    args = ap.parse_args(argv)
    out_dir = args.out_dir

    digits_path = DATA_DIR / "digits.npz"
    write_digits(digits_path)
    if out_dir.resolve() != DATA_DIR.resolve():
        write_digits(out_dir / "digits.npz")

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()

    from tinylora.datasets import digits_split

    d = digits_split(seed=SEED)
    x_train, y_train = d["x_train"], d["y_train"].astype(np.int32)
    x_test, y_test = d["x_test"], d["y_test"].astype(np.int32)

    train_model = build_cnn(keras, None)
    train_model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    train_model.fit(
        x_train, y_train, epochs=EPOCHS, batch_size=BATCH_SIZE, shuffle=True, verbose=0
    )
    float_acc = float(np.mean(np.argmax(train_model.predict(x_test, verbose=0), 1) == y_test))

    # Re-wrap the trained weights into a batch-1 model so that Flatten converts
    # to a plain RESHAPE (no SHAPE/STRIDED_SLICE/PACK).
    model = build_cnn(keras, 1)
    model.set_weights(train_model.get_weights())

    def representative():
        for i in range(len(x_train)):
            yield [x_train[i : i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    model_bytes = bytes(conv.convert())

    ops = list_ops(model_bytes)
    allowed = {"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE", "SOFTMAX"}
    if not set(ops) <= allowed:
        raise SystemExit(f"unsupported ops in converted model: {ops}")

    int8_acc = tflm_accuracy(model_bytes, x_test, y_test)
    sha = hashlib.sha256(model_bytes).hexdigest()

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "digits_cnn.tflite").write_bytes(model_bytes)
    info = {
        "name": "digits_cnn",
        "description": "8x8 digits CNN, full-integer int8 (int8 input and output)",
        "dataset": "sklearn load_digits, tinylora.datasets.digits_split(seed=0)",
        "n_train": int(len(y_train)),
        "n_test": int(len(y_test)),
        "input_shape": [8, 8, 1],
        "num_classes": 10,
        "ops": ops,
        "size_bytes": len(model_bytes),
        "float_accuracy": round(float_acc, 6),
        "int8_accuracy_tflm": round(int8_acc, 6),
        "sha256": sha,
        "command": "python scripts/make_example_model.py",
        "tensorflow_version": tf.__version__,
        "keras_version": keras.__version__,
        "numpy_version": np.__version__,
    }
    (out_dir / "digits_cnn.json").write_text(json.dumps(info, indent=2) + "\n")

    print(f"ops:            {' '.join(ops)}")
    print(f"size:           {len(model_bytes)} bytes")
    print(f"float accuracy: {float_acc:.4f}")
    print(f"int8 accuracy:  {int8_acc:.4f} (tflite-micro)")
    print(f"sha256:         {sha}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
