import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import tinylora
from tinylora import datasets
from tinylora.codegen.project import plan as project_plan


def test_load_digits_shapes_and_dtypes():
    x, y = datasets.load_digits()
    assert x.shape == (1797, 8, 8) and x.dtype == np.uint8
    assert y.shape == (1797,) and y.dtype == np.uint8
    assert x.min() == 0 and x.max() == 16
    assert set(np.unique(y)) == set(range(10))


def test_digits_split_shapes_ranges_and_partition():
    d = datasets.digits_split()
    assert set(d) == {"x_train", "y_train", "x_test", "y_test"}
    assert d["x_train"].shape == (1438, 8, 8, 1)
    assert d["x_test"].shape == (359, 8, 8, 1)
    assert d["y_train"].shape == (1438,) and d["y_test"].shape == (359,)
    for k in ("x_train", "x_test"):
        assert d[k].dtype == np.float32
        assert d[k].min() >= 0.0 and d[k].max() <= 1.0
    assert d["y_train"].dtype == np.uint8
    # Train and test together are exactly the whole set (a permutation of it).
    x, y = datasets.load_digits()
    xs = np.concatenate([d["x_train"], d["x_test"]])[..., 0] * 16
    ys = np.concatenate([d["y_train"], d["y_test"]])
    key = lambda a, b: sorted(zip(b.tolist(), a.reshape(len(a), -1).tolist()))  # noqa: E731
    assert key(xs.astype(np.uint8), ys) == key(x, y)


def test_digits_split_is_deterministic_and_seeded():
    a, b = datasets.digits_split(0), datasets.digits_split(0)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = datasets.digits_split(1)
    assert not np.array_equal(a["y_test"], c["y_test"])


def test_datasets_does_not_import_sklearn_or_tensorflow():
    code = (
        "import sys, tinylora.datasets as d; d.digits_split(); "
        "bad = [m for m in ('sklearn', 'tensorflow', 'keras') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_quantize_input_rounds_half_away_from_zero():
    x = np.array([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997, 0.0])
    q = datasets.quantize_input(x, 1.0, 0)
    assert q.dtype == np.int8
    assert q.tolist() == [1, -1, 2, -2, 3, -3, 0, 0, 0]


def test_quantize_input_zero_point_and_clipping():
    x = np.array([-1000.0, -1.0, 0.0, 0.25, 1.0, 1000.0], dtype=np.float32)
    q = datasets.quantize_input(x, 0.5, -10)
    assert q.tolist() == [-128, -12, -10, -9, -8, 127]  # 0.25/0.5 = 0.5 -> 1
    assert datasets.quantize_input(np.float32(3.0), 1.0, 127).tolist() == 127


def test_quantize_input_keeps_shape():
    x = np.zeros((3, 8, 8, 1), np.float32)
    assert datasets.quantize_input(x, 1 / 255, -128).shape == (3, 8, 8, 1)


@given(
    st.lists(st.floats(-300, 300, width=32), min_size=1, max_size=20),
    st.floats(2.0**-10, 10.0, width=32),
    st.integers(-128, 127),
)
def test_quantize_input_matches_decimal_reference(xs, scale, zp):
    q = datasets.quantize_input(np.array(xs, np.float32), scale, zp)
    for xi, qi in zip(xs, q.tolist()):
        v = np.float32(xi) / np.float32(scale)  # float32 division, as in TFLite
        r = int(Decimal(float(v)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        assert qi == min(127, max(-128, r + zp))


def test_to_model_input_uses_model_params():
    model = SimpleNamespace(input_scale=np.float32(1 / 255), input_zero_point=-128)
    x = np.array([0.0, 1.0, 0.5, 0.25], np.float32)
    np.testing.assert_array_equal(
        datasets.to_model_input(model, x), datasets.quantize_input(x, 1 / 255, -128)
    )
    # 0.5 / float32(1/255) is 127.49999 in float32, so it rounds down.
    assert datasets.to_model_input(model, x).tolist() == [-128, 127, -1, -64]
    model = SimpleNamespace(input_scale=0.25, input_zero_point=3)
    assert datasets.to_model_input(model, [0.125, -0.125]).tolist() == [4, 2]


@given(st.integers(-300, 300), st.integers(-8, 3), st.integers(-128, 127))
def test_quantize_input_exact_ties_go_away_from_zero(k, e, zp):
    scale = 2.0**e
    x = (k + 0.5) * scale  # exactly half-way between two steps
    r = k + 1 if k >= 0 else k  # away from zero
    assert datasets.quantize_input(np.float32(x), scale, zp) == min(127, max(-128, r + zp))


@pytest.mark.parametrize("seed", [0, 3])
def test_pixel_scaling(seed):
    d = datasets.digits_split(seed)
    levels = np.unique(d["x_train"] * 16)
    np.testing.assert_array_equal(levels, np.round(levels))


def test_one_npz_reader_for_train_and_gen(tmp_path):
    """datasets.load_npz reads --data for `tinylora train` and `tinylora gen` alike."""
    model = tinylora.load_tflite(tinylora.example_model())
    rng = np.random.default_rng(3)
    real = rng.uniform(0, 16, (7,) + tuple(model.input_shape)).astype(np.float32)
    np.savez(tmp_path / "xy.npz", x=real, y=np.arange(7) % 10)
    xtr, ytr, xte, yte = datasets.load_npz(tmp_path / "xy.npz", model)
    np.testing.assert_array_equal(xtr, model.quantize(real))
    assert xtr.dtype == np.int8 and ytr.dtype == np.int64 and np.array_equal(xte, xtr) and np.array_equal(yte, ytr)
    x, y, note = project_plan._default_samples(model, "m.tflite", str(tmp_path / "xy.npz"), 5)
    np.testing.assert_array_equal(x, xtr[:5])
    assert y.tolist() == [0, 1, 2, 3, 4] and note == "the first 5 of xy.npz"
    np.savez(tmp_path / "bad.npz", x_train=real)
    with pytest.raises(tinylora.InputError, match=r"lacks \['y_train'\]"):
        datasets.load_npz(tmp_path / "bad.npz", model)
