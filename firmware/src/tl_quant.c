/*
 * tinylora runtime: fixed-point rounding helpers (see tl_quant.h; spec: tinylora/quant.py).
 */
#include "tl_quant.h"

int32_t tl_srdhm(int32_t a, int32_t b)
{
    return tl_srdhm_inline(a, b);
}

int32_t tl_rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    return tl_rounding_divide_by_pot_inline(x, exponent);
}

int32_t tl_requantize(int32_t acc, int32_t multiplier, int32_t shift)
{
    return tl_requantize_inline(acc, multiplier, shift);
}

int32_t tl_requantize_single(int32_t acc, int32_t multiplier, int32_t shift)
{
    return tl_requantize_single_inline(acc, multiplier, shift);
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
    return tl_requantize_s8_inline(acc, multiplier, shift, output_offset, act_min, act_max);
}

int64_t tl_rounding_divide_by_pot64(int64_t x, int32_t exponent)
{
    const uint64_t mask = ((uint64_t)1 << exponent) - 1u;
    const uint64_t remainder = (uint64_t)x & mask;
    const uint64_t threshold = (mask >> 1) + (x < 0 ? 1u : 0u);
    return tl_floor_shift64(x, exponent) + (remainder > threshold ? 1 : 0);
}
