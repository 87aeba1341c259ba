/*
 * Test doubles of CMSIS-NN and ESP-NN: the arithmetic both share, written from the documented
 * semantics (TFLM's int8 reference: accumulate (x + input_offset) * (w + filter_offset) and the
 * bias in 32 bits, MultiplyByQuantizedMultiplier with gemmlowp's double rounding, add the
 * output offset, clamp) and deliberately NOT from firmware/tl_quant.c, so that a shared mistake
 * cannot hide. Formulation: the nudged high multiply divides by 2^31 truncating toward zero and
 * the rounding shift rounds half away from zero on magnitudes (tl_quant.c uses floor shifts and
 * masks instead).
 *
 * Also the bookkeeping the tests read: call counters and contract violations, reported by the
 * tl_fake_report runner as "T fake_0 <int32 x FAKE_COUNTERS>".
 */
#ifndef TL_FAKE_COMMON_H
#define TL_FAKE_COMMON_H

#include <stddef.h>
#include <stdint.h>

enum {
    FAKE_FC = 0,          /* per-tensor fully connected calls */
    FAKE_FC_PER_CHANNEL,  /* per-channel fully connected calls */
    FAKE_CONV,            /* convolution calls */
    FAKE_DEPTHWISE,       /* depthwise convolution calls */
    FAKE_VIOLATIONS,      /* calls that broke the documented contract */
    FAKE_SCRATCH_CALLS,   /* calls that were given (and used) scratch memory */
    FAKE_COUNTERS
};

extern int32_t fake_counts[FAKE_COUNTERS];

/* a * b * 2 / 2^32 with gemmlowp's nudge: +2^30 for a non-negative product, 1 - 2^30 for a
 * negative one, then a division by 2^31 that truncates toward zero. */
static inline int32_t fake_high_mul(int32_t a, int32_t b)
{
    int64_t prod, num;
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    prod = (int64_t)a * (int64_t)b;
    num = prod + (prod >= 0 ? ((int64_t)1 << 30) : (int64_t)1 - ((int64_t)1 << 30));
    /* truncation toward zero, on magnitudes (no 64-bit division: the Xtensa target lacks it) */
    return (int32_t)(num >= 0 ? num >> 31 : -((-num) >> 31));
}

/* x / 2^e rounded half away from zero (gemmlowp RoundingDivideByPOT). */
static inline int32_t fake_round_shift(int32_t x, int32_t e)
{
    int64_t mag;
    if (e <= 0) {
        return x;
    }
    if (e > 62) {
        e = 62;
    }
    mag = x < 0 ? -(int64_t)x : (int64_t)x;
    mag = (mag + ((int64_t)1 << (e - 1))) >> e;
    return (int32_t)(x < 0 ? -mag : mag);
}

/* TFLM MultiplyByQuantizedMultiplier: shift > 0 multiplies by 2^shift first (wrapping, as the
 * libraries' int32 arithmetic does), shift < 0 divides afterwards. */
static inline int32_t fake_requantize(int32_t acc, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const uint32_t scaled = left < 32 ? (uint32_t)acc << left : 0u;
    return fake_round_shift(fake_high_mul((int32_t)scaled, multiplier), right);
}

/* requantize, add the output offset, clamp to [act_min, act_max] */
static inline int8_t fake_output(uint32_t acc, int32_t multiplier, int32_t shift, int32_t out_offset,
                                 int32_t act_min, int32_t act_max)
{
    int64_t y = (int64_t)fake_requantize((int32_t)acc, multiplier, shift) + out_offset;
    if (y < act_min) {
        y = act_min;
    }
    if (y > act_max) {
        y = act_max;
    }
    return (int8_t)y;
}

/* one product of the accumulation, wrapping like the libraries' int32 sums */
static inline uint32_t fake_mac(uint32_t acc, int32_t x, int32_t in_offset, int32_t w,
                                int32_t w_offset)
{
    return acc + (uint32_t)((x + in_offset) * (w + w_offset));
}

#endif /* TL_FAKE_COMMON_H */
