/*
 * The harness of `tinylora bench` (tinylora/bench.py): two builds of the same generated
 * training step in one program, `bench` (the normal build: the totals) and `bench_t` (the
 * timing build: tl_bench_op before every schedule op), run on the same samples in the same
 * order. Reports raw counter deltas (tl_counter.h); bench.py makes them exact instructions.
 *
 *   empty        an empty region (the cost of reading the counter)
 *   hook         two tl_bench_op calls in a row (the cost a mark adds between two ops)
 *   predict      bench_predict per sample          step  bench_step per sample
 *   predict_t    bench_t_predict per sample        step_t  bench_t_step per sample
 *   predict_ops  bench_t_predict: per sample, the delta from each mark to the next
 *   step_ops     bench_t_step: the same
 */
#include <stdint.h>
#include <string.h>

/* bench.py builds this with -DTL_BENCH_MODEL and the generated bench.h, bench_t.h and
 * bench_samples.h; compiled alone (the firmware's warning check) it holds nothing. */
#ifdef TL_BENCH_MODEL
#include "bench.h"
#include "bench_samples.h"
#include "bench_t.h"
#include "tl_counter.h"
#include "tl_report.h"

void tl_bench_op(uint32_t op);

static uint32_t marks[BENCH_MAX_MARKS];
static uint32_t n_marks;
static int32_t deltas[BENCH_SAMPLES * BENCH_MAX_MARKS];
static int32_t totals[BENCH_SAMPLES];
static int32_t timed_totals[BENCH_SAMPLES];
static bench_state state;
static bench_t_state timed;

void tl_bench_op(uint32_t op)
{
    (void)op;
    if (n_marks < BENCH_MAX_MARKS) {
        marks[n_marks] = tl_counter();
        n_marks += 1u;
    }
}

/* The deltas of the last run's marks into row `sample` (BENCH_MAX_MARKS - 1 per row). */
static void keep_deltas(int32_t sample)
{
    uint32_t k;
    for (k = 0u; k + 1u < BENCH_MAX_MARKS; ++k) {
        deltas[sample * (BENCH_MAX_MARKS - 1) + (int32_t)k] =
            k + 1u < n_marks ? (int32_t)tl_counter_elapsed(marks[k], marks[k + 1u]) : -1;
    }
    n_marks = 0u;
}

int main(void)
{
    int8_t logits[BENCH_CLASSES];
    int32_t loss, i;
    uint32_t a, b;
    tl_status status;

    tl_counter_init();
    if (bench_init(&state, NULL) != TL_OK || bench_t_init(&timed, NULL) != TL_OK) {
        tl_report_error("init", 0u, 1);
        return tl_report_done();
    }
    a = tl_counter();
    b = tl_counter();
    totals[0] = (int32_t)tl_counter_elapsed(a, b);
    tl_report_i32("empty", totals, 1u);
    n_marks = 0u;
    tl_bench_op(0u);
    tl_bench_op(1u);
    totals[0] = (int32_t)tl_counter_elapsed(marks[0], marks[1]);
    tl_report_i32("hook", totals, 1u);
    n_marks = 0u;

    for (i = 0; i < BENCH_SAMPLES; ++i) {
        a = tl_counter();
        status = bench_predict(&state, bench_inputs[i], logits);
        b = tl_counter();
        if (status != TL_OK) {
            tl_report_error("predict", (uint32_t)i, (int)status);
        }
        totals[i] = (int32_t)tl_counter_elapsed(a, b);
        n_marks = 0u;
        a = tl_counter();
        status = bench_t_predict(&timed, bench_inputs[i], logits);
        b = tl_counter();
        if (status != TL_OK) {
            tl_report_error("predict_t", (uint32_t)i, (int)status);
        }
        timed_totals[i] = (int32_t)tl_counter_elapsed(a, b);
        keep_deltas(i);
        /* the step changes the adapters: train both copies on the same sample */
        (void)bench_step(&state, bench_inputs[i], bench_labels[i], &loss, NULL);
        (void)bench_t_step(&timed, bench_inputs[i], bench_labels[i], &loss, NULL);
        n_marks = 0u;
    }
    tl_report_i32("predict", totals, BENCH_SAMPLES);
    tl_report_i32("predict_t", timed_totals, BENCH_SAMPLES);
    tl_report_i32("predict_ops", deltas, BENCH_SAMPLES * (BENCH_MAX_MARKS - 1));

    if (bench_init(&state, NULL) != TL_OK || bench_t_init(&timed, NULL) != TL_OK) {
        tl_report_error("init", 1u, 1);
        return tl_report_done();
    }
    for (i = 0; i < BENCH_SAMPLES; ++i) {
        a = tl_counter();
        status = bench_step(&state, bench_inputs[i], bench_labels[i], &loss, logits);
        b = tl_counter();
        if (status != TL_OK) {
            tl_report_error("step", (uint32_t)i, (int)status);
        }
        totals[i] = (int32_t)tl_counter_elapsed(a, b);
        n_marks = 0u;
        a = tl_counter();
        status = bench_t_step(&timed, bench_inputs[i], bench_labels[i], &loss, logits);
        b = tl_counter();
        if (status != TL_OK) {
            tl_report_error("step_t", (uint32_t)i, (int)status);
        }
        timed_totals[i] = (int32_t)tl_counter_elapsed(a, b);
        keep_deltas(i);
    }
    tl_report_i32("step", totals, BENCH_SAMPLES);
    tl_report_i32("step_t", timed_totals, BENCH_SAMPLES);
    tl_report_i32("step_ops", deltas, BENCH_SAMPLES * (BENCH_MAX_MARKS - 1));
    return tl_report_done();
}
#else
typedef int tl_bench_main_needs_tl_bench_model;
#endif /* TL_BENCH_MODEL */
