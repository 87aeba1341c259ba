/*
 * tinylora runtime: the ESP-NN glue of the int8 kernels (-D TL_USE_ESP_NN; see
 * tl_kernels_backend.h for the contract and firmware/README.md, "Optimised libraries").
 * Without TL_USE_ESP_NN this file compiles to nothing.
 */
#include "tl_kernels_backend.h"

#if defined(TL_USE_ESP_NN)
#if defined(ESP_PLATFORM)
/* esp_nn.h selects the chip's kernels from CONFIG_NN_OPTIMIZED / CONFIG_IDF_TARGET_*. */
#include "sdkconfig.h"
#endif
#if defined(SKIP_NUDGE) || defined(CONFIG_NN_SKIP_NUDGE) || defined(NN_SKIP_NUDGE)
#error "ESP-NN's SKIP_NUDGE / CONFIG_NN_SKIP_NUDGE requantization is not bit-exact; turn it off"
#endif
#if defined(__has_include)
#if !__has_include("esp_nn.h")
#error                                                                                             \
    "TL_USE_ESP_NN: ESP-NN (1.1.2) is not on the include path: a generated project gets it from src/idf_component.yml (ESP-IDF), its QEMU environments from ESP_NN_DIR; or build without -D TL_USE_ESP_NN (tinylora's portable kernels)"
#endif
#endif
#include "esp_nn.h"
/* ESP-NN keeps dims in uint16 and image coordinates in int16. */
static int tl_esp_fits(int32_t v)
{
    return v >= 0 && v <= 32767;
}

static int tl_esp_dims_fit(const tl_dims *in, const tl_dims *f, const tl_dims *out,
                           int32_t stride_h, int32_t stride_w, int32_t pad_h, int32_t pad_w)
{
    return tl_esp_fits(in->h) && tl_esp_fits(in->w) && tl_esp_fits(in->c) && tl_esp_fits(f->h) &&
           tl_esp_fits(f->w) && tl_esp_fits(out->h) && tl_esp_fits(out->w) && tl_esp_fits(out->c) &&
           tl_esp_fits(stride_h) && tl_esp_fits(stride_w) && tl_esp_fits(pad_h) &&
           tl_esp_fits(pad_w);
}

/* Whether esp_nn_fully_connected_*(x, row_len = depth, w, out_channels = channels) is exact. */
static int tl_esp_fc_call_ok(const int8_t *x, const int8_t *w, int32_t depth, int32_t channels)
{
#if defined(CONFIG_IDF_TARGET_ESP32S3) && defined(CONFIG_NN_OPTIMIZED)
    /* esp_nn_esp32s3.h: "works only on aligned input; row_len and channels should both be
     * multiple of 8". */
    return (depth & 7) == 0 && (channels & 7) == 0 && (((uintptr_t)x | (uintptr_t)w) & 15u) == 0u;
#else
    (void)x;
    (void)w;
    (void)depth;
    (void)channels;
    return 1;
#endif
}

int tl_backend_fully_connected(const tl_context *scratch, const tl_fc_params *params,
                               const tl_per_channel_quant *quant, int32_t rows, int32_t depth,
                               int32_t channels, const int8_t *input, const int8_t *filter,
                               const int32_t *bias, int8_t *output)
{
    const int32_t input_offset = params->input_offset;
    const int32_t output_offset = params->output_offset;
    int uniform;
    int32_t r, o;
    (void)scratch; /* ESP-NN's fully-connected kernels take no scratch */
    if (depth > 65535 || channels > 65535 || !tl_quant_scan(quant, channels, &uniform)) {
        return TL_DECLINED;
    }
    for (r = 0; r < rows; ++r) {
        const int8_t *x = input + (size_t)r * (size_t)depth;
        int8_t *y = output + (size_t)r * (size_t)channels;
        if (uniform) {
            if (!tl_esp_fc_call_ok(x, filter, depth, channels)) {
                tl_fc_portable(params, quant, x, depth, filter, bias, y, 0, channels);
                continue;
            }
            esp_nn_fully_connected_s8(x, input_offset, (uint16_t)depth, filter, 0, bias, y,
                                      (uint16_t)channels, output_offset, quant->shift[0],
                                      quant->multiplier[0], params->act_min, params->act_max);
            continue;
        }
#if defined(esp_nn_fully_connected_per_ch_s8)
        if (tl_esp_fc_call_ok(x, filter, depth, channels)) {
            esp_nn_fully_connected_per_ch_s8(x, input_offset, (uint16_t)depth, filter, 0, bias, y,
                                             (uint16_t)channels, output_offset, quant->shift,
                                             quant->multiplier, params->act_min, params->act_max);
            continue;
        }
#endif
        /* No per-channel entry point (older ESP-NN) or not usable here: one channel per call. */
        for (o = 0; o < channels; ++o) {
            const int8_t *w = filter + (size_t)o * (size_t)depth;
            if (!tl_esp_fc_call_ok(x, w, depth, 1)) {
                tl_fc_portable(params, quant, x, depth, filter, bias, y, o, o + 1);
                continue;
            }
            esp_nn_fully_connected_s8(x, input_offset, (uint16_t)depth, w, 0,
                                      bias != NULL ? bias + o : NULL, y + o, 1, output_offset,
                                      quant->shift[o], quant->multiplier[o], params->act_min,
                                      params->act_max);
        }
    }
    return TL_OK;
}

static void tl_esp_dims(data_dims_t *d, int32_t width, int32_t height, int32_t channels,
                        int32_t extra)
{
    d->width = width;
    d->height = height;
    d->channels = channels;
    d->extra = extra;
}

static void tl_esp_quant(const tl_per_channel_quant *quant, quant_data_t *q)
{
    q->shift = tl_mutable_i32(quant->shift);
    q->mult = tl_mutable_i32(quant->multiplier);
}

/* CONV_2D arguments for one image; filter_dims: channels = input channels (no groups),
 * extra = output channels. */
static void tl_esp_conv_args(const tl_conv_params *params, const tl_dims *in, const tl_dims *f,
                             const tl_dims *out, conv_params_t *conv, data_dims_t *input_dims,
                             data_dims_t *filter_dims, data_dims_t *output_dims)
{
    conv->in_offset = params->input_offset;
    conv->out_offset = params->output_offset;
    conv->stride.width = params->stride_w;
    conv->stride.height = params->stride_h;
    conv->padding.width = params->pad_w;
    conv->padding.height = params->pad_h;
    conv->dilation.width = 1;
    conv->dilation.height = 1;
    conv->activation.min = params->act_min;
    conv->activation.max = params->act_max;
    tl_esp_dims(input_dims, in->w, in->h, in->c, 1);
    tl_esp_dims(filter_dims, f->w, f->h, f->c, f->n);
    tl_esp_dims(output_dims, out->w, out->h, out->c, 1);
}

/* ESP-NN's optimised builds send every 1x1 filter to a routine that ignores padding: a 1x1
 * conv with padding (TFLite never writes one; the C API accepts it) stays portable. */
static int tl_esp_conv_usable(const tl_conv_params *params, const tl_dims *in, const tl_dims *f,
                              const tl_dims *out)
{
    const int padded_1x1 = f->h == 1 && f->w == 1 && (params->pad_h != 0 || params->pad_w != 0);
    return !padded_1x1 && params->dilation_h == 1 && params->dilation_w == 1 &&
           tl_esp_dims_fit(in, f, out, params->stride_h, params->stride_w, params->pad_h,
                           params->pad_w);
}

int32_t tl_backend_conv_scratch(const tl_conv_params *params, const tl_dims *in, const tl_dims *f,
                                const tl_dims *out)
{
    conv_params_t conv;
    data_dims_t input_dims, filter_dims, output_dims;
    if (!tl_esp_conv_usable(params, in, f, out)) {
        return 0;
    }
    tl_esp_conv_args(params, in, f, out, &conv, &input_dims, &filter_dims, &output_dims);
    return (int32_t)esp_nn_get_conv_scratch_size(&input_dims, &filter_dims, &output_dims, &conv);
}

int tl_backend_conv2d(const tl_context *scratch, const tl_conv_params *params,
                      const tl_per_channel_quant *quant, const tl_dims *in, const int8_t *input,
                      const tl_dims *f, const int8_t *filter, const int32_t *bias,
                      const tl_dims *out, int8_t *output)
{
    conv_params_t conv;
    data_dims_t input_dims, filter_dims, output_dims;
    quant_data_t q;
    const size_t in_image = (size_t)in->h * (size_t)in->w * (size_t)in->c;
    const size_t out_image = (size_t)out->h * (size_t)out->w * (size_t)out->c;
    int uniform;
    int32_t b, need;
    if (!tl_esp_conv_usable(params, in, f, out) || !tl_quant_scan(quant, out->c, &uniform)) {
        return TL_DECLINED;
    }
    tl_esp_conv_args(params, in, f, out, &conv, &input_dims, &filter_dims, &output_dims);
    tl_esp_quant(quant, &q);
    need = (int32_t)esp_nn_get_conv_scratch_size(&input_dims, &filter_dims, &output_dims, &conv);
    if (!tl_scratch_ok(scratch, need)) {
        return TL_ERR_ARENA;
    }
    if (need > 0) {
        esp_nn_set_conv_scratch_buf(tl_scratch_take(scratch, need));
    }
    for (b = 0; b < in->n; ++b) {
        esp_nn_conv_s8(&input_dims, input + (size_t)b * in_image, &filter_dims, filter, bias,
                       &output_dims, output + (size_t)b * out_image, &conv, &q);
    }
    return TL_OK;
}

/* DEPTHWISE_CONV_2D arguments for one image: filter [1][KH][KW][C_OUT]. */
static void tl_esp_dw_args(const tl_dw_conv_params *params, const tl_dims *in, const tl_dims *f,
                           const tl_dims *out, dw_conv_params_t *dw, data_dims_t *input_dims,
                           data_dims_t *filter_dims, data_dims_t *output_dims)
{
    dw->in_offset = params->input_offset;
    dw->out_offset = params->output_offset;
    dw->ch_mult = params->depth_multiplier;
    dw->stride.width = params->stride_w;
    dw->stride.height = params->stride_h;
    dw->padding.width = params->pad_w;
    dw->padding.height = params->pad_h;
    dw->dilation.width = 1;
    dw->dilation.height = 1;
    dw->activation.min = params->act_min;
    dw->activation.max = params->act_max;
    tl_esp_dims(input_dims, in->w, in->h, in->c, 1);
    tl_esp_dims(filter_dims, f->w, f->h, f->c, 1);
    tl_esp_dims(output_dims, out->w, out->h, out->c, 1);
}

static int tl_esp_dw_usable(const tl_dw_conv_params *params, const tl_dims *in, const tl_dims *f,
                            const tl_dims *out)
{
    return params->dilation_h == 1 && params->dilation_w == 1 &&
           tl_esp_fits(params->depth_multiplier) &&
           tl_esp_dims_fit(in, f, out, params->stride_h, params->stride_w, params->pad_h,
                           params->pad_w);
}

int32_t tl_backend_dw_scratch(const tl_dw_conv_params *params, const tl_dims *in, const tl_dims *f,
                              const tl_dims *out)
{
    dw_conv_params_t dw;
    data_dims_t input_dims, filter_dims, output_dims;
    if (!tl_esp_dw_usable(params, in, f, out)) {
        return 0;
    }
    tl_esp_dw_args(params, in, f, out, &dw, &input_dims, &filter_dims, &output_dims);
    return (int32_t)esp_nn_get_depthwise_conv_scratch_size(&input_dims, &filter_dims, &output_dims,
                                                           &dw);
}

int tl_backend_depthwise_conv2d(const tl_context *scratch, const tl_dw_conv_params *params,
                                const tl_per_channel_quant *quant, const tl_dims *in,
                                const int8_t *input, const tl_dims *f, const int8_t *filter,
                                const int32_t *bias, const tl_dims *out, int8_t *output)
{
    dw_conv_params_t dw;
    data_dims_t input_dims, filter_dims, output_dims;
    quant_data_t q;
    const size_t in_image = (size_t)in->h * (size_t)in->w * (size_t)in->c;
    const size_t out_image = (size_t)out->h * (size_t)out->w * (size_t)out->c;
    int uniform;
    int32_t b, need;
    if (!tl_esp_dw_usable(params, in, f, out) || !tl_quant_scan(quant, out->c, &uniform)) {
        return TL_DECLINED;
    }
    tl_esp_dw_args(params, in, f, out, &dw, &input_dims, &filter_dims, &output_dims);
    tl_esp_quant(quant, &q);
    need = (int32_t)esp_nn_get_depthwise_conv_scratch_size(&input_dims, &filter_dims, &output_dims,
                                                           &dw);
    if (!tl_scratch_ok(scratch, need)) {
        return TL_ERR_ARENA;
    }
    if (need > 0) {
        esp_nn_set_depthwise_conv_scratch_buf(tl_scratch_take(scratch, need));
    }
    for (b = 0; b < in->n; ++b) {
        esp_nn_depthwise_conv_s8(&input_dims, input + (size_t)b * in_image, &filter_dims, filter,
                                 bias, &output_dims, output + (size_t)b * out_image, &dw, &q);
    }
    return TL_OK;
}

int32_t tl_backend_fc_scratch(int32_t rows, int32_t depth, int32_t channels)
{
    (void)rows;
    (void)depth;
    (void)channels;
    return 0; /* ESP-NN's fully-connected kernels take no scratch */
}
/* ------------------------------------------------------------------------------------------
 * The ops of tl_ops.c. Read in ESP-NN v1.1.2's sources:
 *   esp_nn_avg_pool_s8 / esp_nn_max_pool_s8 (ANSI C, also what generic-opt builds use): the
 *     same clipped windows, the mean as (sum +- count/2) / count in C division, clamped:
 *     bit-exact. One image per call; dims, strides and padding travel as uint16.
 *   esp_nn_add_elementwise_s8 (ANSI C): TFLM's ADD for same-shape inputs with a nudged
 *     rounding high multiply (equal to tl_srdhm for every product) and a rounding right shift:
 *     bit-exact for shifts in [-31, 0] (it shifts right only), non-negative multipliers and
 *     left_shift <= 20 (no int32 overflow). Broadcasts and other parameters stay portable.
 * On ESP32-S3 optimised builds the three are assembly (esp_nn_esp32s3.h; the pooling kernels
 * require channels to be a multiple of 4): max pooling compares bytes, so it is exact and is
 * taken when channels % 4 == 0; average pooling and ADD round in assembly this project cannot
 * run (QEMU has no ESP32-S3 core), so they stay portable there.
 * ------------------------------------------------------------------------------------------ */
#if defined(CONFIG_IDF_TARGET_ESP32S3) && defined(CONFIG_NN_OPTIMIZED)
#define TL_ESP_S3_ASM 1
#endif

static int tl_esp_pool_ok(const tl_pool_params *params, const tl_dims *in, const tl_dims *out,
                          int average)
{
#if defined(TL_ESP_S3_ASM)
    if (average || (in->c & 3) != 0) {
        return 0;
    }
#else
    (void)average;
#endif
    return tl_esp_fits(in->h) && tl_esp_fits(in->w) && tl_esp_fits(in->c) && tl_esp_fits(out->h) &&
           tl_esp_fits(out->w) && tl_esp_fits(params->stride_h) && tl_esp_fits(params->stride_w) &&
           tl_esp_fits(params->filter_h) && tl_esp_fits(params->filter_w) &&
           tl_esp_fits(params->pad_h) && tl_esp_fits(params->pad_w);
}

static int tl_esp_pool(const tl_pool_params *params, const tl_dims *in, const int8_t *input,
                       const tl_dims *out, int8_t *output, int average)
{
    const size_t in_image = (size_t)in->h * (size_t)in->w * (size_t)in->c;
    const size_t out_image = (size_t)out->h * (size_t)out->w * (size_t)out->c;
    int32_t b;
    if (!tl_esp_pool_ok(params, in, out, average)) {
        return TL_DECLINED;
    }
    for (b = 0; b < in->n; ++b) {
        const int8_t *x = input + (size_t)b * in_image;
        int8_t *y = output + (size_t)b * out_image;
        if (average) {
            esp_nn_avg_pool_s8(
                x, (uint16_t)in->w, (uint16_t)in->h, y, (uint16_t)out->w, (uint16_t)out->h,
                (uint16_t)params->stride_w, (uint16_t)params->stride_h, (uint16_t)params->filter_w,
                (uint16_t)params->filter_h, (uint16_t)params->pad_w, (uint16_t)params->pad_h,
                params->act_min, params->act_max, (uint16_t)in->c);
        } else {
            esp_nn_max_pool_s8(
                x, (uint16_t)in->w, (uint16_t)in->h, y, (uint16_t)out->w, (uint16_t)out->h,
                (uint16_t)params->stride_w, (uint16_t)params->stride_h, (uint16_t)params->filter_w,
                (uint16_t)params->filter_h, (uint16_t)params->pad_w, (uint16_t)params->pad_h,
                params->act_min, params->act_max, (uint16_t)in->c);
        }
    }
    return TL_OK;
}

int tl_backend_avg_pool(const tl_context *scratch, const tl_pool_params *params, const tl_dims *in,
                        const int8_t *input, const tl_dims *out, int8_t *output)
{
    (void)scratch; /* ESP-NN's pooling kernels take no scratch */
    return tl_esp_pool(params, in, input, out, output, 1);
}

int tl_backend_max_pool(const tl_context *scratch, const tl_pool_params *params, const tl_dims *in,
                        const int8_t *input, const tl_dims *out, int8_t *output)
{
    (void)scratch;
    return tl_esp_pool(params, in, input, out, output, 0);
}

int32_t tl_backend_avg_pool_scratch(const tl_pool_params *params, const tl_dims *in,
                                    const tl_dims *out)
{
    (void)params;
    (void)in;
    (void)out;
    return 0; /* ESP-NN's pooling kernels take no scratch */
}

int tl_backend_add(const tl_add_params *params, int32_t size, const int8_t *input1,
                   const int8_t *input2, int8_t *output)
{
#if defined(TL_ESP_S3_ASM)
    (void)params;
    (void)size;
    (void)input1;
    (void)input2;
    (void)output;
    return TL_DECLINED;
#else
    const tl_add_params *p = params;
    if (p->left_shift < 0 || p->left_shift > 20 || p->input1_shift < -31 || p->input1_shift > 0 ||
        p->input2_shift < -31 || p->input2_shift > 0 || p->output_shift < -31 ||
        p->output_shift > 0 || p->input1_multiplier < 0 || p->input2_multiplier < 0 ||
        p->output_multiplier < 0) {
        return TL_DECLINED;
    }
    esp_nn_add_elementwise_s8(input1, input2, p->input1_offset, p->input2_offset,
                              p->input1_multiplier, p->input2_multiplier, p->input1_shift,
                              p->input2_shift, p->left_shift, output, p->output_offset,
                              p->output_multiplier, p->output_shift, p->act_min, p->act_max, size);
    return TL_OK;
#endif
}
#endif /* TL_USE_ESP_NN */
#if !defined(TL_USE_ESP_NN)
typedef int tl_kernels_esp_nn_unused; /* ISO C: a translation unit is not empty */
#endif
