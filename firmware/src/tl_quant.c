/*
 * tinylora runtime: fixed-point rounding helpers (see tl_quant.h; spec: tinylora/quant.py).
 */
#include "tl_quant.h"

int32_t tl_srdhm(int32_t a, int32_t b)
{
    int64_t ab;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    /* |a*b| <= 2^62 - 2^31 here, so adding 2^30 cannot overflow and the result fits int32. */
    ab = (int64_t)a * (int64_t)b;
    return (int32_t)tl_floor_shift64(ab + ((int64_t)1 << 30), 31);
}

int32_t tl_rounding_divide_by_pot(int32_t x, int32_t exponent)
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

int32_t tl_requantize(int32_t acc, int32_t multiplier, int32_t shift)
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
    return tl_rounding_divide_by_pot(tl_srdhm(shifted, multiplier), right);
}

int32_t tl_requantize_single(int32_t acc, int32_t multiplier, int32_t shift)
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

int32_t tl_saturating_left_shift(int32_t x, int32_t exponent)
{
    int32_t threshold;
    if (exponent <= 0) {
        return x;
    }
    if (exponent > 31) {
        exponent = 31;
    }
    threshold = (int32_t)((1u << (31 - exponent)) - 1u);
    if (x > threshold) {
        return INT32_MAX;
    }
    if (x < -threshold) {
        return INT32_MIN;
    }
    /* |x| <= 2^(31-e) - 1, so x * 2^e fits: shift in uint32 and wrap back exactly. */
    return tl_wrap32((uint32_t)x << exponent);
}

int32_t tl_clz32(uint32_t x)
{
    int32_t n = 0;
    if (x == 0u) {
        return 32;
    }
    if (x < 0x00010000u) {
        n += 16;
        x <<= 16;
    }
    if (x < 0x01000000u) {
        n += 8;
        x <<= 8;
    }
    if (x < 0x10000000u) {
        n += 4;
        x <<= 4;
    }
    if (x < 0x40000000u) {
        n += 2;
        x <<= 2;
    }
    if (x < 0x80000000u) {
        n += 1;
    }
    return n;
}

int8_t tl_requantize_s8(int32_t acc, int32_t multiplier, int32_t shift, int32_t output_offset,
                        int32_t act_min, int32_t act_max)
{
    const int32_t y = tl_requantize(acc, multiplier, shift);
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

int64_t tl_rounding_divide_by_pot64(int64_t x, int32_t exponent)
{
    const uint64_t mask = ((uint64_t)1 << exponent) - 1u;
    const uint64_t remainder = (uint64_t)x & mask;
    const uint64_t threshold = (mask >> 1) + (x < 0 ? 1u : 0u);
    return tl_floor_shift64(x, exponent) + (remainder > threshold ? 1 : 0);
}
