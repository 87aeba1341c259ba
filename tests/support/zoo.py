"""Reference TinyML architectures (MLPerf Tiny and TFLM examples) built in Keras and converted
by the real TF converter to full-integer int8 ``.tflite`` (issue 11, item 7).

The architectures are the published ones; the weights are Keras' seeded default initialisers
(not trained) and biases small seeded normals. Calibration: 16 seeded standard-normal samples.

Public API
----------
``MODELS: dict[str, Callable[[keras], keras.Model]]``  name -> Keras builder
``FLOAT_IO: frozenset``     entries converted with float32 input/output (QUANTIZE/DEQUANTIZE ends)
``convert(name) -> bytes``  build (seeded) and convert one entry; deterministic bytes
``build(name, cache_dir=None) -> bytes``  ``convert`` with an optional on-disk cache
``describe(model_bytes) -> dict``  ops (with counts), params, MACs, from the flatbuffer alone
``tflm_arena(model_bytes) -> dict``  TFLM's arena total/head/tail from ``print_allocations()``
``tflm_arena_used(model_bytes) -> int``  the total
"""

from __future__ import annotations

import collections
import hashlib
import os
import re
import zlib
from pathlib import Path

import numpy as np

from . import keras_zoo

__all__ = ["MODELS", "FLOAT_IO", "convert", "build", "describe", "tflm_arena", "tflm_arena_used",
           "ZOO_VERSION"]

ZOO_VERSION = 1
N_CALIBRATION = 16


# --------------------------------------------------------------------------- architectures


def _bias(keras):
    return keras.initializers.RandomNormal(stddev=0.1)


def ds_cnn(keras):
    """MLPerf Tiny keyword spotting DS-CNN: 49x10x1 MFCCs, 64 channels, 12 classes."""
    L = keras.layers
    b = _bias(keras)
    inp = keras.Input((49, 10, 1), batch_size=1)
    x = L.Conv2D(64, (10, 4), strides=(2, 2), padding="same", activation="relu",
                 bias_initializer=b)(inp)
    for _ in range(4):
        x = L.DepthwiseConv2D(3, padding="same", activation="relu", bias_initializer=b)(x)
        x = L.Conv2D(64, 1, activation="relu", bias_initializer=b)(x)
    x = L.AveragePooling2D(pool_size=(25, 5))(x)
    x = L.Flatten()(x)
    x = L.Dense(12, bias_initializer=b)(x)
    return keras.Model(inp, L.Softmax()(x))


def mobilenet_v1_025(keras):
    """MLPerf Tiny visual wake words MobileNetV1, width 0.25, 96x96x1, 2 classes."""
    L = keras.layers
    b = _bias(keras)
    inp = keras.Input((96, 96, 1), batch_size=1)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", bias_initializer=b)(inp)
    plan = [(16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2)] + [(128, 1)] * 5 + \
        [(256, 2), (256, 1)]
    for filters, stride in plan:
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu",
                              bias_initializer=b)(x)
        x = L.Conv2D(filters, 1, activation="relu", bias_initializer=b)(x)
    x = L.AveragePooling2D(pool_size=3)(x)
    x = L.Flatten()(x)
    x = L.Dense(2, bias_initializer=b)(x)
    return keras.Model(inp, L.Softmax()(x))


def resnet8(keras):
    """MLPerf Tiny image classification ResNet-8: 32x32x3, 16/32/64 channels, 10 classes."""
    L = keras.layers
    b = _bias(keras)
    inp = keras.Input((32, 32, 3), batch_size=1)
    x = L.Conv2D(16, 3, padding="same", activation="relu", bias_initializer=b)(inp)
    for filters, stride in ((16, 1), (32, 2), (64, 2)):
        y = L.Conv2D(filters, 3, strides=stride, padding="same", activation="relu",
                     bias_initializer=b)(x)
        y = L.Conv2D(filters, 3, padding="same", bias_initializer=b)(y)
        if stride != 1:
            x = L.Conv2D(filters, 1, strides=stride, bias_initializer=b)(x)
        x = L.Activation("relu")(L.Add()([x, y]))
    x = L.AveragePooling2D(pool_size=8)(x)
    x = L.Flatten()(x)
    x = L.Dense(10, bias_initializer=b)(x)
    return keras.Model(inp, L.Softmax()(x))


def autoencoder(keras):
    """MLPerf Tiny anomaly detection FC autoencoder 640-128x4-8-128x4-640."""
    L = keras.layers
    b = _bias(keras)
    inp = keras.Input((640,), batch_size=1)
    x = inp
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = L.Dense(units, activation="relu", bias_initializer=b)(x)
    return keras.Model(inp, L.Dense(640, bias_initializer=b)(x))


def mbv2_block(keras):
    """MobileNetV2-style stem + two inverted residual blocks (expand 1x1, dw 3x3, project 1x1,
    ADD), global average pooling, 10 classes."""
    L = keras.layers
    b = _bias(keras)
    inp = keras.Input((24, 24, 3), batch_size=1)
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu6", bias_initializer=b)(inp)
    for _ in range(2):
        y = L.Conv2D(96, 1, activation="relu6", bias_initializer=b)(x)
        y = L.DepthwiseConv2D(3, padding="same", activation="relu6", bias_initializer=b)(y)
        y = L.Conv2D(16, 1, bias_initializer=b)(y)
        x = L.Add()([x, y])
    x = L.GlobalAveragePooling2D()(x)
    x = L.Dense(10, bias_initializer=b)(x)
    return keras.Model(inp, L.Softmax()(x))


def person_detect_like(keras):
    """TFLM person_detection-like: MobileNetV1 body at 48x48x1, no FC: average pooling, a 1x1
    conv to 2 classes, reshape and softmax."""
    L = keras.layers
    b = _bias(keras)
    inp = keras.Input((48, 48, 1), batch_size=1)
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu6", bias_initializer=b)(inp)
    for filters, stride in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1)):
        x = L.DepthwiseConv2D(3, strides=stride, padding="same", activation="relu6",
                              bias_initializer=b)(x)
        x = L.Conv2D(filters, 1, activation="relu6", bias_initializer=b)(x)
    x = L.AveragePooling2D(pool_size=6)(x)
    x = L.Conv2D(2, 1, bias_initializer=b)(x)
    x = L.Reshape((2,))(x)
    return keras.Model(inp, L.Softmax()(x))


def hello_world(keras):
    """TFLM hello_world-like sine regression: 1 -> FC 16 -> FC 16 -> 1."""
    L = keras.layers
    b = _bias(keras)
    inp = keras.Input((1,), batch_size=1)
    x = L.Dense(16, activation="relu", bias_initializer=b)(inp)
    x = L.Dense(16, activation="relu", bias_initializer=b)(x)
    return keras.Model(inp, L.Dense(1, bias_initializer=b)(x))


MODELS = {
    "ds_cnn": ds_cnn,
    "mobilenet_v1_025": mobilenet_v1_025,
    "resnet8": resnet8,
    "autoencoder": autoencoder,
    "autoencoder_float_io": autoencoder,
    "mbv2_block": mbv2_block,
    "person_detect_like": person_detect_like,
    "hello_world": hello_world,
}
FLOAT_IO = frozenset({"autoencoder_float_io"})


# --------------------------------------------------------------------------- conversion


def _seed(name: str) -> int:
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def convert(name: str) -> bytes:
    """Build entry ``name`` with seeded weights and convert it to full-int8 ``.tflite`` bytes."""
    if name not in MODELS:
        raise KeyError(f"unknown zoo model {name!r}; known: {sorted(MODELS)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    seed = _seed(name.replace("_float_io", ""))
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = MODELS[name](keras)
    in_shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((N_CALIBRATION, *in_shape)).astype(np.float32)

    return keras_zoo.to_int8_tflite(tf, model, calib, int8_io=name not in FLOAT_IO)


def _cache_key(name: str) -> str:
    from importlib.metadata import version

    src = Path(__file__).read_bytes() + Path(keras_zoo.__file__).read_bytes()
    text = repr((ZOO_VERSION, version("tensorflow-cpu"), name, hashlib.sha256(src).hexdigest()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build(name: str, cache_dir=None) -> bytes:
    """``convert(name)``, cached in ``$TINYLORA_ZOO_CACHE`` (wins) or ``cache_dir`` if given."""
    env = os.environ.get("TINYLORA_ZOO_CACHE")
    cache = Path(env) if env else (Path(cache_dir) if cache_dir is not None else None)
    if cache is None:
        return convert(name)
    path = cache / f"{name}-{_cache_key(name)}.tflite"
    if path.is_file():
        return path.read_bytes()
    data = convert(name)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return data


# --------------------------------------------------------------------------- inspection


def describe(model_bytes: bytes) -> dict:
    """Ops with counts, params (elements of constant tensors) and MACs of subgraph 0."""
    from ai_edge_litert import schema_py_generated as fb

    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    m = fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    sg = m.subgraphs[0]
    ops: collections.Counter = collections.Counter()
    macs = 0
    for op in sg.operators:
        oc = m.operatorCodes[op.opcodeIndex]
        name = names[max(oc.builtinCode, oc.deprecatedBuiltinCode)]
        ops[name] += 1
        out = [int(s) for s in sg.tensors[op.outputs[0]].shape]
        if name == "CONV_2D":
            w = sg.tensors[op.inputs[1]].shape  # OHWI
            macs += int(np.prod(out)) * int(w[1] * w[2] * w[3])
        elif name == "DEPTHWISE_CONV_2D":
            w = sg.tensors[op.inputs[1]].shape  # 1HWC
            macs += int(np.prod(out)) * int(w[1] * w[2])
        elif name == "FULLY_CONNECTED":
            w = sg.tensors[op.inputs[1]].shape  # [out, in]
            macs += int(np.prod(out)) * int(w[1])
    params = 0
    for t in sg.tensors:
        if t.buffer and m.buffers[t.buffer].data is not None and len(m.buffers[t.buffer].data):
            params += int(np.prod(t.shape))
    return {"ops": dict(sorted(ops.items())), "params": params, "macs": macs}


def tflm_arena(model_bytes: bytes) -> dict:
    """TFLM's arena use after one invoke, from the ``[RecordingMicroAllocator] Arena allocation
    total/head/tail N bytes`` lines of ``print_allocations()``: ``total`` is what the model
    needs; ``head`` the planned (non-persistent) activations and scratch, ``tail`` the
    persistent allocations."""
    from tests.support.oracles import tflm_arena_report

    report = tflm_arena_report(model_bytes) if not _float_input(model_bytes) else \
        _float_arena_report(model_bytes)
    out = {}
    for key in ("total", "head", "tail"):
        found = re.search(rf"Arena allocation {key} (\d+) bytes", report)
        if not found:
            raise RuntimeError(f"no arena {key} in TFLM's print_allocations() output:\n{report}")
        out[key] = int(found.group(1))
    return out


def tflm_arena_used(model_bytes: bytes) -> int:
    """Bytes of arena TFLM uses (the "Arena allocation total" of ``print_allocations()``)."""
    return tflm_arena(model_bytes)["total"]


def _float_input(model_bytes: bytes) -> bool:
    from ai_edge_litert import schema_py_generated as fb

    m = fb.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    sg = m.subgraphs[0]
    return sg.tensors[sg.inputs[0]].type == fb.TensorType.FLOAT32


def _float_arena_report(model_bytes: bytes) -> str:
    from tests.support import oracles

    ins, _, _ = oracles._model_shapes(model_bytes)
    interp = oracles.tflm_interpreter(model_bytes)
    interp.set_input(np.zeros(ins[0], np.float32), 0)
    interp.invoke()
    with oracles._capture_fd2() as log:
        interp.print_allocations()
    return log[0]
