/*
 * Per-layer instruction-count harness of benchmarks/kernels.py: five frozen int8 layers, each
 * run once between two reads of the target's counter, by ONE implementation chosen at build
 * time:
 *   (default)        tinylora's kernels (tl_conv2d_s8, ...): portable C on every core (the
 *                    frozen kernels have no DSP path);
 *   BENCH_CMSIS_NN   CMSIS-NN called directly (arm_convolve_wrapper_s8,
 *                    arm_depthwise_conv_wrapper_s8, arm_fully_connected_per_channel_s8);
 *                    whether its DSP or pure-C code runs is decided when the library is built;
 *   BENCH_ESP_NN     ESP-NN's ANSI C kernels called directly (esp_nn_*_ansi).
 * Every implementation gets the same inputs (xorshift, fixed seeds), per-channel multipliers
 * and shifts, and reports the counter delta ("n_<layer>") and an FNV-1a digest of the layer's
 * output bytes ("h_<layer>"), so kernels.py can check that all paths give the same bytes.
 * Run under QEMU with -icount; kernels.py turns counter deltas into instructions.
 */
#include <stdint.h>
#include <string.h>

#include "tl_kernels.h"
#include "tl_counter.h"
#include "tl_report.h"

#if defined(BENCH_CMSIS_NN)
#include "arm_nnfunctions.h"
#elif defined(BENCH_ESP_NN)
#include "esp_nn.h"
#endif


#define MAX_IN (24 * 24 * 64)
#define MAX_OUT (24 * 24 * 64)
#define MAX_W (1024 * 128)
#define MAX_C 128

static int8_t bench_in[MAX_IN];
static int8_t bench_out[MAX_OUT];
static int8_t bench_w[MAX_W];
static int32_t bench_bias[MAX_C];
static int32_t bench_mult[MAX_C];
static int32_t bench_shift[MAX_C];
#if defined(BENCH_CMSIS_NN) || defined(BENCH_ESP_NN)
static int32_t bench_scratch[4096]; /* 16 KiB; each layer checks its need */
#endif

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* Inputs in [-128, 127], symmetric weights in [-127, 127], bias in [-2048, 2047], multipliers
 * in [2^30, 2^31), one shift per layer (chosen so outputs spread over the int8 range). */
static void fill(uint32_t seed, int32_t n_in, int32_t n_w, int32_t channels, int32_t shift)
{
    int32_t i;
    for (i = 0; i < n_in; ++i) {
        bench_in[i] = (int8_t)((int32_t)(xorshift(&seed) >> 24) - 128);
    }
    for (i = 0; i < n_w; ++i) {
        const int32_t w = (int32_t)(xorshift(&seed) >> 24) - 128;
        bench_w[i] = (int8_t)(w == -128 ? -127 : w);
    }
    for (i = 0; i < channels; ++i) {
        bench_bias[i] = (int32_t)(xorshift(&seed) >> 20) - 2048;
        bench_mult[i] = (int32_t)(0x40000000u + (xorshift(&seed) >> 2));
        bench_shift[i] = shift;
    }
}

static void report(const char *name, uint32_t ticks, int32_t out_bytes, int status)
{
    uint32_t h = 2166136261u;
    int32_t i;
    char label[16];
    size_t len = 0u;
    for (i = 0; i < out_bytes; ++i) {
        h = (h ^ (uint8_t)bench_out[i]) * 16777619u;
    }
    while (name[len] != '\0' && len < 12u) { /* no strlen on the Xtensa target */
        ++len;
    }
    if (status != 0) {
        tl_report_error(name, 0, status);
        return;
    }
    label[0] = 'n';
    label[1] = '_';
    memcpy(label + 2, name, len + 1);
    tl_report_i32(label, (const int32_t *)&ticks, 1);
    label[0] = 'h';
    tl_report_i32(label, (const int32_t *)&h, 1);
}

#define IN_OFFSET 17   /* input zero point -17 */
#define OUT_OFFSET (-3)

/* CONV_2D (kernel k x k, stride 1, SAME padding) and its 1x1 form. */
static void bench_conv(const char *name, uint32_t seed, int32_t hw, int32_t cin, int32_t cout,
                       int32_t k, int32_t shift)
{
    const int32_t pad = k / 2;
    uint32_t a, b;
    int status = 0;
    fill(seed, hw * hw * cin, cout * k * k * cin, cout, shift);
    memset(bench_out, 0, sizeof bench_out);
#if defined(BENCH_CMSIS_NN)
    {
        cmsis_nn_context ctx;
        cmsis_nn_conv_params conv;
        cmsis_nn_per_channel_quant_params q;
        cmsis_nn_dims in_d, f_d, b_d, o_d;
        int32_t need;
        conv.input_offset = IN_OFFSET;
        conv.output_offset = OUT_OFFSET;
        conv.stride.w = conv.stride.h = 1;
        conv.padding.w = conv.padding.h = pad;
        conv.dilation.w = conv.dilation.h = 1;
        conv.activation.min = -128;
        conv.activation.max = 127;
        in_d.n = 1; in_d.h = hw; in_d.w = hw; in_d.c = cin;
        f_d.n = cout; f_d.h = k; f_d.w = k; f_d.c = cin;
        b_d.n = 1; b_d.h = 1; b_d.w = 1; b_d.c = cout;
        o_d.n = 1; o_d.h = hw; o_d.w = hw; o_d.c = cout;
        q.multiplier = bench_mult;
        q.shift = bench_shift;
        need = arm_convolve_wrapper_s8_get_buffer_size(&conv, &in_d, &f_d, &o_d);
        if (need > (int32_t)sizeof bench_scratch) {
            report(name, 0, 0, 99);
            return;
        }
        ctx.buf = bench_scratch;
        ctx.size = need;
        a = tl_counter();
        status = (int)arm_convolve_wrapper_s8(&ctx, &conv, &q, &in_d, bench_in, &f_d, bench_w,
                                              &b_d, bench_bias, &o_d, bench_out);
        b = tl_counter();
    }
#elif defined(BENCH_ESP_NN)
    {
        conv_params_t conv;
        quant_data_t q;
        data_dims_t in_d, f_d, o_d;
        int need;
        conv.in_offset = IN_OFFSET;
        conv.out_offset = OUT_OFFSET;
        conv.stride.width = conv.stride.height = 1;
        conv.padding.width = conv.padding.height = pad;
        conv.dilation.width = conv.dilation.height = 1;
        conv.activation.min = -128;
        conv.activation.max = 127;
        in_d.width = hw; in_d.height = hw; in_d.channels = cin; in_d.extra = 1;
        f_d.width = k; f_d.height = k; f_d.channels = cin; f_d.extra = cout;
        o_d.width = hw; o_d.height = hw; o_d.channels = cout; o_d.extra = 1;
        q.shift = bench_shift;
        q.mult = bench_mult;
        need = esp_nn_get_conv_scratch_size(&in_d, &f_d, &o_d, &conv);
        if (need > (int)sizeof bench_scratch) {
            report(name, 0, 0, 99);
            return;
        }
        esp_nn_set_conv_scratch_buf(bench_scratch);
        a = tl_counter();
        esp_nn_conv_s8(&in_d, bench_in, &f_d, bench_w, bench_bias, &o_d, bench_out, &conv, &q);
        b = tl_counter();
    }
#else
    {
        tl_conv_params p;
        const tl_per_channel_quant q = { bench_mult, bench_shift };
        const tl_dims in_d = { 1, hw, hw, cin };
        const tl_dims f_d = { cout, k, k, cin };
        const tl_dims o_d = { 1, hw, hw, cout };
        p.input_offset = IN_OFFSET;
        p.output_offset = OUT_OFFSET;
        p.stride_h = p.stride_w = 1;
        p.pad_h = p.pad_w = pad;
        p.dilation_h = p.dilation_w = 1;
        p.act_min = -128;
        p.act_max = 127;
        a = tl_counter();
        /* no kernel scratch: tinylora's own kernels (portable / DSP) take none */
        status = (int)tl_conv2d_s8(NULL, &p, &q, &in_d, bench_in, &f_d, bench_w, bench_bias,
                                   &o_d, bench_out);
        b = tl_counter();
    }
#endif
    report(name, tl_counter_elapsed(a, b), hw * hw * cout, status);
}

/* DEPTHWISE_CONV_2D k x k, multiplier 1, stride 1, SAME padding. */
static void bench_dw(const char *name, uint32_t seed, int32_t hw, int32_t ch, int32_t k,
                     int32_t shift)
{
    const int32_t pad = k / 2;
    uint32_t a, b;
    int status = 0;
    fill(seed, hw * hw * ch, k * k * ch, ch, shift);
    memset(bench_out, 0, sizeof bench_out);
#if defined(BENCH_CMSIS_NN)
    {
        cmsis_nn_context ctx;
        cmsis_nn_dw_conv_params dw;
        cmsis_nn_per_channel_quant_params q;
        cmsis_nn_dims in_d, f_d, b_d, o_d;
        int32_t need;
        dw.input_offset = IN_OFFSET;
        dw.output_offset = OUT_OFFSET;
        dw.ch_mult = 1;
        dw.stride.w = dw.stride.h = 1;
        dw.padding.w = dw.padding.h = pad;
        dw.dilation.w = dw.dilation.h = 1;
        dw.activation.min = -128;
        dw.activation.max = 127;
        in_d.n = 1; in_d.h = hw; in_d.w = hw; in_d.c = ch;
        f_d.n = 1; f_d.h = k; f_d.w = k; f_d.c = ch;
        b_d.n = 1; b_d.h = 1; b_d.w = 1; b_d.c = ch;
        o_d.n = 1; o_d.h = hw; o_d.w = hw; o_d.c = ch;
        q.multiplier = bench_mult;
        q.shift = bench_shift;
        need = arm_depthwise_conv_wrapper_s8_get_buffer_size(&dw, &in_d, &f_d, &o_d);
        if (need > (int32_t)sizeof bench_scratch) {
            report(name, 0, 0, 99);
            return;
        }
        ctx.buf = bench_scratch;
        ctx.size = need;
        a = tl_counter();
        status = (int)arm_depthwise_conv_wrapper_s8(&ctx, &dw, &q, &in_d, bench_in, &f_d,
                                                    bench_w, &b_d, bench_bias, &o_d, bench_out);
        b = tl_counter();
    }
#elif defined(BENCH_ESP_NN)
    {
        dw_conv_params_t dw;
        quant_data_t q;
        data_dims_t in_d, f_d, o_d;
        int need;
        dw.in_offset = IN_OFFSET;
        dw.out_offset = OUT_OFFSET;
        dw.ch_mult = 1;
        dw.stride.width = dw.stride.height = 1;
        dw.padding.width = dw.padding.height = pad;
        dw.dilation.width = dw.dilation.height = 1;
        dw.activation.min = -128;
        dw.activation.max = 127;
        in_d.width = hw; in_d.height = hw; in_d.channels = ch; in_d.extra = 1;
        f_d.width = k; f_d.height = k; f_d.channels = ch; f_d.extra = 1;
        o_d.width = hw; o_d.height = hw; o_d.channels = ch; o_d.extra = 1;
        q.shift = bench_shift;
        q.mult = bench_mult;
        need = esp_nn_get_depthwise_conv_scratch_size(&in_d, &f_d, &o_d, &dw);
        if (need > (int)sizeof bench_scratch) {
            report(name, 0, 0, 99);
            return;
        }
        esp_nn_set_depthwise_conv_scratch_buf(bench_scratch);
        a = tl_counter();
        esp_nn_depthwise_conv_s8(&in_d, bench_in, &f_d, bench_w, bench_bias, &o_d, bench_out,
                                 &dw, &q);
        b = tl_counter();
    }
#else
    {
        tl_dw_conv_params p;
        const tl_per_channel_quant q = { bench_mult, bench_shift };
        const tl_dims in_d = { 1, hw, hw, ch };
        const tl_dims f_d = { 1, k, k, ch };
        const tl_dims o_d = { 1, hw, hw, ch };
        p.input_offset = IN_OFFSET;
        p.output_offset = OUT_OFFSET;
        p.stride_h = p.stride_w = 1;
        p.pad_h = p.pad_w = pad;
        p.dilation_h = p.dilation_w = 1;
        p.depth_multiplier = 1;
        p.act_min = -128;
        p.act_max = 127;
        a = tl_counter();
        status = (int)tl_depthwise_conv2d_s8(NULL, &p, &q, &in_d, bench_in, &f_d, bench_w,
                                             bench_bias, &o_d, bench_out);
        b = tl_counter();
    }
#endif
    report(name, tl_counter_elapsed(a, b), hw * hw * ch, status);
}

/* FULLY_CONNECTED, one row, per-channel quantization. */
static void bench_fc(const char *name, uint32_t seed, int32_t depth, int32_t out, int32_t shift)
{
    uint32_t a, b;
    int status = 0;
    fill(seed, depth, depth * out, out, shift);
    memset(bench_out, 0, sizeof bench_out);
#if defined(BENCH_CMSIS_NN)
    {
        cmsis_nn_context ctx;
        cmsis_nn_fc_params fc;
        cmsis_nn_per_channel_quant_params q;
        cmsis_nn_dims in_d, f_d, b_d, o_d;
        fc.input_offset = IN_OFFSET;
        fc.filter_offset = 0;
        fc.output_offset = OUT_OFFSET;
        fc.activation.min = -128;
        fc.activation.max = 127;
        in_d.n = 1; in_d.h = 1; in_d.w = 1; in_d.c = depth;
        f_d.n = depth; f_d.h = 1; f_d.w = 1; f_d.c = out;
        b_d.n = 1; b_d.h = 1; b_d.w = 1; b_d.c = out;
        o_d.n = 1; o_d.h = 1; o_d.w = 1; o_d.c = out;
        q.multiplier = bench_mult;
        q.shift = bench_shift;
        ctx.buf = NULL;
        ctx.size = 0;
        a = tl_counter();
        status = (int)arm_fully_connected_per_channel_s8(&ctx, &fc, &q, &in_d, bench_in, &f_d,
                                                         bench_w, &b_d, bench_bias, &o_d,
                                                         bench_out);
        b = tl_counter();
    }
#elif defined(BENCH_ESP_NN)
    a = tl_counter();
    esp_nn_fully_connected_per_ch_s8(bench_in, IN_OFFSET, (uint16_t)depth, bench_w, 0, bench_bias,
                                     bench_out, (uint16_t)out, OUT_OFFSET, bench_shift, bench_mult,
                                     -128, 127);
    b = tl_counter();
#else
    {
        static const tl_fc_params p = { IN_OFFSET, OUT_OFFSET, -128, 127 };
        const tl_per_channel_quant q = { bench_mult, bench_shift };
        const tl_dims in_d = { 1, 1, 1, depth };
        const tl_dims f_d = { out, 1, 1, depth };
        const tl_dims o_d = { 1, 1, 1, out };
        a = tl_counter();
        status = (int)tl_fully_connected_s8(NULL, &p, &q, &in_d, bench_in, &f_d, bench_w,
                                            bench_bias, &o_d, bench_out);
        b = tl_counter();
    }
#endif
    report(name, tl_counter_elapsed(a, b), out, status);
}

int main(void)
{
    uint32_t a, b;
    tl_counter_init();
    a = tl_counter();
    b = tl_counter();
    report("empty", tl_counter_elapsed(a, b), 0, 0);
    bench_conv("conv", 101u, 24, 16, 32, 3, -9);
    bench_dw("dw", 202u, 24, 64, 3, -6);
    bench_conv("pw", 303u, 24, 64, 64, 1, -9);
    bench_fc("fc256", 404u, 256, 64, -9);
    bench_fc("fc1024", 505u, 1024, 128, -10);
    return tl_report_done();
}
