/*
 * tinylora runtime: int8 inference kernels of the frozen base model.
 *
 * Each kernel is the C form of the matching layer in tinylora/layers.py (the specification)
 * and is bit-exact with it, hence with TFLM's reference int8 kernels: accumulate
 * (x + input_offset) * w in 32 bits (wrapping modulo 2^32), add the int32 bias (NULL: none),
 * requantize with double rounding per output channel (tl_requantize), add output_offset and
 * clamp to [act_min, act_max].
 *
 * Layouts: activations NHWC int8; FULLY_CONNECTED weights [out][depth]; CONV_2D weights OHWI;
 * DEPTHWISE_CONV_2D weights [1][KH][KW][C * depth_multiplier]. Weights are symmetric int8
 * (zero point 0). No allocation, no float; input and output must not overlap.
 *
 * Backends. The frozen kernels below are portable C on every core (blocked so that several dot
 * products share their loads); the fast path on Cortex-M and ESP32 is the optimised library.
 * The dot products of the training kernels (tl_dot_s8, tl_dot4_s8) use SXTB16/SADD16/SMLAD on
 * Arm cores with the DSP extension (__ARM_FEATURE_DSP: Cortex-M4/M7/M33/M55); define TL_NO_DSP
 * to force their portable path. Both give identical bytes (the tests run both).
 *
 * Optimised libraries (define at most one; the portable path stays compiled and takes every
 * call the library cannot do bit-exactly):
 *   TL_USE_CMSIS_NN  FULLY_CONNECTED -> arm_fully_connected_s8 (one multiplier for all output
 *                    channels) or arm_fully_connected_per_channel_s8 (CMSIS-NN >= 7.0.0);
 *                    CONV_2D -> arm_convolve_wrapper_s8; DEPTHWISE_CONV_2D ->
 *                    arm_depthwise_conv_wrapper_s8 (one image per call). Include path: CMSIS-NN's
 *                    Include/. Not for Helium (MVE) cores: a compile error there.
 *   TL_USE_ESP_NN    FULLY_CONNECTED -> esp_nn_fully_connected_s8 / _per_ch_s8 (one row per
 *                    call); CONV_2D -> esp_nn_conv_s8 and DEPTHWISE_CONV_2D ->
 *                    esp_nn_depthwise_conv_s8 (one image per call, dilation 1 only).
 * The libraries' non-bit-exact options are compile errors: CMSIS_NN_USE_SINGLE_ROUNDING,
 * CMSIS_NN_USE_REQUANTIZE_INLINE_ASSEMBLY, ESP-NN's SKIP_NUDGE / CONFIG_NN_SKIP_NUDGE. What
 * goes to the portable path instead, and why, is listed in tl_kernels.c ("Backends").
 * SOFTMAX always runs the portable code.
 */
#ifndef TL_KERNELS_H
#define TL_KERNELS_H

#include "tl_quant.h"
#include "tl_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Kernel scratch for the optimised libraries (CMSIS-NN's cmsis_nn_context): a caller-owned
 * buffer passed as the first argument of every kernel that may need one (no malloc, no global).
 * A kernel uses it for the duration of one call only, so one buffer may serve every layer and
 * be shared with anything not live during that call. The start is rounded up to a 16-byte
 * boundary (the size queries below include that slack). NULL, or buf NULL / size 0: no scratch.
 * A kernel whose library needs more than the usable bytes returns TL_ERR_ARENA and writes
 * nothing outside [buf, buf + size). Portable / DSP builds need no scratch: the size queries
 * return 0 and the buffer is never touched. */
typedef struct {
    void *buf;
    size_t size;
} tl_context;

/* FULLY_CONNECTED: output[r][o] for r < input_dims->n rows of input_dims->c = depth values.
 * filter_dims: n = output channels, c = depth (h = w = 1). output_dims: n = rows, c = output
 * channels. input_dims->h and ->w must be 1 (flatten first: a RESHAPE costs nothing). */
tl_status tl_fully_connected_s8(const tl_context *ctx, const tl_fc_params *params,
                                const tl_per_channel_quant *quant, const tl_dims *input_dims,
                                const int8_t *input, const tl_dims *filter_dims,
                                const int8_t *filter, const int32_t *bias,
                                const tl_dims *output_dims, int8_t *output);

/* CONV_2D: input [n][h][w][c], filter [out_c][kh][kw][c], output [n][oh][ow][out_c].
 * Output pixel (y, x) reads input rows y * stride_h - pad_h + ky * dilation_h (columns
 * alike); taps outside the input contribute nothing (zero in the offset domain). */
tl_status tl_conv2d_s8(const tl_context *ctx, const tl_conv_params *params,
                       const tl_per_channel_quant *quant, const tl_dims *input_dims,
                       const int8_t *input, const tl_dims *filter_dims, const int8_t *filter,
                       const int32_t *bias, const tl_dims *output_dims, int8_t *output);

/* DEPTHWISE_CONV_2D: filter_dims n = 1, h = kh, w = kw, c = output channels
 * = input channels * depth_multiplier; output channel oc reads input channel
 * oc / depth_multiplier. Geometry as tl_conv2d_s8. */
tl_status tl_depthwise_conv2d_s8(const tl_context *ctx, const tl_dw_conv_params *params,
                                 const tl_per_channel_quant *quant, const tl_dims *input_dims,
                                 const int8_t *input, const tl_dims *filter_dims,
                                 const int8_t *filter, const int32_t *bias,
                                 const tl_dims *output_dims, int8_t *output);

/* Bytes of scratch (tl_context.size) each kernel needs for these arguments in this build (0:
 * none). The maximum over a model's layers serves them all. Arguments as the kernels take them; invalid ones
 * give 0 (the kernel then reports the error). */
size_t tl_fully_connected_s8_scratch_size(const tl_dims *input_dims, const tl_dims *filter_dims,
                                          const tl_dims *output_dims);
size_t tl_conv2d_s8_scratch_size(const tl_conv_params *params, const tl_dims *input_dims,
                                 const tl_dims *filter_dims, const tl_dims *output_dims);
size_t tl_depthwise_conv2d_s8_scratch_size(const tl_dw_conv_params *params,
                                           const tl_dims *input_dims, const tl_dims *filter_dims,
                                           const tl_dims *output_dims);

/* SOFTMAX over each of `rows` rows of `depth` int8 values (TFLM's fixed-point algorithm,
 * tinylora/softmax.py); output zero point -128, scale 1/256. depth in [1, 4095] (the sum of
 * exponentials must stay below 2^31 in Q12.19); input_left_shift in [0, 31]. */
tl_status tl_softmax_s8(const tl_softmax_params *params, int32_t rows, int32_t depth,
                        const int8_t *input, int8_t *output);

/* The int8 dot product of the kernels above: sum over i < n of (x[i] + offset) * w[i],
 * wrapping modulo 2^32 (return as uint32; tl_wrap32 makes it int32). |offset| <= 128.
 * DSP path on Arm as described above; for the training kernels. */
uint32_t tl_dot_s8(const int8_t *x, const int8_t *w, int32_t n, int32_t offset);

/* Four such dot products of one x with the rows w, w + stride, w + 2 stride, w + 3 stride,
 * added to acc[0..3] (wrapping modulo 2^32): x is loaded once for all four. DSP path on Arm;
 * for the training kernels. */
void tl_dot4_s8(const int8_t *x, const int8_t *w, size_t stride, int32_t n, int32_t offset,
                uint32_t acc[4]);

/* The softmax building blocks, exposed for tests and for the training kernels' loss
 * (softmax.py functions of the same names; Q0 = 31 fractional bits). */
int32_t tl_exp_on_negative_values_q5(int32_t a); /* Q5.26 input <= 0 -> Q0 */
/* The same for a Q(integer_bits) input, integer_bits in [1, 5] (LOGISTIC uses Q4.27). */
int32_t tl_exp_on_negative_values(int32_t a, int32_t integer_bits);
int32_t tl_one_over_one_plus_x_for_x_in_0_1(int32_t a); /* Q0 in [0, 1) -> Q0 */

#ifdef __cplusplus
}
#endif

#endif /* TL_KERNELS_H */
