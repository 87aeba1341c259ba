/*
 * tinylora runtime: the int8 ops beyond conv and FC (see tl_ops.h; spec: docs/ops.md and
 * tinylora/newops.py).
 */
#include "tl_ops.h"

#include "tl_kernels_backend.h"

#include <string.h>

#define TL_INT16_MIN (-32768)
#define TL_INT16_MAX 32767

/* ------------------------------------------------------------------------------------------
 * Argument checks shared by the ops.
 * ------------------------------------------------------------------------------------------ */
static int tl_dims_ok(const tl_dims *d)
{
    return d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0 &&
           (int64_t)d->n * d->h * d->w * d->c <= INT32_MAX;
}

static size_t tl_count(const tl_dims *d)
{
    return (size_t)d->n * (size_t)d->h * (size_t)d->w * (size_t)d->c;
}

static int tl_act_ok(int32_t act_min, int32_t act_max)
{
    return act_min >= -128 && act_min <= act_max && act_max <= 127;
}

static int tl_offset_ok(int32_t input_offset)
{
    return input_offset >= -127 && input_offset <= 128; /* -(int8 zero point) */
}

static int tl_zero_point_ok(int32_t zero_point)
{
    return zero_point >= -128 && zero_point <= 127;
}

/* Every window along one axis overlaps the input: the first starts before the input's end
 * of the filter (pad < filter) and the last one starts inside the input. */
static int tl_pool_axis_ok(int32_t in, int32_t out, int32_t filter, int32_t stride, int32_t pad)
{
    return stride >= 1 && filter >= 1 && filter <= 2048 && pad >= 0 && pad < filter &&
           (int64_t)(out - 1) * stride - pad < in;
}

static tl_status tl_pool_check(const tl_pool_params *params, const tl_dims *in, const int8_t *input,
                               const tl_dims *out, const int8_t *output)
{
    if (params == NULL || in == NULL || input == NULL || out == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (!tl_dims_ok(in) || !tl_dims_ok(out) || in->n != out->n || in->c != out->c) {
        return TL_ERR_SHAPE;
    }
    if (!tl_pool_axis_ok(in->h, out->h, params->filter_h, params->stride_h, params->pad_h) ||
        !tl_pool_axis_ok(in->w, out->w, params->filter_w, params->stride_w, params->pad_w) ||
        !tl_act_ok(params->act_min, params->act_max)) {
        return TL_ERR_PARAM;
    }
    return TL_OK;
}

/* The clipped window of output coordinate o along one axis: [*begin, *end). */
static void tl_window(int32_t o, int32_t stride, int32_t pad, int32_t filter, int32_t in,
                      int32_t *begin, int32_t *end)
{
    const int32_t start = o * stride - pad;
    *begin = start > 0 ? start : 0;
    *end = start + filter < in ? start + filter : in;
}

/* floor(n / d), d > 0, by restoring long division (no division instruction: Xtensa's libgcc
 * has no __udivsi3, and the int8 paths divide nothing). Once per pooling window. */
static uint32_t tl_udiv32(uint32_t n, uint32_t d)
{
    uint32_t q = 0u, r = 0u;
    int32_t i;
    for (i = 31; i >= 0; --i) {
        r = (r << 1) | ((n >> i) & 1u); /* r < d <= 2^31: no overflow */
        if (r >= d) {
            r -= d;
            q |= (uint32_t)1 << i;
        }
    }
    return q;
}

/* Counts below 2^16 divide by a multiply: recip = floor(2^24 / count). */
#define TL_RECIP_MAX_COUNT 65535

/* floor(num / count) for num <= 128.5 * count: q = (num * recip) >> 24 is at most one below
 * (num * recip <= 128.5 * 2^24 fits uint32; the error num * (2^24 / count - recip) / 2^24 < 1
 * as num < 2^24), then one correction. Larger counts: a bit-wise search of the 8-bit
 * quotient ((q | bit) * count <= 255 * 2^22 fits uint32). */
static uint32_t tl_small_quotient(uint32_t num, uint32_t count, uint32_t recip)
{
    uint32_t q = 0u, bit;
    if (count <= TL_RECIP_MAX_COUNT) {
        q = (num * recip) >> 24;
        return (q + 1u) * count <= num ? q + 1u : q;
    }
    for (bit = 128u; bit != 0u; bit >>= 1) {
        if ((q | bit) * count <= num) {
            q |= bit;
        }
    }
    return q;
}

/* The window mean rounded half away from zero: (acc +- count / 2) / count, truncated toward
 * zero as C division does (|acc| <= 128 * count: the quotient is at most 128). */
static int32_t tl_rounded_mean(int32_t acc, int32_t count, uint32_t recip)
{
    const uint32_t half = (uint32_t)count >> 1;
    if (acc > 0) {
        return (int32_t)tl_small_quotient((uint32_t)acc + half, (uint32_t)count, recip);
    }
    return -(int32_t)tl_small_quotient((uint32_t)(-acc) + half, (uint32_t)count, recip);
}

/* ------------------------------------------------------------------------------------------
 * AVERAGE_POOL_2D / MAX_POOL_2D.
 * ------------------------------------------------------------------------------------------ */
/* Channels pooled together: the window is walked once per block, reading contiguous bytes. */
#define TL_POOL_BLOCK 16

/* One output pixel of channels [c0, c0 + nb): rows [y0, y1) and columns [x0, x1) of image. */
static void tl_pool_pixel(const tl_pool_params *p, const int8_t *image, int32_t width,
                          int32_t channels, int32_t y0, int32_t y1, int32_t x0, int32_t x1,
                          int32_t c0, int32_t nb, int average, int8_t *y)
{
    int32_t acc[TL_POOL_BLOCK];
    int32_t k, row, col;
    for (k = 0; k < nb; ++k) {
        acc[k] = average ? 0 : -128;
    }
    for (row = y0; row < y1; ++row) {
        for (col = x0; col < x1; ++col) {
            const int8_t *px =
                image + ((size_t)row * (size_t)width + (size_t)col) * (size_t)channels + (size_t)c0;
            if (average) {
                for (k = 0; k < nb; ++k) {
                    acc[k] += px[k];
                }
            } else {
                for (k = 0; k < nb; ++k) {
                    acc[k] = px[k] > acc[k] ? px[k] : acc[k];
                }
            }
        }
    }
    if (average) {
        const int32_t count = (y1 - y0) * (x1 - x0);
        const uint32_t recip =
            count <= TL_RECIP_MAX_COUNT ? tl_udiv32((uint32_t)1 << 24, (uint32_t)count) : 0u;
        for (k = 0; k < nb; ++k) {
            y[k] = tl_sat8(tl_rounded_mean(acc[k], count, recip), p->act_min, p->act_max);
        }
    } else {
        for (k = 0; k < nb; ++k) {
            y[k] = tl_sat8(acc[k], p->act_min, p->act_max);
        }
    }
}

static void tl_pool_portable(const tl_pool_params *p, const tl_dims *in, const int8_t *input,
                             const tl_dims *out, int8_t *output, int average)
{
    const int32_t channels = in->c;
    int32_t b, oy, ox, c0;
    for (b = 0; b < in->n; ++b) {
        const int8_t *image = input + (size_t)b * (size_t)in->h * (size_t)in->w * (size_t)channels;
        for (oy = 0; oy < out->h; ++oy) {
            int32_t y0, y1, x0, x1;
            tl_window(oy, p->stride_h, p->pad_h, p->filter_h, in->h, &y0, &y1);
            for (ox = 0; ox < out->w; ++ox) {
                tl_window(ox, p->stride_w, p->pad_w, p->filter_w, in->w, &x0, &x1);
                for (c0 = 0; c0 < channels; c0 += TL_POOL_BLOCK) {
                    const int32_t nb =
                        channels - c0 < TL_POOL_BLOCK ? channels - c0 : TL_POOL_BLOCK;
                    tl_pool_pixel(p, image, in->w, channels, y0, y1, x0, x1, c0, nb, average,
                                  output + c0);
                }
                output += channels;
            }
        }
    }
}

tl_status tl_avg_pool_s8(const tl_context *ctx, const tl_pool_params *params, const tl_dims *in,
                         const int8_t *input, const tl_dims *out, int8_t *output)
{
    const tl_status s = tl_pool_check(params, in, input, out, output);
    if (s != TL_OK) {
        return s;
    }
#if defined(TL_BACKEND)
    {
        const int r = tl_backend_avg_pool(ctx, params, in, input, out, output);
        if (r != TL_DECLINED) {
            return (tl_status)r;
        }
    }
#else
    (void)ctx;
#endif
    tl_pool_portable(params, in, input, out, output, 1);
    return TL_OK;
}

size_t tl_avg_pool_s8_scratch_size(const tl_pool_params *params, const tl_dims *in,
                                   const tl_dims *out)
{
    if (params == NULL || in == NULL || out == NULL || !tl_dims_ok(in) || !tl_dims_ok(out)) {
        return 0u;
    }
#if defined(TL_BACKEND)
    return tl_scratch_need(tl_backend_avg_pool_scratch(params, in, out));
#else
    return 0u;
#endif
}

tl_status tl_max_pool_s8(const tl_context *ctx, const tl_pool_params *params, const tl_dims *in,
                         const int8_t *input, const tl_dims *out, int8_t *output)
{
    const tl_status s = tl_pool_check(params, in, input, out, output);
    if (s != TL_OK) {
        return s;
    }
#if defined(TL_BACKEND)
    {
        const int r = tl_backend_max_pool(ctx, params, in, input, out, output);
        if (r != TL_DECLINED) {
            return (tl_status)r;
        }
    }
#else
    (void)ctx;
#endif
    tl_pool_portable(params, in, input, out, output, 0);
    return TL_OK;
}

/* ------------------------------------------------------------------------------------------
 * ADD.
 * ------------------------------------------------------------------------------------------ */
static int tl_broadcasts(const tl_dims *in, const tl_dims *out)
{
    return (in->n == out->n || in->n == 1) && (in->h == out->h || in->h == 1) &&
           (in->w == out->w || in->w == 1) && (in->c == out->c || in->c == 1);
}

static int tl_same_dims(const tl_dims *a, const tl_dims *b)
{
    return a->n == b->n && a->h == b->h && a->w == b->w && a->c == b->c;
}

/* Index of output coordinate (b, y, x, c) in a tensor broadcast to the output. */
static size_t tl_broadcast_index(const tl_dims *d, int32_t b, int32_t y, int32_t x, int32_t c)
{
    const size_t bb = d->n == 1 ? 0u : (size_t)b;
    const size_t yy = d->h == 1 ? 0u : (size_t)y;
    const size_t xx = d->w == 1 ? 0u : (size_t)x;
    const size_t cc = d->c == 1 ? 0u : (size_t)c;
    return ((bb * (size_t)d->h + yy) * (size_t)d->w + xx) * (size_t)d->c + cc;
}

static int8_t tl_add_one(const tl_add_params *p, int32_t x1, int32_t x2)
{
    const int32_t a = tl_wrap32((uint32_t)(x1 + p->input1_offset) << p->left_shift);
    const int32_t b = tl_wrap32((uint32_t)(x2 + p->input2_offset) << p->left_shift);
    const int32_t sa = tl_requantize(a, p->input1_multiplier, p->input1_shift);
    const int32_t sb = tl_requantize(b, p->input2_multiplier, p->input2_shift);
    return tl_requantize_s8(tl_add_wrap(sa, sb), p->output_multiplier, p->output_shift,
                            p->output_offset, p->act_min, p->act_max);
}

tl_status tl_add_s8(const tl_add_params *params, const tl_dims *in1, const int8_t *input1,
                    const tl_dims *in2, const int8_t *input2, const tl_dims *out, int8_t *output)
{
    int32_t b, y, x, c;
    if (params == NULL || in1 == NULL || input1 == NULL || in2 == NULL || input2 == NULL ||
        out == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (!tl_dims_ok(in1) || !tl_dims_ok(in2) || !tl_dims_ok(out) || !tl_broadcasts(in1, out) ||
        !tl_broadcasts(in2, out)) {
        return TL_ERR_SHAPE;
    }
    if (!tl_offset_ok(params->input1_offset) || !tl_offset_ok(params->input2_offset) ||
        !tl_zero_point_ok(params->output_offset) || params->left_shift < 0 ||
        params->left_shift > 31 || !tl_act_ok(params->act_min, params->act_max)) {
        return TL_ERR_PARAM;
    }
#if defined(TL_BACKEND)
    if (tl_same_dims(in1, out) && tl_same_dims(in2, out)) {
        const int r = tl_backend_add(params, (int32_t)tl_count(out), input1, input2, output);
        if (r != TL_DECLINED) {
            return (tl_status)r;
        }
    }
#endif
    if (tl_same_dims(in1, out) && tl_same_dims(in2, out)) {
        const size_t n = tl_count(out);
        size_t i;
        for (i = 0; i < n; ++i) {
            output[i] = tl_add_one(params, input1[i], input2[i]);
        }
        return TL_OK;
    }
    for (b = 0; b < out->n; ++b) {
        for (y = 0; y < out->h; ++y) {
            for (x = 0; x < out->w; ++x) {
                for (c = 0; c < out->c; ++c) {
                    *output++ = tl_add_one(params, input1[tl_broadcast_index(in1, b, y, x, c)],
                                           input2[tl_broadcast_index(in2, b, y, x, c)]);
                }
            }
        }
    }
    return TL_OK;
}

/* ------------------------------------------------------------------------------------------
 * PAD, MEAN, CONCATENATION, RESHAPE.
 * ------------------------------------------------------------------------------------------ */
static int tl_pad_axis_ok(int32_t in, int32_t before, int32_t out)
{
    return before >= 0 && (int64_t)in + before <= out;
}

tl_status tl_pad_s8(const tl_pad_params *params, const tl_dims *in, const int8_t *input,
                    const tl_dims *out, int8_t *output)
{
    int32_t b, y, x;
    if (params == NULL || in == NULL || input == NULL || out == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (!tl_dims_ok(in) || !tl_dims_ok(out)) {
        return TL_ERR_SHAPE;
    }
    if (!tl_pad_axis_ok(in->n, params->before_n, out->n) ||
        !tl_pad_axis_ok(in->h, params->before_h, out->h) ||
        !tl_pad_axis_ok(in->w, params->before_w, out->w) ||
        !tl_pad_axis_ok(in->c, params->before_c, out->c) || !tl_zero_point_ok(params->pad_value)) {
        return TL_ERR_PARAM;
    }
    memset(output, (int)(uint8_t)(int8_t)params->pad_value, tl_count(out));
    for (b = 0; b < in->n; ++b) {
        for (y = 0; y < in->h; ++y) {
            for (x = 0; x < in->w; ++x) {
                const size_t src =
                    (((size_t)b * (size_t)in->h + (size_t)y) * (size_t)in->w + (size_t)x) *
                    (size_t)in->c;
                const size_t dst = ((((size_t)(b + params->before_n) * (size_t)out->h +
                                      (size_t)(y + params->before_h)) *
                                         (size_t)out->w +
                                     (size_t)(x + params->before_w)) *
                                    (size_t)out->c) +
                                   (size_t)params->before_c;
                memcpy(output + dst, input + src, (size_t)in->c);
            }
        }
    }
    return TL_OK;
}

tl_status tl_mean_s8(const tl_mean_params *params, const tl_dims *in, const int8_t *input,
                     int8_t *output)
{
    const size_t image = in != NULL ? (size_t)in->h * (size_t)in->w : 0u;
    int32_t b, c;
    size_t i;
    if (params == NULL || in == NULL || input == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (!tl_dims_ok(in)) {
        return TL_ERR_SHAPE;
    }
    if (!tl_offset_ok(params->input_offset) || !tl_zero_point_ok(params->output_offset)) {
        return TL_ERR_PARAM;
    }
    for (b = 0; b < in->n; ++b) {
        const int8_t *x = input + (size_t)b * image * (size_t)in->c;
        for (c = 0; c < in->c; ++c) {
            /* sum(x) - zp * count, wrapping modulo 2^32 as quant.wrap_int32 does */
            uint32_t acc = (uint32_t)params->input_offset * (uint32_t)image;
            for (i = 0; i < image; ++i) {
                acc += (uint32_t)(int32_t)x[i * (size_t)in->c + (size_t)c];
            }
            *output++ = tl_requantize_s8(tl_wrap32(acc), params->multiplier, params->shift,
                                         params->output_offset, -128, 127);
        }
    }
    return TL_OK;
}

tl_status tl_concat_s8(const tl_concat_params *params, const int8_t *const *inputs, int8_t *output)
{
    int32_t o, i;
    if (params == NULL || inputs == NULL || output == NULL || params->axis_size == NULL) {
        return TL_ERR_NULL;
    }
    if (params->num_inputs < 1 || params->outer < 1 || params->inner < 1) {
        return TL_ERR_SHAPE;
    }
    for (i = 0; i < params->num_inputs; ++i) {
        if (inputs[i] == NULL) {
            return TL_ERR_NULL;
        }
        if (params->axis_size[i] < 0) {
            return TL_ERR_SHAPE;
        }
    }
    for (o = 0; o < params->outer; ++o) {
        for (i = 0; i < params->num_inputs; ++i) {
            const size_t block = (size_t)params->axis_size[i] * (size_t)params->inner;
            memcpy(output, inputs[i] + (size_t)o * block, block);
            output += block;
        }
    }
    return TL_OK;
}

tl_status tl_reshape_s8(int32_t n, const int8_t *input, int8_t *output)
{
    if (input == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    if (input != output) {
        memmove(output, input, (size_t)n);
    }
    return TL_OK;
}

/* ------------------------------------------------------------------------------------------
 * QUANTIZE, DEQUANTIZE.
 * ------------------------------------------------------------------------------------------ */
tl_status tl_quantize_s8(const tl_quantize_params *params, int32_t n, const int8_t *input,
                         int8_t *output)
{
    int32_t i;
    if (params == NULL || input == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    if (!tl_offset_ok(params->input_offset) || !tl_zero_point_ok(params->output_offset)) {
        return TL_ERR_PARAM;
    }
    for (i = 0; i < n; ++i) {
        output[i] = tl_requantize_s8((int32_t)input[i] + params->input_offset, params->multiplier,
                                     params->shift, params->output_offset, -128, 127);
    }
    return TL_OK;
}

/* QUANTIZE uint8 -> int8 (a model's uint8 input end): input_offset = -zp in [-255, 0]. */
tl_status tl_quantize_u8_s8(const tl_quantize_params *params, int32_t n, const uint8_t *input,
                            int8_t *output)
{
    int32_t i;
    if (params == NULL || input == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    if (params->input_offset < -255 || params->input_offset > 0 ||
        !tl_zero_point_ok(params->output_offset)) {
        return TL_ERR_PARAM;
    }
    for (i = 0; i < n; ++i) {
        output[i] = tl_requantize_s8((int32_t)input[i] + params->input_offset, params->multiplier,
                                     params->shift, params->output_offset, -128, 127);
    }
    return TL_OK;
}

/* QUANTIZE int8 -> uint8 (a model's uint8 output end): output_offset = zp in [0, 255]; the
 * int8 kernel's tail shifted by 128 (sat8(v - 128) + 128 = min(max(v, 0), 255)). */
tl_status tl_quantize_s8_u8(const tl_quantize_params *params, int32_t n, const int8_t *input,
                            uint8_t *output)
{
    int32_t i;
    if (params == NULL || input == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    if (!tl_offset_ok(params->input_offset) || params->output_offset < 0 ||
        params->output_offset > 255) {
        return TL_ERR_PARAM;
    }
    for (i = 0; i < n; ++i) {
        const int8_t v =
            tl_requantize_s8((int32_t)input[i] + params->input_offset, params->multiplier,
                             params->shift, params->output_offset - 128, -128, 127);
        output[i] = (uint8_t)((int32_t)v + 128);
    }
    return TL_OK;
}

/* round(v) half away from zero (std::round of a float), clamped to [-1024, 1024]: enough for
 * an int8 result after the zero point, and exact without libm: |v| < 2^23 in the rounding
 * branch, so (float)t and v - (float)t are exact. NaN gives -1024. */
static int32_t tl_round_clamped(float v)
{
    int32_t t;
    float frac;
    if (v > 1024.0f) {
        return 1024;
    }
    if (!(v >= -1024.0f)) {
        return -1024;
    }
    t = (int32_t)v; /* truncation toward zero */
    frac = v - (float)t;
    if (frac >= 0.5f) {
        return t + 1;
    }
    if (frac <= -0.5f) {
        return t - 1;
    }
    return t;
}

tl_status tl_quantize_f32_s8(const tl_float_quant *quant, int32_t n, const float *input,
                             int8_t *output)
{
    int32_t i;
    if (quant == NULL || input == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    if (!(quant->scale > 0.0f) || !tl_zero_point_ok(quant->zero_point)) {
        return TL_ERR_PARAM;
    }
    for (i = 0; i < n; ++i) {
        output[i] =
            tl_sat8(tl_round_clamped(input[i] / quant->scale) + quant->zero_point, -128, 127);
    }
    return TL_OK;
}

tl_status tl_dequantize_s8_f32(const tl_float_quant *quant, int32_t n, const int8_t *input,
                               float *output)
{
    int32_t i;
    if (quant == NULL || input == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    if (!tl_zero_point_ok(quant->zero_point)) {
        return TL_ERR_PARAM;
    }
    for (i = 0; i < n; ++i) {
        output[i] = quant->scale * (float)((int32_t)input[i] - quant->zero_point);
    }
    return TL_OK;
}

/* ------------------------------------------------------------------------------------------
 * LOGISTIC: gemmlowp's fixed-point logistic on a Q4.27 input.
 * ------------------------------------------------------------------------------------------ */
#define TL_LOGISTIC_INTEGER_BITS 4

static int8_t tl_logistic_one(const tl_logistic_params *p, int32_t d)
{
    int32_t a, abs_a, pos, r;
    if (d <= -p->input_range_radius) {
        return -128;
    }
    if (d >= p->input_range_radius) {
        return 127;
    }
    a = tl_requantize(d, p->input_multiplier, p->input_left_shift);
    abs_a = a > 0 ? a : -a; /* |a| < 2^31: |d| < radius keeps a inside Q4.27 */
    pos = tl_one_over_one_plus_x_for_x_in_0_1(
        tl_exp_on_negative_values(-abs_a, TL_LOGISTIC_INTEGER_BITS));
    if (a == 0) {
        r = (int32_t)1 << 30;
    } else if (a > 0) {
        r = pos;
    } else {
        r = tl_wrap32((uint32_t)INT32_MAX - (uint32_t)pos);
    }
    return tl_sat8(tl_rounding_divide_by_pot(r, 31 - 8) - 128, -128, 127);
}

tl_status tl_logistic_s8(const tl_logistic_params *params, int32_t n, const int8_t *input,
                         int8_t *output)
{
    int32_t i;
    if (params == NULL || input == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    if (!tl_offset_ok(params->input_offset) || params->input_multiplier < 0 ||
        params->input_left_shift < -31 || params->input_left_shift > 31 ||
        params->input_range_radius < 0) {
        return TL_ERR_PARAM;
    }
    for (i = 0; i < n; ++i) {
        output[i] = tl_logistic_one(params, (int32_t)input[i] + params->input_offset);
    }
    return TL_OK;
}

/* ------------------------------------------------------------------------------------------
 * HARD_SWISH: TFLite's reference in int16 fixed point.
 * ------------------------------------------------------------------------------------------ */
/* gemmlowp's SaturatingRoundingDoublingHighMul on int16: (a*b + 2^14) >> 15 (floor). */
static int32_t tl_srdhm16(int32_t a, int32_t b)
{
    if (a == TL_INT16_MIN && b == TL_INT16_MIN) {
        return TL_INT16_MAX;
    }
    return tl_floor_shift32(a * b + (1 << 14), 15); /* |a*b| <= 2^30 */
}

/* TFLite's SaturatingDoublingHighMul on int16: (a*b) / 2^15 truncated toward zero. */
static int32_t tl_sdhm16(int32_t a, int32_t b)
{
    const int32_t p = a * b;
    if (a == TL_INT16_MIN && b == TL_INT16_MIN) {
        return TL_INT16_MAX;
    }
    return p >= 0 ? p >> 15 : -((-p) >> 15);
}

static int32_t tl_sat_shl16(int32_t x, int32_t n)
{
    return tl_sat16_64((int64_t)x * ((int64_t)1 << (n > 31 ? 31 : n)));
}

static int8_t tl_hard_swish_one(const tl_hard_swish_params *p, int32_t x)
{
    const int32_t v = (x + p->input_offset) * 128; /* |v| <= 255 * 128: int16 */
    const int32_t pre = tl_srdhm16(v, p->output_multiplier);
    int32_t r = v, y;
    if (p->reluish_exponent > 0) {
        r = tl_sat_shl16(r, p->reluish_exponent - 1);
    }
    r = tl_srdhm16(r, p->reluish_multiplier);
    if (p->reluish_exponent > 0) {
        r = tl_sat_shl16(r, 1);
    }
    if (p->reluish_exponent < 0) {
        r = tl_rounding_divide_by_pot(r, -p->reluish_exponent);
    }
    r = (r + (1 << 15)) >> 1; /* [-1, 1] in Q15 -> [0, 1]; r + 2^15 >= 0 */
    y = tl_rounding_divide_by_pot(tl_sdhm16(r, pre), -p->output_exponent) + p->output_offset;
    y = (int32_t)(((uint32_t)y + 32768u) & 0xFFFFu) - 32768; /* the int16 store wraps */
    return tl_sat8(y, -128, 127);
}

tl_status tl_hard_swish_s8(const tl_hard_swish_params *params, int32_t n, const int8_t *input,
                           int8_t *output)
{
    int32_t i;
    if (params == NULL || input == NULL || output == NULL) {
        return TL_ERR_NULL;
    }
    if (n < 0) {
        return TL_ERR_SHAPE;
    }
    if (!tl_offset_ok(params->input_offset) || !tl_zero_point_ok(params->output_offset) ||
        params->output_multiplier < 0 || params->output_multiplier > TL_INT16_MAX ||
        params->reluish_multiplier < 0 || params->reluish_multiplier > TL_INT16_MAX ||
        params->output_exponent > 0 || params->output_exponent < -40 ||
        params->reluish_exponent < -40 || params->reluish_exponent > 40) {
        return TL_ERR_PARAM;
    }
    for (i = 0; i < n; ++i) {
        output[i] = tl_hard_swish_one(params, input[i]);
    }
    return TL_OK;
}
