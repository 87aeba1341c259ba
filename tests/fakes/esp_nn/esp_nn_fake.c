/*
 * TEST DOUBLE of the ESP-NN functions tinylora calls (see esp_nn.h and tests/fakes/README.md).
 * Plain loops over the documented semantics. ESP-NN functions return nothing, so a contract
 * violation is counted and the output filled with 0x5A, which the byte comparison catches.
 * Scratch: this double asks for some (as the optimised ESP32-S3 build does) so that the
 * get-size / set-buffer handshake is exercised; it checks a buffer was set and scribbles over
 * the requested bytes.
 *
 * Also the test harness (tl_fake_setup / tl_fake_report), as in the CMSIS-NN double.
 */
#include <string.h>

#include "esp_nn.h"
#include "../fake_common.h"
#include "tl_kernels.h"
#include "tl_report.h"

#ifndef TL_FAKE_SCRATCH_BYTES
#define TL_FAKE_SCRATCH_BYTES 32768
#endif

int32_t fake_counts[FAKE_COUNTERS];

static const void *fake_conv_scratch;
static const void *fake_dw_scratch;

static void fake_poison(int8_t *out, int32_t n)
{
    ++fake_counts[FAKE_VIOLATIONS];
    if (out != NULL && n > 0) {
        memset(out, 0x5A, (size_t)n);
    }
}

/* Offsets "contained in 8 bits" per the header notes; input_offset 128 (zero point -128, the
 * common case TFLM passes) is accepted. */
static int fake_offsets_ok(int32_t in_offset, int32_t out_offset, int32_t act_min, int32_t act_max)
{
    return in_offset >= -128 && in_offset <= 128 && out_offset >= -128 && out_offset <= 127 &&
           act_min >= -128 && act_max <= 127 && act_min <= act_max;
}

/* The buffer set for this call must exist (4-byte aligned, as the header asks of scratch
 * buffers); scribble over `need` bytes of it. */
static int fake_scratch_ok(const void *buf, int need)
{
    if (need <= 0) {
        return 1;
    }
    if (buf == NULL || ((uintptr_t)buf & 3u) != 0u) {
        return 0;
    }
    memset((void *)(uintptr_t)buf, 0xA5, (size_t)need);
    ++fake_counts[FAKE_SCRATCH_CALLS];
    return 1;
}

/* ---- fully connected ---------------------------------------------------------------------- */

static void fake_fc(const int8_t *input, int32_t input_offset, uint16_t row_len,
                    const int8_t *filter, int32_t filter_offset, const int32_t *bias, int8_t *out,
                    uint16_t out_channels, int32_t out_offset, const int32_t *shifts,
                    const int32_t *mults, int32_t shift, int32_t mult, int32_t act_min,
                    int32_t act_max)
{
    int32_t o, k;
    if (input == NULL || filter == NULL || out == NULL || row_len == 0 || out_channels == 0 ||
        filter_offset != 0 || !fake_offsets_ok(input_offset, out_offset, act_min, act_max)) {
        fake_poison(out, out_channels);
        return;
    }
#if defined(CONFIG_IDF_TARGET_ESP32S3) && defined(CONFIG_NN_OPTIMIZED)
    /* esp_nn_esp32s3.h: aligned input; row_len and channels multiples of 8 */
    if ((row_len & 7u) != 0u || (out_channels & 7u) != 0u ||
        (((uintptr_t)input | (uintptr_t)filter) & 15u) != 0u) {
        fake_poison(out, out_channels);
        return;
    }
#endif
    for (o = 0; o < out_channels; ++o) {
        uint32_t acc = 0u;
        for (k = 0; k < row_len; ++k) {
            acc = fake_mac(acc, input[k], input_offset, filter[o * row_len + k], filter_offset);
        }
        if (bias != NULL) {
            acc += (uint32_t)bias[o];
        }
        out[o] = fake_output(acc, mults != NULL ? mults[o] : mult,
                             shifts != NULL ? shifts[o] : shift, out_offset, act_min, act_max);
    }
}

void esp_nn_fully_connected_s8_ansi(const int8_t *input_data, const int32_t input_offset,
                                    const uint16_t row_len, const int8_t *filter_data,
                                    const int32_t filter_offset, const int32_t *bias,
                                    int8_t *out_data, const uint16_t out_channels,
                                    const int32_t out_offset, const int32_t out_shift,
                                    const int32_t out_mult, const int32_t activation_min,
                                    const int32_t activation_max)
{
    ++fake_counts[FAKE_FC];
    fake_fc(input_data, input_offset, row_len, filter_data, filter_offset, bias, out_data,
            out_channels, out_offset, NULL, NULL, out_shift, out_mult, activation_min,
            activation_max);
}

#if !defined(TL_FAKE_ESP_NN_NO_PER_CH)
void esp_nn_fully_connected_per_ch_s8_ansi(const int8_t *input_data, const int32_t input_offset,
                                           const uint16_t row_len, const int8_t *filter_data,
                                           const int32_t filter_offset, const int32_t *bias,
                                           int8_t *out_data, const uint16_t out_channels,
                                           const int32_t out_offset, const int32_t *out_shift,
                                           const int32_t *out_mult, const int32_t activation_min,
                                           const int32_t activation_max)
{
    ++fake_counts[FAKE_FC_PER_CHANNEL];
    if (out_shift == NULL || out_mult == NULL) {
        fake_poison(out_data, out_channels);
        return;
    }
    fake_fc(input_data, input_offset, row_len, filter_data, filter_offset, bias, out_data,
            out_channels, out_offset, out_shift, out_mult, 0, 0, activation_min, activation_max);
}
#endif

/* ---- convolutions -------------------------------------------------------------------------- */

static int32_t fake_out_size(const data_dims_t *out)
{
    return out == NULL ? 0 : out->width * out->height * out->channels;
}

int esp_nn_get_conv_scratch_size_ansi(const data_dims_t *input_dims,
                                      const data_dims_t *filter_dims,
                                      const data_dims_t *output_dims,
                                      const conv_params_t *conv_params)
{
    (void)output_dims;
    (void)conv_params;
    /* an int16 copy of one input window */
    return input_dims->channels * filter_dims->width * filter_dims->height * (int)sizeof(int16_t);
}

void esp_nn_set_conv_scratch_buf_ansi(const void *buf)
{
    fake_conv_scratch = buf;
}

int esp_nn_get_depthwise_conv_scratch_size_ansi(const data_dims_t *input_dims,
                                                const data_dims_t *filter_dims,
                                                const data_dims_t *output_dims,
                                                const dw_conv_params_t *conv_params)
{
    (void)output_dims;
    /* some for ch_mult 1, none otherwise: both paths get exercised */
    if (conv_params->ch_mult != 1) {
        return 0;
    }
    return input_dims->channels * filter_dims->width * filter_dims->height * (int)sizeof(int16_t);
}

void esp_nn_set_depthwise_conv_scratch_buf_ansi(const void *buf)
{
    fake_dw_scratch = buf;
}

/* One window sum: `depth` channels from channel0 on, weights at the given strides. */
static uint32_t fake_window(const int8_t *image, int32_t in_h, int32_t in_w, int32_t in_c,
                            int32_t channel0, int32_t depth, const int8_t *weights,
                            int32_t w_row_stride, int32_t w_tap_stride, int32_t k_h, int32_t k_w,
                            int32_t y0, int32_t x0, int32_t in_offset)
{
    uint32_t acc = 0u;
    int32_t ky, kx, i;
    for (ky = 0; ky < k_h; ++ky) {
        for (kx = 0; kx < k_w; ++kx) {
            const int32_t iy = y0 + ky, ix = x0 + kx;
            if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                continue;
            }
            for (i = 0; i < depth; ++i) {
                acc = fake_mac(acc, image[(iy * in_w + ix) * in_c + channel0 + i], in_offset,
                               weights[ky * w_row_stride + kx * w_tap_stride + i], 0);
            }
        }
    }
    return acc;
}

void esp_nn_conv_s8_ansi(const data_dims_t *in, const int8_t *input, const data_dims_t *f,
                         const int8_t *filter, const int32_t *bias, const data_dims_t *out,
                         int8_t *output, const conv_params_t *p, const quant_data_t *q)
{
    int32_t oy, ox, oc;
    ++fake_counts[FAKE_CONV];
    if (in == NULL || f == NULL || out == NULL || p == NULL || q == NULL || q->shift == NULL ||
        q->mult == NULL || input == NULL || filter == NULL || output == NULL ||
        in->width < 1 || in->height < 1 || in->channels < 1 || f->width < 1 || f->height < 1 ||
        (f->channels != 0 && f->channels != in->channels) || out->channels < 1 ||
        p->stride.width < 1 || p->stride.height < 1 || p->padding.width < 0 ||
        p->padding.height < 0 || p->dilation.width != 1 || p->dilation.height != 1 ||
        !fake_offsets_ok(p->in_offset, p->out_offset, p->activation.min, p->activation.max) ||
        !fake_scratch_ok(fake_conv_scratch, esp_nn_get_conv_scratch_size_ansi(in, f, out, p))) {
        fake_poison(output, fake_out_size(out));
        return;
    }
    for (oy = 0; oy < out->height; ++oy) {
        for (ox = 0; ox < out->width; ++ox) {
            for (oc = 0; oc < out->channels; ++oc) {
                uint32_t acc = fake_window(
                    input, in->height, in->width, in->channels, 0, in->channels,
                    filter + oc * f->height * f->width * in->channels, f->width * in->channels,
                    in->channels, f->height, f->width, oy * p->stride.height - p->padding.height,
                    ox * p->stride.width - p->padding.width, p->in_offset);
                if (bias != NULL) {
                    acc += (uint32_t)bias[oc];
                }
                output[(oy * out->width + ox) * out->channels + oc] =
                    fake_output(acc, q->mult[oc], q->shift[oc], p->out_offset, p->activation.min,
                                p->activation.max);
            }
        }
    }
}

void esp_nn_depthwise_conv_s8_ansi(const data_dims_t *in, const int8_t *input,
                                   const data_dims_t *f, const int8_t *filter,
                                   const int32_t *bias, const data_dims_t *out, int8_t *output,
                                   const dw_conv_params_t *p, const quant_data_t *q)
{
    int32_t oy, ox, oc;
    ++fake_counts[FAKE_DEPTHWISE];
    if (in == NULL || f == NULL || out == NULL || p == NULL || q == NULL || q->shift == NULL ||
        q->mult == NULL || input == NULL || filter == NULL || output == NULL ||
        in->width < 1 || in->height < 1 || in->channels < 1 || f->width < 1 || f->height < 1 ||
        p->ch_mult < 1 || out->channels != in->channels * p->ch_mult ||
        p->stride.width < 1 || p->stride.height < 1 || p->padding.width < 0 ||
        p->padding.height < 0 || p->dilation.width != 1 || p->dilation.height != 1 ||
        !fake_offsets_ok(p->in_offset, p->out_offset, p->activation.min, p->activation.max) ||
        !fake_scratch_ok(fake_dw_scratch,
                         esp_nn_get_depthwise_conv_scratch_size_ansi(in, f, out, p))) {
        fake_poison(output, fake_out_size(out));
        return;
    }
    for (oy = 0; oy < out->height; ++oy) {
        for (ox = 0; ox < out->width; ++ox) {
            for (oc = 0; oc < out->channels; ++oc) {
                int32_t ic = 0, rest = oc; /* oc / ch_mult, by counting (no divide on LX106) */
                uint32_t acc;
                while (rest >= p->ch_mult) {
                    rest -= p->ch_mult;
                    ++ic;
                }
                acc = fake_window(input, in->height, in->width, in->channels, ic, 1, filter + oc,
                                  f->width * out->channels, out->channels, f->height, f->width,
                                  oy * p->stride.height - p->padding.height,
                                  ox * p->stride.width - p->padding.width, p->in_offset);
                if (bias != NULL) {
                    acc += (uint32_t)bias[oc];
                }
                output[(oy * out->width + ox) * out->channels + oc] =
                    fake_output(acc, q->mult[oc], q->shift[oc], p->out_offset, p->activation.min,
                                p->activation.max);
            }
        }
    }
}

/* ---- harness ------------------------------------------------------------------------------- */

void tl_fake_setup(void);
void tl_fake_report(void);

static uint8_t fake_scratch_memory[TL_FAKE_SCRATCH_BYTES + 1];

void tl_fake_setup(void)
{
    tl_kernels_set_scratch(fake_scratch_memory + 1, sizeof(fake_scratch_memory) - 1u);
}

void tl_fake_report(void)
{
    tl_report_i32("fake", fake_counts, FAKE_COUNTERS);
}
