/*
 * TEST DOUBLE of CMSIS-NN's arm_nn_types.h (tests/fakes/README.md): only the types tinylora's
 * dispatch uses, with the member names, types and order of the CMSIS-NN v7.0.0 public header.
 * Written for tinylora's tests; not Arm's file.
 */
#ifndef ARM_NN_TYPES_H
#define ARM_NN_TYPES_H

#include <stdint.h>

typedef enum {
    ARM_CMSIS_NN_SUCCESS = 0,
    ARM_CMSIS_NN_ARG_ERROR = -1,
    ARM_CMSIS_NN_NO_IMPL_ERROR = -2,
    ARM_CMSIS_NN_FAILURE = -3
} arm_cmsis_nn_status;

typedef struct {
    int32_t w;
    int32_t h;
} cmsis_nn_tile;

/* Scratch for the call: buf / size bytes (CMSIS-NN: "Function context"). */
typedef struct {
    void *buf;
    int32_t size;
} cmsis_nn_context;

/* n: batches (activations) or output channels (conv filters); FC filters: n = accumulation
 * depth, c = output channels. */
typedef struct {
    int32_t n;
    int32_t h;
    int32_t w;
    int32_t c;
} cmsis_nn_dims;

typedef struct {
    int32_t *multiplier;
    int32_t *shift;
} cmsis_nn_per_channel_quant_params;

typedef struct {
    int32_t multiplier;
    int32_t shift;
} cmsis_nn_per_tensor_quant_params;

typedef struct {
    int32_t min;
    int32_t max;
} cmsis_nn_activation;

/* input_offset = -input zero point, output_offset = +output zero point (TFLM's usage). */
typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    cmsis_nn_tile stride;
    cmsis_nn_tile padding;
    cmsis_nn_tile dilation;
    cmsis_nn_activation activation;
} cmsis_nn_conv_params;

typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t ch_mult;
    cmsis_nn_tile stride;
    cmsis_nn_tile padding;
    cmsis_nn_tile dilation;
    cmsis_nn_activation activation;
} cmsis_nn_dw_conv_params;

typedef struct {
    int32_t input_offset;
    int32_t filter_offset;
    int32_t output_offset;
    cmsis_nn_activation activation;
} cmsis_nn_fc_params;

/* Declared so that the glue of the pooling ops compiles against this double; the double does
 * not implement the pooling / add functions (tests/test_ops_c.py runs the real CMSIS-NN). */
typedef struct {
    cmsis_nn_tile stride;
    cmsis_nn_tile padding;
    cmsis_nn_activation activation;
} cmsis_nn_pool_params;

#endif /* ARM_NN_TYPES_H */
