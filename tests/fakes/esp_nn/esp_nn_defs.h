/*
 * TEST DOUBLE of ESP-NN's esp_nn_defs.h (tests/fakes/README.md): the parameter structs with the
 * member names, types and order of the ESP-NN public header. Not Espressif's file.
 */
#ifndef TL_FAKE_ESP_NN_DEFS_H
#define TL_FAKE_ESP_NN_DEFS_H

#include <stdint.h>

/* width, height, channels; extra: free (batch or output channels of a filter) */
typedef struct data_dims {
    int32_t width;
    int32_t height;
    int32_t channels;
    int32_t extra;
} data_dims_t;

typedef struct data_2d {
    int32_t width;
    int32_t height;
} data_2d_t;

typedef struct act_params {
    int32_t min;
    int32_t max;
} act_params_t;

/* per output channel; note the order: shift first */
typedef struct quant_data {
    int32_t *shift;
    int32_t *mult;
} quant_data_t;

typedef struct conv_params {
    int32_t in_offset;
    int32_t out_offset;
    data_2d_t stride;
    data_2d_t padding;
    data_2d_t dilation;
    act_params_t activation;
} conv_params_t;

typedef struct dw_conv_params {
    int32_t in_offset;
    int32_t out_offset;
    int32_t ch_mult; /* in_ch * ch_mult = out_ch */
    data_2d_t stride;
    data_2d_t padding;
    data_2d_t dilation;
    act_params_t activation;
} dw_conv_params_t;

#endif /* TL_FAKE_ESP_NN_DEFS_H */
