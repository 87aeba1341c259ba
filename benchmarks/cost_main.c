/*
 * Instruction-count harness of benchmarks/cost.py: the bundled example's frozen inference,
 * adapted inference (predict) and training step, and the frozen FULLY_CONNECTED kernel at
 * two sizes, each between two reads of the target's counter. Run under QEMU with -icount;
 * cost.py turns the raw counter deltas into instructions.
 *
 * Counters: firmware/testing/tl_counter.h (shared with `tinylora bench`).
 */
#include <stdint.h>
#include <string.h>

#include "cost_samples.h"
#include "ex.h"
#include "tl_counter.h"
#include "tl_kernels.h"
#include "tl_report.h"

tl_status base_forward(const int8_t *input, int8_t *output, int8_t *scratch);


#define FC_OUT 64
#define FC_MAX_DEPTH 512

static int8_t fc_input[FC_MAX_DEPTH];
static int8_t fc_weights[FC_OUT * FC_MAX_DEPTH];
static int32_t fc_bias[FC_OUT];
static int32_t fc_multiplier[FC_OUT];
static int32_t fc_shift[FC_OUT];
static int8_t fc_output[FC_OUT];
static int8_t base_scratch[BASE_SCRATCH_SIZE + 1];
static int8_t base_output[BASE_OUTPUT_SIZE];
static ex_state state;

static uint32_t xorshift(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

static int32_t fc_cost(int32_t depth)
{
    static const tl_fc_params params = { 3, -5, -128, 127 };
    const tl_per_channel_quant quant = { fc_multiplier, fc_shift };
    const tl_dims input_dims = { 1, 1, 1, depth };
    const tl_dims filter_dims = { FC_OUT, 1, 1, depth };
    const tl_dims output_dims = { 1, 1, 1, FC_OUT };
    uint32_t a, b;
    a = tl_counter();
    (void)tl_fully_connected_s8(NULL, &params, &quant, &input_dims, fc_input, &filter_dims,
                                fc_weights, fc_bias, &output_dims, fc_output);
    b = tl_counter();
    return (int32_t)tl_counter_elapsed(a, b);
}

int main(void)
{
    int32_t r[COST_SAMPLES];
    int8_t logits[EX_CLASSES];
    int32_t loss;
    uint32_t a, b, seed = 12345u;
    int32_t i;

    tl_counter_init();
    for (i = 0; i < FC_MAX_DEPTH; ++i) {
        fc_input[i] = (int8_t)(int32_t)(xorshift(&seed) >> 24);
    }
    for (i = 0; i < FC_OUT * FC_MAX_DEPTH; ++i) {
        fc_weights[i] = (int8_t)((int32_t)(xorshift(&seed) >> 25) * 2 - 127);
    }
    for (i = 0; i < FC_OUT; ++i) {
        fc_bias[i] = (int32_t)(xorshift(&seed) >> 20) - 2048;
        fc_multiplier[i] = 1518500250 + (int32_t)(xorshift(&seed) >> 8);
        fc_shift[i] = -9;
    }
    if (ex_init(&state, NULL) != TL_OK) {
        tl_report_error("init", 0, 1);
        return tl_report_done();
    }

    a = tl_counter();
    b = tl_counter();
    r[0] = (int32_t)tl_counter_elapsed(a, b);
    tl_report_i32("empty", r, 1);

    for (i = 0; i < COST_SAMPLES; ++i) {
        a = tl_counter();
        (void)base_forward(cost_inputs[i], base_output, base_scratch);
        b = tl_counter();
        r[i] = (int32_t)tl_counter_elapsed(a, b);
    }
    tl_report_i32("base", r, COST_SAMPLES);
    for (i = 0; i < COST_SAMPLES; ++i) {
        a = tl_counter();
        (void)ex_predict(&state, cost_inputs[i], logits);
        b = tl_counter();
        r[i] = (int32_t)tl_counter_elapsed(a, b);
    }
    tl_report_i32("predict", r, COST_SAMPLES);
    for (i = 0; i < COST_SAMPLES; ++i) {
        a = tl_counter();
        if (ex_step(&state, cost_inputs[i], cost_labels[i], &loss, logits) != TL_OK) {
            tl_report_error("step", (uint32_t)i, 1);
        }
        b = tl_counter();
        r[i] = (int32_t)tl_counter_elapsed(a, b);
    }
    tl_report_i32("step", r, COST_SAMPLES);
    r[0] = fc_cost(FC_MAX_DEPTH / 2);
    r[1] = fc_cost(FC_MAX_DEPTH);
    tl_report_i32("fc", r, 2);
    return tl_report_done();
}
