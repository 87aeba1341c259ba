"""Small Keras models converted by the real TF converter to full-integer int8 ``.tflite``.

Test support for oracle tests: unlike ``randmodel.py`` these files come out of
``tf.lite.TFLiteConverter`` itself, so they carry whatever the converter really writes
(tensor order, quantisation choices, option fields).

Public API
----------
``ZOO: dict[str, Callable[[], bytes]]``
    Name -> function that builds, initialises (seeded) and converts the model; no caching.
``build(name, cache_dir=None) -> bytes``
    Cached ``ZOO[name]()``. The cache directory is ``$TINYLORA_ZOO_CACHE`` when that is set
    (it wins, so a persistent cache can serve many pytest sessions), else ``cache_dir``; with
    neither, nothing is cached. Cache files are keyed by name, the entry's spec, the
    TensorFlow version and ``ZOO_VERSION``; TensorFlow is imported only on a cache miss.
``SPECS: dict[str, Spec]``
    The entries' descriptions (input shape, layers, per-tensor flag, ...).
``ops(model_bytes) -> list[str]``
    Builtin operator names of subgraph 0, in order.
``SUPPORTED_OPS``
    The ops every zoo model is restricted to.

Conventions: every Keras input has ``batch_size=1`` (so Flatten becomes one RESHAPE),
weights are Keras' default initialisers and biases ``RandomNormal(stddev=0.2)``, all from
``keras.utils.set_random_seed`` with a per-entry seed; the models are not trained.
Calibration data is seeded random normal (``input_std`` per entry), 32 samples. Dense layers
are per-channel unless the entry sets ``per_tensor_dense`` (the converter flag
``_experimental_disable_per_channel_quantization_for_dense_layers``, checked to give one
weight scale per FULLY_CONNECTED in TF 2.21).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ZOO", "SPECS", "Spec", "build", "convert_spec", "ops", "SUPPORTED_OPS", "ZOO_VERSION"]

ZOO_VERSION = 1
SUPPORTED_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE", "SOFTMAX"})
N_CALIBRATION = 32

# Layer descriptions (plain tuples, so that a spec's repr is a stable cache key):
#   ("dense", units, activation, use_bias)
#   ("conv", filters, kernel, strides, padding, activation, use_bias)
#   ("dw", kernel, strides, padding, activation, use_bias)
#   ("flatten",)
#   ("softmax",)
# kernel and strides are ints or (h, w) tuples; activation None/"relu"/"relu6".


@dataclass(frozen=True)
class Spec:
    input_shape: tuple
    layers: tuple
    per_tensor_dense: bool = False
    input_std: float = 1.0
    notes: str = field(default="", compare=False)


def _d(units, act=None, bias=True):
    return ("dense", units, act, bias)


def _conv(filters, kernel, strides=1, padding="same", act=None, bias=True):
    return ("conv", filters, kernel, strides, padding, act, bias)


def _dw(kernel, strides=1, padding="same", act=None, bias=True):
    return ("dw", kernel, strides, padding, act, bias)


_F = ("flatten",)
_S = ("softmax",)


def _mlps() -> dict[str, Spec]:
    out = {}
    for pt in (False, True):
        sfx = "_pt" if pt else ""
        for act in (None, "relu", "relu6"):
            a = act or "none"
            out[f"mlp_64_32_10_{a}{sfx}"] = Spec(
                (64,), (_d(32, act), _d(10)), pt, input_std=3.0 if act == "relu6" else 1.0
            )
        out[f"mlp_20_7{sfx}"] = Spec((20,), (_d(7),), pt)
        out[f"mlp_20_7_relu_nobias{sfx}"] = Spec((20,), (_d(7, "relu", False),), pt)
        out[f"mlp_100_64_64_16_mixed{sfx}"] = Spec(
            (100,), (_d(64, "relu"), _d(64, "relu6", False), _d(16)), pt, input_std=2.0
        )
        out[f"mlp_48_24_10_softmax{sfx}"] = Spec((48,), (_d(24, "relu"), _d(10), _S), pt)
    out["mlp_33_1"] = Spec((33,), (_d(5, "relu"), _d(1)), notes="single output unit")
    return out


def _cnns() -> dict[str, Spec]:
    return {
        "cnn_conv3_same_s1": Spec((8, 8, 1), (_conv(4, 3, 1, "same", "relu"), _F, _d(10))),
        "cnn_conv3_valid_s2": Spec(
            (9, 9, 2), (_conv(6, 3, 2, "valid", "relu6"), _F, _d(10)), input_std=3.0
        ),
        "cnn_conv5_same_s2_12x9x3": Spec(
            (12, 9, 3), (_conv(8, 5, 2, "same", "relu"), _F, _d(10), _S)
        ),
        "cnn_conv5_valid_s1_nobias": Spec(
            (7, 6, 2), (_conv(4, 5, 1, "valid", None, False), _F, _d(6, None, False))
        ),
        "cnn_conv1x1": Spec((6, 5, 4), (_conv(8, 1, 1, "valid", "relu"), _F, _d(10))),
        "cnn_conv1x1_s2": Spec((7, 7, 3), (_conv(5, 1, 2, "same", None), _F, _d(4))),
        "cnn_conv_rect_kernel": Spec(
            (10, 8, 2), (_conv(4, (3, 1), (2, 1), "same", "relu"), _conv(4, (1, 5), (1, 2), "valid"), _F, _d(5)),
            notes="non-square kernels and strides",
        ),
        "cnn_dw3_same_s1": Spec((8, 8, 3), (_dw(3, 1, "same", "relu"), _F, _d(10))),
        "cnn_dw3_valid_s2": Spec((9, 8, 4), (_dw(3, 2, "valid", "relu6"), _F, _d(10)), input_std=3.0),
        "cnn_dw5_same_s2_12x9x3": Spec((12, 9, 3), (_dw(5, 2, "same"), _F, _d(10), _S)),
        "cnn_dw1_nobias": Spec((5, 5, 6), (_dw(1, 1, "valid", "relu", False), _F, _d(3))),
        "cnn_mobilenetish_12x9x3": Spec(
            (12, 9, 3),
            (
                _conv(8, 3, 2, "same", "relu6"),
                _dw(3, 1, "same", "relu6"),
                _conv(16, 1, 1, "valid", "relu6"),
                _dw(5, 2, "same", "relu"),
                _conv(8, 1, 1, "valid", None),
                _F,
                _d(16, "relu"),
                _d(10),
                _S,
            ),
            input_std=2.0,
        ),
        "cnn_mobilenetish_12x9x3_pt": Spec(
            (12, 9, 3),
            (
                _conv(8, 3, 2, "same", "relu6"),
                _dw(3, 2, "valid", "relu"),
                _conv(6, 1, 1, "valid", "relu"),
                _F,
                _d(16, "relu"),
                _d(10),
                _S,
            ),
            per_tensor_dense=True,
            input_std=2.0,
            notes="per-channel convs, per-tensor dense",
        ),
    }


SPECS: dict[str, Spec] = {**_mlps(), **_cnns()}


# --------------------------------------------------------------------------- building


def _seed(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _keras_model(keras, spec: Spec):
    L = keras.layers
    bias_init = keras.initializers.RandomNormal(stddev=0.2)
    inp = keras.Input(shape=spec.input_shape, batch_size=1)
    x = inp
    for layer in spec.layers:
        kind = layer[0]
        if kind == "dense":
            _, units, act, bias = layer
            x = L.Dense(units, activation=act, use_bias=bias, bias_initializer=bias_init)(x)
        elif kind == "conv":
            _, filters, kernel, strides, padding, act, bias = layer
            x = L.Conv2D(
                filters, kernel, strides=strides, padding=padding, activation=act,
                use_bias=bias, bias_initializer=bias_init,
            )(x)
        elif kind == "dw":
            _, kernel, strides, padding, act, bias = layer
            x = L.DepthwiseConv2D(
                kernel, strides=strides, padding=padding, activation=act,
                use_bias=bias, bias_initializer=bias_init,
            )(x)
        elif kind == "flatten":
            x = L.Flatten()(x)
        elif kind == "softmax":
            x = L.Softmax()(x)
        else:  # pragma: no cover - spec typo
            raise ValueError(f"unknown layer kind {kind!r}")
    return keras.Model(inp, x)


def convert_spec(spec: Spec, seed: int = 0) -> bytes:
    """Build ``spec`` as a Keras model (seeded) and convert it to full-int8 ``.tflite`` bytes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = _keras_model(keras, spec)

    rng = np.random.default_rng(seed)
    calib = (rng.standard_normal((N_CALIBRATION, *spec.input_shape)) * spec.input_std).astype(
        np.float32
    )
    return to_int8_tflite(tf, model, calib, per_tensor_dense=spec.per_tensor_dense)


def to_int8_tflite(tf, model, calib, int8_io: bool = True, per_tensor_dense: bool = False) -> bytes:
    """Full-integer post-training quantization of a Keras model, calibrated on ``calib``
    (one sample per row): int8 weights and activations; int8 input and output unless
    ``int8_io`` is False (the model's own float ends then stay, with QUANTIZE/DEQUANTIZE)."""

    def representative():
        for i in range(len(calib)):
            yield [calib[i : i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    if per_tensor_dense:
        flag = "_experimental_disable_per_channel_quantization_for_dense_layers"
        if not hasattr(conv, flag):
            raise RuntimeError(f"this TensorFlow ({tf.__version__}) has no converter.{flag}")
        setattr(conv, flag, True)
    # Keras' export prints a "Saved artifact ..." summary to stdout; keep test output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(conv.convert())


def _make(name: str) -> Callable[[], bytes]:
    def make() -> bytes:
        return convert_spec(SPECS[name], seed=_seed(name))

    make.__name__ = f"make_{name}"
    make.__doc__ = f"Convert zoo entry {name!r}: {SPECS[name]}"
    return make


ZOO: dict[str, Callable[[], bytes]] = {name: _make(name) for name in SPECS}


def _tf_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            return version(dist)
        except PackageNotFoundError:
            pass
    return "unknown"


def _cache_key(name: str) -> str:
    text = repr((ZOO_VERSION, _tf_version(), name, SPECS[name], N_CALIBRATION))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build(name: str, cache_dir=None) -> bytes:
    """Bytes of zoo entry ``name``, from the on-disk cache when possible (see module doc)."""
    if name not in ZOO:
        raise KeyError(f"unknown zoo model {name!r}; known: {sorted(ZOO)}")
    env = os.environ.get("TINYLORA_ZOO_CACHE")
    cache = Path(env) if env else (Path(cache_dir) if cache_dir is not None else None)
    if cache is None:
        return ZOO[name]()
    path = cache / f"{name}-{_cache_key(name)}.tflite"
    if path.is_file():
        return path.read_bytes()
    data = ZOO[name]()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # atomic: concurrent builders never see a partial file
    return data


# --------------------------------------------------------------------------- inspection


def ops(model_bytes: bytes) -> list[str]:
    """Builtin operator names of subgraph 0, in execution order (tinylora's own reader)."""
    from tinylora.tflite import reader as tflite

    return [op.name for op in tflite.parse(model_bytes).ops]


if __name__ == "__main__":  # python tests/support/keras_zoo.py [cache_dir]: build and list
    import sys
    import time

    t0 = time.perf_counter()
    for n in ZOO:
        t = time.perf_counter()
        b = build(n, sys.argv[1] if len(sys.argv) > 1 else None)
        print(f"{n:32s} {len(b):6d} B {time.perf_counter() - t:5.2f} s  {' '.join(ops(b))}")
    print(f"total {time.perf_counter() - t0:.1f} s for {len(ZOO)} models")
