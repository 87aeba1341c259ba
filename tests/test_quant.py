"""Fixed-point primitives against an independent formulation in Python's big integers."""
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tinylora.ref import quant

I32 = st.integers(quant.INT32_MIN, quant.INT32_MAX)
EDGE = st.sampled_from([quant.INT32_MIN, quant.INT32_MIN + 1, -1, 0, 1, quant.INT32_MAX,
                        quant.INT32_MAX - 1, 1 << 30, -(1 << 30)])
INT32_VALUES = st.one_of(EDGE, I32)


def wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def trunc_div(a: int, b: int) -> int:
    """C's integer division: truncate toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def srdhm_ref(a: int, b: int) -> int:
    # gemmlowp's formulation: a sign-dependent nudge, then a truncating division.
    if a == b == quant.INT32_MIN:
        return quant.INT32_MAX
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return trunc_div(ab + nudge, 1 << 31)


def round_half_away(v: Fraction) -> int:
    f = abs(v)
    n = int(f)  # floor for f >= 0
    if f - n >= Fraction(1, 2):
        n += 1
    return n if v >= 0 else -n


def rdbp_ref(x: int, e: int) -> int:
    return round_half_away(Fraction(x, 2**e))


def requant_double_ref(x: int, q: int, shift: int) -> int:
    left, right = max(shift, 0), max(-shift, 0)
    return rdbp_ref(srdhm_ref(wrap32(x * 2**left), q), right)


def requant_single_ref(x: int, q: int, shift: int) -> int:
    v = Fraction(x * q) * Fraction(2) ** (shift - 31) + Fraction(1, 2)
    r = v.numerator // v.denominator  # floor: ties toward +infinity
    return min(quant.INT32_MAX, max(quant.INT32_MIN, r))  # saturated


def quantize_multiplier_ref(m: float) -> tuple[int, int]:
    if m == 0:
        return 0, 0
    exact = Fraction(m)
    e = 0
    while exact / Fraction(2) ** e >= 1:
        e += 1
    while exact / Fraction(2) ** e < Fraction(1, 2):
        e -= 1
    q = round_half_away(exact / Fraction(2) ** e * 2**31)
    if q == 2**31:
        q, e = q // 2, e + 1
    return (0, 0) if e < -31 else (q, e)


@settings(max_examples=1000)
@given(INT32_VALUES, INT32_VALUES)
def test_srdhm(a, b):
    assert int(quant.srdhm(a, b)) == srdhm_ref(a, b)


def test_srdhm_saturates_only_at_int32_min_squared():
    assert int(quant.srdhm(quant.INT32_MIN, quant.INT32_MIN)) == quant.INT32_MAX
    assert int(quant.srdhm(quant.INT32_MIN, quant.INT32_MAX)) == srdhm_ref(quant.INT32_MIN, quant.INT32_MAX)


@given(INT32_VALUES, st.integers(0, 31))
def test_rounding_divide_by_pot(x, e):
    assert int(quant.rounding_divide_by_pot(x, e)) == rdbp_ref(x, e)


def test_rounding_divide_by_pot_every_shift_vectorised():
    xs = np.array([quant.INT32_MIN, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, quant.INT32_MAX], np.int64)
    for e in range(32):
        got = quant.rounding_divide_by_pot(xs, e)
        assert got.tolist() == [rdbp_ref(int(x), e) for x in xs], e


@settings(max_examples=1000)
@given(INT32_VALUES, st.integers(1 << 30, quant.INT32_MAX), st.integers(-31, 30))
def test_requantize_double(x, q, shift):
    assert int(quant.requantize(x, q, shift)) == requant_double_ref(x, q, shift)


@settings(max_examples=1000)
@given(INT32_VALUES, st.integers(0, quant.INT32_MAX), st.integers(-80, 40))
def test_requantize_single(x, q, shift):
    assert int(quant.requantize(x, q, shift, rounding="single")) == requant_single_ref(x, q, shift)


def test_requantize_broadcasts_per_channel():
    acc = np.arange(-600, 600, 7, dtype=np.int64).reshape(-1, 1) * np.array([1, 3, 17])
    mult = np.array([1 << 30, 1518500250, quant.INT32_MAX])
    shift = np.array([-3, 0, 2])
    got = quant.requantize(acc, mult, shift)
    want = [[requant_double_ref(int(v), int(m), int(s)) for v, m, s in zip(row, mult, shift)]
            for row in acc]
    assert got.tolist() == want


@given(st.floats(min_value=0, max_value=2.0**40, allow_nan=False, allow_infinity=False)
       | st.floats(min_value=1e-30, max_value=1e-8))
def test_quantize_multiplier(m):
    assert quant.quantize_multiplier(m) == quantize_multiplier_ref(m)


def test_quantize_multiplier_edges():
    assert quant.quantize_multiplier(1.0) == (1 << 30, 1)
    assert quant.quantize_multiplier(0.5) == (1 << 30, 0)
    # q rounds up to 2^31: halve and bump the exponent
    assert quant.quantize_multiplier(np.nextafter(1.0, 0)) == (1 << 30, 1)
    assert quant.quantize_multiplier(2.0**-40) == (0, 0)
    assert quant.quantize_multiplier(0.0) == (0, 0)


def test_real_multiplier_forming_rule():
    # all in double: double(in) * double(w) / double(out), never a float32 product first
    i, w, o = 0.0123, 0.00456, 0.0789
    want = float(np.float32(i)) * float(np.float32(w)) / float(np.float32(o))
    assert quant.real_multipliers(i, [w], o)[0] == want


@given(st.sampled_from(["NONE", "RELU", "RELU6"]),
       st.floats(1e-4, 1.0), st.integers(-128, 127))
def test_activation_range_contains_zero_point_clamp(act, scale, zp):
    lo, hi = quant.activation_range(act, scale, zp)
    assert -128 <= lo and hi <= 127
    if act != "NONE":
        assert lo == max(-128, zp)
    if act == "RELU6":
        assert hi == min(127, zp + round_half_away(Fraction(float(np.float32(6.0) / np.float32(scale)))))


@given(st.lists(INT32_VALUES, min_size=1, max_size=20), st.integers(1 << 30, quant.INT32_MAX),
       st.integers(-31, 30), st.integers(-128, 127))
def test_requantize_to_int8_saturates(acc, q, shift, zp):
    got = quant.requantize_to_int8(np.array(acc), q, shift, zp, -128, 127)
    want = [min(127, max(-128, requant_double_ref(a, q, shift) + zp)) for a in acc]
    assert got.dtype == np.int8 and got.tolist() == want
