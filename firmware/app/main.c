/*
 * The tinylora application: on-device training on the embedded samples at boot, then on
 * samples arriving over the serial port; progress, accuracy and checkpoints on the console.
 *
 * Boot: if an adapter (or the base model) was chosen with X before, run it (no checkpoint
 * restore, no boot training: the chosen adapter is what the device serves); else restore the
 * newest checkpoint from the board's storage (if any), evaluate the embedded samples, train until TL_APP_EPOCHS passes over them are done (counting the steps
 * a restored checkpoint already took: a reset resumes, it does not start over), write a
 * checkpoint every TL_APP_CHECKPOINT_EVERY steps, evaluate again, then serve serial lines.
 *
 * Output (one line each; README.md explains them):
 *   # ...                                  information
 *   P <pass> <i>/<n> correct <k> mean loss <x>   progress within a training pass
 *   A <pass> <correct>/<total> <pct>       accuracy of a pass; pass 0: an evaluation
 *                                          (predictions only, nothing learned)
 *   C <steps> <bytes> <storage>            a checkpoint was written
 *   R <label> <predicted> <loss>           the answer to a serial sample (S or P line)
 *   ! <reason>                             an error
 *   l / x / u / d / f / g ...              adapter slots (lib/tl_app/src/tl_app_adapters.c)
 * Input: the line protocol of lib/tl_app/src/tl_protocol.h (S, P, E, C, ?; adapter slots:
 * L, X, U, D, F, G).
 *
 * Regions between USER CODE BEGIN and USER CODE END are yours: `tinylora gen` keeps them
 * when it regenerates this file. It refuses to overwrite changes made anywhere else.
 */
#include <stddef.h>
#include <stdint.h>

#include "tl_app_adapters.h"
#include "tl_app_model.h"
#include "tl_board.h"
#include "tl_protocol.h"

/* USER CODE BEGIN includes */
/* USER CODE END includes */

/* USER CODE BEGIN functions */
/* USER CODE END functions */

#if TL_BOARD_STATIC_ARENA
/* The training arena (TL_APP_ARENA_SIZE bytes, planned by tinylora), 8-byte aligned. */
static union {
    uint64_t align;
    uint8_t bytes[TL_APP_ARENA_SIZE];
} tl_arena_storage;
#define TL_STATIC_ARENA (tl_arena_storage.bytes)
#else
#define TL_STATIC_ARENA NULL
#endif

static const tl_storage *tl_storage_used;
static uint32_t tl_saved_steps;

/* Training steps at boot: TL_APP_EPOCHS passes over the embedded samples. */
#define TL_BOOT_STEPS ((uint32_t)TL_APP_EPOCHS * (uint32_t)TL_APP_SAMPLES)

static void tl_line_end(void)
{
    tl_print("\n");
}

static void tl_error(const char *what, int32_t status)
{
    tl_print("! ");
    tl_print(what);
    tl_print(" (status ");
    tl_print_i32(status);
    tl_print(")");
    tl_line_end();
}

/* A checkpoint now, if this build can train and something changed since the last one. */
static void tl_checkpoint(void)
{
    uint32_t bytes = 0;
    tl_status status;
    if (!TL_APP_CAN_TRAIN || tl_app_model_steps() == tl_saved_steps) {
        return;
    }
    status = tl_app_model_save(tl_storage_used, &bytes);
    if (status != TL_OK) {
        tl_print("! checkpoint not written: ");
        tl_print(tl_app_model_checkpoint_error());
        tl_print(" (status ");
        tl_print_i32((int32_t)status);
        tl_print(")");
        tl_line_end();
        return;
    }
    tl_saved_steps = tl_app_model_steps();
    tl_print("C ");
    tl_print_u32(tl_saved_steps);
    tl_print(" ");
    tl_print_u32(bytes);
    tl_print(" ");
    tl_print(tl_storage_used->name);
    tl_line_end();
}

/* A checkpoint every TL_APP_CHECKPOINT_EVERY training steps. */
static void tl_checkpoint_due(void)
{
    if (TL_APP_CAN_TRAIN && tl_app_model_steps() % TL_APP_CHECKPOINT_EVERY == 0u) {
        tl_checkpoint();
    }
}

/* One sample: a training step when the build can train (and `train`), else a prediction. */
static tl_status tl_handle_sample(const int8_t *input, int32_t label, int train, int32_t *predicted,
                                  int32_t *loss_q10)
{
    *loss_q10 = -1;
    if (train && TL_APP_CAN_TRAIN) {
        return tl_app_model_train(input, label, predicted, loss_q10);
    }
    return tl_app_model_predict(input, predicted);
}

static void tl_accuracy_line(uint32_t pass, uint32_t correct, uint32_t total)
{
    tl_print("A ");
    tl_print_u32(pass);
    tl_print(" ");
    tl_print_u32(correct);
    tl_print("/");
    tl_print_u32(total);
    tl_print(" ");
    tl_print_percent(correct, total);
    tl_line_end();
}

/* Evaluation: the class predicted for every embedded sample, nothing learned ("A 0"). */
static void tl_evaluate(void)
{
    uint32_t i;
    uint32_t correct = 0;
    for (i = 0; i < TL_APP_SAMPLES; ++i) {
        int32_t predicted = -1;
        const tl_status status =
            tl_app_model_predict(tl_app_samples + (size_t)i * TL_APP_INPUT_SIZE, &predicted);
        if (status != TL_OK) {
            tl_error("prediction failed", (int32_t)status);
            return;
        }
        correct += predicted == (int32_t)tl_app_labels[i] ? 1u : 0u;
    }
    tl_accuracy_line(0u, correct, TL_APP_SAMPLES);
}

/* Training pass `pass` over the embedded samples from sample `first` (after a resume, the
 * one after the last trained). Each sample is predicted (by the step's forward pass) before
 * the step learns from it. Returns 0 if a step failed. */
static int tl_train_pass(uint32_t pass, uint32_t first)
{
    uint32_t i;
    uint32_t seen = 0;
    uint32_t correct = 0;
    int32_t loss_sum = 0;
    const uint32_t report_every = TL_APP_SAMPLES >= 8 ? TL_APP_SAMPLES / 4u : 1u;
    for (i = first; i < TL_APP_SAMPLES; ++i) {
        int32_t predicted = -1;
        int32_t loss_q10 = -1;
        const int32_t label = (int32_t)tl_app_labels[i];
        const tl_status status = tl_handle_sample(tl_app_samples + (size_t)i * TL_APP_INPUT_SIZE,
                                                  label, 1, &predicted, &loss_q10);
        if (status != TL_OK) {
            tl_error("training step failed", (int32_t)status);
            return 0;
        }
        seen++;
        correct += predicted == label ? 1u : 0u;
        loss_sum += loss_q10;
        /* USER CODE BEGIN sample */
        /* USER CODE END sample */
        if ((i + 1u) % report_every == 0u || i + 1u == TL_APP_SAMPLES) {
            tl_print("P ");
            tl_print_u32(pass);
            tl_print(" ");
            tl_print_u32(i + 1u);
            tl_print("/");
            tl_print_u32(TL_APP_SAMPLES);
            tl_print(" correct ");
            tl_print_u32(correct);
            tl_print(" mean loss ");
            tl_print_q10(loss_sum / (int32_t)seen);
            tl_line_end();
        }
        tl_board_yield();
        tl_checkpoint_due();
    }
    tl_accuracy_line(pass, correct, seen);
    return 1;
}

/* The boot training: up to TL_BOOT_STEPS steps in all, resuming where a restored
 * checkpoint stopped. */
static void tl_boot_training(void)
{
    uint32_t steps = tl_app_model_steps();
    if (steps >= TL_BOOT_STEPS) {
        tl_print("# training at boot: done before (");
        tl_print_u32(steps);
        tl_print(" steps taken); send samples to train more");
        tl_line_end();
        return;
    }
    tl_print("# training at boot: ");
    tl_print_u32(TL_APP_EPOCHS);
    tl_print(" passes over ");
    tl_print_u32(TL_APP_SAMPLES);
    tl_print(" samples, steps ");
    tl_print_u32(steps + 1u);
    tl_print("..");
    tl_print_u32(TL_BOOT_STEPS);
    tl_print(", a checkpoint every ");
    tl_print_u32(TL_APP_CHECKPOINT_EVERY);
    tl_print(" steps");
    tl_line_end();
    while (steps < TL_BOOT_STEPS) {
        if (!tl_train_pass(steps / TL_APP_SAMPLES + 1u, steps % TL_APP_SAMPLES)) {
            return;
        }
        steps = tl_app_model_steps();
    }
    tl_checkpoint();
}

static void tl_status_line(void)
{
    tl_print("# steps ");
    tl_print_u32(tl_app_model_steps());
    tl_print(", last checkpoint at step ");
    tl_print_u32(tl_saved_steps);
    tl_print(", uptime ");
    tl_print_u32(tl_board_millis());
    tl_print(" ms");
    tl_line_end();
}

/* The C command: a checkpoint now, and always a reply (a '#' line when none is written). */
static void tl_checkpoint_command(void)
{
    if (!TL_APP_CAN_TRAIN) {
        tl_print("# checkpoint: none in this build (it does not train)");
        tl_line_end();
    } else if (tl_app_model_steps() == tl_saved_steps) {
        tl_print("# checkpoint: nothing new since step ");
        tl_print_u32(tl_saved_steps);
        tl_line_end();
    } else {
        tl_checkpoint();
    }
}

/* The answer to one serial line. */
static void tl_serve_event(tl_proto *proto, tl_proto_event event, const int8_t *sample)
{
    int32_t predicted = -1;
    int32_t loss_q10 = -1;
    tl_status status;
    switch (event) {
    case TL_PROTO_SAMPLE:
    case TL_PROTO_PREDICT:
        status =
            tl_handle_sample(sample, proto->label, event == TL_PROTO_SAMPLE, &predicted, &loss_q10);
        if (status != TL_OK) {
            tl_error("step failed", (int32_t)status);
            break;
        }
        tl_print("R ");
        if (event == TL_PROTO_SAMPLE) {
            tl_print_i32(proto->label);
        } else {
            tl_print("-");
        }
        tl_print(" ");
        tl_print_i32(predicted);
        tl_print(" ");
        if (loss_q10 >= 0) {
            tl_print_q10(loss_q10);
        } else {
            tl_print("-");
        }
        tl_line_end();
        /* USER CODE BEGIN serial_sample */
        /* USER CODE END serial_sample */
        if (event == TL_PROTO_SAMPLE) {
            tl_checkpoint_due();
        }
        break;
    case TL_PROTO_EVALUATE:
        tl_evaluate();
        break;
    case TL_PROTO_CHECKPOINT:
        tl_checkpoint_command();
        break;
    case TL_PROTO_STATUS:
        tl_status_line();
        break;
    case TL_PROTO_ERROR:
        tl_print("! ");
        tl_print(tl_proto_error_text(proto->error));
        tl_line_end();
        break;
    default:
        (void)tl_app_adapters_command(proto, event);
        break;
    }
}

/* Serial samples until the input ends (QEMU) -- on a device, forever. A last line without
 * its line end counts when the input ends. */
static void tl_serve(void)
{
    static int8_t sample[TL_APP_INPUT_SIZE];
    tl_proto proto;
    tl_proto_init(&proto, sample, TL_APP_INPUT_SIZE, TL_APP_CLASSES);
    tl_print("# ready: send lines 'S <label> <hex>' (train), 'P <hex>' (predict), 'E', 'C', '?' or "
             "adapter commands 'L', 'X', 'U', 'D', 'F', 'G'");
    tl_line_end();
    for (;;) {
        const int c = tl_board_read_char(1000);
        if (c == TL_BOARD_NO_CHAR) {
            continue;
        }
        if (c == TL_BOARD_EOF) {
            tl_serve_event(&proto, tl_proto_finish(&proto), sample);
            return;
        }
        tl_serve_event(&proto, tl_proto_feed(&proto, c), sample);
    }
}

static int tl_app_run(void)
{
    const char *where = "";
    uint8_t *arena;
    tl_status status;
    int chosen;

    tl_print("# tinylora on ");
    tl_print(tl_board_name());
    tl_print(": model " TL_APP_MODEL);
    tl_line_end();
    arena = tl_board_arena(TL_STATIC_ARENA, TL_APP_ARENA_SIZE, &where);
    tl_print("# arena ");
    tl_print_u32(TL_APP_ARENA_SIZE);
    tl_print(" bytes, ");
    tl_print(where);
    tl_line_end();
    status = tl_app_model_init(arena, TL_APP_ARENA_SIZE);
    if (status != TL_OK) {
        tl_error("model init failed", (int32_t)status);
        return 1;
    }
    tl_storage_used = tl_board_storage();
    chosen = tl_app_adapters_boot();
    if (chosen) {
        tl_print("# checkpoints: ");
        tl_print(tl_storage_used->name);
        tl_print(", not restored (the chosen adapter runs)");
        tl_line_end();
    } else if (TL_APP_CAN_TRAIN) {
        status = tl_app_model_load(tl_storage_used);
        tl_print("# checkpoints: ");
        tl_print(tl_storage_used->name);
        if (status == TL_OK) {
            tl_saved_steps = tl_app_model_steps();
            tl_print(", resumed at step ");
            tl_print_u32(tl_saved_steps);
        } else {
            tl_print(", none restored (");
            tl_print(tl_app_model_checkpoint_error());
            tl_print("): starting from the base model");
        }
        tl_line_end();
    } else {
        tl_print(
            "# training: not in this build (the frozen forward only): predictions, no checkpoints");
        tl_line_end();
    }

    /* USER CODE BEGIN setup */
    /* USER CODE END setup */

    tl_print("# accuracy before training (pass 0: predictions only)");
    tl_line_end();
    tl_evaluate();
    if (TL_APP_CAN_TRAIN && !chosen) {
        tl_boot_training();
        tl_print("# accuracy after training");
        tl_line_end();
        tl_evaluate();
    }
    tl_serve();
    tl_checkpoint();
    tl_print("# input ended");
    tl_line_end();
    return 0;
}

TL_BOARD_MAIN(tl_app_run)
