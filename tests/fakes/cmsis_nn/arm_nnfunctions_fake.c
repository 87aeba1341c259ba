/*
 * TEST DOUBLE of the CMSIS-NN functions tinylora calls (see arm_nnfunctions.h and
 * tests/fakes/README.md). Plain loops over the documented semantics; every documented argument
 * constraint is checked and a violation returns ARM_CMSIS_NN_ARG_ERROR (and is counted), which
 * tinylora turns into an error status the tests see. Scratch: the sizes below are what this
 * double asks for (in the spirit of the DSP build's im2col buffers); it checks that ctx carries
 * at least that much and scribbles over it, so nothing may depend on its contents.
 *
 * Also the test harness: tl_fake_setup() registers a deliberately misaligned scratch buffer with
 * tl_kernels_set_scratch (TL_FAKE_SCRATCH_BYTES, default 32 KiB), tl_fake_report() prints the
 * counters.
 */
#include <string.h>

#include "arm_nnfunctions.h"
#include "../fake_common.h"
#include "tl_kernels.h"
#include "tl_report.h"

#ifndef TL_FAKE_SCRATCH_BYTES
#define TL_FAKE_SCRATCH_BYTES 32768
#endif

int32_t fake_counts[FAKE_COUNTERS];

static arm_cmsis_nn_status fake_reject(void)
{
    ++fake_counts[FAKE_VIOLATIONS];
    return ARM_CMSIS_NN_ARG_ERROR;
}

static int fake_offsets_ok(int32_t input_offset, int32_t output_offset,
                           const cmsis_nn_activation *act)
{
    return input_offset >= -127 && input_offset <= 128 && output_offset >= -128 &&
           output_offset <= 127 && act->min >= -128 && act->max <= 127 && act->min <= act->max;
}

/* ctx must carry `need` bytes; then they are overwritten, as a real kernel would. */
static int fake_scratch_ok(const cmsis_nn_context *ctx, int32_t need)
{
    if (need <= 0) {
        return 1;
    }
    if (ctx == NULL || ctx->buf == NULL || ctx->size < need) {
        return 0;
    }
    memset(ctx->buf, 0xA5, (size_t)need);
    ++fake_counts[FAKE_SCRATCH_CALLS];
    return 1;
}

static int fake_positive(const cmsis_nn_dims *d)
{
    return d != NULL && d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

/* ---- fully connected ---------------------------------------------------------------------- */

int32_t arm_fully_connected_s8_get_buffer_size(const cmsis_nn_dims *filter_dims)
{
    (void)filter_dims; /* only Helium builds use ctx (kernel sums) */
    return 0;
}

/* multipliers / shifts: per channel when `mults` is not NULL, else the single pair */
static arm_cmsis_nn_status fake_fc(const cmsis_nn_context *ctx, const cmsis_nn_fc_params *fc,
                                   const int32_t *mults, const int32_t *shifts, int32_t mult,
                                   int32_t shift, const cmsis_nn_dims *input_dims,
                                   const int8_t *input, const cmsis_nn_dims *filter_dims,
                                   const int8_t *filter, const cmsis_nn_dims *bias_dims,
                                   const int32_t *bias, const cmsis_nn_dims *output_dims,
                                   int8_t *output)
{
    int32_t batch, k, o, accum, out_c;
    if (ctx == NULL || fc == NULL || input == NULL || filter == NULL || output == NULL ||
        bias_dims == NULL || !fake_positive(input_dims) || !fake_positive(filter_dims) ||
        !fake_positive(output_dims)) {
        return fake_reject();
    }
    accum = filter_dims->n;
    out_c = filter_dims->c;
    if (!fake_offsets_ok(fc->input_offset, fc->output_offset, &fc->activation) ||
        fc->filter_offset != 0 || input_dims->h * input_dims->w * input_dims->c != accum ||
        output_dims->c != out_c || output_dims->n != input_dims->n ||
        !fake_scratch_ok(ctx, arm_fully_connected_s8_get_buffer_size(filter_dims))) {
        return fake_reject();
    }
    for (batch = 0; batch < input_dims->n; ++batch) {
        const int8_t *x = input + batch * accum;
        for (o = 0; o < out_c; ++o) {
            uint32_t acc = 0u;
            for (k = 0; k < accum; ++k) {
                acc = fake_mac(acc, x[k], fc->input_offset, filter[o * accum + k], fc->filter_offset);
            }
            if (bias != NULL) {
                acc += (uint32_t)bias[o];
            }
            output[batch * out_c + o] =
                fake_output(acc, mults != NULL ? mults[o] : mult, shifts != NULL ? shifts[o] : shift,
                            fc->output_offset, fc->activation.min, fc->activation.max);
        }
    }
    return ARM_CMSIS_NN_SUCCESS;
}

arm_cmsis_nn_status arm_fully_connected_s8(const cmsis_nn_context *ctx,
                                           const cmsis_nn_fc_params *fc_params,
                                           const cmsis_nn_per_tensor_quant_params *quant_params,
                                           const cmsis_nn_dims *input_dims, const int8_t *input_data,
                                           const cmsis_nn_dims *filter_dims, const int8_t *filter_data,
                                           const cmsis_nn_dims *bias_dims, const int32_t *bias_data,
                                           const cmsis_nn_dims *output_dims, int8_t *output_data)
{
    ++fake_counts[FAKE_FC];
    if (quant_params == NULL) {
        return fake_reject();
    }
    return fake_fc(ctx, fc_params, NULL, NULL, quant_params->multiplier, quant_params->shift,
                   input_dims, input_data, filter_dims, filter_data, bias_dims, bias_data,
                   output_dims, output_data);
}

arm_cmsis_nn_status arm_fully_connected_per_channel_s8(
    const cmsis_nn_context *ctx, const cmsis_nn_fc_params *fc_params,
    const cmsis_nn_per_channel_quant_params *quant_params, const cmsis_nn_dims *input_dims,
    const int8_t *input_data, const cmsis_nn_dims *filter_dims, const int8_t *filter_data,
    const cmsis_nn_dims *bias_dims, const int32_t *bias_data, const cmsis_nn_dims *output_dims,
    int8_t *output_data)
{
    ++fake_counts[FAKE_FC_PER_CHANNEL];
    if (quant_params == NULL || quant_params->multiplier == NULL || quant_params->shift == NULL) {
        return fake_reject();
    }
    return fake_fc(ctx, fc_params, quant_params->multiplier, quant_params->shift, 0, 0, input_dims,
                   input_data, filter_dims, filter_data, bias_dims, bias_data, output_dims,
                   output_data);
}

/* ---- convolution --------------------------------------------------------------------------- */

int32_t arm_convolve_wrapper_s8_get_buffer_size(const cmsis_nn_conv_params *conv_params,
                                                const cmsis_nn_dims *input_dims,
                                                const cmsis_nn_dims *filter_dims,
                                                const cmsis_nn_dims *output_dims)
{
    (void)conv_params;
    (void)output_dims;
    /* two im2col columns of int16 */
    return 2 * input_dims->c * filter_dims->h * filter_dims->w * (int32_t)sizeof(int16_t);
}

/* One output value of a (depthwise when in_step == 0) convolution window. */
static uint32_t fake_window(const int8_t *image, int32_t in_h, int32_t in_w, int32_t in_c,
                            int32_t channel0, int32_t depth, const int8_t *weights,
                            int32_t w_row_stride, int32_t w_tap_stride, int32_t k_h, int32_t k_w,
                            int32_t y0, int32_t x0, int32_t dil_h, int32_t dil_w, int32_t in_offset)
{
    uint32_t acc = 0u;
    int32_t ky, kx, i;
    for (ky = 0; ky < k_h; ++ky) {
        const int32_t iy = y0 + ky * dil_h;
        for (kx = 0; kx < k_w; ++kx) {
            const int32_t ix = x0 + kx * dil_w;
            if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                continue; /* padding: the zero point, i.e. nothing in the offset domain */
            }
            for (i = 0; i < depth; ++i) {
                acc = fake_mac(acc, image[(iy * in_w + ix) * in_c + channel0 + i], in_offset,
                               weights[ky * w_row_stride + kx * w_tap_stride + i], 0);
            }
        }
    }
    return acc;
}

arm_cmsis_nn_status arm_convolve_wrapper_s8(const cmsis_nn_context *ctx,
                                            const cmsis_nn_conv_params *p,
                                            const cmsis_nn_per_channel_quant_params *q,
                                            const cmsis_nn_dims *in, const int8_t *input,
                                            const cmsis_nn_dims *f, const int8_t *filter,
                                            const cmsis_nn_dims *bias_dims, const int32_t *bias,
                                            const cmsis_nn_dims *out, int8_t *output)
{
    int32_t b, oy, ox, oc;
    ++fake_counts[FAKE_CONV];
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || input == NULL ||
        filter == NULL || output == NULL || bias_dims == NULL || !fake_positive(in) ||
        !fake_positive(f) || !fake_positive(out)) {
        return fake_reject();
    }
    if (!fake_offsets_ok(p->input_offset, p->output_offset, &p->activation) ||
        f->c != in->c || f->n != out->c || out->n != in->n || p->stride.w < 1 || p->stride.h < 1 ||
        p->dilation.w < 1 || p->dilation.h < 1 || p->padding.w < 0 || p->padding.h < 0 ||
        !fake_scratch_ok(ctx, arm_convolve_wrapper_s8_get_buffer_size(p, in, f, out))) {
        return fake_reject();
    }
    for (b = 0; b < in->n; ++b) {
        const int8_t *image = input + b * in->h * in->w * in->c;
        for (oy = 0; oy < out->h; ++oy) {
            for (ox = 0; ox < out->w; ++ox) {
                for (oc = 0; oc < out->c; ++oc) {
                    uint32_t acc = fake_window(image, in->h, in->w, in->c, 0, in->c,
                                               filter + oc * f->h * f->w * f->c, f->w * f->c, f->c,
                                               f->h, f->w, oy * p->stride.h - p->padding.h,
                                               ox * p->stride.w - p->padding.w, p->dilation.h,
                                               p->dilation.w, p->input_offset);
                    if (bias != NULL) {
                        acc += (uint32_t)bias[oc];
                    }
                    output[((b * out->h + oy) * out->w + ox) * out->c + oc] =
                        fake_output(acc, q->multiplier[oc], q->shift[oc], p->output_offset,
                                    p->activation.min, p->activation.max);
                }
            }
        }
    }
    return ARM_CMSIS_NN_SUCCESS;
}

/* ---- depthwise convolution ----------------------------------------------------------------- */

int32_t arm_depthwise_conv_wrapper_s8_get_buffer_size(const cmsis_nn_dw_conv_params *dw_conv_params,
                                                      const cmsis_nn_dims *input_dims,
                                                      const cmsis_nn_dims *filter_dims,
                                                      const cmsis_nn_dims *output_dims)
{
    (void)output_dims;
    /* like the optimised ch_mult == 1 kernel: one int16 column per input channel and tap;
     * nothing otherwise (so both ctx forms are exercised) */
    if (dw_conv_params->ch_mult != 1 || dw_conv_params->dilation.w != 1 ||
        dw_conv_params->dilation.h != 1) {
        return 0;
    }
    return input_dims->c * filter_dims->h * filter_dims->w * (int32_t)sizeof(int16_t);
}

arm_cmsis_nn_status arm_depthwise_conv_wrapper_s8(const cmsis_nn_context *ctx,
                                                  const cmsis_nn_dw_conv_params *p,
                                                  const cmsis_nn_per_channel_quant_params *q,
                                                  const cmsis_nn_dims *in, const int8_t *input,
                                                  const cmsis_nn_dims *f, const int8_t *filter,
                                                  const cmsis_nn_dims *bias_dims, const int32_t *bias,
                                                  const cmsis_nn_dims *out, int8_t *output)
{
    int32_t oy, ox, oc;
    ++fake_counts[FAKE_DEPTHWISE];
    if (p == NULL || q == NULL || q->multiplier == NULL || q->shift == NULL || input == NULL ||
        filter == NULL || output == NULL || bias_dims == NULL || !fake_positive(in) ||
        !fake_positive(f) || !fake_positive(out)) {
        return fake_reject();
    }
    if (!fake_offsets_ok(p->input_offset, p->output_offset, &p->activation) || p->ch_mult < 1 ||
        in->n != 1 || out->n != 1 || f->n != 1 || f->c != out->c || out->c != in->c * p->ch_mult ||
        p->stride.w < 1 || p->stride.h < 1 || p->dilation.w < 1 || p->dilation.h < 1 ||
        p->padding.w < 0 || p->padding.h < 0 ||
        !fake_scratch_ok(ctx, arm_depthwise_conv_wrapper_s8_get_buffer_size(p, in, f, out))) {
        return fake_reject();
    }
    for (oy = 0; oy < out->h; ++oy) {
        for (ox = 0; ox < out->w; ++ox) {
            for (oc = 0; oc < out->c; ++oc) {
                /* output channel oc reads input channel oc / ch_mult (counted, not divided) */
                int32_t ic = 0, rest = oc;
                uint32_t acc;
                while (rest >= p->ch_mult) {
                    rest -= p->ch_mult;
                    ++ic;
                }
                acc = fake_window(input, in->h, in->w, in->c, ic, 1, filter + oc, f->w * f->c, f->c,
                                  f->h, f->w, oy * p->stride.h - p->padding.h,
                                  ox * p->stride.w - p->padding.w, p->dilation.h, p->dilation.w,
                                  p->input_offset);
                if (bias != NULL) {
                    acc += (uint32_t)bias[oc];
                }
                output[(oy * out->w + ox) * out->c + oc] =
                    fake_output(acc, q->multiplier[oc], q->shift[oc], p->output_offset,
                                p->activation.min, p->activation.max);
            }
        }
    }
    return ARM_CMSIS_NN_SUCCESS;
}

/* ---- harness ------------------------------------------------------------------------------- */

void tl_fake_setup(void);
void tl_fake_report(void);

static uint8_t fake_scratch_memory[TL_FAKE_SCRATCH_BYTES + 1];

void tl_fake_setup(void)
{
    /* one byte in: tl_kernels_set_scratch must realign it */
    tl_kernels_set_scratch(fake_scratch_memory + 1, sizeof(fake_scratch_memory) - 1u);
}

void tl_fake_report(void)
{
    tl_report_i32("fake", fake_counts, FAKE_COUNTERS);
}
