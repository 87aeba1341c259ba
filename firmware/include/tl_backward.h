/*
 * tinylora runtime: the integer backward of the frozen ops between an adapter and the loss
 * (docs/numerics.md section 4b; the numpy reference is tinylora/ref/backward_ops.py and the
 * delivery of Trainer._deliver in tinylora/ref/executor.py).
 *
 * Gradients are block floating point: int16 mantissas with one int32 power-of-two exponent
 * per tensor. Every op kernel takes its (masked) output gradient `grad` with `exponent`,
 * forms the op's raw int64 input gradient exactly as backward_ops.input_gradients does and
 * writes it normalized to 15 bits (lora.normalize) into `grad_in`, with
 * *grad_in_exponent = exponent + the normalization's exponent. Ops whose input gradient
 * gathers several output gradients (convolutions, pooling) sum into a caller-owned scratch
 * `dx` of the input's shape (int64 for CONV_2D, int32 for the others, whose sums stay below
 * 2^31: the code generator checks the bound); the others recompute each value in a second
 * pass instead of storing it.
 *
 *   tl_clamp_mask_s16                 backward_ops.clamp_mask (in place, before the op)
 *   tl_conv_backward_s16              CONV_2D input gradient (any kernel, stride, dilation)
 *   tl_depthwise_conv_backward_s16    DEPTHWISE_CONV_2D input gradient
 *   tl_avg_pool_backward_s16          AVERAGE_POOL_2D
 *   tl_max_pool_backward_s16          MAX_POOL_2D (to the first largest input of a window)
 *   tl_mean_backward_s16              MEAN over H and W
 *   tl_add_backward_s16               ADD: one input's gradient (summed where it broadcast)
 *   tl_slice_backward_s16             PAD (crop), CONCATENATION (one input's part), and the
 *                                     pass-through of a requantizing RESHAPE or QUANTIZE
 *   tl_logistic_backward_s16          LOGISTIC: g * k * (256 - k), k = y + 128
 *   tl_hard_swish_backward_s16        HARD_SWISH: g * lut[x + 128]
 *   tl_grad_rescale_s16               a fork's contribution brought to the fork's scale
 *   tl_grad_merge_s16                 backward_ops.merge: two contributions of one tensor
 *
 * C99, no malloc, no float, no globals: every buffer is the caller's (the arena plan of
 * tinylora/planning/arena.py places them). `grad_in` never overlaps `grad` or `dx`.
 */
#ifndef TL_BACKWARD_H
#define TL_BACKWARD_H

#include "tl_quant.h"
#include "tl_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TL_BACKWARD_GRAD_BITS 15 /* gradient mantissas fit int16 */

/* The output clamp of an op (backward_ops.output_range): a bound set by the fused activation
 * passes no gradient; a bound that is only int8 saturation passes the gradient that moves
 * the value back into range. */
typedef struct {
    int32_t act_min, act_max;
    int32_t act_min_is_activation, act_max_is_activation;
} tl_clamp_params;

/* CONV_2D / DEPTHWISE_CONV_2D geometry and the per-channel ratios s_w[c] / max s_w. */
typedef struct {
    int32_t in_h, in_w, in_c;
    int32_t out_h, out_w, out_c;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t dilation_h, dilation_w;
    int32_t pad_h, pad_w;       /* implicit rows / columns before the input (SAME padding) */
    int32_t depth_multiplier;   /* DEPTHWISE_CONV_2D: out_c = in_c * depth_multiplier */
    const int8_t *weights;      /* CONV_2D OHWI [out_c][kh][kw][in_c]; depthwise [kh][kw][out_c] */
    tl_per_channel_quant ratio; /* [out_c], single rounding (rescale) */
} tl_conv_backward_params;

/* AVERAGE_POOL_2D / MAX_POOL_2D geometry. A window clipped by the padding holds fewer than
 * filter_h * filter_w inputs; its gradient is rescaled by (area / count), whose multiplier
 * and shift are listed per count (avg pool only; n_ratios 0 for max pool). */
typedef struct {
    int32_t in_h, in_w, channels;
    int32_t out_h, out_w;
    int32_t filter_h, filter_w;
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;
    int32_t n_ratios;
    const int32_t *ratio_count; /* [n_ratios] window counts below the filter area */
    const int32_t *ratio_multiplier;
    const int32_t *ratio_shift;
} tl_pool_backward_params;

/* backward_ops.clamp_mask on n gradients (in place) of an op's int8 output. */
tl_status tl_clamp_mask_s16(const tl_clamp_params *p, int32_t n, const int8_t *output,
                            int16_t *grad);

/* CONV_2D: dx[y][x][ci] = sum over (oy, ox, co, i, j) reading input (y, x) of
 * rescale(g[oy][ox][co], ratio[co]) * W[co][i][j][ci]; dx int64 [in_h][in_w][in_c]. */
tl_status tl_conv_backward_s16(const tl_conv_backward_params *p, const int16_t *grad,
                               int32_t exponent, int64_t *dx, int16_t *grad_in,
                               int32_t *grad_in_exponent);

/* DEPTHWISE_CONV_2D: as tl_conv_backward_s16 with output channel co = ci * multiplier + m
 * reading input channel ci only; dx int32 scratch of tl_depthwise_dx_words(in_h, in_w,
 * in_c) words: [in_h][in_w][in_c] when that is the smaller, else one input row's sums,
 * a byte a row and a bit a value (row at a time, the same bytes) (kernel_h * kernel_w *
 * depth_multiplier must stay below 512: TL_ERR_UNSUPPORTED otherwise). `grad` is rescaled
 * by the channel ratios in place (the buffer is dead after the backward). */
/* The int32 words of tl_depthwise_conv_backward_s16's dx scratch
 * (lora.input_grad_scratch_words(in_h, in_w * in_c, 4)). */
int32_t tl_depthwise_dx_words(int32_t in_h, int32_t in_w, int32_t in_c);

tl_status tl_depthwise_conv_backward_s16(const tl_conv_backward_params *p, int16_t *grad,
                                         int32_t exponent, int32_t *dx, int16_t *grad_in,
                                         int32_t *grad_in_exponent);

/* AVERAGE_POOL_2D: each window's gradient (rescaled by area / count where clipped) added to
 * every input of the window; dx int32 [in_h][in_w][channels]. */
tl_status tl_avg_pool_backward_s16(const tl_pool_backward_params *p, const int16_t *grad,
                                   int32_t exponent, int32_t *dx, int16_t *grad_in,
                                   int32_t *grad_in_exponent);

/* MAX_POOL_2D: each window's gradient added at its largest input (the first in row-major
 * order on ties); `input` the op's int8 input; dx int32 [in_h][in_w][channels]. */
tl_status tl_max_pool_backward_s16(const tl_pool_backward_params *p, const int8_t *input,
                                   const int16_t *grad, int32_t exponent, int32_t *dx,
                                   int16_t *grad_in, int32_t *grad_in_exponent);

/* MEAN over H and W: grad [channels] to every one of `pixels` positions [pixels][channels]
 * (the 1 / count is in the static scale). */
tl_status tl_mean_backward_s16(int32_t pixels, int32_t channels, const int16_t *grad,
                               int32_t exponent, int16_t *grad_in, int32_t *grad_in_exponent);

/* ADD: one input's gradient, the output gradient (output_dims) summed over the axes where
 * the input (input_dims) has size 1 and the output does not. */
tl_status tl_add_backward_s16(const tl_dims *output_dims, const tl_dims *input_dims,
                              const int16_t *grad, int32_t exponent, int16_t *grad_in,
                              int32_t *grad_in_exponent);

/* The box of input_dims at `begin` (n, h, w, c offsets) of the output gradient
 * (output_dims): PAD's crop, one CONCATENATION input's part, or (input_dims equal to
 * output_dims, begin 0) the whole gradient. */
tl_status tl_slice_backward_s16(const tl_dims *output_dims, const tl_dims *input_dims,
                                const tl_dims *begin, const int16_t *grad, int32_t exponent,
                                int16_t *grad_in, int32_t *grad_in_exponent);

/* LOGISTIC: g * k * (256 - k) with k = y + 128 (2^-16 is in the static scale). */
tl_status tl_logistic_backward_s16(int32_t n, const int8_t *output, const int16_t *grad,
                                   int32_t exponent, int16_t *grad_in, int32_t *grad_in_exponent);

/* HARD_SWISH: g * lut[x + 128], lut the Q14 derivative at each int8 input code. */
tl_status tl_hard_swish_backward_s16(int32_t n, const int8_t *input, const int16_t *lut,
                                     const int16_t *grad, int32_t exponent, int16_t *grad_in,
                                     int32_t *grad_in_exponent);

/* A contribution to a fork, in place: m = normalize15(rescale(m, multiplier, shift + guard))
 * and *exponent += its exponent - guard (Trainer._deliver; guard in [0, 31]). */
tl_status tl_grad_rescale_s16(int32_t n, int32_t multiplier, int32_t shift, int32_t guard,
                              int16_t *grad, int32_t *exponent);

/* backward_ops.merge: grad = normalize15(rdbp(other, E - other_exponent) + rdbp(grad, E -
 * exponent)) with E the larger exponent (each shift capped at 62), in place in grad;
 * *merged_exponent = E + the normalization's exponent. */
tl_status tl_grad_merge_s16(int32_t n, const int16_t *other, int32_t other_exponent, int16_t *grad,
                            int32_t exponent, int32_t *merged_exponent);

#ifdef __cplusplus
}
#endif

#endif /* TL_BACKWARD_H */
