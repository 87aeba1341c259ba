/*
 * tinylora runtime: int8 inference kernels (see tl_kernels.h; spec: tinylora/layers.py and
 * tinylora/softmax.py).
 */
#include "tl_kernels_backend.h"

#include <string.h>

#if defined(__ARM_FEATURE_DSP) && !defined(TL_NO_DSP)
#define TL_DSP 1
#include <arm_acle.h>
#endif

/* ------------------------------------------------------------------------------------------
 * The int8 dot product: sum over i < n of (x[i] + offset) * w[i], wrapping modulo 2^32.
 * Every product fits int32 (|x + offset| <= 256, |w| <= 128), and unsigned addition wraps
 * exactly as quant.wrap_int32 of the exact sum.
 * ------------------------------------------------------------------------------------------ */
static uint32_t tl_dot_s8_portable(const int8_t *x, const int8_t *w, int32_t n, int32_t offset)
{
    uint32_t acc = 0u;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) { /* unrolled: one loop test per four products */
        acc += (uint32_t)(((int32_t)x[i] + offset) * (int32_t)w[i]);
        acc += (uint32_t)(((int32_t)x[i + 1] + offset) * (int32_t)w[i + 1]);
        acc += (uint32_t)(((int32_t)x[i + 2] + offset) * (int32_t)w[i + 2]);
        acc += (uint32_t)(((int32_t)x[i + 3] + offset) * (int32_t)w[i + 3]);
    }
    for (; i < n; ++i) {
        acc += (uint32_t)(((int32_t)x[i] + offset) * (int32_t)w[i]);
    }
    return acc;
}

#if defined(TL_DSP)
/* Rotate right by 8: brings bytes 1 and 3 of a word to the positions SXTB16 extracts. */
static uint32_t tl_ror8(uint32_t v)
{
    return (v >> 8) | (v << 24);
}

/* Four int8 pairs per step: SXTB16 widens bytes 0/2 (and, after ROR 8, bytes 1/3) to two
 * int16 lanes, SADD16 adds the input offset to both lanes (|x + offset| <= 256 fits int16),
 * SMLAD multiplies lane pairs and adds both products to the accumulator. SMLAD's accumulation
 * wraps modulo 2^32 (it only sets the sticky Q flag), so the sum equals the portable one.
 * x and w go through the same lane mapping, so every x[i] meets its own w[i]. */
uint32_t tl_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t offset)
{
    const uint32_t lane = (uint32_t)offset & 0xFFFFu;
    const int32_t offset2 = tl_wrap32((lane << 16) | lane);
    int32_t acc = 0;
    while (n >= 4) {
        uint32_t xv, wv;
        int32_t x02, x13, w02, w13;
        memcpy(&xv, x, 4); /* unaligned-safe loads; compiles to LDR on Cortex-M4/M7 */
        memcpy(&wv, w, 4);
        x02 = __sadd16(__sxtb16(tl_wrap32(xv)), offset2);
        x13 = __sadd16(__sxtb16(tl_wrap32(tl_ror8(xv))), offset2);
        w02 = __sxtb16(tl_wrap32(wv));
        w13 = __sxtb16(tl_wrap32(tl_ror8(wv)));
        acc = __smlad(x02, w02, acc);
        acc = __smlad(x13, w13, acc);
        x += 4;
        w += 4;
        n -= 4;
    }
    return (uint32_t)acc + tl_dot_s8_portable(x, w, n, offset);
}
#else
uint32_t tl_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t offset)
{
    return tl_dot_s8_portable(x, w, n, offset);
}
#endif

/* ------------------------------------------------------------------------------------------
 * Blocked int8 dot products under the frozen kernels: several dot products that share their
 * loads. For every row r and column c of the block, acc[.] += sum over i < n of
 * (x_r[i] + offset) * w_c[i], wrapping modulo 2^32: the same sum as tl_dot_s8 (unsigned
 * addition is associative and commutative modulo 2^32, so the order of the terms does not
 * matter). The offset is added to each x once and serves every column.
 * The frozen kernels run these portable blocks on every core (the libraries are the fast path
 * on Cortex-M and ESP32); the DSP forms (four int8 pairs per SMLAD pair, as in tl_dot_s8) serve
 * only the training kernels, through tl_dot_s8 and tl_dot4_s8.
 * ------------------------------------------------------------------------------------------ */
#if defined(TL_DSP)
/* The two int16 lane pairs of 4 int8 values (bytes 0/2 and 1/3), offset added to each lane. */
static void tl_lanes(const int8_t *p, int32_t offset2, int32_t *v02, int32_t *v13)
{
    uint32_t v;
    memcpy(&v, p, 4);
    *v02 = __sadd16(__sxtb16(tl_wrap32(v)), offset2);
    *v13 = __sadd16(__sxtb16(tl_wrap32(tl_ror8(v))), offset2);
}

/* The same without an offset (filter values). */
static void tl_lanes0(const int8_t *p, int32_t *v02, int32_t *v13)
{
    uint32_t v;
    memcpy(&v, p, 4);
    *v02 = __sxtb16(tl_wrap32(v));
    *v13 = __sxtb16(tl_wrap32(tl_ror8(v)));
}

static int32_t tl_offset2(int32_t offset)
{
    const uint32_t lane = (uint32_t)offset & 0xFFFFu;
    return tl_wrap32((lane << 16) | lane);
}
#endif

/* 2 x 2 block: rows x0, x1 (two output pixels), columns w0, w1 (two output channels);
 * acc = {x0.w0, x0.w1, x1.w0, x1.w1}. */
static void tl_mac_2x2(const int8_t *x0, const int8_t *x1, const int8_t *w0, const int8_t *w1,
                       int32_t n, int32_t offset, uint32_t acc[4])
{
    uint32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    while (n > 0) {
        const int32_t xa = (int32_t)*x0++ + offset, xb = (int32_t)*x1++ + offset;
        const int32_t wa = *w0++, wb = *w1++;
        a00 += (uint32_t)(xa * wa);
        a01 += (uint32_t)(xa * wb);
        a10 += (uint32_t)(xb * wa);
        a11 += (uint32_t)(xb * wb);
        --n;
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* 1 x 4 block: one row x, four columns w, w + stride, w + 2 stride, w + 3 stride. */
static void tl_mac_1x4(const int8_t *x, const int8_t *w, size_t stride, int32_t n, int32_t offset,
                       uint32_t acc[4])
{
    const int8_t *w0 = w, *w1 = w + stride, *w2 = w + 2u * stride, *w3 = w + 3u * stride;
    uint32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    while (n > 0) {
        const int32_t xa = (int32_t)*x++ + offset;
        a0 += (uint32_t)(xa * *w0++);
        a1 += (uint32_t)(xa * *w1++);
        a2 += (uint32_t)(xa * *w2++);
        a3 += (uint32_t)(xa * *w3++);
        --n;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* Four dot products sharing x, for the training kernels (tl_kernels.h): SMLAD on DSP cores for
 * the first n - n % 4 terms, the portable block for the rest. */
void tl_dot4_s8(const int8_t *x, const int8_t *w, size_t stride, int32_t n, int32_t offset,
                uint32_t acc[4])
{
#if defined(TL_DSP)
    const int8_t *w0 = w, *w1 = w + stride, *w2 = w + 2u * stride, *w3 = w + 3u * stride;
    const int32_t done = n - n % 4;
    if (n >= 4) {
        const int32_t offset2 = tl_offset2(offset);
        int32_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        do {
            int32_t x02, x13, v02, v13;
            tl_lanes(x, offset2, &x02, &x13);
            tl_lanes0(w0, &v02, &v13);
            s0 = __smlad(x02, v02, __smlad(x13, v13, s0));
            tl_lanes0(w1, &v02, &v13);
            s1 = __smlad(x02, v02, __smlad(x13, v13, s1));
            tl_lanes0(w2, &v02, &v13);
            s2 = __smlad(x02, v02, __smlad(x13, v13, s2));
            tl_lanes0(w3, &v02, &v13);
            s3 = __smlad(x02, v02, __smlad(x13, v13, s3));
            x += 4;
            w0 += 4;
            w1 += 4;
            w2 += 4;
            w3 += 4;
            n -= 4;
        } while (n >= 4);
        acc[0] += (uint32_t)s0;
        acc[1] += (uint32_t)s1;
        acc[2] += (uint32_t)s2;
        acc[3] += (uint32_t)s3;
    }
    tl_mac_1x4(x, w + done, stride, n, offset, acc);
#else
    tl_mac_1x4(x, w, stride, n, offset, acc);
#endif
}

/* Accumulator + bias, wrapped to int32 (layers.py: wrap_int32(acc + bias)). */
static int32_t tl_add_bias(uint32_t acc, const int32_t *bias, int32_t channel)
{
    if (bias != NULL) {
        acc += (uint32_t)bias[channel];
    }
    return tl_wrap32(acc);
}

/* Bias, requantization, output offset and clamp of one accumulator (output channel c). */
static int8_t tl_out_s8(uint32_t acc, const int32_t *bias, const tl_per_channel_quant *quant,
                        int32_t c, int32_t output_offset, int32_t act_min, int32_t act_max)
{
    return tl_requantize_s8(tl_add_bias(acc, bias, c), quant->multiplier[c], quant->shift[c],
                            output_offset, act_min, act_max);
}

/* The kernel taps [*first, *end) of a window starting at input coordinate `start` (possibly
 * negative) that land inside [0, size): with dilation d, tap t reads start + t * d. The valid
 * taps are one contiguous range (empty: *first == *end). No division. */
static void tl_tap_range(int32_t start, int32_t dilation, int32_t taps, int32_t size,
                         int32_t *first, int32_t *end)
{
    int32_t lo = 0, hi = taps;
    while (lo < taps && start + lo * dilation < 0) {
        ++lo;
    }
    while (hi > lo && start + (hi - 1) * dilation >= size) {
        --hi;
    }
    *first = lo;
    *end = hi;
}

/* FULLY_CONNECTED output channels [o_begin, o_end) of one row x (portable path). */
void tl_fc_portable(const tl_fc_params *params, const tl_per_channel_quant *quant, const int8_t *x,
                    int32_t depth, const int8_t *filter, const int32_t *bias, int8_t *y,
                    int32_t o_begin, int32_t o_end)
{
    int32_t o = o_begin;
    for (; o + 4 <= o_end; o += 4) { /* four output channels share every load of x */
        uint32_t acc[4] = { 0u, 0u, 0u, 0u };
        int32_t j;
        tl_mac_1x4(x, filter + (size_t)o * (size_t)depth, (size_t)depth, depth,
                   params->input_offset, acc);
        for (j = 0; j < 4; ++j) {
            y[o + j] = tl_out_s8(acc[j], bias, quant, o + j, params->output_offset, params->act_min,
                                 params->act_max);
        }
    }
    for (; o < o_end; ++o) {
        const uint32_t dot =
            tl_dot_s8_portable(x, filter + (size_t)o * (size_t)depth, depth, params->input_offset);
        y[o] = tl_requantize_s8(tl_add_bias(dot, bias, o), quant->multiplier[o], quant->shift[o],
                                params->output_offset, params->act_min, params->act_max);
    }
}

static int tl_dims_positive(const tl_dims *d)
{
    return d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

static tl_status tl_check_common(int32_t input_offset, int32_t output_offset, int32_t act_min,
                                 int32_t act_max)
{
    if (input_offset < -128 || input_offset > 128 || output_offset < -128 || output_offset > 127) {
        return TL_ERR_PARAM;
    }
    if (act_min < -128 || act_max > 127 || act_min > act_max) {
        return TL_ERR_PARAM;
    }
    return TL_OK;
}

/* ------------------------------------------------------------------------------------------
 * Backend scratch: the caller's tl_context, start rounded up to 16.
 * ------------------------------------------------------------------------------------------ */
void *tl_scratch_take(const tl_context *ctx, int32_t need)
{
    size_t skip;
    if (ctx == NULL || ctx->buf == NULL || need <= 0) {
        return NULL;
    }
    skip = (size_t)(((uintptr_t)0 - (uintptr_t)ctx->buf) & (TL_SCRATCH_ALIGN - 1u));
    if (ctx->size < skip || ctx->size - skip < (size_t)need) {
        return NULL;
    }
    return (uint8_t *)ctx->buf + skip;
}

/* ------------------------------------------------------------------------------------------
 * Scratch size queries (0 when the build calls no library or the library needs none).
 * ------------------------------------------------------------------------------------------ */
size_t tl_fully_connected_s8_scratch_size(const tl_dims *input_dims, const tl_dims *filter_dims,
                                          const tl_dims *output_dims)
{
    if (input_dims == NULL || filter_dims == NULL || output_dims == NULL ||
        !tl_dims_positive(input_dims) || !tl_dims_positive(filter_dims) ||
        !tl_dims_positive(output_dims)) {
        return 0u;
    }
#if defined(TL_BACKEND)
    return tl_scratch_need(tl_backend_fc_scratch(input_dims->n, filter_dims->c, filter_dims->n));
#else
    return 0u;
#endif
}

size_t tl_conv2d_s8_scratch_size(const tl_conv_params *params, const tl_dims *input_dims,
                                 const tl_dims *filter_dims, const tl_dims *output_dims)
{
    if (params == NULL || input_dims == NULL || filter_dims == NULL || output_dims == NULL ||
        !tl_dims_positive(input_dims) || !tl_dims_positive(filter_dims) ||
        !tl_dims_positive(output_dims)) {
        return 0u;
    }
#if defined(TL_BACKEND)
    return tl_scratch_need(tl_backend_conv_scratch(params, input_dims, filter_dims, output_dims));
#else
    return 0u;
#endif
}

size_t tl_depthwise_conv2d_s8_scratch_size(const tl_dw_conv_params *params,
                                           const tl_dims *input_dims, const tl_dims *filter_dims,
                                           const tl_dims *output_dims)
{
    if (params == NULL || input_dims == NULL || filter_dims == NULL || output_dims == NULL ||
        !tl_dims_positive(input_dims) || !tl_dims_positive(filter_dims) ||
        !tl_dims_positive(output_dims)) {
        return 0u;
    }
#if defined(TL_BACKEND)
    return tl_scratch_need(tl_backend_dw_scratch(params, input_dims, filter_dims, output_dims));
#else
    return 0u;
#endif
}

/* ------------------------------------------------------------------------------------------
 * FULLY_CONNECTED
 * ------------------------------------------------------------------------------------------ */
tl_status tl_fully_connected_s8(const tl_context *ctx, const tl_fc_params *params,
                                const tl_per_channel_quant *quant, const tl_dims *input_dims,
                                const int8_t *input, const tl_dims *filter_dims,
                                const int8_t *filter, const int32_t *bias,
                                const tl_dims *output_dims, int8_t *output)
{
    int32_t rows, depth, channels, r;
    tl_status s;
    if (params == NULL || quant == NULL || quant->multiplier == NULL || quant->shift == NULL ||
        input_dims == NULL || input == NULL || filter_dims == NULL || filter == NULL ||
        output_dims == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    s = tl_check_common(params->input_offset, params->output_offset, params->act_min,
                        params->act_max);
    if (s != TL_OK) {
        return s;
    }
    if (!tl_dims_positive(input_dims) || !tl_dims_positive(filter_dims) ||
        !tl_dims_positive(output_dims)) {
        return TL_ERR_SHAPE;
    }
    rows = input_dims->n;
    depth = filter_dims->c;
    channels = filter_dims->n;
    if (input_dims->h != 1 || input_dims->w != 1 || input_dims->c != depth || filter_dims->h != 1 ||
        filter_dims->w != 1 || output_dims->n != rows || output_dims->h != 1 ||
        output_dims->w != 1 || output_dims->c != channels) {
        return TL_ERR_SHAPE;
    }
#if defined(TL_BACKEND)
    {
        const int b = tl_backend_fully_connected(ctx, params, quant, rows, depth, channels, input,
                                                 filter, bias, output);
        if (b != TL_DECLINED) {
            return (tl_status)b;
        }
    }
#else
    (void)ctx;
#endif
    for (r = 0; r < rows; ++r) {
        tl_fc_portable(params, quant, input + (size_t)r * (size_t)depth, depth, filter, bias,
                       output + (size_t)r * (size_t)channels, 0, channels);
    }
    return TL_OK;
}

/* ------------------------------------------------------------------------------------------
 * CONV_2D
 * ------------------------------------------------------------------------------------------ */
static tl_status tl_check_geometry(int32_t stride_h, int32_t stride_w, int32_t pad_h, int32_t pad_w,
                                   int32_t dilation_h, int32_t dilation_w)
{
    /* layers.py accepts strides and dilations in [1, 64]; pads are never negative. */
    if (stride_h < 1 || stride_h > 64 || stride_w < 1 || stride_w > 64 || dilation_h < 1 ||
        dilation_h > 64 || dilation_w < 1 || dilation_w > 64 || pad_h < 0 || pad_w < 0) {
        return TL_ERR_PARAM;
    }
    return TL_OK;
}

/* The valid taps of one output pixel's window (portable CONV_2D): `rows` kernel rows of
 * `cols` taps each, the first at input pointer x and filter offset f_offset (in every output
 * channel's OHWI block); x_row / f_row step one kernel row, x_col one tap. With dilation 1 the
 * taps of a row are contiguous in both input and filter: one run of cols * in_c values. */
typedef struct {
    const int8_t *x;
    size_t f_offset, x_row, x_col, f_row;
    int32_t rows, cols, in_c, dilation_w;
} tl_window;

enum { TL_BLOCK_1 = 1, TL_BLOCK_2X2 = 2, TL_BLOCK_1X4 = 4 };

/* Accumulates a block of dot products over the window: TL_BLOCK_1: acc[0] for filter f;
 * TL_BLOCK_1X4: acc[j] for filters f + j * f_size; TL_BLOCK_2X2: this pixel and the one whose
 * window starts x_step further (same taps), filters f and f + f_size. */
static void tl_window_mac(const tl_window *win, int block, const int8_t *f, size_t f_size,
                          size_t x_step, int32_t offset, uint32_t acc[4])
{
    const int contiguous = win->dilation_w == 1;
    const int32_t run = contiguous ? win->cols * win->in_c : win->in_c;
    const int32_t runs = contiguous ? 1 : win->cols;
    int32_t r, k;
    f += win->f_offset;
    for (r = 0; r < win->rows; ++r) {
        const int8_t *xr = win->x + (size_t)r * win->x_row;
        const int8_t *wr = f + (size_t)r * win->f_row;
        for (k = 0; k < runs; ++k) {
            if (block == TL_BLOCK_2X2) {
                tl_mac_2x2(xr, xr + x_step, wr, wr + f_size, run, offset, acc);
            } else if (block == TL_BLOCK_1X4) {
                tl_mac_1x4(xr, wr, f_size, run, offset, acc);
            } else {
                acc[0] += tl_dot_s8_portable(xr, wr, run, offset);
            }
            xr += win->x_col;
            wr += win->in_c;
        }
    }
}

/* The window of the output pixel whose top-left tap reads input (y0, x0). */
static void tl_window_at(tl_window *win, const tl_conv_params *params, const int8_t *image,
                         int32_t in_h, int32_t in_w, int32_t k_h, int32_t k_w, int32_t y0,
                         int32_t x0)
{
    int32_t ky0, ky1, kx0, kx1;
    tl_tap_range(y0, params->dilation_h, k_h, in_h, &ky0, &ky1);
    tl_tap_range(x0, params->dilation_w, k_w, in_w, &kx0, &kx1);
    win->rows = (kx0 < kx1) ? ky1 - ky0 : 0;
    win->cols = kx1 - kx0;
    win->x = image;
    win->f_offset = 0u;
    if (win->rows > 0) {
        win->x = image + ((size_t)(y0 + ky0 * params->dilation_h) * (size_t)in_w +
                          (size_t)(x0 + kx0 * params->dilation_w)) *
                             (size_t)win->in_c;
        win->f_offset = ((size_t)ky0 * (size_t)k_w + (size_t)kx0) * (size_t)win->in_c;
    }
    win->x_row = (size_t)params->dilation_h * (size_t)in_w * (size_t)win->in_c;
    win->x_col = (size_t)params->dilation_w * (size_t)win->in_c;
    win->f_row = (size_t)k_w * (size_t)win->in_c;
}

tl_status tl_conv2d_s8(const tl_context *ctx, const tl_conv_params *params,
                       const tl_per_channel_quant *quant, const tl_dims *input_dims,
                       const int8_t *input, const tl_dims *filter_dims, const int8_t *filter,
                       const int32_t *bias, const tl_dims *output_dims, int8_t *output)
{
    int32_t b, oy, ox, oc;
    int32_t in_h, in_w, in_c, k_h, k_w, out_h, out_w, out_c;
    tl_status s;
    if (params == NULL || quant == NULL || quant->multiplier == NULL || quant->shift == NULL ||
        input_dims == NULL || input == NULL || filter_dims == NULL || filter == NULL ||
        output_dims == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    s = tl_check_common(params->input_offset, params->output_offset, params->act_min,
                        params->act_max);
    if (s == TL_OK) {
        s = tl_check_geometry(params->stride_h, params->stride_w, params->pad_h, params->pad_w,
                              params->dilation_h, params->dilation_w);
    }
    if (s != TL_OK) {
        return s;
    }
    if (!tl_dims_positive(input_dims) || !tl_dims_positive(filter_dims) ||
        !tl_dims_positive(output_dims)) {
        return TL_ERR_SHAPE;
    }
    in_h = input_dims->h;
    in_w = input_dims->w;
    in_c = input_dims->c;
    k_h = filter_dims->h;
    k_w = filter_dims->w;
    out_h = output_dims->h;
    out_w = output_dims->w;
    out_c = output_dims->c;
    if (filter_dims->c != in_c || filter_dims->n != out_c || output_dims->n != input_dims->n) {
        return TL_ERR_SHAPE;
    }
#if defined(TL_BACKEND)
    {
        const int r = tl_backend_conv2d(ctx, params, quant, input_dims, input, filter_dims, filter,
                                        bias, output_dims, output);
        if (r != TL_DECLINED) {
            return (tl_status)r;
        }
    }
#else
    (void)ctx;
#endif
    if (k_h == 1 && k_w == 1 && params->pad_h == 0 && params->pad_w == 0 &&
        (int64_t)(out_h - 1) * params->stride_h < in_h &&
        (int64_t)(out_w - 1) * params->stride_w < in_w) {
        /* 1x1 without padding: every output pixel is one FULLY_CONNECTED row of the input
         * pixel it reads. Pixels in pairs along a row, each pair of output channels a 2x2
         * block sharing every load (the portable windowed path without its window walk);
         * a last pixel or channel goes through the FULLY_CONNECTED rows. */
        const int32_t offset = params->input_offset;
        const size_t x_step = (size_t)params->stride_w * (size_t)in_c;
        tl_fc_params fc;
        fc.input_offset = offset;
        fc.output_offset = params->output_offset;
        fc.act_min = params->act_min;
        fc.act_max = params->act_max;
        for (b = 0; b < input_dims->n; ++b) {
            const int8_t *image = input + (size_t)b * (size_t)in_h * (size_t)in_w * (size_t)in_c;
            for (oy = 0; oy < out_h; ++oy) {
                const int8_t *x =
                    image + (size_t)oy * (size_t)params->stride_h * (size_t)in_w * (size_t)in_c;
                for (ox = 0; ox + 2 <= out_w; ox += 2) {
                    for (oc = 0; oc + 2 <= out_c; oc += 2) {
                        uint32_t acc[4] = { 0u, 0u, 0u, 0u };
                        tl_mac_2x2(x, x + x_step, filter + (size_t)oc * (size_t)in_c,
                                   filter + (size_t)(oc + 1) * (size_t)in_c, in_c, offset, acc);
                        output[oc] = tl_out_s8(acc[0], bias, quant, oc, fc.output_offset,
                                               fc.act_min, fc.act_max);
                        output[oc + 1] = tl_out_s8(acc[1], bias, quant, oc + 1, fc.output_offset,
                                                   fc.act_min, fc.act_max);
                        output[out_c + oc] = tl_out_s8(acc[2], bias, quant, oc, fc.output_offset,
                                                       fc.act_min, fc.act_max);
                        output[out_c + oc + 1] = tl_out_s8(
                            acc[3], bias, quant, oc + 1, fc.output_offset, fc.act_min, fc.act_max);
                    }
                    if (oc < out_c) {
                        tl_fc_portable(&fc, quant, x, in_c, filter, bias, output, oc, out_c);
                        tl_fc_portable(&fc, quant, x + x_step, in_c, filter, bias, output + out_c,
                                       oc, out_c);
                    }
                    x += 2u * x_step;
                    output += 2 * out_c;
                }
                if (ox < out_w) {
                    tl_fc_portable(&fc, quant, x, in_c, filter, bias, output, 0, out_c);
                    output += out_c;
                }
            }
        }
        return TL_OK;
    }
    {
        /* Output pixels in pairs when their windows have the same valid taps (everywhere but
         * near a padded edge): each pair of output channels is then a 2x2 block sharing every
         * load; the rest goes 4 channels (then 1) at a time. */
        const int32_t offset = params->input_offset;
        const size_t f_size = (size_t)k_h * (size_t)k_w * (size_t)in_c;
        const size_t x_step = (size_t)params->stride_w * (size_t)in_c;
        tl_window win, next;
        win.in_c = in_c;
        win.dilation_w = params->dilation_w;
        next = win;
        for (b = 0; b < input_dims->n; ++b) {
            const int8_t *image = input + (size_t)b * (size_t)in_h * (size_t)in_w * (size_t)in_c;
            for (oy = 0; oy < out_h; ++oy) {
                const int32_t y0 = oy * params->stride_h - params->pad_h;
                ox = 0;
                while (ox < out_w) {
                    const int32_t x0 = ox * params->stride_w - params->pad_w;
                    int32_t pixels = 1, p;
                    tl_window_at(&win, params, image, in_h, in_w, k_h, k_w, y0, x0);
                    if (ox + 1 < out_w) {
                        tl_window_at(&next, params, image, in_h, in_w, k_h, k_w, y0,
                                     x0 + params->stride_w);
                        if (next.rows == win.rows && next.cols == win.cols &&
                            next.f_offset == win.f_offset) {
                            pixels = 2;
                        }
                    }
                    oc = 0;
                    if (pixels == 2) {
                        for (; oc + 2 <= out_c; oc += 2) {
                            uint32_t acc[4] = { 0u, 0u, 0u, 0u };
                            tl_window_mac(&win, TL_BLOCK_2X2, filter + (size_t)oc * f_size, f_size,
                                          x_step, offset, acc);
                            output[oc] = tl_out_s8(acc[0], bias, quant, oc, params->output_offset,
                                                   params->act_min, params->act_max);
                            output[oc + 1] =
                                tl_out_s8(acc[1], bias, quant, oc + 1, params->output_offset,
                                          params->act_min, params->act_max);
                            output[out_c + oc] =
                                tl_out_s8(acc[2], bias, quant, oc, params->output_offset,
                                          params->act_min, params->act_max);
                            output[out_c + oc + 1] =
                                tl_out_s8(acc[3], bias, quant, oc + 1, params->output_offset,
                                          params->act_min, params->act_max);
                        }
                    }
                    for (p = 0; p < pixels; ++p) {
                        int32_t c = oc;
                        int8_t *y = output + (size_t)p * (size_t)out_c;
                        if (p == 1) {
                            win = next;
                        }
                        for (; c + 4 <= out_c; c += 4) {
                            uint32_t acc[4] = { 0u, 0u, 0u, 0u };
                            int32_t j;
                            tl_window_mac(&win, TL_BLOCK_1X4, filter + (size_t)c * f_size, f_size,
                                          0u, offset, acc);
                            for (j = 0; j < 4; ++j) {
                                y[c + j] =
                                    tl_out_s8(acc[j], bias, quant, c + j, params->output_offset,
                                              params->act_min, params->act_max);
                            }
                        }
                        for (; c < out_c; ++c) {
                            uint32_t acc[4] = { 0u, 0u, 0u, 0u };
                            tl_window_mac(&win, TL_BLOCK_1, filter + (size_t)c * f_size, f_size, 0u,
                                          offset, acc);
                            y[c] = tl_out_s8(acc[0], bias, quant, c, params->output_offset,
                                             params->act_min, params->act_max);
                        }
                    }
                    output += (size_t)pixels * (size_t)out_c;
                    ox += pixels;
                }
            }
        }
    }
    return TL_OK;
}

/* ------------------------------------------------------------------------------------------
 * DEPTHWISE_CONV_2D
 * ------------------------------------------------------------------------------------------ */
tl_status tl_depthwise_conv2d_s8(const tl_context *ctx, const tl_dw_conv_params *params,
                                 const tl_per_channel_quant *quant, const tl_dims *input_dims,
                                 const int8_t *input, const tl_dims *filter_dims,
                                 const int8_t *filter, const int32_t *bias,
                                 const tl_dims *output_dims, int8_t *output)
{
    int32_t b, oy, ox, ic, m, ky, kx;
    int32_t in_h, in_w, in_c, k_h, k_w, out_h, out_w, out_c, mult;
    tl_status s;
    if (params == NULL || quant == NULL || quant->multiplier == NULL || quant->shift == NULL ||
        input_dims == NULL || input == NULL || filter_dims == NULL || filter == NULL ||
        output_dims == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    s = tl_check_common(params->input_offset, params->output_offset, params->act_min,
                        params->act_max);
    if (s == TL_OK) {
        s = tl_check_geometry(params->stride_h, params->stride_w, params->pad_h, params->pad_w,
                              params->dilation_h, params->dilation_w);
    }
    if (s == TL_OK && params->depth_multiplier < 1) {
        s = TL_ERR_PARAM;
    }
    if (s != TL_OK) {
        return s;
    }
    if (!tl_dims_positive(input_dims) || !tl_dims_positive(filter_dims) ||
        !tl_dims_positive(output_dims)) {
        return TL_ERR_SHAPE;
    }
    in_h = input_dims->h;
    in_w = input_dims->w;
    in_c = input_dims->c;
    k_h = filter_dims->h;
    k_w = filter_dims->w;
    out_h = output_dims->h;
    out_w = output_dims->w;
    out_c = output_dims->c;
    mult = params->depth_multiplier;
    if (filter_dims->n != 1 || filter_dims->c != out_c || (int64_t)in_c * mult != out_c ||
        output_dims->n != input_dims->n) {
        return TL_ERR_SHAPE;
    }
#if defined(TL_BACKEND)
    {
        const int r = tl_backend_depthwise_conv2d(ctx, params, quant, input_dims, input,
                                                  filter_dims, filter, bias, output_dims, output);
        if (r != TL_DECLINED) {
            return (tl_status)r;
        }
    }
#else
    (void)ctx;
#endif
    if (mult == 1) {
        /* Channel-inner: for each output pixel, 4 channels at a time (then 1), every valid
         * tap reading 4 consecutive input and filter bytes. */
        const int32_t offset = params->input_offset;
        const size_t x_col = (size_t)params->dilation_w * (size_t)in_c;
        const size_t x_row = (size_t)params->dilation_h * (size_t)in_w * (size_t)in_c;
        const size_t f_row = (size_t)k_w * (size_t)in_c;
        for (b = 0; b < input_dims->n; ++b) {
            const int8_t *image = input + (size_t)b * (size_t)in_h * (size_t)in_w * (size_t)in_c;
            for (oy = 0; oy < out_h; ++oy) {
                const int32_t y0 = oy * params->stride_h - params->pad_h;
                int32_t ky0, ky1;
                tl_tap_range(y0, params->dilation_h, k_h, in_h, &ky0, &ky1);
                for (ox = 0; ox < out_w; ++ox) {
                    const int32_t x0 = ox * params->stride_w - params->pad_w;
                    int32_t kx0, kx1, rows, cols, c, r;
                    const int8_t *x = image;
                    const int8_t *f = filter;
                    tl_tap_range(x0, params->dilation_w, k_w, in_w, &kx0, &kx1);
                    cols = kx1 - kx0;
                    rows = cols > 0 ? ky1 - ky0 : 0;
                    if (rows > 0) {
                        x = image + ((size_t)(y0 + ky0 * params->dilation_h) * (size_t)in_w +
                                     (size_t)(x0 + kx0 * params->dilation_w)) *
                                        (size_t)in_c;
                        f = filter + ((size_t)ky0 * (size_t)k_w + (size_t)kx0) * (size_t)in_c;
                    }
                    for (c = 0; c + 4 <= in_c; c += 4) {
                        uint32_t a0 = 0u, a1 = 0u, a2 = 0u, a3 = 0u;
                        for (r = 0; r < rows; ++r) {
                            const int8_t *xp = x + (size_t)r * x_row + c;
                            const int8_t *wp = f + (size_t)r * f_row + c;
                            const int8_t *const wend = wp + (size_t)cols * (size_t)in_c;
                            if (x_col == (size_t)in_c) { /* dilation 1: one stride for both */
                                const size_t step = (size_t)in_c;
                                do {
                                    a0 += (uint32_t)(((int32_t)xp[0] + offset) * wp[0]);
                                    a1 += (uint32_t)(((int32_t)xp[1] + offset) * wp[1]);
                                    a2 += (uint32_t)(((int32_t)xp[2] + offset) * wp[2]);
                                    a3 += (uint32_t)(((int32_t)xp[3] + offset) * wp[3]);
                                    xp += step;
                                    wp += step;
                                } while (wp != wend);
                                continue;
                            }
                            for (kx = 0; kx < cols; ++kx) {
                                a0 += (uint32_t)(((int32_t)xp[0] + offset) * wp[0]);
                                a1 += (uint32_t)(((int32_t)xp[1] + offset) * wp[1]);
                                a2 += (uint32_t)(((int32_t)xp[2] + offset) * wp[2]);
                                a3 += (uint32_t)(((int32_t)xp[3] + offset) * wp[3]);
                                xp += x_col;
                                wp += in_c;
                            }
                        }
                        output[c] = tl_out_s8(a0, bias, quant, c, params->output_offset,
                                              params->act_min, params->act_max);
                        output[c + 1] = tl_out_s8(a1, bias, quant, c + 1, params->output_offset,
                                                  params->act_min, params->act_max);
                        output[c + 2] = tl_out_s8(a2, bias, quant, c + 2, params->output_offset,
                                                  params->act_min, params->act_max);
                        output[c + 3] = tl_out_s8(a3, bias, quant, c + 3, params->output_offset,
                                                  params->act_min, params->act_max);
                    }
                    for (; c < in_c; ++c) {
                        uint32_t a0 = 0u;
                        for (r = 0; r < rows; ++r) {
                            const int8_t *xp = x + (size_t)r * x_row + c;
                            const int8_t *wp = f + (size_t)r * f_row + c;
                            for (kx = 0; kx < cols; ++kx) {
                                a0 += (uint32_t)(((int32_t)*xp + offset) * *wp);
                                xp += x_col;
                                wp += in_c;
                            }
                        }
                        output[c] = tl_out_s8(a0, bias, quant, c, params->output_offset,
                                              params->act_min, params->act_max);
                    }
                    output += out_c;
                }
            }
        }
        return TL_OK;
    }
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *image = input + (size_t)b * (size_t)in_h * (size_t)in_w * (size_t)in_c;
        for (oy = 0; oy < out_h; ++oy) {
            const int32_t y0 = oy * params->stride_h - params->pad_h;
            for (ox = 0; ox < out_w; ++ox) {
                const int32_t x0 = ox * params->stride_w - params->pad_w;
                for (ic = 0; ic < in_c; ++ic) {
                    for (m = 0; m < mult; ++m) {
                        const int32_t oc = ic * mult + m;
                        uint32_t acc = 0u;
                        for (ky = 0; ky < k_h; ++ky) {
                            const int32_t iy = y0 + ky * params->dilation_h;
                            if (iy < 0 || iy >= in_h) {
                                continue;
                            }
                            for (kx = 0; kx < k_w; ++kx) {
                                const int32_t ix = x0 + kx * params->dilation_w;
                                const int8_t *px;
                                int32_t wv;
                                if (ix < 0 || ix >= in_w) {
                                    continue;
                                }
                                px =
                                    image + ((size_t)iy * (size_t)in_w + (size_t)ix) * (size_t)in_c;
                                wv =
                                    filter[((size_t)ky * (size_t)k_w + (size_t)kx) * (size_t)out_c +
                                           (size_t)oc];
                                acc += (uint32_t)(((int32_t)px[ic] + params->input_offset) * wv);
                            }
                        }
                        *output++ = tl_requantize_s8(
                            tl_add_bias(acc, bias, oc), quant->multiplier[oc], quant->shift[oc],
                            params->output_offset, params->act_min, params->act_max);
                    }
                }
            }
        }
    }
    return TL_OK;
}

/* ------------------------------------------------------------------------------------------
 * SOFTMAX (TFLM / gemmlowp fixed point; every constant is round-half-away(value * 2^31) for
 * Q0, or * 2^29 for Q2, exactly as softmax.py derives them)
 * ------------------------------------------------------------------------------------------ */
#define TL_SOFTMAX_DIFF_INTEGER_BITS 5   /* input differences in Q5.26 */
#define TL_SOFTMAX_ACCUM_INTEGER_BITS 12 /* sum of exponentials in Q12.19 */

#define TL_EXP_MINUS_ONE_EIGHTH 1895147668      /* exp(-1/8) = 0.8824969... in Q0 */
#define TL_ONE_THIRD 715827883                  /* 1/3 in Q0 */
#define TL_FORTY_EIGHT_OVER_17 1515870810       /* 48/17 = 2.8235294... in Q2 */
#define TL_NEG_THIRTY_TWO_OVER_17 (-1010580540) /* -32/17 = -1.8823529... in Q2 */

/* exp(-2^k) in Q0 for k = -2 .. 4: the barrel shifter over the integer part of -a. */
static const int32_t tl_exp_barrel[7] = {
    1672461947, /* exp(-1/4) = 0.7788007... */
    1302514674, /* exp(-1/2) = 0.6065306... */
    790015084,  /* exp(-1)   = 0.3678794... */
    290630308,  /* exp(-2)   = 0.1353352... */
    39332535,   /* exp(-4)   = 0.0183156... */
    720401,     /* exp(-8)   = 0.000335462... */
    242         /* exp(-16)  = 1.12535e-07 */
};

/* exp(a) for Q0 a in [-1/4, 0): Taylor series around -1/8 (softmax.py's function). */
static int32_t tl_exp_on_interval_between_negative_one_quarter_and_0_excl(int32_t a)
{
    const int32_t x = tl_add_wrap(a, 1 << 28); /* a + 1/8 */
    const int32_t x2 = tl_srdhm(x, x);
    const int32_t x3 = tl_srdhm(x2, x);
    const int32_t x4 = tl_srdhm(x2, x2);
    const int32_t x4_over_4 = tl_rounding_divide_by_pot(x4, 2);
    const int32_t poly = tl_rounding_divide_by_pot(
        tl_add_wrap(tl_srdhm(tl_add_wrap(x4_over_4, x3), TL_ONE_THIRD), x2), 1);
    return tl_add_wrap(TL_EXP_MINUS_ONE_EIGHTH,
                       tl_srdhm(TL_EXP_MINUS_ONE_EIGHTH, tl_add_wrap(x, poly)));
}

int32_t tl_exp_on_negative_values(int32_t a, int32_t integer_bits)
{
    const int32_t frac_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (frac_bits - 2); /* 1/4 in Q(integer_bits) */
    const int32_t a_mod_quarter_minus_quarter =
        tl_add_wrap(tl_wrap32((uint32_t)a & (uint32_t)(one_quarter - 1)), -one_quarter);
    int32_t result = tl_exp_on_interval_between_negative_one_quarter_and_0_excl(
        tl_saturating_left_shift(a_mod_quarter_minus_quarter, integer_bits));
    const uint32_t remainder = (uint32_t)a_mod_quarter_minus_quarter - (uint32_t)a;
    int32_t k;
    for (k = 0; k < integer_bits + 2; ++k) { /* bit of 2^(k-2) */
        if (remainder & ((uint32_t)1 << (frac_bits - 2 + k))) {
            result = tl_srdhm(result, tl_exp_barrel[k]);
        }
    }
    /* softmax.py's clamp for more than 5 integer bits does not apply up to Q5. */
    return a == 0 ? INT32_MAX : result;
}

int32_t tl_exp_on_negative_values_q5(int32_t a)
{
    return tl_exp_on_negative_values(a, TL_SOFTMAX_DIFF_INTEGER_BITS);
}

int32_t tl_one_over_one_plus_x_for_x_in_0_1(int32_t a)
{
    /* gemmlowp's RoundingHalfSum(a, One): (a + INT32_MAX + sign) / 2 truncated toward zero,
     * formed in int64 (a + INT32_MAX does not fit int32). */
    const int64_t s = (int64_t)a + INT32_MAX;
    const int32_t half_denominator = (int32_t)(s >= 0 ? (s + 1) >> 1 : -((1 - s) >> 1));
    const int32_t one_q2 = (int32_t)1 << 29;
    int32_t x =
        tl_add_wrap(TL_FORTY_EIGHT_OVER_17, tl_srdhm(half_denominator, TL_NEG_THIRTY_TWO_OVER_17));
    int32_t i;
    for (i = 0; i < 3; ++i) { /* Newton-Raphson in Q2 */
        const int32_t half_denominator_times_x = tl_srdhm(half_denominator, x);
        const int32_t one_minus = tl_add_wrap(one_q2, -half_denominator_times_x);
        x = tl_add_wrap(x, tl_saturating_left_shift(tl_srdhm(x, one_minus), 2));
    }
    return tl_saturating_left_shift(x, 1);
}

tl_status tl_softmax_s8(const tl_softmax_params *params, int32_t rows, int32_t depth,
                        const int8_t *input, int8_t *output)
{
    int32_t r, i;
    if (params == NULL || input == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (rows < 1 || depth < 1 || depth > 4095) {
        return TL_ERR_SHAPE;
    }
    if (params->input_left_shift < 0 || params->input_left_shift > 31) {
        return TL_ERR_PARAM;
    }
    for (r = 0; r < rows; ++r) {
        const int8_t *x = input + (size_t)r * (size_t)depth;
        int8_t *y = output + (size_t)r * (size_t)depth;
        int32_t max = x[0];
        uint32_t sum = 0u;
        int32_t headroom_plus_one, num_bits_over_unit, inverse;
        uint32_t shifted;
        for (i = 1; i < depth; ++i) {
            if (x[i] > max) {
                max = x[i];
            }
        }
        /* Pass 1: sum of exp(diff) in Q12.19 (wrapping, as softmax.py's wrap_int32). */
        for (i = 0; i < depth; ++i) {
            const int32_t diff = (int32_t)x[i] - max;
            if (diff >= params->diff_min) {
                const int32_t scaled =
                    tl_srdhm(tl_wrap32((uint32_t)diff << params->input_left_shift),
                             params->input_multiplier);
                sum += (uint32_t)tl_rounding_divide_by_pot(tl_exp_on_negative_values_q5(scaled),
                                                           TL_SOFTMAX_ACCUM_INTEGER_BITS);
            }
        }
        /* Reciprocal: normalise the sum to [1, 2) by its leading zeros, 1 / (1 + x). */
        headroom_plus_one = tl_clz32(sum);
        num_bits_over_unit = TL_SOFTMAX_ACCUM_INTEGER_BITS - headroom_plus_one;
        shifted = (headroom_plus_one >= 32 ? 0u : sum << headroom_plus_one) - 0x80000000u;
        inverse = tl_one_over_one_plus_x_for_x_in_0_1(tl_wrap32(shifted));
        /* Pass 2: exp(diff) / sum in Q0, down to 8 fractional bits, zero point -128. */
        for (i = 0; i < depth; ++i) {
            const int32_t diff = (int32_t)x[i] - max;
            int8_t out = -128;
            if (diff >= params->diff_min) {
                const int32_t scaled =
                    tl_srdhm(tl_wrap32((uint32_t)diff << params->input_left_shift),
                             params->input_multiplier);
                const int32_t unsat = tl_rounding_divide_by_pot(
                    tl_srdhm(inverse, tl_exp_on_negative_values_q5(scaled)),
                    num_bits_over_unit + 31 - 8);
                out = (int8_t)(unsat > 255 ? 127 : (unsat < 0 ? -128 : unsat - 128));
            }
            y[i] = out;
        }
    }
    return TL_OK;
}
