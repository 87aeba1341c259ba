/*
 * tinylora runtime: the one fixed-point rounding helper family.
 *
 * These functions are the C form of tinylora/quant.py (the specification) and give the same
 * int32 results for every int32 input. They use no float and no division, have no undefined
 * behaviour for any argument (signed overflow is avoided by computing wrapping steps in
 * uint32, and arithmetic right shifts are written portably), and need int64 only for the
 * 32x32-bit products.
 *
 *   tl_srdhm(a, b)                      saturating rounding doubling high multiply:
 *                                       (a*b + 2^30) >> 31 (floor shift, ties toward +inf);
 *                                       INT32_MIN * INT32_MIN saturates to INT32_MAX.
 *   tl_rounding_divide_by_pot(x, e)     x / 2^e, ties away from zero.
 *   tl_requantize(acc, m, s)            TFLM's "double rounding": the left part of s wraps
 *                                       modulo 2^32, then srdhm, then a rounding right shift.
 *   tl_requantize_single(acc, m, s)     one rounding of the exact 64-bit product, ties toward
 *                                       +inf, saturated to int32, for ANY shift s.
 */
#ifndef TL_QUANT_H
#define TL_QUANT_H

#include "tl_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Saturating rounding doubling high multiply (gemmlowp's SaturatingRoundingDoublingHighMul). */
int32_t tl_srdhm(int32_t a, int32_t b);

/* x / 2^exponent rounded half away from zero. The specified range is exponent in [0, 31];
 * exponent <= 0 returns x, and exponent >= 32 gives what quant.py's int64 arithmetic gives
 * (0, or -1 for x == INT32_MIN and exponent == 32), which int8 softmax rows of 256 or more
 * values reach. */
int32_t tl_rounding_divide_by_pot(int32_t x, int32_t exponent);

/* Double-rounding requantization (TFLM / CMSIS-NN / ESP-NN default), bit-exact with
 * quant.requantize(acc, multiplier, shift, "double"): shift > 0 shifts left first (wrapping
 * modulo 2^32), shift < 0 is the rounding right shift after the high multiply. Meant for
 * shift in [-31, 30] (what quantize_multiplier produces); it is defined for every shift and
 * equals quant.py for |shift| <= 40 too (left shifts of 32 or more leave 0; right shifts
 * behave as tl_rounding_divide_by_pot). */
int32_t tl_requantize(int32_t acc, int32_t multiplier, int32_t shift);

/* Single-rounding requantization, bit-exact with quant.requantize(..., "single"):
 * (acc*multiplier + 2^(30-shift)) >> (31-shift) on the exact 64-bit product, saturated to
 * int32; when 31 - shift <= 0 the product is shifted left with saturation. Any shift. */
int32_t tl_requantize_single(int32_t acc, int32_t multiplier, int32_t shift);

/* x * 2^exponent saturated to int32 as gemmlowp's SaturatingRoundingMultiplyByPOT does it
 * (quant.saturating_left_shift): x > 2^(31-e) - 1 gives INT32_MAX, x < -(2^(31-e) - 1) gives
 * INT32_MIN. exponent in [1, 31]; exponent <= 0 returns x. */
int32_t tl_saturating_left_shift(int32_t x, int32_t exponent);

/* Count of leading zero bits of a 32-bit value (32 for 0). */
int32_t tl_clz32(uint32_t x);

/* The tail of every int8 kernel: tl_requantize, add the output offset (zero point) and clamp
 * to [act_min, act_max] (quant.requantize_to_int8 with double rounding). Needs
 * act_min <= act_max; no intermediate step can overflow. */
int8_t tl_requantize_s8(int32_t acc, int32_t multiplier, int32_t shift, int32_t output_offset,
                        int32_t act_min, int32_t act_max);

/* Two's complement wrap helpers (the C form of quant.wrap_int32), free of signed overflow
 * and of the implementation-defined uint32 -> int32 conversion; compilers reduce them to
 * nothing (tl_wrap32) or one add (tl_add_wrap). Inline: they sit in inner loops. */
static inline int32_t tl_wrap32(uint32_t x)
{
    return x <= (uint32_t)INT32_MAX ? (int32_t)x : -(int32_t)(~x) - 1;
}

static inline int32_t tl_add_wrap(int32_t a, int32_t b)
{
    return tl_wrap32((uint32_t)a + (uint32_t)b);
}

/* x / 2^exponent rounded half away from zero on int64 (quant.rounding_divide_by_pot on int64
 * values), exponent in [1, 63]. */
int64_t tl_rounding_divide_by_pot64(int64_t x, int32_t exponent);

/* uint64 -> int64 two's complement, without the implementation-defined conversion. */
static inline int64_t tl_wrap64(uint64_t x)
{
    return x <= (uint64_t)INT64_MAX ? (int64_t)x : -(int64_t)(~x) - 1;
}

/* Arithmetic (floor) right shifts written without implementation-defined behaviour:
 * for v < 0, ~v = -v - 1 >= 0 and floor(v / 2^n) = ~(~v >> n). Compilers emit one shift.
 * n in [0, width - 1]. */
static inline int32_t tl_floor_shift32(int32_t v, int32_t n)
{
    return v >= 0 ? (v >> n) : ~(~v >> n);
}

static inline int64_t tl_floor_shift64(int64_t v, int32_t n)
{
    return v >= 0 ? (v >> n) : ~(~v >> n);
}

/* Saturation: int64 -> int32, int64 -> int16, int32 -> int8 within [lo, hi]. */
static inline int32_t tl_sat32_64(int64_t v)
{
    return v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : (int32_t)v);
}

static inline int16_t tl_sat16_64(int64_t v)
{
    return (int16_t)(v < INT16_MIN ? INT16_MIN : (v > INT16_MAX ? INT16_MAX : v));
}

static inline int8_t tl_sat8(int32_t v, int32_t lo, int32_t hi)
{
    return (int8_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* The inline bodies of tl_srdhm, tl_rounding_divide_by_pot, tl_requantize,
 * tl_requantize_single and tl_requantize_s8: the extern functions above are one-line wrappers
 * of these, so there is one implementation. Kernels call the inline forms in their per-output
 * tails, where the call chain (requantize_s8 -> requantize -> srdhm, rounding divide) cost as
 * much as the multiply-accumulates of a small layer. */
static inline int32_t tl_srdhm_inline(int32_t a, int32_t b)
{
    const int64_t ab = (int64_t)a * (int64_t)b;
    /* a*b == 2^62 only for a == b == INT32_MIN (tested after the multiply: one SMULL, no
     * branch before it). Otherwise |a*b| <= 2^62 - 2^31, so adding 2^30 cannot overflow and
     * the result fits int32. */
    if (ab == ((int64_t)1 << 62)) {
        return INT32_MAX;
    }
    return (int32_t)tl_floor_shift64(ab + ((int64_t)1 << 30), 31);
}

static inline int32_t tl_rounding_divide_by_pot_inline(int32_t x, int32_t exponent)
{
    uint32_t mask, remainder, threshold;
    if (exponent <= 0) {
        return x;
    }
    if (exponent >= 32) {
        /* quant.py in int64: floor(x / 2^e) is 0 or -1 and the remainder test adds 1 back,
         * except x == INT32_MIN at e == 32 (remainder exactly at the threshold). */
        return (exponent == 32 && x == INT32_MIN) ? -1 : 0;
    }
    mask = 0xFFFFFFFFu >> (32 - exponent);
    remainder = (uint32_t)x & mask;
    threshold = (mask >> 1) + (x < 0 ? 1u : 0u);
    /* floor(x / 2^e) + 1 <= INT32_MAX / 2 + 1: no overflow. */
    return tl_floor_shift32(x, exponent) + (remainder > threshold ? 1 : 0);
}

static inline int32_t tl_requantize_inline(int32_t acc, int32_t multiplier, int32_t shift)
{
    int32_t shifted;
    int32_t right;
    if (shift > 0) {
        /* quant.py: wrap_int32(acc << left); a left shift of 32 or more leaves no low bits. */
        shifted = shift >= 32 ? 0 : tl_wrap32((uint32_t)acc << shift);
        right = 0;
    } else {
        shifted = acc;
        right = shift < -40 ? 40 : -shift; /* every right shift >= 33 gives the same value */
    }
    return tl_rounding_divide_by_pot_inline(tl_srdhm_inline(shifted, multiplier), right);
}

static inline int32_t tl_requantize_single_inline(int32_t acc, int32_t multiplier, int32_t shift)
{
    /* |acc|, |multiplier| <= 2^31: the product is exact in int64. */
    const int64_t prod = (int64_t)acc * (int64_t)multiplier;
    const int64_t total = (int64_t)31 - (int64_t)shift; /* the right shift; <= 0: left */
    if (total >= 1) {
        int32_t right;
        if (total > 62) {
            return 0;
        }
        right = (int32_t)total;
        /* |prod| <= 2^62 and the rounding term <= 2^61: no overflow. */
        return tl_sat32_64(tl_floor_shift64(prod + ((int64_t)1 << (right - 1)), right));
    } else {
        const int32_t left = total < -32 ? 32 : (int32_t)(-total);
        const int64_t limit = (int64_t)INT32_MAX >> left;
        if (prod > limit) {
            return INT32_MAX;
        }
        if (prod < -limit - 1) {
            return INT32_MIN;
        }
        /* |prod * 2^left| <= 2^32 here: exact in int64, then saturated (only left == 32
         * with prod == -1 leaves the int32 range). */
        return tl_sat32_64(prod * ((int64_t)1 << left));
    }
}

static inline int8_t tl_requantize_s8_inline(int32_t acc, int32_t multiplier, int32_t shift,
                                             int32_t output_offset, int32_t act_min,
                                             int32_t act_max)
{
    const int32_t y = tl_requantize_inline(acc, multiplier, shift);
    /* clip(y + offset, act_min, act_max) with the comparison moved to the small side, so
     * y + offset is only formed when it lies inside the int8 clamp. */
    if (y > act_max - output_offset) {
        return (int8_t)act_max;
    }
    if (y < act_min - output_offset) {
        return (int8_t)act_min;
    }
    return (int8_t)(y + output_offset);
}

#ifdef __cplusplus
}
#endif

#endif /* TL_QUANT_H */
