"""Look-alikes of the public real-world models that check issue 11 (MLPerf Tiny as its authors
ship it, TFLM's hello_world / micro_speech / person_detect, MCUNet), built the way their authors
build them (Keras layers with BatchNormalization folded by the converter, Dropout, softmax as a
Dense activation) and converted the ways people convert them: full int8, uint8 or float32 ends,
the old quantizer, per-tensor weights. A few flatbuffer edits reproduce what other converters
write (a RESHAPE without its shape tensor, zero-width PADs, MCUNet's negative weight scales).

Public architecture facts used (sources: the MLPerf Tiny training scripts, TFLM's examples):
- micro_speech (tiny_conv): 1960 int8 features reshaped to 49x40x1, one conv of 8 filters
  10 high x 8 wide, stride 2x2, SAME, BN + ReLU, dropout, FC 4000 -> 4, softmax.
- person_detect: MobileNetV1 width 0.25 on 96x96x1 grayscale, ReLU6, average pooling, a 1x1 conv
  to 2 classes, RESHAPE, SOFTMAX (no FULLY_CONNECTED).
- MLPerf Tiny AD: FC autoencoder 640-128x4-8-128x4-640, each hidden Dense + BN + ReLU.
- MLPerf Tiny KWS DS-CNN (49x10x1, 64 ch, BN, dropout, AVG pool 25x5, Dense 12 softmax) and IC
  ResNet-8 (32x32x3, 16/32/64, BN, 1x1 stride-2 shortcuts, AVG pool, Dense 10 softmax).
- hello_world: FC 1-16-16-1 with ReLU.

Public API: ``MODELS`` name -> ``Entry``; ``build(name, cache_dir=None) -> bytes`` (seeded,
deterministic; cached like tests/support/zoo.py); ``REFUSED`` the entries that must be refused
and the op their error must name.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MODELS", "REFUSED", "Entry", "build", "convert"]

VERSION = 1
N_CALIBRATION = 16


# --------------------------------------------------------------------------- architectures


def _bn_act(L, x, act="relu"):
    x = L.BatchNormalization()(x)
    return L.Activation(act)(x) if act else x


def mbv2_035(keras):
    """keras.applications.MobileNetV2(alpha=0.35, 96x96x3, weights=None, classes=2)."""
    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, weights=None,
                                          classes=2)


def person_detect(keras):
    L = keras.layers
    inp = keras.Input((96, 96, 1), batch_size=1)
    x = _bn_act(L, L.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp), "relu6")
    plan = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2)] + [(128, 1)] * 5 + \
        [(256, 2), (256, 1)]
    for filters, stride in plan:
        x = _bn_act(L, L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x),
                    "relu6")
        x = _bn_act(L, L.Conv2D(filters, 1, use_bias=False)(x), "relu6")
    x = L.AveragePooling2D(pool_size=3)(x)
    x = L.Conv2D(2, 1)(x)
    x = L.Reshape((2,))(x)
    return keras.Model(inp, L.Softmax()(x))


def micro_speech(keras):
    L = keras.layers
    inp = keras.Input((1960,), batch_size=1)
    x = L.Reshape((49, 40, 1))(inp)
    x = _bn_act(L, L.Conv2D(8, (10, 8), strides=(2, 2), padding="same")(x))
    x = L.Dropout(0.5)(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(4, activation="softmax")(x))


def hello_world(keras):
    L = keras.layers
    inp = keras.Input((1,), batch_size=1)
    x = L.Dense(16, activation="relu")(inp)
    x = L.Dense(16, activation="relu")(x)
    return keras.Model(inp, L.Dense(1)(x))


def ad_autoencoder(keras):
    L = keras.layers
    inp = keras.Input((640,), batch_size=1)
    x = inp
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = _bn_act(L, L.Dense(units)(x))
    return keras.Model(inp, L.Dense(640)(x))


def kws_dscnn(keras, softmax=True, bias=True):
    L = keras.layers
    inp = keras.Input((49, 10, 1), batch_size=1)
    x = _bn_act(L, L.Conv2D(64, (10, 4), strides=(2, 2), padding="same", use_bias=bias)(inp))
    x = L.Dropout(0.2)(x)
    for _ in range(4):
        x = _bn_act(L, L.DepthwiseConv2D(3, padding="same", use_bias=bias)(x))
        x = _bn_act(L, L.Conv2D(64, 1, use_bias=bias)(x))
    x = L.Dropout(0.4)(x)
    x = L.AveragePooling2D(pool_size=(25, 5))(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(12, activation="softmax" if softmax else None)(x))


def ic_resnet8(keras):
    L = keras.layers
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = _bn_act(L, L.Conv2D(16, 3, padding="same", kernel_initializer="he_normal")(inp))
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = _bn_act(L, L.Conv2D(filters, 3, strides=stride, padding="same")(x))
        y = _bn_act(L, L.Conv2D(filters, 3, padding="same")(y), None)
        if stride != 1:
            x = L.Conv2D(filters, 1, strides=stride, padding="same")(x)
        x = L.Activation("relu")(L.Add()([x, y]))
    x = L.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(10, activation="softmax")(x))


def mcunet_like(keras):
    """MCUNet's shape: explicit PADs before VALID convs (the stride-1 ones fold into SAME), inverted residual
    blocks with ADD, MEAN, a 1x1 head, a final RESHAPE; no softmax (logits out)."""
    L = keras.layers
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = L.ZeroPadding2D(((1, 1), (1, 1)))(inp)
    x = _bn_act(L, L.Conv2D(16, 3, strides=2, use_bias=False)(x), "relu6")
    for expand, out, stride in ((3, 16, 1), (4, 24, 2), (4, 24, 1)):
        y = _bn_act(L, L.Conv2D(x.shape[-1] * expand, 1, use_bias=False)(x), "relu6")
        y = L.ZeroPadding2D(((1, 1), (1, 1)))(y)
        y = _bn_act(L, L.DepthwiseConv2D(3, strides=stride, use_bias=False)(y), "relu6")
        y = _bn_act(L, L.Conv2D(out, 1, use_bias=False)(y), None)
        x = L.Add()([x, y]) if stride == 1 and out == x.shape[-1] else y
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    x = L.Conv2D(5, 1)(x)
    return keras.Model(inp, L.Reshape((5,))(x))


def fc_keep_dims(keras):
    """Dense on a (T, F) sequence: FULLY_CONNECTED with keep_num_dims (output 1x6x12), then
    a flatten and the classifier."""
    L = keras.layers
    inp = keras.Input((6, 10), batch_size=1)
    x = L.Dense(12, activation="relu")(inp)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(3, activation="softmax")(x))


# --------------------------------------------------------------------------- conversion


@dataclass(frozen=True)
class Entry:
    arch: str                       # key of ARCHS
    io: str = "int8"                # "int8", "uint8", "float"
    new_quantizer: bool = True
    per_tensor: bool = False
    int16: bool = False
    edit: str = ""                  # key of EDITS applied to the converted bytes
    calib_std: float = 1.0
    note: str = ""


ARCHS = {"mbv2_035": mbv2_035, "person_detect": person_detect, "micro_speech": micro_speech,
         "hello_world": hello_world, "ad_autoencoder": ad_autoencoder, "kws_dscnn": kws_dscnn,
         "ic_resnet8": ic_resnet8, "mcunet_like": mcunet_like, "fc_keep_dims": fc_keep_dims,
         "kws_logits_nobias": lambda k: kws_dscnn(k, softmax=False, bias=False)}


def _edit(name, data: bytes) -> bytes:
    from tests.support import model_edits
    return model_edits.EDITS[name](data)


def convert(entry: Entry, seed: int) -> bytes:
    """Build ``entry`` (seeded) and convert it; deterministic bytes."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = ARCHS[entry.arch](keras)
    _randomize_bn(model, np.random.default_rng(seed))
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)
    calib = (rng.standard_normal((N_CALIBRATION, *shape)) * entry.calib_std).astype(np.float32)

    def representative():
        for i in range(len(calib)):
            yield [calib[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 if entry.int16
        else tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    io_type = {"int8": tf.int8, "uint8": tf.uint8, "float": None}[entry.io]
    if entry.int16:
        io_type = tf.int16
    if io_type is not None:
        conv.inference_input_type = io_type
        conv.inference_output_type = io_type
    conv.experimental_new_quantizer = entry.new_quantizer
    if entry.per_tensor:
        conv._experimental_disable_per_channel = True
    with contextlib.redirect_stdout(io.StringIO()):
        data = bytes(conv.convert())
    return _edit(entry.edit, data) if entry.edit else data


def _randomize_bn(model, rng) -> None:
    """Give BatchNormalization layers trained-looking statistics (not identity), so the folded
    weights and biases look like a trained model's."""
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n).astype(np.float32),
                               rng.normal(0, 0.2, n).astype(np.float32),
                               rng.normal(0, 0.1, n).astype(np.float32),
                               rng.uniform(0.5, 2.0, n).astype(np.float32)])


MODELS: dict[str, Entry] = {
    "mbv2_035_96": Entry("mbv2_035"),
    "person_detect": Entry("person_detect"),
    "micro_speech": Entry("micro_speech", calib_std=30.0),
    "hello_world_int8": Entry("hello_world", calib_std=2.0),
    "hello_world_float_io": Entry("hello_world", io="float", calib_std=2.0),
    "ad_float_io": Entry("ad_autoencoder", io="float"),
    "ad_int8": Entry("ad_autoencoder"),
    "kws_uint8_io": Entry("kws_dscnn", io="uint8"),
    "kws_float_io": Entry("kws_dscnn", io="float"),
    "ic_resnet8_uint8_io": Entry("ic_resnet8", io="uint8"),
    "kws_old_quantizer": Entry("kws_dscnn", new_quantizer=False),
    "resnet8_old_quantizer_float_io": Entry("ic_resnet8", io="float", new_quantizer=False),
    "kws_per_tensor": Entry("kws_dscnn", per_tensor=True),
    "kws_logits_nobias": Entry("kws_logits_nobias", edit="drop_bias"),
    "micro_speech_new_shape_only": Entry("micro_speech", calib_std=30.0, edit="new_shape_only"),
    "micro_speech_depthwise": Entry("micro_speech", calib_std=30.0, edit="conv_to_depthwise"),
    "mcunet_like": Entry("mcunet_like"),
    "mcunet_like_negative_scales": Entry("mcunet_like", edit="negative_scales"),
    "mcunet_like_zero_pads": Entry("mcunet_like", edit="zero_pads"),
    "fc_keep_dims": Entry("fc_keep_dims"),
    "int16_activations": Entry("hello_world", int16=True, calib_std=2.0),
    "lstm": Entry("hello_world", edit="lstm"),
    "svdf": Entry("hello_world", edit="svdf"),
}
#: entries that must be refused, and the word their error must name
REFUSED = {"int16_activations": "int16", "lstm": "UNIDIRECTIONAL_SEQUENCE_LSTM", "svdf": "SVDF"}


def _seed(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def _cache_key(name: str) -> str:
    from importlib.metadata import version

    here = Path(__file__).parent
    src = b"".join((here / f).read_bytes() for f in ("real_models.py", "model_edits.py"))
    text = repr((VERSION, version("tensorflow-cpu"), name, hashlib.sha256(src).hexdigest()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build(name: str, cache_dir=None) -> bytes:
    """Entry ``name`` converted, cached in ``$TINYLORA_ZOO_CACHE`` (wins) or ``cache_dir``."""
    env = os.environ.get("TINYLORA_ZOO_CACHE")
    cache = Path(env) if env else (Path(cache_dir) if cache_dir is not None else None)
    if cache is None:
        return convert(MODELS[name], _seed(name))
    path = cache / f"real-{name}-{_cache_key(name)}.tflite"
    if path.is_file():
        return path.read_bytes()
    data = convert(MODELS[name], _seed(name))
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data
