/*
 * A test double of the generated tl_app_model (tests/test_app_c.py): the "prediction" is
 * the first input byte modulo the classes; a training step counts and reports loss 0.5;
 * a checkpoint is the step count written to the first 4 bytes of the storage. Adapters: one
 * layer (index 0, rank 1, K 2, C 3: five int16 masters); the prediction adds the first
 * master, a training step adds 1 to the second (so a device that trained sends another file
 * than the base, and predicts as before).
 */
#include "tl_app_model.h"

const int8_t tl_app_samples[TL_APP_SAMPLES * TL_APP_INPUT_SIZE] = {1, 2, 3, 4, 5, 6, 7, 8};
const uint8_t tl_app_labels[TL_APP_SAMPLES] = {1, 2};

static uint32_t tl_steps;

/* The adapter: a checkpoint-shaped buffer (tl_checkpoint.h's 40-byte header, the five
 * masters, a CRC) holds the masters, as the generated model's checkpoint does. */
#define TL_FAKE_MASTERS 5u
#define TL_FAKE_CKPT (40u + 2u * TL_FAKE_MASTERS + 4u)
static uint8_t tl_fake_ckpt[TL_FAKE_CKPT];
static const uint8_t tl_fake_sha[32] = {0xF4, 0x4E, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                        15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30};
static const tl_adapter_layer tl_fake_layers[1] = {
    {0u, 1u, 2u, 3u, 0x3C000000u, 0x3B000000u, 0x3D000000u, 0x3F800000u}};
static const tl_adapter_config tl_fake_cfg = {tl_fake_sha, 0u, 1u, tl_fake_layers, 0u};

static int32_t tl_master(uint32_t i)
{
    const uint32_t u = (uint32_t)tl_fake_ckpt[40u + 2u * i] |
                       ((uint32_t)tl_fake_ckpt[41u + 2u * i] << 8);
    return u < 0x8000u ? (int32_t)u : (int32_t)u - 0x10000;
}

static void tl_set_master(uint32_t i, int32_t v)
{
    tl_fake_ckpt[40u + 2u * i] = (uint8_t)((uint32_t)v & 0xFFu);
    tl_fake_ckpt[41u + 2u * i] = (uint8_t)(((uint32_t)v >> 8) & 0xFFu);
}

tl_status tl_app_model_init(uint8_t *arena, uint32_t arena_size)
{
    return arena != NULL && arena_size >= TL_APP_ARENA_SIZE ? TL_OK : TL_ERR_ARENA;
}

tl_status tl_app_model_predict(const int8_t *input, int32_t *predicted)
{
    *predicted = (int32_t)(((uint32_t)(uint8_t)input[0] + (uint32_t)(uint16_t)tl_master(0u)) %
                           TL_APP_CLASSES);
    return TL_OK;
}

tl_status tl_app_model_train(const int8_t *input, int32_t label, int32_t *predicted,
                             int32_t *loss_q10)
{
    (void)label;
    tl_steps++;
    tl_set_master(1u, tl_master(1u) + 1);
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
    if (storage->open(storage->ctx) != TL_OK ||
        storage->erase(storage->ctx, 0u, storage->erase_unit) != TL_OK ||
        storage->program(storage->ctx, 0u, b, 4u) != TL_OK) {
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

const tl_adapter_config *tl_app_model_adapter_config(void)
{
#if TL_APP_CAN_TRAIN
    return &tl_fake_cfg;
#else
    return NULL;
#endif
}

const uint8_t *tl_app_model_initial_adapter(uint32_t *len)
{
    *len = 0u;
    return NULL;
}

tl_status tl_app_model_adapter_load(const tl_storage *storage, uint32_t offset)
{
    tl_status status;
    uint32_t i;
    if (storage == NULL) {
        for (i = 40u; i < TL_FAKE_CKPT; ++i) {
            tl_fake_ckpt[i] = 0u;
        }
        return TL_OK;
    }
    status = tl_adapter_verify_stored(&tl_fake_cfg, storage, offset, tl_adapter_size(&tl_fake_cfg));
    return status != TL_OK ? status
                           : tl_adapter_into_checkpoint(&tl_fake_cfg, storage, offset, tl_fake_ckpt,
                                                        TL_FAKE_CKPT);
}

tl_status tl_app_model_adapter_save(tl_adapter_sink sink, void *ctx)
{
    return tl_adapter_from_checkpoint(&tl_fake_cfg, tl_fake_ckpt, TL_FAKE_CKPT, sink, ctx);
}
