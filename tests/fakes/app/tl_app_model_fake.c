/*
 * A test double of the generated tl_app_model (tests/test_app_c.py): the "prediction" is
 * the first input byte modulo the classes; a training step counts and reports loss 0.5;
 * a checkpoint is the step count written to the first 4 bytes of the storage.
 */
#include "tl_app_model.h"

const int8_t tl_app_samples[TL_APP_SAMPLES * TL_APP_INPUT_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8};
const uint8_t tl_app_labels[TL_APP_SAMPLES] = {1, 2};

static uint32_t tl_steps;

tl_status tl_app_model_init(uint8_t *arena, uint32_t arena_size)
{
    return arena != NULL && arena_size >= TL_APP_ARENA_SIZE ? TL_OK : TL_ERR_ARENA;
}

tl_status tl_app_model_predict(const int8_t *input, int32_t *predicted)
{
    *predicted = (int32_t)((uint8_t)input[0] % TL_APP_CLASSES);
    return TL_OK;
}

tl_status tl_app_model_train(const int8_t *input, int32_t label, int32_t *predicted,
                             int32_t *loss_q10)
{
    (void)label;
    tl_steps++;
    *loss_q10 = 512;
    return tl_app_model_predict(input, predicted);
}

uint32_t tl_app_model_steps(void)
{
    return tl_steps;
}

tl_status tl_app_model_save(const tl_storage *storage, uint32_t *bytes)
{
    uint8_t b[4];
    b[0] = (uint8_t)tl_steps;
    b[1] = (uint8_t)(tl_steps >> 8);
    b[2] = (uint8_t)(tl_steps >> 16);
    b[3] = (uint8_t)(tl_steps >> 24);
    if (storage->open(storage->ctx) != TL_STORAGE_OK ||
        storage->erase(storage->ctx, 0u, storage->erase_unit) != TL_STORAGE_OK ||
        storage->write(storage->ctx, 0u, b, 4u) != TL_STORAGE_OK) {
        return TL_ERR_PARAM;
    }
    *bytes = 4u;
    return TL_OK;
}

tl_status tl_app_model_load(const tl_storage *storage)
{
    (void)storage;
    return TL_ERR_PARAM;
}

const char *tl_app_model_checkpoint_error(void)
{
    return "no checkpoint stored yet";
}
