/*
 * tinylora runtime, internal: the contract between the portable kernels (tl_kernels.c) and
 * the optimised-library glue (tl_kernels_cmsis_nn.c, tl_kernels_esp_nn.c; at most one is
 * active, chosen by -D TL_USE_CMSIS_NN or -D TL_USE_ESP_NN). Not part of the public API.
 */
#ifndef TL_KERNELS_BACKEND_H
#define TL_KERNELS_BACKEND_H

#include "tl_kernels.h"

#if defined(TL_USE_CMSIS_NN) && defined(TL_USE_ESP_NN)
#error "define at most one of TL_USE_CMSIS_NN and TL_USE_ESP_NN"
#endif
#if defined(TL_USE_CMSIS_NN) || defined(TL_USE_ESP_NN)
#define TL_BACKEND 1
#endif

#define TL_SCRATCH_ALIGN 16u

/* The caller's scratch (tl_context) with its start rounded up to TL_SCRATCH_ALIGN, when
 * `need` > 0 library bytes fit after that; NULL otherwise (ctx NULL, empty or too small). */
void *tl_scratch_take(const tl_context *ctx, int32_t need);

/* FULLY_CONNECTED channels [o_begin, o_end) of one row on the portable path (the glue sends
 * the calls its library cannot do bit-exactly here). */
void tl_fc_portable(const tl_fc_params *params, const tl_per_channel_quant *quant, const int8_t *x,
                    int32_t depth, const int8_t *filter, const int32_t *bias, int8_t *y,
                    int32_t o_begin, int32_t o_end);

#if defined(TL_BACKEND)
/* ------------------------------------------------------------------------------------------
 * Backends. Each kernel validates its arguments first (same tl_status in every build), then
 * offers the call to the library; TL_DECLINED sends it down the portable path, which gives the
 * same bytes. Common to both libraries:
 *   - offsets: input_offset = -input zero point, output_offset = +output zero point (the
 *     libraries' TFLM convention, whatever their struct comments say), weights symmetric
 *     (filter offset 0);
 *   - requantization: the libraries implement TFLM's double rounding with shift > 0 = left;
 *     layers with a shift outside [-31, 30] (what quantize_multiplier produces and their shift
 *     arithmetic handles) stay portable;
 *   - per-channel multiplier / shift arrays are passed as they are (the libraries' structs
 *     declare them non-const; they only read them).
 * CMSIS-NN (arm_nnfunctions.h, v7.0.0 API): input_offset -128 (zero point 128, outside int8)
 * stays portable (documented range [-127, 128]). DEPTHWISE_CONV_2D goes one image at a time
 * (the wrapper documents [1, H, W, C]). Library scratch: the *_get_buffer_size functions.
 * ESP-NN (esp_nn.h): dims travel as uint16 / int16 inside the library, so larger shapes stay
 * portable; its conv kernels assume dilation 1 (others stay portable); one image (FC: one row)
 * per call; scratch from esp_nn_get_*_scratch_size, handed over with esp_nn_set_*_scratch_buf
 * before each call. On ESP32-S3 optimised builds the FC kernels need 16-byte aligned input
 * and filter rows and row_len, channels multiples of 8 (esp_nn_esp32s3.h); other FC calls stay
 * portable there.
 * ------------------------------------------------------------------------------------------ */
#define TL_DECLINED (-1)

static inline size_t tl_scratch_need(int32_t library_bytes)
{
    return library_bytes > 0 ? (size_t)library_bytes + TL_SCRATCH_ALIGN - 1u : 0u;
}

static inline int tl_scratch_ok(const tl_context *ctx, int32_t library_bytes)
{
    return library_bytes <= 0 || tl_scratch_take(ctx, library_bytes) != NULL;
}

/* Returns whether every shift lies in [-31, 30]; *uniform: every channel has channel 0's pair. */
static inline int tl_quant_scan(const tl_per_channel_quant *quant, int32_t channels, int *uniform)
{
    int32_t c;
    *uniform = 1;
    for (c = 0; c < channels; ++c) {
        if (quant->shift[c] < -31 || quant->shift[c] > 30) {
            return 0;
        }
        if (quant->multiplier[c] != quant->multiplier[0] || quant->shift[c] != quant->shift[0]) {
            *uniform = 0;
        }
    }
    return 1;
}

/* The libraries' quantization structs hold non-const pointers; they only read through them. */
static inline int32_t *tl_mutable_i32(const int32_t *p)
{
    union {
        const int32_t *c;
        int32_t *m;
    } u;
    u.c = p;
    return u.m;
}

/* Each backend file defines these. The kernels validate their arguments first; the glue
 * returns a tl_status, or TL_DECLINED to send the call down the portable path (same bytes).
 * The *_scratch functions return the library's scratch bytes for the call (0: none); a call
 * whose library needs more than ctx offers returns TL_ERR_ARENA before touching anything. */
int tl_backend_fully_connected(const tl_context *ctx, const tl_fc_params *params,
                               const tl_per_channel_quant *quant, int32_t rows, int32_t depth,
                               int32_t channels, const int8_t *input, const int8_t *filter,
                               const int32_t *bias, int8_t *output);
int tl_backend_conv2d(const tl_context *ctx, const tl_conv_params *params,
                      const tl_per_channel_quant *quant, const tl_dims *in, const int8_t *input,
                      const tl_dims *f, const int8_t *filter, const int32_t *bias,
                      const tl_dims *out, int8_t *output);
int tl_backend_depthwise_conv2d(const tl_context *ctx, const tl_dw_conv_params *params,
                                const tl_per_channel_quant *quant, const tl_dims *in,
                                const int8_t *input, const tl_dims *f, const int8_t *filter,
                                const int32_t *bias, const tl_dims *out, int8_t *output);
int32_t tl_backend_fc_scratch(int32_t rows, int32_t depth, int32_t channels);
int32_t tl_backend_conv_scratch(const tl_conv_params *params, const tl_dims *in, const tl_dims *f,
                                const tl_dims *out);
int32_t tl_backend_dw_scratch(const tl_dw_conv_params *params, const tl_dims *in, const tl_dims *f,
                              const tl_dims *out);

/* The ops of tl_ops.c a library can take (pooling of one NHWC tensor, ADD of two tensors of
 * the same shape, `size` elements). What each library takes and what it declines: the glue
 * files' comments. */
int tl_backend_avg_pool(const tl_context *ctx, const tl_pool_params *params, const tl_dims *in,
                        const int8_t *input, const tl_dims *out, int8_t *output);
int tl_backend_max_pool(const tl_context *ctx, const tl_pool_params *params, const tl_dims *in,
                        const int8_t *input, const tl_dims *out, int8_t *output);
int32_t tl_backend_avg_pool_scratch(const tl_pool_params *params, const tl_dims *in,
                                    const tl_dims *out);
int tl_backend_add(const tl_add_params *params, int32_t size, const int8_t *input1,
                   const int8_t *input2, int8_t *output);
#endif /* TL_BACKEND */

#endif /* TL_KERNELS_BACKEND_H */
