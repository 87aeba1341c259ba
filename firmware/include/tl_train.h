/*
 * tinylora runtime: the on-device training kernels (integer LoRA, loss, backward, update).
 *
 * Each function is the C form of the numpy reference and gives the same bytes:
 *   tl_normalize*          lora.normalize (block floating point)
 *   tl_lora_forward_s8     lora.lora_forward (FULLY_CONNECTED, or 1x1 CONV_2D per pixel)
 *   tl_xent_grad_s8        loss.xent_grad (int8 softmax, gradient, Q10 loss)
 *   tl_mse_grad_s8         loss.mse_grad (output minus target, its exponent, Q10 loss)
 *   tl_lora_backward_s8    train.Trainer._op_backward for FULLY_CONNECTED / 1x1 CONV_2D
 *   tl_update_s16          train.Trainer._op_update / _apply / sparsify
 * The specification is docs/numerics.md.
 *
 * C99, no malloc, no float: every buffer is the caller's (the arena planner of
 * tinylora/arena.py places them). Signed overflow never happens: sums that the spec wraps
 * are formed in uint32, everything else is provably in range or saturated.
 *
 * Shapes. A layer works on `rows` input rows of `depth` (K) values: a FULLY_CONNECTED layer's
 * rows (usually 1), or the pixels a 1x1 CONV_2D visits (every stride_h-th row and
 * stride_w-th column of its input). Row r = oy * out_w + ox reads input pixel
 * (oy * stride_h, ox * stride_w). FULLY_CONNECTED: in_h = out_h = rows, in_w = out_w = 1,
 * strides 1. Activations are int8 [pixels][K] / [rows][C] (NHWC, batch 1).
 *   A  int8 [r][K]  (int8 view of the int16 masters),  B  int8 [C][r],  h  int8 [rows][r],
 *   W  int8 [C][K]  (the frozen weights; OHWI of a 1x1 conv is the same layout).
 * Gradients are int16 mantissas [rows][C] with one int32 power-of-two exponent each.
 */
#ifndef TL_TRAIN_H
#define TL_TRAIN_H

#include "tl_quant.h"
#include "tl_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TL_MASTER_FRAC_BITS 8   /* int16 master = int8 value * 2^8 */
#define TL_ACCUM_FRAC_BITS 8    /* int32 accumulators hold master units * 2^8 */
#define TL_GRAD_BITS 15         /* gradient mantissas fit int16 */
#define TL_LORA_MAX_DEPTH 65536 /* x_off . A stays exact in int32 up to here */
#define TL_LOSS_LUT_SIZE 257

/* round(-ln(max(k, 1/2) / 256) * 2^10), k = 0 .. 256 (loss.LOSS_LUT). */
extern const uint16_t tl_loss_lut_q10[TL_LOSS_LUT_SIZE];

/* ------------------------------------------------------------------ block floating point */

/* e = bit_length(max |x[i]|) - bits (0 when every x is 0, or n == 0). bits in [1, 62];
 * x[i] > INT64_MIN. */
int32_t tl_normalize_exponent(const int64_t *x, int32_t n, int32_t bits);

/* One mantissa for exponent e: x * 2^-e exactly when e <= 0 (the caller guarantees it fits,
 * as it does for the e of tl_normalize_exponent), else x / 2^e rounded half away from zero
 * and saturated to +-(2^bits - 1). bits in [1, 62]. */
int64_t tl_normalize_value(int64_t x, int32_t e, int32_t bits);

/* lora.normalize(x, bits): int32 mantissas (bits in [1, 31]) and the exponent. `mantissas`
 * must not overlap x (tl_normalize_inplace keeps them in x). */
tl_status tl_normalize(const int64_t *x, int32_t n, int32_t bits, int32_t *mantissas,
                       int32_t *exponent);

/* lora.normalize(x, 15) into int16 mantissas. */
tl_status tl_normalize_s16(const int64_t *x, int32_t n, int16_t *mantissas, int32_t *exponent);

/* lora.normalize(x, bits) with the mantissas written back into x (bits in [1, 62]). */
tl_status tl_normalize_inplace(int64_t *x, int32_t n, int32_t bits, int32_t *exponent);

/* ------------------------------------------------------------------ layer description */

/* Everything constant about one FULLY_CONNECTED / 1x1 CONV_2D layer of the trained segment
 * (frozen layer, LoRA constants, backward constants). Multiplier / shift pairs are
 * quantize_multiplier's (real = q * 2^(shift - 31)). A layer without an adapter (a frozen FC
 * between adapters) leaves the LoRA fields zero. */
typedef struct {
    /* geometry */
    int32_t in_h, in_w;         /* input pixels (FC: in_h = rows, in_w = 1) */
    int32_t out_h, out_w;       /* rows = out_h * out_w; out_h = ceil(in_h / stride_h) */
    int32_t stride_h, stride_w; /* 1x1 conv strides (FC: 1) */
    int32_t depth;              /* K, in [1, TL_LORA_MAX_DEPTH] */
    int32_t channels;           /* C */
    int32_t rank;               /* r in [1, 255]; 0 for a layer without an adapter */
    /* the frozen layer (as tl_fully_connected_s8) */
    const int8_t *weights;             /* W [C][K] */
    const int32_t *bias;               /* [C] or NULL */
    tl_per_channel_quant output_quant; /* M[c]: double rounding, the frozen output stage */
    int32_t input_offset;              /* -zp_x, in [-127, 128] */
    int32_t output_offset;             /* zp_y */
    int32_t act_min, act_max;          /* the fused activation's clamp */
    /* lora.output_gradient_mask: 1 when that bound is set by the fused activation (RELU's
     * zero, RELU6's six: no gradient there), 0 when it is only int8 saturation */
    int32_t act_min_is_activation, act_max_is_activation;
    /* LoRA forward */
    int32_t h_multiplier, h_shift; /* M_h = s_x s_A / s_h (single rounding) */
    tl_per_channel_quant join;     /* M_join[c] (single rounding) */
    /* backward */
    tl_per_channel_quant input_ratio;            /* s_w[c] / max s_w (Trainer.input_grad) */
    int32_t update_a_multiplier, update_a_shift; /* M_uA (k.m_update_a) */
    int32_t update_b_multiplier, update_b_shift; /* M_uB (k.m_update_b) */
    int32_t to_input_multiplier, to_input_shift; /* k.extra["lora_to_input"] */
} tl_lora_params;

/* ------------------------------------------------------------------ optimizer */

/* The training configuration the backward and the update share. */
typedef struct {
    int32_t accumulate;          /* dense accumulators: 0 = the backward writes them
                                  * (accum_steps == 1), 1 = it adds, saturating */
    int32_t threshold;           /* apply only entries with |delta| >= threshold (>= 0) */
    int32_t momentum_multiplier; /* Q31 mu of quantize_multiplier(momentum); 0: none */
    int32_t momentum_shift;
} tl_optim_params;

/* Where one parameter tensor's (n entries: A [r][K] or B [C][r]) gradient goes: exactly one
 * of acc, pairs, master is set.
 *
 * Dense: `acc` holds n int32 accumulators (master units * 2^8). tl_update_s16 applies them
 *   (delta = rdbp(acc, 8), momentum, threshold, at most `capacity` entries (0: no limit)).
 * Sparse: `pairs` holds `capacity` (>= 1) int32 (flat index, delta) pairs, the sparse
 *   gradient buffer of docs/numerics.md section 5; only with accumulate == 0. The backward
 *   computes each entry's delta (momentum included) and keeps the `capacity` largest
 *   |delta| >= threshold, ties to the lower flat index, as a bounded min-heap; a pair with
 *   delta 0 is empty. tl_update_s16 applies the pairs.
 * Fused: `master` holds the n int16 masters and the backward applies each entry as soon as it
 *   is formed (docs/numerics.md section 5): delta = rdbp(value, 8), kept when nonzero and
 *   |delta| >= threshold, master = sat16(master - delta). No gradient memory at all; only with
 *   accumulate == 0, no momentum and capacity 0. Its own reads of a8 and b8 see the forward's
 *   values: dh and the input gradient are formed before any update. `view` (n int8, or NULL)
 *   is the parameter's int8 view: the backward rewrites view[i] = sat(rdbp(master[i], 8),
 *   +-127) whenever it changes master[i] (a view consistent before the step stays so); NULL
 *   leaves the views to the caller (tl_refresh_view_s8). Both give the dense path's bytes.
 * `momentum` (n int32, or NULL) is used when momentum_multiplier != 0: by the update in
 * dense mode, by the backward in sparse mode. */
typedef struct {
    int32_t *acc;
    int32_t *pairs;
    int32_t capacity;
    int32_t *momentum;
    int16_t *master;
    int8_t *view; /* fused only */
} tl_grad_buffer;

/* An adapted layer's per-step tensors for the backward. */
typedef struct {
    const int8_t *a8;  /* [r][K] */
    const int8_t *b8;  /* [C][r] */
    const int8_t *h;   /* [rows][r], from the forward */
    int64_t *dh;       /* scratch [rows][r] (arena buffer dh<i>) */
    tl_grad_buffer da; /* gradient of A */
    tl_grad_buffer db; /* gradient of B */
} tl_lora_tensors;

/* ------------------------------------------------------------------ kernels */

/* lora.lora_forward: output y int8 [rows][C] and the LoRA intermediate h int8 [rows][r].
 *   acc = wrap32(x_off . W + bias), u = x_off . A, h = sat8(rescale(u, M_h)),
 *   acc' = sat32(acc + rescale(h . B, M_join[c])), y = clamp(requant_double(acc', M[c]) + zp_y)
 * `input` is the layer's whole input [in_h][in_w][K]; output must not overlap it. */
tl_status tl_lora_forward_s8(const tl_lora_params *p, const int8_t *input, const int8_t *a8,
                             const int8_t *b8, int8_t *output, int8_t *h);

/* loss.xent_grad for one sample of `classes` int8 logits: probs (scratch, int8 [classes]) =
 * TFLM softmax; grad[c] = probs[c] + 128 - 256 * (c == label) (exponent 0, scale beta/256);
 * *loss_q10 = tl_loss_lut_q10[probs[label] + 128]. classes in [1, 4095]. */
tl_status tl_xent_grad_s8(const tl_softmax_params *params, int32_t classes, const int8_t *logits,
                          int32_t label, int8_t *probs, int16_t *grad, int32_t *loss_q10);

/* The MSE loss's constant: the Q10 loss multiplier of loss.mse_constants
 * (real = multiplier * 2^(shift - 31)). */
typedef struct {
    int32_t loss_multiplier;
    int32_t loss_shift;
} tl_mse_params;

#define TL_MSE_MAX_OUTPUTS 33025 /* sum((y - t)^2) <= 255^2 * count stays in int32 */

/* loss.mse_grad for one sample of `count` int8 outputs and their int8 targets (in the
 * output's quantization): grad[i] = output[i] - target[i] (exponent 0, scale 2 * s_y: the
 * gradient of the summed squared error, as docs/numerics.md states), *loss_q10 =
 * rescale(sum(grad^2), loss multiplier) (the mean squared error in Q10, for logs).
 * count in [1, TL_MSE_MAX_OUTPUTS]. */
tl_status tl_mse_grad_s8(const tl_mse_params *params, int32_t count, const int8_t *output,
                         const int8_t *target, int16_t *grad, int32_t *loss_q10);

/* Trainer._op_backward for a FULLY_CONNECTED / 1x1 CONV_2D layer.
 *   input     act(i-1), the layer's input [in_h][in_w][K]
 *   output    act(i), the layer's output [rows][C] (for the output clamp's mask)
 *   grad      in: dL/dy mantissas [rows][C]; out: masked and normalized to 15 bits (in place,
 *             the buffer is dead after the backward)
 *   exponent  in: grad's exponent
 *   lora      the adapter's tensors, or NULL for a frozen layer between adapters
 *   dx        scratch of tl_lora_dx_words(rows, K) int64 (arena buffer dx<i>), needed with
 *             grad_in: all rows' sums [rows][K] when that is the smaller, else one row's
 *             K sums plus a byte a row and a bit a value (a row at a time, two passes
 *             over the row data, the same bytes as the whole-tensor normalization)
 *   grad_in   NULL at the lowest adapter; else out: dL/dx mantissas, int16 of the input's
 *             whole shape [in_h][in_w][K] (pixels a strided 1x1 conv skips get 0), and
 *             *grad_in_exponent its exponent.
 * Weight gradients go to lora->da / lora->db (see tl_grad_buffer; fused: straight into the
 * masters, and into the int8 views when tl_grad_buffer.view is set). GB and GA are formed
 * twice (once for their block exponent, once to emit them), so they need no scratch. */
/* The last pass of a row-at-a-time input gradient (tl_lora_backward_s8, and the depthwise
 * backward): the n values of one row, which the first pass stored as 2|v| >> row_shift
 * (row_shift 0: 2|v|), become 15-bit mantissas at the tensor's exponent ex (the value
 * normalize gives: |v| / 2^ex rounded half up, at most 32767), signed by bit `bit` onwards of
 * the bit array `sign`. */
void tl_dx_row_finish_s16(int16_t *values, int32_t n, int32_t ex, int32_t row_shift,
                          const uint8_t *sign, int32_t bit);

/* The int64 words of tl_lora_backward_s8's dx scratch (lora.input_grad_scratch_words). */
int32_t tl_lora_dx_words(int32_t rows, int32_t depth);

tl_status tl_lora_backward_s8(const tl_lora_params *p, const tl_optim_params *opt,
                              const int8_t *input, const int8_t *output, int16_t *grad,
                              int32_t exponent, const tl_lora_tensors *lora, int64_t *dx,
                              int16_t *grad_in, int32_t *grad_in_exponent);

/* RESHAPE passes gradients through: a copy of n mantissas (nothing when in == out); the
 * exponent is unchanged. */
tl_status tl_reshape_backward_s16(int32_t n, const int16_t *grad, int16_t *grad_in);

/* Trainer._apply + refresh for one parameter tensor of n entries, at the end of an
 * accumulation window (the caller decides when: (step_count + 1) % accum_steps == 0).
 *   dense:  delta = rdbp(acc, 8); with momentum m = sat32(rescale(m, mu) + delta), delta = m;
 *           keep |delta| >= threshold, nonzero, at most g->capacity (0: all) of them, the
 *           largest |delta|, ties to the lower flat index (the cut-off magnitude is found bit
 *           by bit: at most 34 counting passes over n, no extra memory); acc is reset to 0.
 *   sparse: the pairs the backward kept; the buffer is emptied.
 *   fused:  TL_ERR_PARAM (the backward has applied the update already).
 * Then master = sat16(master - delta) and view = sat(rdbp(master, 8), -127, 127) (all n). */
tl_status tl_update_s16(const tl_optim_params *opt, int32_t n, const tl_grad_buffer *g,
                        int16_t *master, int8_t *view);

/* The int8 views of n masters: sat(rdbp(master, 8), -127, 127) (lora.to_int8). */
tl_status tl_refresh_view_s8(int32_t n, const int16_t *master, int8_t *view);

#ifdef __cplusplus
}
#endif

#endif /* TL_TRAIN_H */
