/*
 * tinylora runtime: the CMSIS-NN glue of the int8 kernels (-D TL_USE_CMSIS_NN; see
 * tl_kernels_backend.h for the contract and firmware/README.md, "Optimised libraries").
 * Without TL_USE_CMSIS_NN this file compiles to nothing.
 */
#include "tl_kernels_backend.h"

#if defined(TL_USE_CMSIS_NN)
#if defined(__ARM_FEATURE_MVE)
/* On Helium, arm_fully_connected_s8 reads per-layer kernel sums from ctx.buf (prepared with
 * arm_vector_sum_s8, whose signature changed between releases); tinylora does not prepare them. */
#error "TL_USE_CMSIS_NN is not supported on Helium (MVE) cores; build without it"
#endif
#if defined(CMSIS_NN_USE_SINGLE_ROUNDING)
#error                                                                                             \
    "CMSIS_NN_USE_SINGLE_ROUNDING changes requantization; tinylora is bit-exact with double rounding only"
#endif
#if defined(CMSIS_NN_USE_REQUANTIZE_INLINE_ASSEMBLY)
#error                                                                                             \
    "CMSIS_NN_USE_REQUANTIZE_INLINE_ASSEMBLY must stay off: tinylora is checked against CMSIS-NN's C requantization"
#endif
#if defined(__has_include)
#if !__has_include("arm_nnfunctions.h")
#error                                                                                             \
    "TL_USE_CMSIS_NN: CMSIS-NN (v7.0.0) is not on the include path: vendor it (a generated project: lib/cmsis_nn/README.md) or build without -D TL_USE_CMSIS_NN (tinylora's portable kernels)"
#endif
#endif
#include "arm_nnfunctions.h"
static void tl_cmsis_dims(cmsis_nn_dims *d, int32_t n, int32_t h, int32_t w, int32_t c)
{
    d->n = n;
    d->h = h;
    d->w = w;
    d->c = c;
}

static tl_status tl_cmsis_status(arm_cmsis_nn_status status)
{
    if (status == ARM_CMSIS_NN_SUCCESS) {
        return TL_OK;
    }
    return status == ARM_CMSIS_NN_ARG_ERROR ? TL_ERR_PARAM : TL_ERR_UNSUPPORTED;
}

/* CMSIS-NN's context for a call needing `need` bytes (0: none) from the caller's scratch;
 * 0 if that is too small. */
static int tl_cmsis_context(const tl_context *scratch, cmsis_nn_context *ctx, int32_t need)
{
    ctx->buf = need > 0 ? tl_scratch_take(scratch, need) : NULL;
    ctx->size = need > 0 ? need : 0;
    return need <= 0 || ctx->buf != NULL;
}

/* FULLY_CONNECTED shapes: input [rows][depth], filter_dims n = accumulation depth,
 * c = output channels (CMSIS-NN's convention, not tinylora's), output [rows][channels]. */
static void tl_cmsis_fc_dims(int32_t rows, int32_t depth, int32_t channels,
                             cmsis_nn_dims *input_dims, cmsis_nn_dims *filter_dims,
                             cmsis_nn_dims *bias_dims, cmsis_nn_dims *output_dims)
{
    tl_cmsis_dims(input_dims, rows, 1, 1, depth);
    tl_cmsis_dims(filter_dims, depth, 1, 1, channels);
    tl_cmsis_dims(bias_dims, 1, 1, 1, channels);
    tl_cmsis_dims(output_dims, rows, 1, 1, channels);
}

int32_t tl_backend_fc_scratch(int32_t rows, int32_t depth, int32_t channels)
{
    cmsis_nn_dims input_dims, filter_dims, bias_dims, output_dims;
    tl_cmsis_fc_dims(rows, depth, channels, &input_dims, &filter_dims, &bias_dims, &output_dims);
    return arm_fully_connected_s8_get_buffer_size(&filter_dims);
}

int tl_backend_fully_connected(const tl_context *scratch, const tl_fc_params *params,
                               const tl_per_channel_quant *quant, int32_t rows, int32_t depth,
                               int32_t channels, const int8_t *input, const int8_t *filter,
                               const int32_t *bias, int8_t *output)
{
    cmsis_nn_context ctx;
    cmsis_nn_fc_params fc;
    cmsis_nn_dims input_dims, filter_dims, bias_dims, output_dims;
    arm_cmsis_nn_status status;
    int uniform;
    if (params->input_offset < -127 || !tl_quant_scan(quant, channels, &uniform)) {
        return TL_DECLINED;
    }
    tl_cmsis_fc_dims(rows, depth, channels, &input_dims, &filter_dims, &bias_dims, &output_dims);
    if (!tl_cmsis_context(scratch, &ctx, arm_fully_connected_s8_get_buffer_size(&filter_dims))) {
        return TL_ERR_ARENA;
    }
    fc.input_offset = params->input_offset;
    fc.filter_offset = 0;
    fc.output_offset = params->output_offset;
    fc.activation.min = params->act_min;
    fc.activation.max = params->act_max;
    if (uniform) {
        cmsis_nn_per_tensor_quant_params q;
        q.multiplier = quant->multiplier[0];
        q.shift = quant->shift[0];
        status = arm_fully_connected_s8(&ctx, &fc, &q, &input_dims, input, &filter_dims, filter,
                                        &bias_dims, bias, &output_dims, output);
    } else {
        cmsis_nn_per_channel_quant_params q;
        q.multiplier = tl_mutable_i32(quant->multiplier);
        q.shift = tl_mutable_i32(quant->shift);
        status = arm_fully_connected_per_channel_s8(&ctx, &fc, &q, &input_dims, input, &filter_dims,
                                                    filter, &bias_dims, bias, &output_dims, output);
    }
    return (int)tl_cmsis_status(status);
}

/* CONV_2D arguments: tinylora's dims are already NHWC / OHWI like CMSIS-NN's. */
static void tl_cmsis_conv_args(const tl_conv_params *params, const tl_dims *in, const tl_dims *f,
                               const tl_dims *out, cmsis_nn_conv_params *conv,
                               cmsis_nn_dims *input_dims, cmsis_nn_dims *filter_dims,
                               cmsis_nn_dims *bias_dims, cmsis_nn_dims *output_dims)
{
    conv->input_offset = params->input_offset;
    conv->output_offset = params->output_offset;
    conv->stride.w = params->stride_w;
    conv->stride.h = params->stride_h;
    conv->padding.w = params->pad_w;
    conv->padding.h = params->pad_h;
    conv->dilation.w = params->dilation_w;
    conv->dilation.h = params->dilation_h;
    conv->activation.min = params->act_min;
    conv->activation.max = params->act_max;
    tl_cmsis_dims(input_dims, in->n, in->h, in->w, in->c);
    tl_cmsis_dims(filter_dims, f->n, f->h, f->w, f->c);
    tl_cmsis_dims(bias_dims, 1, 1, 1, out->c);
    tl_cmsis_dims(output_dims, out->n, out->h, out->w, out->c);
}

int32_t tl_backend_conv_scratch(const tl_conv_params *params, const tl_dims *in, const tl_dims *f,
                                const tl_dims *out)
{
    cmsis_nn_conv_params conv;
    cmsis_nn_dims input_dims, filter_dims, bias_dims, output_dims;
    tl_cmsis_conv_args(params, in, f, out, &conv, &input_dims, &filter_dims, &bias_dims,
                       &output_dims);
    return arm_convolve_wrapper_s8_get_buffer_size(&conv, &input_dims, &filter_dims, &output_dims);
}

int tl_backend_conv2d(const tl_context *scratch, const tl_conv_params *params,
                      const tl_per_channel_quant *quant, const tl_dims *in, const int8_t *input,
                      const tl_dims *f, const int8_t *filter, const int32_t *bias,
                      const tl_dims *out, int8_t *output)
{
    cmsis_nn_context ctx;
    cmsis_nn_conv_params conv;
    cmsis_nn_per_channel_quant_params q;
    cmsis_nn_dims input_dims, filter_dims, bias_dims, output_dims;
    int uniform;
    if (params->input_offset < -127 || !tl_quant_scan(quant, out->c, &uniform)) {
        return TL_DECLINED;
    }
    tl_cmsis_conv_args(params, in, f, out, &conv, &input_dims, &filter_dims, &bias_dims,
                       &output_dims);
    if (!tl_cmsis_context(scratch, &ctx,
                          arm_convolve_wrapper_s8_get_buffer_size(&conv, &input_dims, &filter_dims,
                                                                  &output_dims))) {
        return TL_ERR_ARENA;
    }
    q.multiplier = tl_mutable_i32(quant->multiplier);
    q.shift = tl_mutable_i32(quant->shift);
    return (int)tl_cmsis_status(arm_convolve_wrapper_s8(&ctx, &conv, &q, &input_dims, input,
                                                        &filter_dims, filter, &bias_dims, bias,
                                                        &output_dims, output));
}

/* DEPTHWISE_CONV_2D arguments for one image: filter [1][KH][KW][C_OUT]. */
static void tl_cmsis_dw_args(const tl_dw_conv_params *params, const tl_dims *in, const tl_dims *f,
                             const tl_dims *out, cmsis_nn_dw_conv_params *dw,
                             cmsis_nn_dims *input_dims, cmsis_nn_dims *filter_dims,
                             cmsis_nn_dims *bias_dims, cmsis_nn_dims *output_dims)
{
    dw->input_offset = params->input_offset;
    dw->output_offset = params->output_offset;
    dw->ch_mult = params->depth_multiplier;
    dw->stride.w = params->stride_w;
    dw->stride.h = params->stride_h;
    dw->padding.w = params->pad_w;
    dw->padding.h = params->pad_h;
    dw->dilation.w = params->dilation_w;
    dw->dilation.h = params->dilation_h;
    dw->activation.min = params->act_min;
    dw->activation.max = params->act_max;
    tl_cmsis_dims(input_dims, 1, in->h, in->w, in->c);
    tl_cmsis_dims(filter_dims, 1, f->h, f->w, f->c);
    tl_cmsis_dims(bias_dims, 1, 1, 1, out->c);
    tl_cmsis_dims(output_dims, 1, out->h, out->w, out->c);
}

int32_t tl_backend_dw_scratch(const tl_dw_conv_params *params, const tl_dims *in, const tl_dims *f,
                              const tl_dims *out)
{
    cmsis_nn_dw_conv_params dw;
    cmsis_nn_dims input_dims, filter_dims, bias_dims, output_dims;
    tl_cmsis_dw_args(params, in, f, out, &dw, &input_dims, &filter_dims, &bias_dims, &output_dims);
    return arm_depthwise_conv_wrapper_s8_get_buffer_size(&dw, &input_dims, &filter_dims,
                                                         &output_dims);
}

int tl_backend_depthwise_conv2d(const tl_context *scratch, const tl_dw_conv_params *params,
                                const tl_per_channel_quant *quant, const tl_dims *in,
                                const int8_t *input, const tl_dims *f, const int8_t *filter,
                                const int32_t *bias, const tl_dims *out, int8_t *output)
{
    cmsis_nn_context ctx;
    cmsis_nn_dw_conv_params dw;
    cmsis_nn_per_channel_quant_params q;
    cmsis_nn_dims input_dims, filter_dims, bias_dims, output_dims;
    const size_t in_image = (size_t)in->h * (size_t)in->w * (size_t)in->c;
    const size_t out_image = (size_t)out->h * (size_t)out->w * (size_t)out->c;
    int uniform;
    int32_t b;
    if (params->input_offset < -127 || !tl_quant_scan(quant, out->c, &uniform)) {
        return TL_DECLINED;
    }
    tl_cmsis_dw_args(params, in, f, out, &dw, &input_dims, &filter_dims, &bias_dims, &output_dims);
    if (!tl_cmsis_context(scratch, &ctx,
                          arm_depthwise_conv_wrapper_s8_get_buffer_size(
                              &dw, &input_dims, &filter_dims, &output_dims))) {
        return TL_ERR_ARENA;
    }
    q.multiplier = tl_mutable_i32(quant->multiplier);
    q.shift = tl_mutable_i32(quant->shift);
    for (b = 0; b < in->n; ++b) {
        const tl_status s = tl_cmsis_status(arm_depthwise_conv_wrapper_s8(
            &ctx, &dw, &q, &input_dims, input + (size_t)b * in_image, &filter_dims, filter,
            &bias_dims, bias, &output_dims, output + (size_t)b * out_image));
        if (s != TL_OK) {
            return (int)s;
        }
    }
    return TL_OK;
}

/* ------------------------------------------------------------------------------------------
 * The ops of tl_ops.c. Read in CMSIS-NN v7.0.0's sources:
 *   arm_avgpool_s8 / arm_max_pool_s8: the same clipped windows (padded positions not counted),
 *     the mean as (sum +- count/2) / count in C division, clamped: bit-exact. The DSP path sums
 *     in int32 with QADD (saturating; |sum| <= 128 * 2048^2 never saturates). One image per
 *     call (the API documents [H, W, C]). avgpool needs ch * 4 bytes of scratch on DSP cores.
 *   arm_elementwise_add_s8: TFLM's ADD with arm_nn_requantize (double rounding) for same-shape
 *     inputs. Declined (portable path) when: shapes differ (broadcast); an offset is outside
 *     the documented [-127, 128]; left_shift is outside [16, 20] (the DSP path masks the
 *     offset input to 16 bits before shifting, exact only when the shift drops the upper
 *     16 bits; <= 20 keeps the input sum inside int32: TFLM uses 20); a shift is outside
 *     [-31, 0] or a multiplier negative (the library's high multiply does not saturate).
 * ------------------------------------------------------------------------------------------ */
static void tl_cmsis_pool_args(const tl_pool_params *params, const tl_dims *in, const tl_dims *out,
                               cmsis_nn_pool_params *pool, cmsis_nn_dims *input_dims,
                               cmsis_nn_dims *filter_dims, cmsis_nn_dims *output_dims)
{
    pool->stride.h = params->stride_h;
    pool->stride.w = params->stride_w;
    pool->padding.h = params->pad_h;
    pool->padding.w = params->pad_w;
    pool->activation.min = params->act_min;
    pool->activation.max = params->act_max;
    tl_cmsis_dims(input_dims, 1, in->h, in->w, in->c);
    tl_cmsis_dims(filter_dims, 1, params->filter_h, params->filter_w, 1);
    tl_cmsis_dims(output_dims, 1, out->h, out->w, out->c);
}

int32_t tl_backend_avg_pool_scratch(const tl_pool_params *params, const tl_dims *in,
                                    const tl_dims *out)
{
    (void)params;
    (void)in;
    return arm_avgpool_s8_get_buffer_size(out->w, out->c);
}

static int tl_cmsis_pool(const tl_context *scratch, const tl_pool_params *params, const tl_dims *in,
                         const int8_t *input, const tl_dims *out, int8_t *output, int average)
{
    cmsis_nn_context ctx;
    cmsis_nn_pool_params pool;
    cmsis_nn_dims input_dims, filter_dims, output_dims;
    const size_t in_image = (size_t)in->h * (size_t)in->w * (size_t)in->c;
    const size_t out_image = (size_t)out->h * (size_t)out->w * (size_t)out->c;
    int32_t b;
    tl_cmsis_pool_args(params, in, out, &pool, &input_dims, &filter_dims, &output_dims);
    if (!tl_cmsis_context(scratch, &ctx,
                          average ? arm_avgpool_s8_get_buffer_size(out->w, out->c) : 0)) {
        return TL_ERR_ARENA;
    }
    for (b = 0; b < in->n; ++b) {
        const int8_t *x = input + (size_t)b * in_image;
        int8_t *y = output + (size_t)b * out_image;
        const tl_status s = tl_cmsis_status(
            average ? arm_avgpool_s8(&ctx, &pool, &input_dims, x, &filter_dims, &output_dims, y)
                    : arm_max_pool_s8(&ctx, &pool, &input_dims, x, &filter_dims, &output_dims, y));
        if (s != TL_OK) {
            return (int)s;
        }
    }
    return TL_OK;
}

int tl_backend_avg_pool(const tl_context *scratch, const tl_pool_params *params, const tl_dims *in,
                        const int8_t *input, const tl_dims *out, int8_t *output)
{
    return tl_cmsis_pool(scratch, params, in, input, out, output, 1);
}

int tl_backend_max_pool(const tl_context *scratch, const tl_pool_params *params, const tl_dims *in,
                        const int8_t *input, const tl_dims *out, int8_t *output)
{
    return tl_cmsis_pool(scratch, params, in, input, out, output, 0);
}

static int tl_cmsis_add_ok(const tl_add_params *p)
{
    return p->input1_offset >= -127 && p->input1_offset <= 128 && p->input2_offset >= -127 &&
           p->input2_offset <= 128 && p->left_shift >= 16 && p->left_shift <= 20 &&
           p->input1_shift >= -31 && p->input1_shift <= 0 && p->input2_shift >= -31 &&
           p->input2_shift <= 0 && p->output_shift >= -31 && p->output_shift <= 0 &&
           p->input1_multiplier >= 0 && p->input2_multiplier >= 0 && p->output_multiplier >= 0;
}

int tl_backend_add(const tl_add_params *params, int32_t size, const int8_t *input1,
                   const int8_t *input2, int8_t *output)
{
    if (!tl_cmsis_add_ok(params)) {
        return TL_DECLINED;
    }
    return (int)tl_cmsis_status(arm_elementwise_add_s8(
        input1, input2, params->input1_offset, params->input1_multiplier, params->input1_shift,
        params->input2_offset, params->input2_multiplier, params->input2_shift, params->left_shift,
        output, params->output_offset, params->output_multiplier, params->output_shift,
        params->act_min, params->act_max, size));
}

#endif /* TL_USE_CMSIS_NN */
#if !defined(TL_USE_CMSIS_NN)
typedef int tl_kernels_cmsis_nn_unused; /* ISO C: a translation unit is not empty */
#endif
