/*
 * tl_app_model: what the application (src/main.c) needs from the generated model code.
 *
 * Any model code that implements these functions plugs into the application and the tests:
 * the generated training step (tl_app_model_train.c over tl_trainer.c: trains, predicts,
 * checkpoints) or the frozen forward (tl_app_model_frozen.c: predicts only). tl_app_config.h
 * says which one this project has (TL_APP_CAN_TRAIN) and gives the sizes.
 *
 * Every function returns TL_OK (0) or a tl_status; TL_ERR_UNSUPPORTED means "not in this
 * build" (training or checkpoints with the frozen forward).
 */
#ifndef TL_APP_MODEL_H
#define TL_APP_MODEL_H

#include <stdint.h>

#include "tl_adapter.h"
#include "tl_app_config.h"
#include "tl_storage.h"
#include "tl_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Use `arena` (TL_APP_ARENA_SIZE bytes, owned by the caller for the whole run; any
 * alignment: the model code aligns what it needs inside) for every buffer, and start from
 * the model's initial state (the base model, nothing learned). TL_ERR_NULL for no arena,
 * TL_ERR_ARENA for one too small. May be called again: a fresh start, as after a reset. */
tl_status tl_app_model_init(uint8_t *arena, uint32_t arena_size);

/* The predicted class of one int8 input (TL_APP_INPUT_SIZE bytes). */
tl_status tl_app_model_predict(const int8_t *input, int32_t *predicted);

/* One training step on (input, label): the class predicted before the update, and the
 * step's loss in Q10 (loss * 1024). TL_ERR_UNSUPPORTED when TL_APP_CAN_TRAIN is 0. */
tl_status tl_app_model_train(const int8_t *input, int32_t label, int32_t *predicted,
                             int32_t *loss_q10);

/* Training steps taken so far (restored from a checkpoint, too). */
uint32_t tl_app_model_steps(void);

/* Write the training state to `storage` as a power-safe checkpoint (tl_checkpoint.h's
 * two-slot store: the older of two slots is erased and written, so a write torn by a power
 * cut leaves the previous checkpoint intact); *bytes its size. TL_ERR_PARAM if it could not
 * be written (tl_app_model_checkpoint_error says why). */
tl_status tl_app_model_save(const tl_storage *storage, uint32_t *bytes);

/* Continue from the newest complete checkpoint in `storage`; TL_ERR_PARAM if there is none
 * or it belongs to another model or configuration (nothing is changed then). */
tl_status tl_app_model_load(const tl_storage *storage);

/* Why the last save or load failed, in a few words ("" after a success). */
const char *tl_app_model_checkpoint_error(void);

/* The adapter files this build accepts (tl_adapter.h: base model hash, layers, LoRA config),
 * or NULL when it cannot hold adapters (the frozen forward has no masters). */
const tl_adapter_config *tl_app_model_adapter_config(void);

/* Run the adapter file at `offset` of `storage`: its masters become the trainer's,
 * accumulators and momentum zeroed, updates from the file, the step count kept. The file is
 * checked as it is read (tl_adapter_into_checkpoint: this build's header and descriptors, the
 * CRC-32 of the bytes copied); on a refusal nothing changes. The full check of a slot
 * (tl_adapter_slot_check) is the caller's, once. storage NULL: the base model (the generated initial
 * A masters with the B masters 0: the base model's outputs exactly). TL_ERR_UNSUPPORTED without adapters. */
tl_status tl_app_model_adapter_load(const tl_storage *storage, uint32_t offset);

/* The adapter file the project was generated with (`tinylora gen --adapter`: the trainer's
 * initial state, kept in adapter slot 0), or NULL (*len 0). */
const uint8_t *tl_app_model_initial_adapter(uint32_t *len);

/* The trainer's current masters as a form-1 adapter file, given to `sink` in pieces. */
tl_status tl_app_model_adapter_save(tl_adapter_sink sink, void *ctx);

/* The embedded samples: TL_APP_SAMPLES inputs and their labels. */
extern const int8_t tl_app_samples[TL_APP_SAMPLES * TL_APP_INPUT_SIZE];
extern const uint8_t tl_app_labels[TL_APP_SAMPLES];

#ifdef __cplusplus
}
#endif

#endif /* TL_APP_MODEL_H */
