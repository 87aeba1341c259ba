/*
 * tinylora runtime: the int8 ops beyond conv and FC (issue 11), bit-exact with TFLM's int8
 * reference kernels. Spec: docs/ops.md and tinylora/newops.py (the same arithmetic in numpy).
 *
 * Layouts NHWC; no allocation; input and output must not overlap (RESHAPE excepted). The int8
 * paths use no float and no division (the average's rounded quotient is found by a bit-wise
 * search); float appears only in tl_quantize_f32_s8 / tl_dequantize_s8_f32, a model's float
 * ends. Every constant comes from the numpy reference's *_params functions.
 *
 * Optimised libraries (as tl_kernels.h: -D TL_USE_CMSIS_NN or -D TL_USE_ESP_NN; the portable
 * path takes every call the library cannot do bit-exactly, with the same bytes):
 *   AVERAGE_POOL_2D  arm_avgpool_s8 (needs scratch on DSP cores: tl_avg_pool_s8_scratch_size)
 *                    / esp_nn_avg_pool_s8 (one image per call)
 *   MAX_POOL_2D      arm_max_pool_s8 / esp_nn_max_pool_s8 (one image per call)
 *   ADD              arm_elementwise_add_s8 / esp_nn_add_elementwise_s8, when both inputs have
 *                    the output's shape (broadcasting stays portable)
 * The conditions are listed in tl_kernels_cmsis_nn.c / tl_kernels_esp_nn.c. Everything else
 * is portable C.
 */
#ifndef TL_OPS_H
#define TL_OPS_H

#include "tl_kernels.h"
#include "tl_quant.h"
#include "tl_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* PAD / PADV2: output [n][h][w][c] = input placed at offset (before_n, before_h, before_w,
 * before_c), every other byte pad_value (PAD: the output zero point; PADV2: the constant).
 * The padding after each axis is output - input - before (must be >= 0). */
typedef struct {
    int32_t before_n;
    int32_t before_h;
    int32_t before_w;
    int32_t before_c;
    int32_t pad_value;
} tl_pad_params;

/* MEAN over H and W (tinylora.newops.mean_params): multiplier / shift with 1 / (h * w)
 * folded in, input_offset = -input zero point, output_offset = +output zero point. */
typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t multiplier;
    int32_t shift;
} tl_mean_params;

/* CONCATENATION along one axis: the tensors are [outer][axis_size[i]][inner]; the output is
 * [outer][sum of axis_size][inner]. No requantization (TFLM refuses differing quantizations). */
typedef struct {
    int32_t num_inputs;
    const int32_t *axis_size;
    int32_t outer;
    int32_t inner;
} tl_concat_params;

/* QUANTIZE int8 -> int8 (tinylora.newops.quantize_params): input_offset = -input zero point,
 * output_offset = +output zero point. */
typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t multiplier;
    int32_t shift;
} tl_quantize_params;

/* QUANTIZE float32 -> int8 / DEQUANTIZE int8 -> float32: the tensor's float32 scale and
 * zero point. */
typedef struct {
    float scale;
    int32_t zero_point;
} tl_float_quant;

/* LOGISTIC (tinylora.newops.logistic_params); input_offset = -input zero point. The output is
 * scale 1/256, zero point -128 (TFLM requires it). */
typedef struct {
    int32_t input_offset;
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t input_range_radius;
} tl_logistic_params;

/* HARD_SWISH (tinylora.newops.hard_swish_params): int16 fixed-point multipliers (held in
 * int32, in [0, 32767]); output_exponent <= 0. */
typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t output_multiplier;
    int32_t output_exponent;
    int32_t reluish_multiplier;
    int32_t reluish_exponent;
} tl_hard_swish_params;

/* AVERAGE_POOL_2D: output[n][y][x][c] = the window's sum of raw values divided by its count,
 * rounded half away from zero, clamped to [act_min, act_max]. in->c must equal out->c and
 * in->n out->n; every window must overlap the input (pad < filter, last window starts inside).
 * ctx: kernel scratch as in tl_kernels.h (NULL: none). */
tl_status tl_avg_pool_s8(const tl_context *ctx, const tl_pool_params *params, const tl_dims *in,
                         const int8_t *input, const tl_dims *out, int8_t *output);

/* Scratch bytes tl_avg_pool_s8 needs in its tl_context in this build: 0
 * except CMSIS-NN on DSP cores (one int32 per channel, plus the alignment slack). */
size_t tl_avg_pool_s8_scratch_size(const tl_pool_params *params, const tl_dims *in,
                                   const tl_dims *out);

/* MAX_POOL_2D: the window's largest value, clamped to [act_min, act_max]. Geometry as above. */
tl_status tl_max_pool_s8(const tl_context *ctx, const tl_pool_params *params, const tl_dims *in,
                         const int8_t *input, const tl_dims *out, int8_t *output);

/* ADD with TFLM's 4-D broadcast: each dimension of in1 / in2 equals out's or is 1. Offsets in
 * [-128, 128], left_shift in [0, 31]. */
tl_status tl_add_s8(const tl_add_params *params, const tl_dims *in1, const int8_t *input1,
                    const tl_dims *in2, const int8_t *input2, const tl_dims *out, int8_t *output);

/* PAD / PADV2 (see tl_pad_params). pad_value in [-128, 127]. */
tl_status tl_pad_s8(const tl_pad_params *params, const tl_dims *in, const int8_t *input,
                    const tl_dims *out, int8_t *output);

/* MEAN over H, W: output [n][c] (keep_dims or not: the same bytes). */
tl_status tl_mean_s8(const tl_mean_params *params, const tl_dims *in, const int8_t *input,
                     int8_t *output);

/* CONCATENATION (see tl_concat_params); inputs[i] points at input i. */
tl_status tl_concat_s8(const tl_concat_params *params, const int8_t *const *inputs, int8_t *output);

/* QUANTIZE int8 -> int8 over n values: sat8(requantize(x + input_offset) + output_offset).
 * (tl_requantize_s8 of tl_quant.h is the scalar requantization tail of every kernel.) */
tl_status tl_quantize_s8(const tl_quantize_params *params, int32_t n, const int8_t *input,
                         int8_t *output);

/* QUANTIZE uint8 -> int8 / int8 -> uint8 over n values (a model converted with uint8 ends):
 * saturate(requantize(x + input_offset) + output_offset) to the output type; the uint8 side's
 * zero point is in [0, 255]. */
tl_status tl_quantize_u8_s8(const tl_quantize_params *params, int32_t n, const uint8_t *input,
                            int8_t *output);
tl_status tl_quantize_s8_u8(const tl_quantize_params *params, int32_t n, const int8_t *input,
                            uint8_t *output);

/* QUANTIZE float32 -> int8 over n values: sat8(round(x / scale) + zero_point), the division
 * in float32, rounding half away from zero (std::round); NaN gives -128. */
tl_status tl_quantize_f32_s8(const tl_float_quant *quant, int32_t n, const float *input,
                             int8_t *output);

/* DEQUANTIZE int8 -> float32 over n values: scale * (float)(x - zero_point), one float32
 * product. */
tl_status tl_dequantize_s8_f32(const tl_float_quant *quant, int32_t n, const int8_t *input,
                               float *output);

/* LOGISTIC over n values (gemmlowp's fixed-point logistic in Q4.27). */
tl_status tl_logistic_s8(const tl_logistic_params *params, int32_t n, const int8_t *input,
                         int8_t *output);

/* HARD_SWISH over n values (TFLite's int16 fixed-point reference). */
tl_status tl_hard_swish_s8(const tl_hard_swish_params *params, int32_t n, const int8_t *input,
                           int8_t *output);

/* RESHAPE (also a requantizing one: TFLM copies the bytes): n bytes, overlap allowed. */
tl_status tl_reshape_s8(int32_t n, const int8_t *input, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* TL_OPS_H */
