/*
 * TEST DOUBLE of ESP-NN's public header esp_nn.h (tests/fakes/README.md). As in ESP-NN, the
 * public esp_nn_* names are macros for per-chip implementations; this double maps them to
 * *_ansi functions (the generic C build) implemented in esp_nn_fake.c, which computes the
 * documented results with plain loops and, on a contract violation, counts it and fills the
 * output with 0x5A so the comparison fails.
 *
 * Test switches: TL_FAKE_ESP_NN_NO_PER_CH leaves out esp_nn_fully_connected_per_ch_s8 (older
 * releases); CONFIG_IDF_TARGET_ESP32S3 + CONFIG_NN_OPTIMIZED make the fully-connected double
 * enforce the ESP32-S3 kernels' documented limits (aligned input, row_len and channels
 * multiples of 8). Not Espressif's file.
 */
#ifndef TL_FAKE_ESP_NN_H
#define TL_FAKE_ESP_NN_H

#include "esp_nn_defs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One row: out[c] for c < out_channels from input[row_len] and filter[out_channels][row_len];
 * offsets are added to input / filter values; shift comes BEFORE mult. */
void esp_nn_fully_connected_s8_ansi(const int8_t *input_data, const int32_t input_offset,
                                    const uint16_t row_len, const int8_t *filter_data,
                                    const int32_t filter_offset, const int32_t *bias,
                                    int8_t *out_data, const uint16_t out_channels,
                                    const int32_t out_offset, const int32_t out_shift,
                                    const int32_t out_mult, const int32_t activation_min,
                                    const int32_t activation_max);

#if !defined(TL_FAKE_ESP_NN_NO_PER_CH)
void esp_nn_fully_connected_per_ch_s8_ansi(const int8_t *input_data, const int32_t input_offset,
                                           const uint16_t row_len, const int8_t *filter_data,
                                           const int32_t filter_offset, const int32_t *bias,
                                           int8_t *out_data, const uint16_t out_channels,
                                           const int32_t out_offset, const int32_t *out_shift,
                                           const int32_t *out_mult, const int32_t activation_min,
                                           const int32_t activation_max);
#endif

/* One image, NHWC; filter [out_ch][kh][kw][in_ch]: filter_dims width / height = kernel,
 * channels = input channels; output channels from output_dims. Dilation 1 only. */
void esp_nn_conv_s8_ansi(const data_dims_t *input_dims, const int8_t *input_data,
                         const data_dims_t *filter_dims, const int8_t *filter_data,
                         const int32_t *bias, const data_dims_t *output_dims, int8_t *out_data,
                         const conv_params_t *conv_params, const quant_data_t *quant_data);

int esp_nn_get_conv_scratch_size_ansi(const data_dims_t *input_dims,
                                      const data_dims_t *filter_dims,
                                      const data_dims_t *output_dims,
                                      const conv_params_t *conv_params);
void esp_nn_set_conv_scratch_buf_ansi(const void *buf);

/* One image; filter [1][kh][kw][in_ch * ch_mult]. Dilation 1 only. */
void esp_nn_depthwise_conv_s8_ansi(const data_dims_t *input_dims, const int8_t *input_data,
                                   const data_dims_t *filter_dims, const int8_t *filter_data,
                                   const int32_t *bias, const data_dims_t *output_dims,
                                   int8_t *out_data, const dw_conv_params_t *conv_params,
                                   const quant_data_t *quant_data);

int esp_nn_get_depthwise_conv_scratch_size_ansi(const data_dims_t *input_dims,
                                                const data_dims_t *filter_dims,
                                                const data_dims_t *output_dims,
                                                const dw_conv_params_t *conv_params);
void esp_nn_set_depthwise_conv_scratch_buf_ansi(const void *buf);

/* Declared only: the glue of tl_ops.c compiles; a build that calls them must link the real
 * ESP-NN (tests/test_ops_c.py). */
void esp_nn_avg_pool_s8_ansi(const int8_t *input, const uint16_t input_wd,
                             const uint16_t input_ht, int8_t *output, const uint16_t output_wd,
                             const uint16_t output_ht, const uint16_t stride_wd,
                             const uint16_t stride_ht, const uint16_t filter_wd,
                             const uint16_t filter_ht, const uint16_t pad_wd, const uint16_t pad_ht,
                             const int32_t activation_min, const int32_t activation_max,
                             const uint16_t channels);
void esp_nn_max_pool_s8_ansi(const int8_t *input, const uint16_t input_wd,
                             const uint16_t input_ht, int8_t *output, const uint16_t output_wd,
                             const uint16_t output_ht, const uint16_t stride_wd,
                             const uint16_t stride_ht, const uint16_t filter_wd,
                             const uint16_t filter_ht, const uint16_t pad_wd, const uint16_t pad_ht,
                             const int32_t activation_min, const int32_t activation_max,
                             const uint16_t channels);
void esp_nn_add_elementwise_s8_ansi(const int8_t *input1_data, const int8_t *input2_data,
                                    const int32_t input1_offset, const int32_t input2_offset,
                                    const int32_t input1_mult, const int32_t input2_mult,
                                    const int32_t input1_shift, const int32_t input2_shift,
                                    const int32_t left_shift, int8_t *output,
                                    const int32_t out_offset, const int32_t out_mult,
                                    const int32_t out_shift, const int32_t activation_min,
                                    const int32_t activation_max, const int32_t size);

#define esp_nn_fully_connected_s8 esp_nn_fully_connected_s8_ansi
#define esp_nn_avg_pool_s8 esp_nn_avg_pool_s8_ansi
#define esp_nn_max_pool_s8 esp_nn_max_pool_s8_ansi
#define esp_nn_add_elementwise_s8 esp_nn_add_elementwise_s8_ansi
#if !defined(TL_FAKE_ESP_NN_NO_PER_CH)
#define esp_nn_fully_connected_per_ch_s8 esp_nn_fully_connected_per_ch_s8_ansi
#endif
#define esp_nn_conv_s8 esp_nn_conv_s8_ansi
#define esp_nn_get_conv_scratch_size esp_nn_get_conv_scratch_size_ansi
#define esp_nn_set_conv_scratch_buf esp_nn_set_conv_scratch_buf_ansi
#define esp_nn_depthwise_conv_s8 esp_nn_depthwise_conv_s8_ansi
#define esp_nn_get_depthwise_conv_scratch_size esp_nn_get_depthwise_conv_scratch_size_ansi
#define esp_nn_set_depthwise_conv_scratch_buf esp_nn_set_depthwise_conv_scratch_buf_ansi

#ifdef __cplusplus
}
#endif

#endif /* TL_FAKE_ESP_NN_H */
