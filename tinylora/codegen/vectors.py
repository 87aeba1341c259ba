"""Test vectors of a generated training step: the samples it trains on (:class:`VectorSet`), the C
runner that reports every step's logits, loss, checkpoints and masters (:func:`generate_vectors`),
and the bytes numpy expects for them (:func:`expected_vectors`). ``tinylora verify`` and the
emulated tests use this one pipeline."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from tinylora.codegen import c_array_rows, c_identifier, provenance, render
from tinylora.errors import InputError
from tinylora.planning.arena import ALIGN
from tinylora.ref.trainer import Trainer

#: The generating function named in the runners' provenance header.
VECTORS_FUNCTION = "tinylora.codegen.vectors.generate_vectors"

#: C type of the embedded samples by the model's input type (Model._check_input's dtype)
INPUT_CTYPES = {"int8": "int8_t", "uint8": "uint8_t", "float32": "float"}


@dataclass
class VectorSet:
    """Samples to train on (full model inputs in the model's input type: int8, or float32 /
    uint8 for a model with such an input end) and their labels: class numbers, or for
    loss='mse' int8 targets in the output's quantization (as :meth:`Trainer.step` takes them),
    one row per sample; ``restore_at``: the step after which the runner saves a checkpoint,
    re-initialises and restores it."""
    inputs: np.ndarray
    labels: np.ndarray
    restore_at: int | None = None
    predict: int = 4            # predict() on this many of the samples after training

    def __post_init__(self):
        inputs = np.asarray(self.inputs)   # float32 / uint8 ends keep their type
        self.inputs = (inputs.astype(np.float32) if np.issubdtype(inputs.dtype, np.floating)
                       else inputs if inputs.dtype == np.uint8 else inputs.astype(np.int8))
        labels = np.asarray(self.labels)
        if labels.ndim > 1:   # MSE targets: int8, or real values of a float-output model
            real = np.issubdtype(labels.dtype, np.floating)
            self.labels = labels.astype(np.float32 if real else np.int8).reshape(len(labels), -1)
        else:
            self.labels = labels.astype(np.int64).reshape(-1)
        if len(self.inputs) != len(self.labels) or len(self.labels) == 0:
            raise InputError("need one label per sample, and at least one sample")
        if self.restore_at is None:
            self.restore_at = len(self.labels) // 2
        self.predict = min(self.predict, len(self.labels))


def _names(prefix: str) -> dict:
    return {k: f"{prefix}_{k}" for k in ("init", "step", "logits", "loss", "ckpt_mid",
                                         "restore", "ckpt", "predict", "bad_restore")}


def generate_vectors(trainer: Trainer, vectors: VectorSet, prefix: str = "tl_train",
                     command: str | None = None, arena: str | None = None) -> str:
    """C of ``void <prefix>_run_vectors(void)`` (see the module docstring); link it with the
    files of :func:`generate_step` for the same trainer and prefix. ``arena``: the name of a
    caller-owned arena (an external ``uint8_t`` array of at least ``<P>_ARENA_SIZE`` bytes,
    16-byte aligned, e.g. :func:`generate_shared_arena`'s) to pass to ``<prefix>_init``
    instead of NULL (the static arena; build with ``-D<P>_NO_STATIC_ARENA`` to drop it)."""
    prefix = c_identifier(prefix)
    if arena is not None:
        c_identifier(arena)
    x, _ = trainer.model._check_input(vectors.inputs)
    n = len(vectors.labels)
    targets = vectors.labels.ndim > 1
    if targets != (trainer.loss == "mse"):
        raise InputError(f"loss {trainer.loss!r} takes " + ("int8 targets, one row per sample"
                         if trainer.loss == "mse" else "class numbers") + " as labels")
    return render("c/train_vectors.c.j2",
                  header=provenance(VECTORS_FUNCTION, command,
                                    [f"{n} training steps on embedded samples; compared with "
                                     "tinylora.ref.trainer.Trainer.step byte for byte."]),
                  prefix=prefix, macro=prefix.upper(), count=n,
                  inputs=_input_rows(x.reshape(n, -1)), input_what=str(x.dtype),
                  input_ctype=INPUT_CTYPES[str(x.dtype)],
                  labels=c_array_rows(np.stack([_label(trainer, y) for y in vectors.labels])
                                      .reshape(n, -1)),
                  label_ctype="int8_t" if targets else "int32_t",
                  label_count=f"{n} * {prefix.upper()}_CLASSES" if targets else str(n),
                  label_arg=(f"{prefix}_vec_labels + (size_t)i * {prefix.upper()}_CLASSES" if targets
                             else f"{prefix}_vec_labels[i]"),
                  restore_at=int(vectors.restore_at), predict=int(vectors.predict),
                  arena=arena or "NULL", extern_arena=arena,
                  names=_names(prefix),
                  masters=[{"name": f"{prefix}_{p}{i}", "offset": f"{prefix.upper()}_OFFSET_{p}{i}",
                            "count": int(ad.arrays[p].size)}
                           for i, ad in sorted(trainer.adapters.items()) for p in "AB"],
                  scratch_s16=max(int(ad.arrays[p].size) for ad in trainer.adapters.values()
                                  for p in "AB"))


def _input_rows(x: np.ndarray) -> list[str]:
    """Initializer rows of the samples: integers, or float32 values as C99 hexadecimal float
    literals (exact: every float32 is a double, printed to its last bit)."""
    if x.dtype != np.float32:
        return c_array_rows(x)
    flat = [re.sub(r"\.?0*p", "p", float(v).hex()) + "f" for v in x.reshape(-1).tolist()]
    rows = [", ".join(flat[i:i + 8]) for i in range(0, len(flat), 8)]
    return [row + ("," if i < len(rows) - 1 else "") for i, row in enumerate(rows)]


def _label(trainer: Trainer, label: np.ndarray):
    """A class number, or an int8 target row in the output's shape (loss='mse'): real targets
    of a float-output model quantized as :meth:`Trainer.step` does it (HeadMixin._label)."""
    if label.ndim == 0:
        return int(label)
    return trainer._label(label.reshape(trainer.model.layers[trainer.logits_layer].output_shape))


def generate_shared_arena(name: str, size: int, command: str | None = None) -> str:
    """C defining ``uint8_t <name>[size]``, 16-byte aligned: one arena for several generated
    steps that never run at the same time."""
    return render("c/shared_arena.c.j2",
                  header=provenance("tinylora.codegen.vectors.generate_shared_arena", command),
                  name=c_identifier(name), size=int(size), align=ALIGN)


def expected_vectors(trainer: Trainer, vectors: VectorSet, prefix: str = "tl_train") -> dict[str, bytes]:
    """The report lines (name -> bytes) the runner of :func:`generate_vectors` must print,
    from the numpy reference. ``trainer`` is trained in place (pass a fresh one)."""
    names = _names(prefix)
    x, _ = trainer.model._check_input(vectors.inputs)
    out: dict[str, bytes] = {}
    for i, label in enumerate(vectors.labels):
        if i == vectors.restore_at:
            out[names["ckpt_mid"]] = trainer.checkpoint()
            out[names["restore"]] = np.int32(0).tobytes()
        result = trainer.step(x[i: i + 1], _label(trainer, label))
        out[f"{names['logits']}_{i:x}"] = result.logits.tobytes()
        out[f"{names['loss']}_{i:x}"] = np.int32(result.loss).astype("<i4").tobytes()
    if vectors.restore_at >= len(vectors.labels):
        out[names["ckpt_mid"]] = trainer.checkpoint()
        out[names["restore"]] = np.int32(0).tobytes()
    for i, ad in sorted(trainer.adapters.items()):
        for p in "AB":
            out[f"{prefix}_{p}{i}"] = ad.arrays[p].astype("<i2").tobytes()
    out[names["ckpt"]] = trainer.checkpoint()
    # a checkpoint with one flipped byte is refused (TL_ERR_CRC, tl_types.h) and changes nothing
    out[names["bad_restore"]] = np.int32(8).astype("<i4").tobytes()
    logits = trainer.logits(x[: vectors.predict])
    for i in range(vectors.predict):
        out[f"{names['predict']}_{i:x}"] = logits[i].astype(np.int8).tobytes()
    return out
