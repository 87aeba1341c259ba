/*
 * tinylora runtime: status codes and parameter structs shared by every kernel.
 *
 * C99, no malloc, no float. Every tl_ function that can fail returns a tl_status;
 * TL_OK is 0 so `if (s != TL_OK)` and `if (s)` both work.
 */
#ifndef TL_TYPES_H
#define TL_TYPES_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The one status enum of the runtime, the application and the board code (kernels,
 * checkpoints, storage, adapter slots). New error codes are appended, never renumbered. */
typedef enum {
    TL_OK = 0,
    TL_ERR_NULL = 1,  /* a required pointer argument is NULL */
    TL_ERR_SHAPE = 2, /* dimensions are non-positive or inconsistent with each other */
    TL_ERR_PARAM = 3, /* a scalar parameter is out of range (stride, dilation, act range...) */
    TL_ERR_UNSUPPORTED = 4, /* a valid request this build does not implement */
    TL_ERR_ARENA = 5,       /* a caller-owned arena / scratch / output buffer is too small */
    /* stored records (checkpoints, adapter files): why one was refused */
    TL_ERR_SHORT = 6,      /* shorter than a header and CRC */
    TL_ERR_MAGIC = 7,      /* does not start with the format's magic */
    TL_ERR_CRC = 8,        /* CRC-32 mismatch: torn write or flipped bit */
    TL_ERR_LENGTH = 9,     /* the length field disagrees with the size */
    TL_ERR_VERSION = 10,   /* another format version (or form) */
    TL_ERR_SPLIT = 11,     /* a split checkpoint record without its adapter slot */
    TL_ERR_FOREIGN = 12,   /* another model: checkpoint binding or adapter model hash differs */
    TL_ERR_LAYOUT = 13,    /* layers, flags or payload size differ from this build's */
    TL_ERR_EMPTY = 14,     /* nothing complete stored (no checkpoint, an empty adapter slot) */
    TL_ERR_TOO_LARGE = 15, /* does not fit its slot */
    /* storage (tl_storage.h) */
    TL_ERR_IO = 16,    /* the medium reported an error (or power was lost) */
    TL_ERR_RANGE = 17, /* outside the region */
    TL_ERR_ALIGN = 18, /* not on an erase / program unit boundary */
    TL_ERR_OPEN = 19,  /* the medium could not be prepared (missing partition...) */
    /* adapter slots (tl_adapter.h) */
    TL_ERR_CONFIG = 20, /* rank, scales, alpha or loss differ from the build's LoRA config */
    TL_ERR_SLOT = 21,   /* no such adapter slot on this board, or it is the active one */
    TL_ERR_ORDER = 22   /* an upload chunk out of order, or no upload in progress */
} tl_status;

/* Tensor dimensions, NHWC. Unused trailing dimensions are 1.
 * For filters: n = output channels, h/w = kernel size, c = input channels (OHWI);
 * for fully connected weights [out, depth]: n = out, c = depth, h = w = 1. */
typedef struct {
    int32_t n;
    int32_t h;
    int32_t w;
    int32_t c;
} tl_dims;

/* Per-output-channel requantization: real multiplier = multiplier[c] * 2^(shift[c] - 31).
 * shift > 0 is a left shift (TFLite's QuantizeMultiplier convention). Per-tensor layers
 * repeat their single pair across all channels. */
typedef struct {
    const int32_t *multiplier;
    const int32_t *shift;
} tl_per_channel_quant;

/* FULLY_CONNECTED. input_offset = -input_zero_point, output_offset = +output_zero_point,
 * [act_min, act_max] the fused activation's int8 clamp. Weights are symmetric (zero point 0). */
typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t act_min;
    int32_t act_max;
} tl_fc_params;

/* CONV_2D. pad_h / pad_w are the rows / columns of implicit zero (in the offset domain,
 * i.e. the input zero point) before the first input row / column; SAME and VALID padding
 * are both expressed this way (VALID: 0). Rows / columns past the end are implicit too. */
typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t stride_h;
    int32_t stride_w;
    int32_t pad_h;
    int32_t pad_w;
    int32_t dilation_h;
    int32_t dilation_w;
    int32_t act_min;
    int32_t act_max;
} tl_conv_params;

/* DEPTHWISE_CONV_2D: output channel oc reads input channel oc / depth_multiplier. */
typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t stride_h;
    int32_t stride_w;
    int32_t pad_h;
    int32_t pad_w;
    int32_t dilation_h;
    int32_t dilation_w;
    int32_t depth_multiplier;
    int32_t act_min;
    int32_t act_max;
} tl_dw_conv_params;

/* int8 SOFTMAX as TFLM prepares it (tinylora.softmax.softmax_params): the input scale times
 * beta as a Q5.26 multiplier with a left shift, and the smallest difference from the row
 * maximum that still contributes. Output zero point -128, scale 1/256. */
typedef struct {
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t diff_min;
} tl_softmax_params;

/* AVERAGE_POOL_2D / MAX_POOL_2D (tl_ops.h). The window of output pixel (y, x) starts at input
 * row y * stride_h - pad_h (columns alike), spans filter_h x filter_w and is clipped to the
 * input: padded positions are not counted (SAME and VALID padding are both expressed this
 * way). [act_min, act_max] is the fused activation's int8 clamp. */
typedef struct {
    int32_t stride_h;
    int32_t stride_w;
    int32_t filter_h;
    int32_t filter_w;
    int32_t pad_h;
    int32_t pad_w;
    int32_t act_min;
    int32_t act_max;
} tl_pool_params;

/* ADD as TFLM prepares it (tinylora.newops.add_params): each input, offset (= -zero point) and
 * shifted left by left_shift (20), is requantized to a common scale; the wrapped sum is
 * requantized to the output, offset (= +zero point) and clamped to [act_min, act_max]. */
typedef struct {
    int32_t input1_offset;
    int32_t input1_multiplier;
    int32_t input1_shift;
    int32_t input2_offset;
    int32_t input2_multiplier;
    int32_t input2_shift;
    int32_t left_shift;
    int32_t output_offset;
    int32_t output_multiplier;
    int32_t output_shift;
    int32_t act_min;
    int32_t act_max;
} tl_add_params;

#ifdef __cplusplus
}
#endif

#endif /* TL_TYPES_H */
