"""Checks of user data shared by the trainer, the data loader and the generator: labels are
class numbers, real-valued inputs are finite. Each error names the first bad entry and the fix."""
from __future__ import annotations

import numpy as np

from tinylora.errors import InputError


def _index(a: np.ndarray, flat: int) -> str:
    """The first bad entry's index as text: `5` for a vector, `(5, 2, 0)` for more dimensions."""
    idx = np.unravel_index(flat, a.shape)
    return str(int(idx[0])) if len(idx) == 1 else str(tuple(int(i) for i in idx))


def finite(x, what: str = "input") -> np.ndarray:
    """`x` as an array; InputError naming the first NaN or infinity (they would be quantized to
    a silent saturated value)."""
    a = np.asarray(x)
    if a.dtype == object or np.issubdtype(a.dtype, np.complexfloating) or \
            not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise InputError(f"{what} must be real numbers, got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.inexact):
        bad = ~np.isfinite(a)
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise InputError(f"{what} holds {int(bad.sum())} non-finite value(s) (NaN or inf); the "
                             f"first is {a.flat[first].item()!r} at index {_index(a, first)}: clean the data "
                             "(np.nan_to_num, or drop those samples)")
    return a


def label(value, classes: int) -> int:
    """One label as an int in [0, classes); InputError for -1, 3.9, 10 of 10 classes, True..."""
    a = np.asarray(value)
    if a.ndim != 0:
        raise InputError(f"label must be one class number, got an array of shape {a.shape} "
                         "(one-hot? give its argmax)")
    return int(labels(a.reshape(1), classes)[0])


def labels(y, classes: int, count: int | None = None, what: str = "labels") -> np.ndarray:
    """Labels as an int64 vector of class numbers in [0, classes), one per sample when `count`
    is given. Refuses one-hot or 2-D labels, fractions, NaN, negatives and classes the model lacks."""
    a = finite(y, what)
    if a.ndim == 2 and a.shape[1] == classes and a.shape[1] > 1:
        raise InputError(f"{what} has shape {a.shape}: one-hot labels? give class numbers, "
                         "e.g. y.argmax(axis=1)")
    if a.ndim != 1:
        raise InputError(f"{what} must be a vector of class numbers, got shape {a.shape}")
    if count is not None and len(a) != count:
        raise InputError(f"{what}: {len(a)} labels for {count} samples: give one label per sample")
    if a.dtype == bool:
        raise InputError(f"{what} must be class numbers, got booleans")
    if np.issubdtype(a.dtype, np.floating):
        frac = a != np.floor(a)
        if frac.any():
            first = int(np.flatnonzero(frac)[0])
            raise InputError(f"{what}[{first}] is {a[first].item()!r}: labels must be whole class numbers")
    bad = (a < 0) | (a >= classes)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(f"{what}[{first}] is {a[first].item()!r}: class numbers must be in [0, {classes}) "
                         f"for this model's {classes} outputs")
    return a.astype(np.int64)
