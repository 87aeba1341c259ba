"""Small bundled data sets, and helpers to feed them to an int8 model.

The 8x8 handwritten digits (scikit-learn's ``load_digits``, 1797 images, pixel
values 0..16) ship with the package as ``tinylora/data/digits.npz``, so this
module needs only numpy at run time. The file is written by
``scripts/make_example_model.py``.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from tinylora.errors import InputError

__all__ = [
    "load_digits",
    "digits_split",
    "quantize_input",
    "to_model_input",
]

_DIGITS_FILE = "digits.npz"
_TEST_FRACTION = 0.2


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """Return the whole digits set.

    Returns ``(X, y)``: ``X`` uint8 of shape (1797, 8, 8) with values 0..16,
    ``y`` uint8 of shape (1797,) with labels 0..9, in scikit-learn's order.
    """
    ref = resources.files("tinylora") / "data" / _DIGITS_FILE
    with ref.open("rb") as f, np.load(f) as npz:
        images = np.asarray(npz["images"], dtype=np.uint8)
        labels = np.asarray(npz["labels"], dtype=np.uint8)
    return images, labels


def digits_split(seed: int = 0) -> dict[str, np.ndarray]:
    """Split the digits deterministically into 80 % train and 20 % test.

    The split is a fixed permutation from ``numpy.random.default_rng(seed)``
    (not stratified); the same seed always gives the same split.

    Returns a dict with ``x_train``, ``y_train``, ``x_test``, ``y_test``.
    Images are float32 in [0, 1] (pixel / 16) of shape (N, 8, 8, 1); labels
    are uint8 of shape (N,).
    """
    images, labels = load_digits()
    n = len(labels)
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * _TEST_FRACTION))
    test_idx, train_idx = order[:n_test], order[n_test:]
    x = (images.astype(np.float32) / np.float32(16.0))[..., None]
    return {
        "x_train": x[train_idx],
        "y_train": labels[train_idx],
        "x_test": x[test_idx],
        "y_test": labels[test_idx],
    }


def quantize_input(x_float, scale: float, zero_point: int) -> np.ndarray:
    """Quantize real values to int8 the way TFLite's QUANTIZE op does.

    ``q = clamp(round(x / scale) + zero_point, -128, 127)`` where ``round``
    rounds half away from zero (C's ``std::round``, as in TFLite), not half to
    even like ``np.round``: 0.5 -> 1, -0.5 -> -1, 2.5 -> 3.

    The division is done in float32, as the TFLite kernel does with a float32
    input and a float32 scale.
    """
    v = np.asarray(x_float, dtype=np.float32) / np.float32(scale)
    # Widen before adding 0.5: in float32, 0.49999997 + 0.5 would round up to 1.
    v = v.astype(np.float64)
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    q = r + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)


def to_model_input(model, x_float) -> np.ndarray:
    """Quantize ``x_float`` with ``model.input_scale`` / ``model.input_zero_point``.

    Works with any object that has those two attributes (for example a model
    from ``tinylora.load_tflite``).
    """
    return quantize_input(x_float, float(model.input_scale), int(model.input_zero_point))


def load_npz(path, model) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from a user's .npz: arrays x_train, y_train (and
    optionally x_test, y_test; the training data otherwise), or x and y. Real-valued inputs are
    quantized with ``model.quantize``; labels become int64. The one reader of --data files."""
    try:
        with np.load(path) as z:
            names = set(z.files)
            need = {"x_train", "y_train"} if "x_train" in names else {"x", "y"}
            missing = need - names
            if missing:
                raise InputError(f"{path} lacks {sorted(missing)}: give arrays x_train, y_train "
                                 "(and optionally x_test, y_test), or x and y")
            if "x_train" in names:
                xtr, ytr = z["x_train"], z["y_train"]
                xte, yte = (z["x_test"], z["y_test"]) if {"x_test", "y_test"} <= names else (xtr, ytr)
            else:
                xtr, ytr, xte, yte = z["x"], z["y"], z["x"], z["y"]
    except OSError as e:
        raise InputError(f"cannot read --data {path}: {e}") from None

    def prep(x):
        if np.issubdtype(x.dtype, np.integer):
            return x
        bad = np.argwhere(~np.isfinite(x)) if np.issubdtype(x.dtype, np.number) else []
        if len(bad):
            raise InputError(f"{path}: input value at index {tuple(int(i) for i in bad[0])} is "
                             f"{x[tuple(bad[0])]}: give finite numbers (no NaN or inf)")
        return model.quantize(x)

    return prep(xtr), ytr.astype(np.int64), prep(xte), yte.astype(np.int64)
