/*
 * The training kernels' int8 dot products (tl_dot_s8, tl_dot4_s8) on edge lengths, offsets and
 * alignments: a program of its own, run on every target, with and without the DSP path
 * (-DTL_NO_DSP), by tests/test_kernel_blocks.py.
 *
 * Reports "T x" and "T w" (the int8 data, from a fixed xorshift seed, with -128 and 127 at
 * both ends), then one line "T dot_<case>" per case: n, offset, the x and w start indices,
 * tl_dot_s8 of x with the first row, and the four sums of tl_dot4_s8 (rows stride apart, each
 * accumulator starting from a known value, so "added to acc" is checked too). The test
 * recomputes every sum in Python from the reported data, modulo 2^32.
 */
#include "tl_kernels.h"
#include "tl_report.h"

#define TL_DOT_STRIDE 53 /* odd: rows start at every alignment */
#define TL_DOT_LEN (4 * TL_DOT_STRIDE + 8)

static uint32_t tl_dot_xorshift(uint32_t *s)
{
    uint32_t v = *s;
    v ^= v << 13;
    v ^= v >> 17;
    v ^= v << 5;
    *s = v;
    return v;
}

int main(void)
{
    static int8_t x[TL_DOT_LEN], w[TL_DOT_LEN];
    static const int32_t offsets[6] = { -128, -1, 0, 1, 17, 128 };
    uint32_t seed = 2026u;
    uint32_t index = 0u;
    int32_t i, n, k, start;
    for (i = 0; i < TL_DOT_LEN; ++i) {
        x[i] = (int8_t)((int32_t)(tl_dot_xorshift(&seed) >> 24) - 128);
        w[i] = (int8_t)((int32_t)(tl_dot_xorshift(&seed) >> 24) - 128);
    }
    x[0] = -128; /* the extremes, at aligned and unaligned positions */
    x[1] = 127;
    x[2] = -128;
    w[0] = -128;
    w[1] = -128;
    w[2] = 127;
    x[TL_DOT_STRIDE - 1] = -128;
    w[TL_DOT_STRIDE - 1] = -128;
    tl_report_s8("x", x, TL_DOT_LEN);
    tl_report_s8("w", w, TL_DOT_LEN);
    for (n = 0; n <= 45; ++n) {
        for (k = 0; k < 6; ++k) {
            for (start = 0; start < 4; ++start) {
                const int8_t *xs = x + start;
                const int8_t *ws = w + ((start + k) & 3);
                uint32_t acc[4] = { 1u, 0x7FFFFFFFu, 0x80000000u, 0xFFFFFFFFu };
                const uint32_t one = tl_dot_s8(xs, ws, n, offsets[k]);
                tl_dot4_s8(xs, ws, TL_DOT_STRIDE, n, offsets[k], acc);
                tl_report_begin("dot", index++);
                tl_report_put_i32(n);
                tl_report_put_i32(offsets[k]);
                tl_report_put_i32(start);
                tl_report_put_i32((start + k) & 3);
                tl_report_put_i32(tl_wrap32(one));
                for (i = 0; i < 4; ++i) {
                    tl_report_put_i32(tl_wrap32(acc[i]));
                }
                tl_report_end();
            }
        }
    }
    return tl_report_done();
}
