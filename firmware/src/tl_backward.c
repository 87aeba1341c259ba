/*
 * tinylora runtime: the backward of the frozen ops (see tl_backward.h; spec:
 * docs/numerics.md section 4b and tinylora/ref/backward_ops.py).
 *
 * No float, no division, no allocation. Output gradients are 15-bit mantissas; a product
 * with an int8 weight or a Q14 derivative stays below 2^31, and every sum of them is formed
 * in the width the caller's scratch has (int64 for CONV_2D; int32 where the generator has
 * checked the bound), so nothing wraps.
 */
#include "tl_backward.h"

#include "tl_train.h"

/* ------------------------------------------------------------------ normalization */

static uint64_t tl_bw_mag(int64_t v)
{
    return v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
}

/* lora.normalize's exponent for a peak magnitude: bit_length(peak) - 15 (0 for 0). */
static int32_t tl_bw_exponent(uint64_t peak)
{
    const uint32_t high = (uint32_t)(peak >> 32);
    int32_t bits;
    if (peak == 0u) {
        return 0;
    }
    bits = high != 0u ? 64 - tl_clz32(high) : 32 - tl_clz32((uint32_t)peak);
    return bits - TL_BACKWARD_GRAD_BITS;
}

static int16_t tl_bw_value(int64_t x, int32_t e)
{
    return (int16_t)tl_normalize_value(x, e, TL_BACKWARD_GRAD_BITS);
}

/* normalize15 of an int32 scratch into int16 mantissas. */
static void tl_bw_normalize32(const int32_t *dx, int32_t n, int32_t exponent, int16_t *grad_in,
                              int32_t *grad_in_exponent)
{
    uint32_t peak = 0u;
    int32_t i, e;
    for (i = 0; i < n; ++i) {
        const uint32_t m = dx[i] < 0 ? 0u - (uint32_t)dx[i] : (uint32_t)dx[i];
        peak = m > peak ? m : peak;
    }
    e = tl_bw_exponent(peak);
    if (e <= 0) { /* |dx| < 2^(15 + e): an exact shift up */
        const int32_t scale = (int32_t)1 << -e;
        for (i = 0; i < n; ++i) {
            grad_in[i] = (int16_t)(dx[i] * scale);
        }
    } else { /* e in [1, 17]: tl_rounding_divide_by_pot (half away from zero) inline, then
              * tl_normalize_value's saturation */
        const uint32_t mask = 0xFFFFFFFFu >> (32 - e), half = mask >> 1;
        for (i = 0; i < n; ++i) {
            const int32_t x = dx[i];
            const uint32_t threshold = half + (x < 0 ? 1u : 0u);
            const int32_t m = tl_floor_shift32(x, e) + (((uint32_t)x & mask) > threshold ? 1 : 0);
            grad_in[i] = (int16_t)(m > 32767 ? 32767 : (m < -32767 ? -32767 : m));
        }
    }
    *grad_in_exponent = exponent + e;
}

static tl_status tl_bw_check_out(const void *grad, const void *grad_in,
                                 const int32_t *grad_in_exponent)
{
    return (grad == NULL || grad_in == NULL || grad_in_exponent == NULL) ? TL_ERR_NULL : TL_OK;
}

/* ------------------------------------------------------------------ the clamp */

tl_status tl_clamp_mask_s16(const tl_clamp_params *p, int32_t n, const int8_t *output,
                            int16_t *grad)
{
    int32_t i;
    if (p == NULL || output == NULL || grad == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    for (i = 0; i < n; ++i) {
        const int32_t y = output[i], g = grad[i];
        if ((y == p->act_min && (p->act_min_is_activation || g > 0)) ||
            (y == p->act_max && (p->act_max_is_activation || g < 0))) {
            grad[i] = 0;
        }
    }
    return TL_OK;
}

/* ------------------------------------------------------------------ convolutions */

static tl_status tl_check_conv(const tl_conv_backward_params *p, int depthwise)
{
    if (p == NULL || p->weights == NULL || p->ratio.multiplier == NULL || p->ratio.shift == NULL) {
        return TL_ERR_NULL;
    }
    if (p->in_h < 1 || p->in_w < 1 || p->in_c < 1 || p->out_h < 1 || p->out_w < 1 || p->out_c < 1 ||
        p->kernel_h < 1 || p->kernel_w < 1) {
        return TL_ERR_SHAPE;
    }
    if (p->stride_h < 1 || p->stride_w < 1 || p->dilation_h < 1 || p->dilation_w < 1 ||
        p->pad_h < 0 || p->pad_w < 0) {
        return TL_ERR_PARAM;
    }
    if ((int64_t)p->in_h * p->in_w * p->in_c > INT32_MAX ||
        (int64_t)p->out_h * p->out_w * p->out_c > INT32_MAX) {
        return TL_ERR_SHAPE;
    }
    if (depthwise) {
        if (p->depth_multiplier < 1 || (int64_t)p->in_c * p->depth_multiplier != p->out_c) {
            return TL_ERR_SHAPE;
        }
        if ((int64_t)p->kernel_h * p->kernel_w * p->depth_multiplier >= 512) {
            return TL_ERR_UNSUPPORTED; /* the int32 sum could pass 2^31 */
        }
    }
    return TL_OK;
}

tl_status tl_conv_backward_s16(const tl_conv_backward_params *p, const int16_t *grad,
                               int32_t exponent, int64_t *dx, int16_t *grad_in,
                               int32_t *grad_in_exponent)
{
    int32_t oy, ox, co, i, j, ci, n;
    tl_status s = tl_check_conv(p, 0);
    if (s == TL_OK) {
        s = tl_bw_check_out(grad, grad_in, grad_in_exponent);
    }
    if (s != TL_OK || dx == NULL) {
        return s != TL_OK ? s : TL_ERR_NULL;
    }
    n = p->in_h * p->in_w * p->in_c;
    for (i = 0; i < n; ++i) {
        dx[i] = 0;
    }
    for (oy = 0; oy < p->out_h; ++oy) {
        for (ox = 0; ox < p->out_w; ++ox) {
            const int16_t *g =
                grad + ((size_t)oy * (size_t)p->out_w + (size_t)ox) * (size_t)p->out_c;
            for (co = 0; co < p->out_c; ++co) {
                /* |gs| <= 2^15 (a ratio <= 1), |w| <= 128: each product below 2^23 */
                const int32_t gs =
                    tl_requantize_single(g[co], p->ratio.multiplier[co], p->ratio.shift[co]);
                const int8_t *w = p->weights + (size_t)co * (size_t)p->kernel_h *
                                                   (size_t)p->kernel_w * (size_t)p->in_c;
                if (gs == 0) {
                    continue;
                }
                for (i = 0; i < p->kernel_h; ++i) {
                    const int32_t y = oy * p->stride_h + i * p->dilation_h - p->pad_h;
                    if (y < 0 || y >= p->in_h) {
                        continue;
                    }
                    for (j = 0; j < p->kernel_w; ++j) {
                        const int32_t x = ox * p->stride_w + j * p->dilation_w - p->pad_w;
                        const int8_t *wr =
                            w + ((size_t)i * (size_t)p->kernel_w + (size_t)j) * (size_t)p->in_c;
                        int64_t *d;
                        if (x < 0 || x >= p->in_w) {
                            continue;
                        }
                        d = dx + ((size_t)y * (size_t)p->in_w + (size_t)x) * (size_t)p->in_c;
                        for (ci = 0; ci < p->in_c; ++ci) {
                            d[ci] += gs * (int32_t)wr[ci];
                        }
                    }
                }
            }
        }
    }
    s = tl_normalize_s16(dx, n, grad_in, grad_in_exponent);
    *grad_in_exponent += exponent;
    return s;
}

int32_t tl_depthwise_dx_words(int32_t in_h, int32_t in_w, int32_t in_c)
{
    const int64_t row = (int64_t)in_w * in_c, whole = row * in_h;
    const int64_t row_path = row + ((int64_t)in_h + (whole + 7) / 8 + 3) / 4;
    return (int32_t)(whole <= row_path ? whole : row_path);
}

/* Input row y's int32 sums d[in_w][in_c], gathered from the output rows that read it (the
 * same products as the scatter over outputs; integer sums in any order are equal). */
static void tl_dw_row(const tl_conv_backward_params *p, const int16_t *grad, int32_t y, int32_t *d)
{
    const int32_t mult = p->depth_multiplier;
    int32_t ox, ci, co, m, i, j;
    for (ci = 0; ci < p->in_w * p->in_c; ++ci) {
        d[ci] = 0;
    }
    for (i = 0; i < p->kernel_h; ++i) {
        const int32_t t = y + p->pad_h - i * p->dilation_h; /* = oy * stride_h for a reader */
        int32_t oy = 0;
        while (oy < p->out_h && oy * p->stride_h < t) { /* no division: lx106 has none */
            ++oy;
        }
        if (t < 0 || oy >= p->out_h || oy * p->stride_h != t) {
            continue;
        }
        for (ox = 0; ox < p->out_w; ++ox) {
            const int16_t *g =
                grad + ((size_t)oy * (size_t)p->out_w + (size_t)ox) * (size_t)p->out_c;
            for (j = 0; j < p->kernel_w; ++j) {
                const int32_t x = ox * p->stride_w + j * p->dilation_w - p->pad_w;
                const int8_t *w =
                    p->weights + ((size_t)i * (size_t)p->kernel_w + (size_t)j) * (size_t)p->out_c;
                int32_t *dr;
                if (x < 0 || x >= p->in_w) {
                    continue;
                }
                dr = d + (size_t)x * (size_t)p->in_c;
                /* output channel co = ci * mult + m reads input channel ci only: at most
                 * kernel_h * kernel_w * mult < 512 products below 2^22 meet in a sum */
                if (mult == 1) {
                    for (ci = 0; ci + 4 <= p->in_c; ci += 4) { /* four channels a turn */
                        dr[ci] += (int32_t)g[ci] * (int32_t)w[ci];
                        dr[ci + 1] += (int32_t)g[ci + 1] * (int32_t)w[ci + 1];
                        dr[ci + 2] += (int32_t)g[ci + 2] * (int32_t)w[ci + 2];
                        dr[ci + 3] += (int32_t)g[ci + 3] * (int32_t)w[ci + 3];
                    }
                    for (; ci < p->in_c; ++ci) {
                        dr[ci] += (int32_t)g[ci] * (int32_t)w[ci];
                    }
                } else {
                    for (ci = 0, co = 0; ci < p->in_c; ++ci) {
                        for (m = 0; m < mult; ++m, ++co) {
                            dr[ci] += (int32_t)g[co] * (int32_t)w[co];
                        }
                    }
                }
            }
        }
    }
}

/* The row-at-a-time normalize15 (the LoRA input gradient's scheme, tl_train.c tl_dx_rows):
 * per row s = max(0, bit_length(row peak) - 15) in a byte; per value v = |d| >> (s - 1)
 * (|d| << 1 when s = 0, below 2^16) in grad_in's bytes and its sign in a bit; then with the
 * whole tensor's exponent ex: m = |d| << -ex (ex <= 0) or min(((v >> (ex - s)) + 1) >> 1,
 * 2^15 - 1), the bits round-half-away-from-zero reads. */
static void tl_dw_rows(const tl_conv_backward_params *p, const int16_t *grad, int32_t *dx,
                       int16_t *grad_in, int32_t *ex)
{
    const int32_t len = p->in_w * p->in_c;
    uint8_t *row_shift = (uint8_t *)(dx + len);
    uint8_t *sign = row_shift + p->in_h;
    uint32_t all = 0u;
    int32_t y, k, bit;
    for (k = 0; k < (int32_t)(((int64_t)len * p->in_h + 7) / 8); ++k) {
        sign[k] = 0u;
    }
    for (y = 0, bit = 0; y < p->in_h; ++y) {
        uint16_t *v = (uint16_t *)(grad_in + (size_t)y * (size_t)len);
        uint32_t peak = 0u;
        int32_t sh;
        tl_dw_row(p, grad, y, dx);
        for (k = 0; k < len; ++k) {
            const uint32_t m = dx[k] < 0 ? 0u - (uint32_t)dx[k] : (uint32_t)dx[k];
            peak = m > peak ? m : peak;
        }
        sh = peak < (1u << TL_BACKWARD_GRAD_BITS) ? 0 : tl_bw_exponent(peak);
        all = peak > all ? peak : all;
        row_shift[y] = (uint8_t)sh;
        for (k = 0; k < len; ++k, ++bit) {
            const uint32_t m = dx[k] < 0 ? 0u - (uint32_t)dx[k] : (uint32_t)dx[k];
            v[k] = (uint16_t)(sh == 0 ? m << 1 : m >> (sh - 1));
            if (dx[k] < 0) {
                sign[bit >> 3] |= (uint8_t)(1u << (bit & 7));
            }
        }
    }
    *ex = tl_bw_exponent(all);
    for (y = 0; y < p->in_h; ++y) {
        tl_dx_row_finish_s16(grad_in + (size_t)y * (size_t)len, len, *ex, row_shift[y], sign,
                             y * len);
    }
}

tl_status tl_depthwise_conv_backward_s16(const tl_conv_backward_params *p, int16_t *grad,
                                         int32_t exponent, int32_t *dx, int16_t *grad_in,
                                         int32_t *grad_in_exponent)
{
    int32_t co, i, n, y, len, ex;
    tl_status s = tl_check_conv(p, 1);
    if (s == TL_OK) {
        s = tl_bw_check_out(grad, grad_in, grad_in_exponent);
    }
    if (s != TL_OK || dx == NULL) {
        return s != TL_OK ? s : TL_ERR_NULL;
    }
    n = p->in_h * p->in_w * p->in_c;
    len = p->in_w * p->in_c;
    /* each output gradient rescaled once, in place: |round(g * ratio)| <= |g| (ratio <= 1) */
    for (i = 0; i < p->out_h * p->out_w; ++i) {
        int16_t *g = grad + (size_t)i * (size_t)p->out_c;
        for (co = 0; co < p->out_c; ++co) {
            g[co] =
                (int16_t)tl_requantize_single(g[co], p->ratio.multiplier[co], p->ratio.shift[co]);
        }
    }
    if (n > tl_depthwise_dx_words(p->in_h, p->in_w, p->in_c)) {
        tl_dw_rows(p, grad, dx, grad_in, &ex);
        *grad_in_exponent = exponent + ex;
        return TL_OK;
    }
    for (y = 0; y < p->in_h; ++y) {
        tl_dw_row(p, grad, y, dx + (size_t)y * (size_t)len);
    }
    tl_bw_normalize32(dx, n, exponent, grad_in, grad_in_exponent);
    return TL_OK;
}

/* ------------------------------------------------------------------ pooling */

static tl_status tl_check_pool(const tl_pool_backward_params *p)
{
    if (p == NULL || (p->n_ratios > 0 && (p->ratio_count == NULL || p->ratio_multiplier == NULL ||
                                          p->ratio_shift == NULL))) {
        return TL_ERR_NULL;
    }
    if (p->in_h < 1 || p->in_w < 1 || p->channels < 1 || p->out_h < 1 || p->out_w < 1 ||
        p->filter_h < 1 || p->filter_w < 1 || p->n_ratios < 0) {
        return TL_ERR_SHAPE;
    }
    if (p->stride_h < 1 || p->stride_w < 1 || p->pad_h < 0 || p->pad_w < 0) {
        return TL_ERR_PARAM;
    }
    if ((int64_t)p->in_h * p->in_w * p->channels > INT32_MAX ||
        (int64_t)p->out_h * p->out_w * p->channels > INT32_MAX) {
        return TL_ERR_SHAPE;
    }
    return TL_OK;
}

/* The input rows [*lo, *hi) of window position o along one axis. */
static void tl_window(int32_t o, int32_t stride, int32_t pad, int32_t filter, int32_t size,
                      int32_t *lo, int32_t *hi)
{
    const int32_t start = o * stride - pad;
    *lo = start < 0 ? 0 : start;
    *hi = start + filter < size ? start + filter : size;
}

tl_status tl_avg_pool_backward_s16(const tl_pool_backward_params *p, const int16_t *grad,
                                   int32_t exponent, int32_t *dx, int16_t *grad_in,
                                   int32_t *grad_in_exponent)
{
    int32_t oy, ox, y, x, c, k, y0, y1, x0, x1, n;
    tl_status s = tl_check_pool(p);
    if (s == TL_OK) {
        s = tl_bw_check_out(grad, grad_in, grad_in_exponent);
    }
    if (s != TL_OK || dx == NULL) {
        return s != TL_OK ? s : TL_ERR_NULL;
    }
    n = p->in_h * p->in_w * p->channels;
    for (k = 0; k < n; ++k) {
        dx[k] = 0;
    }
    for (oy = 0; oy < p->out_h; ++oy) {
        tl_window(oy, p->stride_h, p->pad_h, p->filter_h, p->in_h, &y0, &y1);
        for (ox = 0; ox < p->out_w; ++ox) {
            const int16_t *g =
                grad + ((size_t)oy * (size_t)p->out_w + (size_t)ox) * (size_t)p->channels;
            int32_t count, q = 0, shift = 0;
            tl_window(ox, p->stride_w, p->pad_w, p->filter_w, p->in_w, &x0, &x1);
            if (y1 <= y0 || x1 <= x0) {
                continue; /* a window wholly in the padding reads nothing */
            }
            count = (y1 - y0) * (x1 - x0);
            if (count != p->filter_h * p->filter_w) {
                for (k = 0; k < p->n_ratios && p->ratio_count[k] != count; ++k) {
                }
                if (k == p->n_ratios) {
                    return TL_ERR_PARAM; /* no ratio for this window's count */
                }
                q = p->ratio_multiplier[k];
                shift = p->ratio_shift[k];
            }
            for (c = 0; c < p->channels; ++c) {
                const int32_t v = q == 0 ? g[c] : tl_requantize_single(g[c], q, shift);
                for (y = y0; y < y1; ++y) {
                    int32_t *d = dx + (size_t)y * (size_t)p->in_w * (size_t)p->channels + (size_t)c;
                    for (x = x0; x < x1; ++x) {
                        d[(size_t)x * (size_t)p->channels] += v;
                    }
                }
            }
        }
    }
    tl_bw_normalize32(dx, n, exponent, grad_in, grad_in_exponent);
    return TL_OK;
}

tl_status tl_max_pool_backward_s16(const tl_pool_backward_params *p, const int8_t *input,
                                   const int16_t *grad, int32_t exponent, int32_t *dx,
                                   int16_t *grad_in, int32_t *grad_in_exponent)
{
    int32_t oy, ox, y, x, c, k, y0, y1, x0, x1, n;
    tl_status s = tl_check_pool(p);
    if (s == TL_OK) {
        s = tl_bw_check_out(grad, grad_in, grad_in_exponent);
    }
    if (s != TL_OK || dx == NULL || input == NULL) {
        return s != TL_OK ? s : TL_ERR_NULL;
    }
    n = p->in_h * p->in_w * p->channels;
    for (k = 0; k < n; ++k) {
        dx[k] = 0;
    }
    for (oy = 0; oy < p->out_h; ++oy) {
        tl_window(oy, p->stride_h, p->pad_h, p->filter_h, p->in_h, &y0, &y1);
        for (ox = 0; ox < p->out_w; ++ox) {
            const int16_t *g =
                grad + ((size_t)oy * (size_t)p->out_w + (size_t)ox) * (size_t)p->channels;
            tl_window(ox, p->stride_w, p->pad_w, p->filter_w, p->in_w, &x0, &x1);
            if (y1 <= y0 || x1 <= x0) {
                continue;
            }
            for (c = 0; c < p->channels; ++c) {
                size_t best =
                    ((size_t)y0 * (size_t)p->in_w + (size_t)x0) * (size_t)p->channels + (size_t)c;
                for (y = y0; y < y1; ++y) {
                    for (x = x0; x < x1; ++x) {
                        const size_t at =
                            ((size_t)y * (size_t)p->in_w + (size_t)x) * (size_t)p->channels +
                            (size_t)c;
                        if (input[at] > input[best]) {
                            best = at; /* strictly larger: ties keep the first */
                        }
                    }
                }
                dx[best] += g[c];
            }
        }
    }
    tl_bw_normalize32(dx, n, exponent, grad_in, grad_in_exponent);
    return TL_OK;
}

/* ------------------------------------------------------------------ pass-through ops */

tl_status tl_mean_backward_s16(int32_t pixels, int32_t channels, const int16_t *grad,
                               int32_t exponent, int16_t *grad_in, int32_t *grad_in_exponent)
{
    uint64_t peak = 0u;
    int32_t i, c, e;
    const tl_status s = tl_bw_check_out(grad, grad_in, grad_in_exponent);
    if (s != TL_OK) {
        return s;
    }
    if (pixels < 1 || channels < 1 || (int64_t)pixels * channels > INT32_MAX) {
        return TL_ERR_SHAPE;
    }
    for (c = 0; c < channels; ++c) {
        const uint64_t m = tl_bw_mag(grad[c]);
        peak = m > peak ? m : peak;
    }
    e = tl_bw_exponent(peak);
    for (i = 0; i < pixels; ++i) {
        for (c = 0; c < channels; ++c) {
            grad_in[(size_t)i * (size_t)channels + (size_t)c] = tl_bw_value(grad[c], e);
        }
    }
    *grad_in_exponent = exponent + e;
    return TL_OK;
}

static int tl_dims_ok(const tl_dims *d)
{
    return d->n >= 1 && d->h >= 1 && d->w >= 1 && d->c >= 1 &&
           (int64_t)d->n * d->h * d->w * d->c <= INT32_MAX;
}

/* One axis of an ADD input: `in` equal to `out`, or 1 (broadcast: summed over `out`). */
static int tl_axis_ok(int32_t in, int32_t out)
{
    return in == out || in == 1;
}

/* The unbroadcast sum of one ADD input element (n, h, w, c). */
static int64_t tl_add_entry(const tl_dims *o, const tl_dims *d, const int16_t *grad, int32_t n,
                            int32_t h, int32_t w, int32_t c)
{
    const int32_t nn = d->n == o->n ? 1 : o->n, hh = d->h == o->h ? 1 : o->h;
    const int32_t ww = d->w == o->w ? 1 : o->w, cc = d->c == o->c ? 1 : o->c;
    int32_t a, b, e, f;
    int64_t sum = 0;
    for (a = 0; a < nn; ++a) {
        for (b = 0; b < hh; ++b) {
            for (e = 0; e < ww; ++e) {
                const size_t row =
                    (((size_t)(nn == 1 ? n : a) * (size_t)o->h + (size_t)(hh == 1 ? h : b)) *
                         (size_t)o->w +
                     (size_t)(ww == 1 ? w : e)) *
                    (size_t)o->c;
                for (f = 0; f < cc; ++f) {
                    sum += grad[row + (size_t)(cc == 1 ? c : f)];
                }
            }
        }
    }
    return sum;
}

tl_status tl_add_backward_s16(const tl_dims *output_dims, const tl_dims *input_dims,
                              const int16_t *grad, int32_t exponent, int16_t *grad_in,
                              int32_t *grad_in_exponent)
{
    const tl_dims *o = output_dims, *d = input_dims;
    uint64_t peak = 0u;
    int32_t n, h, w, c, e, pass;
    const tl_status s = tl_bw_check_out(grad, grad_in, grad_in_exponent);
    if (s != TL_OK || o == NULL || d == NULL) {
        return s != TL_OK ? s : TL_ERR_NULL;
    }
    if (!tl_dims_ok(o) || !tl_dims_ok(d) || !tl_axis_ok(d->n, o->n) || !tl_axis_ok(d->h, o->h) ||
        !tl_axis_ok(d->w, o->w) || !tl_axis_ok(d->c, o->c)) {
        return TL_ERR_SHAPE;
    }
    e = 0;
    for (pass = 0; pass < 2; ++pass) { /* the peak, then the mantissas */
        int16_t *out = grad_in;
        for (n = 0; n < d->n; ++n) {
            for (h = 0; h < d->h; ++h) {
                for (w = 0; w < d->w; ++w) {
                    for (c = 0; c < d->c; ++c) {
                        const int64_t v = tl_add_entry(o, d, grad, n, h, w, c);
                        if (pass == 0) {
                            peak = tl_bw_mag(v) > peak ? tl_bw_mag(v) : peak;
                        } else {
                            *out++ = tl_bw_value(v, e);
                        }
                    }
                }
            }
        }
        e = tl_bw_exponent(peak);
    }
    *grad_in_exponent = exponent + e;
    return TL_OK;
}

tl_status tl_slice_backward_s16(const tl_dims *output_dims, const tl_dims *input_dims,
                                const tl_dims *begin, const int16_t *grad, int32_t exponent,
                                int16_t *grad_in, int32_t *grad_in_exponent)
{
    const tl_dims *o = output_dims, *d = input_dims, *b = begin;
    uint64_t peak = 0u;
    int32_t n, h, w, c, e = 0, pass;
    const tl_status s = tl_bw_check_out(grad, grad_in, grad_in_exponent);
    if (s != TL_OK || o == NULL || d == NULL || b == NULL) {
        return s != TL_OK ? s : TL_ERR_NULL;
    }
    if (!tl_dims_ok(o) || !tl_dims_ok(d) || b->n < 0 || b->h < 0 || b->w < 0 || b->c < 0 ||
        (int64_t)b->n + d->n > o->n || (int64_t)b->h + d->h > o->h || (int64_t)b->w + d->w > o->w ||
        (int64_t)b->c + d->c > o->c) {
        return TL_ERR_SHAPE;
    }
    for (pass = 0; pass < 2; ++pass) { /* the peak, then the mantissas */
        int16_t *out = grad_in;
        for (n = 0; n < d->n; ++n) {
            for (h = 0; h < d->h; ++h) {
                for (w = 0; w < d->w; ++w) {
                    const int16_t *row =
                        grad +
                        (((size_t)(n + b->n) * (size_t)o->h + (size_t)(h + b->h)) * (size_t)o->w +
                         (size_t)(w + b->w)) *
                            (size_t)o->c +
                        (size_t)b->c;
                    for (c = 0; c < d->c; ++c) {
                        if (pass == 0) {
                            peak = tl_bw_mag(row[c]) > peak ? tl_bw_mag(row[c]) : peak;
                        } else {
                            *out++ = tl_bw_value(row[c], e);
                        }
                    }
                }
            }
        }
        e = tl_bw_exponent(peak);
    }
    *grad_in_exponent = exponent + e;
    return TL_OK;
}

/* g * factor[i] over n values, normalized: the shape of LOGISTIC's and HARD_SWISH's
 * backward (factor from the output / the input code). */
static void tl_bw_scaled(int32_t n, const int16_t *grad, const int8_t *codes, const int16_t *lut,
                         int32_t exponent, int16_t *grad_in, int32_t *grad_in_exponent)
{
    uint64_t peak = 0u;
    int32_t i, e = 0, pass;
    for (pass = 0; pass < 2; ++pass) {
        for (i = 0; i < n; ++i) {
            const int32_t k = (int32_t)codes[i] + 128;
            /* |g| < 2^16 and |factor| <= 2^14: below 2^30 */
            const int32_t factor = lut != NULL ? (int32_t)lut[k] : k * (256 - k);
            const int64_t v = (int64_t)grad[i] * factor;
            if (pass == 0) {
                peak = tl_bw_mag(v) > peak ? tl_bw_mag(v) : peak;
            } else {
                grad_in[i] = tl_bw_value(v, e);
            }
        }
        e = tl_bw_exponent(peak);
    }
    *grad_in_exponent = exponent + e;
}

tl_status tl_logistic_backward_s16(int32_t n, const int8_t *output, const int16_t *grad,
                                   int32_t exponent, int16_t *grad_in, int32_t *grad_in_exponent)
{
    const tl_status s = tl_bw_check_out(grad, grad_in, grad_in_exponent);
    if (s != TL_OK || output == NULL) {
        return s != TL_OK ? s : TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    tl_bw_scaled(n, grad, output, NULL, exponent, grad_in, grad_in_exponent);
    return TL_OK;
}

tl_status tl_hard_swish_backward_s16(int32_t n, const int8_t *input, const int16_t *lut,
                                     const int16_t *grad, int32_t exponent, int16_t *grad_in,
                                     int32_t *grad_in_exponent)
{
    const tl_status s = tl_bw_check_out(grad, grad_in, grad_in_exponent);
    if (s != TL_OK || input == NULL || lut == NULL) {
        return s != TL_OK ? s : TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    tl_bw_scaled(n, grad, input, lut, exponent, grad_in, grad_in_exponent);
    return TL_OK;
}

/* ------------------------------------------------------------------ forks */

tl_status tl_grad_rescale_s16(int32_t n, int32_t multiplier, int32_t shift, int32_t guard,
                              int16_t *grad, int32_t *exponent)
{
    uint64_t peak = 0u;
    int32_t i, e;
    if (grad == NULL || exponent == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    if (guard < 0 || guard > 31) {
        return TL_ERR_PARAM;
    }
    for (i = 0; i < n; ++i) {
        const uint64_t m = tl_bw_mag(tl_requantize_single(grad[i], multiplier, shift + guard));
        peak = m > peak ? m : peak;
    }
    e = tl_bw_exponent(peak);
    for (i = 0; i < n; ++i) {
        grad[i] = tl_bw_value(tl_requantize_single(grad[i], multiplier, shift + guard), e);
    }
    *exponent += e - guard;
    return TL_OK;
}

/* rdbp(x, shift) with rounding_divide_by_pot's rule, shift in [0, 62]. */
static int64_t tl_bw_align(int32_t x, int64_t shift)
{
    return shift == 0 ? x : tl_rounding_divide_by_pot64(x, (int32_t)shift);
}

tl_status tl_grad_merge_s16(int32_t n, const int16_t *other, int32_t other_exponent, int16_t *grad,
                            int32_t exponent, int32_t *merged_exponent)
{
    const int32_t big = other_exponent > exponent ? other_exponent : exponent;
    const int64_t sa = (int64_t)big - other_exponent, sb = (int64_t)big - exponent;
    const int64_t shift_a = sa > 62 ? 62 : sa, shift_b = sb > 62 ? 62 : sb;
    uint64_t peak = 0u;
    int32_t i, e;
    if (other == NULL || grad == NULL || merged_exponent == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    for (i = 0; i < n; ++i) {
        const uint64_t m =
            tl_bw_mag(tl_bw_align(other[i], shift_a) + tl_bw_align(grad[i], shift_b));
        peak = m > peak ? m : peak;
    }
    e = tl_bw_exponent(peak);
    for (i = 0; i < n; ++i) {
        grad[i] = tl_bw_value(tl_bw_align(other[i], shift_a) + tl_bw_align(grad[i], shift_b), e);
    }
    *merged_exponent = big + e;
    return TL_OK;
}
