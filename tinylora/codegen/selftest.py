"""Self-test programs for the C runtime: fixed-point edge tables and a test ``main``.

:class:`QuantCases` holds tables of int32 edge values; :meth:`QuantCases.c_source` renders a C
file whose ``tl_quant_cases()`` evaluates every runtime primitive on them (``tl_srdhm``,
``tl_rounding_divide_by_pot``, ``tl_requantize``, ``tl_requantize_single``,
``tl_saturating_left_shift``, ``tl_clz32``, the softmax exponential and reciprocal) and
prints the results; :meth:`QuantCases.expected` computes the same lines with the numpy
specification (``tinylora.quant``, ``tinylora.softmax``). :func:`runner_main_c` renders the
``main`` that runs the quant cases and any number of generated model test runners.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinylora.codegen import c_array_rows, c_identifier, provenance, render
from tinylora.ref import quant, softmax

__all__ = ["QuantCases", "runner_main_c", "STATUS_CASES_SOURCE", "TL_STATUS_CASES_EXPECTED"]

#: Hand-written argument-checking cases (``firmware/testing/tl_status_cases.c``): the
#: tl_status values its ``status_0`` line must hold (0 OK, 1 NULL, 2 SHAPE, 3 PARAM).
STATUS_CASES_SOURCE = "testing/tl_status_cases.c"
TL_STATUS_CASES_EXPECTED = (0, 1, 3, 3, 2, 0, 3, 2, 0, 2, 3)

INT32_MIN, INT32_MAX = quant.INT32_MIN, quant.INT32_MAX


def _i32(values) -> np.ndarray:
    return np.asarray(values, np.int64)


@dataclass
class QuantCases:
    """Edge tables; every array holds int32 values."""
    xs: np.ndarray              # accumulators / operands
    multipliers: np.ndarray
    shifts_double: np.ndarray   # every shift of tl_requantize to check
    shifts_single: np.ndarray   # every shift of tl_requantize_single to check
    exponents: np.ndarray       # tl_rounding_divide_by_pot exponents
    exp_inputs: np.ndarray      # Q5.26 values <= 0 for exp_on_negative_values
    recip_inputs: np.ndarray    # Q0 values for one_over_one_plus_x_for_x_in_0_1

    @classmethod
    def default(cls, seed: int = 0) -> QuantCases:
        rng = np.random.default_rng(seed)
        edges = [INT32_MIN, INT32_MIN + 1, -(2**30) - 1, -(2**30), -65536, -32769, -255, -2, -1,
                 0, 1, 2, 127, 255, 32768, 2**30, 2**30 + 1, INT32_MAX - 1, INT32_MAX]
        xs = edges + rng.integers(INT32_MIN, INT32_MAX, 5, endpoint=True).tolist()
        mults = [INT32_MIN, -1, 0, 1, 2**30, 2**30 + 1, 1518500250, INT32_MAX - 1, INT32_MAX]
        mults += rng.integers(2**30, INT32_MAX, 3, endpoint=True).tolist()
        shifts_single = list(range(-70, 71)) + [INT32_MIN, -1000, 1000, INT32_MAX]
        exp_inputs = ([0, -1, -2, -(2**24) + 1, -(2**24), -(2**24) - 1, -(2**26), -(31 * 2**26),
                       -(2**31) + 1, INT32_MIN]
                      + rng.integers(-(32 * 2**26), 0, 54).tolist())
        recip_inputs = ([0, 1, 2, 2**30, 2**31 - 2, INT32_MAX, -1, INT32_MIN]
                        + rng.integers(0, INT32_MAX, 56).tolist())
        return cls(_i32(xs), _i32(mults), np.arange(-40, 41), _i32(shifts_single),
                   np.arange(0, 41), _i32(exp_inputs), _i32(recip_inputs))

    @property
    def count(self) -> int:
        """Number of int32 results the program prints."""
        n, m = self.xs.size, self.multipliers.size
        return (n * n + n * self.exponents.size + m * n * (self.shifts_double.size
                + self.shifts_single.size) + n * 31 + n + self.exp_inputs.size
                + self.recip_inputs.size)

    def c_source(self, command: str | None = None) -> str:
        arrays = [("xs", self.xs), ("multipliers", self.multipliers),
                  ("shifts_double", self.shifts_double), ("shifts_single", self.shifts_single),
                  ("exponents", self.exponents), ("exp_inputs", self.exp_inputs),
                  ("recip_inputs", self.recip_inputs)]
        return render("c/quant_cases.c.j2",
                      header=provenance("tinylora.codegen.selftest.QuantCases.c_source", command,
                                        [f"{self.count} int32 results, compared with tinylora.quant "
                                         "and tinylora.softmax."]),
                      arrays=[{"name": f"tl_qc_{name}", "size": int(values.size),
                               "rows": c_array_rows(values, 8)} for name, values in arrays])

    def expected(self) -> dict[str, np.ndarray]:
        """name -> int32 values, as the C program reports them, from the numpy spec."""
        out: dict[str, np.ndarray] = {}
        xs, ms = self.xs, self.multipliers
        for i, a in enumerate(xs):
            out[f"srdhm_{i:x}"] = quant.srdhm(a, xs)
            out[f"rdbp_{i:x}"] = quant.rounding_divide_by_pot(a, self.exponents)
            out[f"sls_{i:x}"] = np.array([quant.saturating_left_shift(a, e) for e in range(1, 32)])
        for k, m in enumerate(ms):
            for j, s in enumerate(self.shifts_double):
                out[f"rqd_{k * self.shifts_double.size + j:x}"] = quant.requantize(xs, m, s, "double")
            for j, s in enumerate(self.shifts_single):
                out[f"rqs_{k * self.shifts_single.size + j:x}"] = quant.requantize(xs, m, s, "single")
        out["clz_0"] = softmax._count_leading_zeros32(xs)
        out["exp_0"] = softmax.exp_on_negative_values(self.exp_inputs)
        out["recip_0"] = softmax.one_over_one_plus_x_for_x_in_0_1(self.recip_inputs)
        return {k: np.asarray(v, np.int64).reshape(-1) for k, v in out.items()}


def runner_main_c(runners: list[str], quant_cases: bool = True, command: str | None = None) -> str:
    """A ``main`` that calls ``tl_quant_cases()`` and ``tl_status_cases()`` (with
    ``quant_cases``; link :meth:`QuantCases.c_source` and ``firmware/`` +
    :data:`STATUS_CASES_SOURCE`), then each ``<runner>()`` in order, then ``tl_report_done()``."""
    return render("c/runner_main.c.j2",
                  header=provenance("tinylora.codegen.selftest.runner_main_c", command),
                  runners=[c_identifier(r) for r in runners], quant_cases=quant_cases)
