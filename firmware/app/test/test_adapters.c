/*
 * tl_adapter: the adapter slots of this build on RAM with flash rules (the board's program
 * unit) -- files from the model's own masters, the spec's refusals, uploads and selections
 * torn by a power cut at every chunk and every byte, hot swap of the model's masters, a slot
 * changed in flash after its check never run. A build
 * without adapters (the frozen forward, a board with no slots) checks that it says so.
 */
#include <string.h>

#include "tl_adapter.h"
#include "tl_app_model.h"
#include "tl_board.h"
#include "tl_board_config.h"
#include "tl_unit.h"

#if TL_ADAPTER_SLOTS > 0
#define TL_FILE_MAX TL_ADAPTER_RAM_SLOT_SIZE
#define TL_SLOTS 3u /* enough for the cases; a slot size as under QEMU */
#define TL_REGION (2u * TL_ADAPTER_RAM_UNIT + TL_SLOTS * TL_ADAPTER_RAM_SLOT_SIZE)
#define TL_CHUNK 64u

static union {
    uint64_t align;
    uint8_t bytes[TL_APP_ARENA_SIZE];
} tl_arena;
static uint8_t tl_medium[TL_REGION];
static uint8_t tl_image[TL_REGION];
static tl_storage_ram tl_ram;
static tl_adapter_store tl_store;
static tl_adapter_upload tl_up;
static uint8_t tl_base[TL_FILE_MAX];    /* the base model's masters as a file */
static uint8_t tl_trained[TL_FILE_MAX]; /* after a few training steps */
static uint8_t tl_file[TL_FILE_MAX];    /* scratch */
static uint32_t tl_size;

/* Storage that loses power after `budget` more bytes are programmed or erased. */
typedef struct {
    tl_storage storage;
    uint32_t budget;
} tl_torn;

static tl_torn tl_cut;

static tl_status tl_cut_read(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len)
{
    (void)ctx;
    return tl_ram.storage.read(&tl_ram, offset, dst, len);
}

static tl_status tl_cut_erase(void *ctx, uint32_t offset, uint32_t len)
{
    tl_torn *t = (tl_torn *)ctx;
    if (t->budget == 0u) {
        return TL_ERR_IO;
    }
    t->budget--;
    return tl_ram.storage.erase(&tl_ram, offset, len);
}

static tl_status tl_cut_program(void *ctx, uint32_t offset, const uint8_t *src, uint32_t len)
{
    tl_torn *t = (tl_torn *)ctx;
    const uint32_t unit = tl_ram.storage.program_unit;
    const uint32_t n = len < t->budget ? len : t->budget / unit * unit;
    t->budget -= n < t->budget ? n : t->budget;
    if (n > 0u && tl_ram.storage.program(&tl_ram, offset, src, n) != TL_OK) {
        return TL_ERR_IO;
    }
    return n == len ? TL_OK : TL_ERR_IO;
}

static const tl_storage *tl_torn_region(uint32_t budget)
{
    tl_cut.storage = tl_ram.storage;
    tl_cut.storage.ctx = &tl_cut;
    tl_cut.storage.open = NULL;
    tl_cut.storage.read = tl_cut_read;
    tl_cut.storage.erase = tl_cut_erase;
    tl_cut.storage.program = tl_cut_program;
    tl_cut.budget = budget;
    return &tl_cut.storage;
}

typedef struct {
    uint8_t *out;
    uint32_t len;
} tl_buffer;

static tl_status tl_collect(void *ctx, const uint8_t *data, uint32_t len)
{
    tl_buffer *b = (tl_buffer *)ctx;
    if (b->len + len > TL_FILE_MAX) {
        return TL_ERR_ARENA;
    }
    memcpy(b->out + b->len, data, len);
    b->len += len;
    return TL_OK;
}

static int tl_save_model(uint8_t *out)
{
    tl_buffer b;
    b.out = out;
    b.len = 0u;
    return tl_app_model_adapter_save(tl_collect, &b) == TL_OK && b.len == tl_size;
}

static void tl_reseal(uint8_t *file)
{
    const uint32_t crc = tl_crc32(0u, file, tl_size - 4u);
    file[tl_size - 4u] = (uint8_t)crc;
    file[tl_size - 3u] = (uint8_t)(crc >> 8);
    file[tl_size - 2u] = (uint8_t)(crc >> 16);
    file[tl_size - 1u] = (uint8_t)(crc >> 24);
}

static tl_status tl_fresh(void)
{
    (void)tl_storage_ram_init(&tl_ram, tl_medium, TL_REGION, TL_ADAPTER_RAM_UNIT,
                              TL_STORAGE_PROGRAM_UNIT);
    return tl_adapter_store_init(&tl_store, &tl_ram.storage, TL_ADAPTER_RAM_SLOT_SIZE, TL_SLOTS);
}

/* Upload `file` into `slot` in TL_CHUNK-byte chunks on the store as it is. */
static tl_status tl_upload(const uint8_t *file, uint32_t slot)
{
    uint32_t at, i = 0u;
    tl_status s =
        tl_adapter_upload_begin(&tl_up, &tl_store, tl_app_model_adapter_config(), slot, tl_size);
    for (at = 0u; at < tl_size && s == TL_OK; at += TL_CHUNK, ++i) {
        const uint32_t n = tl_size - at < TL_CHUNK ? tl_size - at : TL_CHUNK;
        s = tl_adapter_upload_chunk(&tl_up, i, file + at, n, tl_crc32(0u, file + at, n));
    }
    return s == TL_OK ? tl_adapter_upload_end(&tl_up) : s;
}

/* The model, its files: the base (fresh masters) and after three training steps. */
static void test_the_model_gives_valid_files(void)
{
    const tl_adapter_config *cfg = tl_app_model_adapter_config();
    int32_t predicted = 0, loss = 0;
    uint32_t i;
    TL_CHECK(cfg != NULL);
    tl_size = tl_adapter_size(cfg);
    TL_CHECK(tl_size > 0u && tl_size <= TL_FILE_MAX);
    TL_CHECK(tl_app_model_init(tl_arena.bytes, TL_APP_ARENA_SIZE) == TL_OK);
    TL_CHECK(tl_save_model(tl_base));
    TL_CHECK(tl_adapter_verify(cfg, tl_base, tl_size) == TL_OK);
    for (i = 0; i < 3u; ++i) {
        TL_CHECK(tl_app_model_train(tl_app_samples + (i % TL_APP_SAMPLES) * TL_APP_INPUT_SIZE,
                                    (int32_t)tl_app_labels[i % TL_APP_SAMPLES], &predicted,
                                    &loss) == TL_OK);
    }
    TL_CHECK(tl_save_model(tl_trained));
    TL_CHECK(tl_adapter_verify(cfg, tl_trained, tl_size) == TL_OK);
    TL_CHECK(tl_unit_first_difference(tl_base, tl_trained, tl_size) >= 0); /* it learned */
}

/* The checks of docs/adapter.md, each refusal with its status. */
static void test_bad_files_are_refused(void)
{
    const tl_adapter_config *cfg = tl_app_model_adapter_config();
    TL_CHECK(tl_adapter_verify(cfg, tl_trained, tl_size - 1u) == TL_ERR_LENGTH); /* truncated */
    TL_CHECK(tl_adapter_verify(cfg, tl_trained, 10u) == TL_ERR_SHORT);
    memcpy(tl_file, tl_trained, tl_size);
    tl_file[0] = 'X';
    TL_CHECK(tl_adapter_verify(cfg, tl_file, tl_size) == TL_ERR_MAGIC);
    memcpy(tl_file, tl_trained, tl_size);
    tl_file[tl_size / 2u] ^= 0x04u; /* a bit flip */
    TL_CHECK(tl_adapter_verify(cfg, tl_file, tl_size) == TL_ERR_CRC);
    memcpy(tl_file, tl_trained, tl_size);
    tl_file[4] = 1u; /* version 1 */
    tl_reseal(tl_file);
    TL_CHECK(tl_adapter_verify(cfg, tl_file, tl_size) == TL_ERR_VERSION);
    memcpy(tl_file, tl_trained, tl_size);
    tl_file[6] = 2u; /* form 2: int8, inference only */
    tl_reseal(tl_file);
    TL_CHECK(tl_adapter_verify(cfg, tl_file, tl_size) == TL_ERR_UNSUPPORTED);
    memcpy(tl_file, tl_trained, tl_size);
    tl_file[12] ^= 0x01u; /* another base model */
    tl_reseal(tl_file);
    TL_CHECK(tl_adapter_verify(cfg, tl_file, tl_size) == TL_ERR_FOREIGN);
    memcpy(tl_file, tl_trained, tl_size);
    tl_file[64u + 12u] ^= 0x01u; /* another s_A */
    tl_reseal(tl_file);
    TL_CHECK(tl_adapter_verify(cfg, tl_file, tl_size) == TL_ERR_CONFIG);
    memcpy(tl_file, tl_trained, tl_size);
    tl_file[44] ^= 0x01u; /* another loss */
    tl_reseal(tl_file);
    TL_CHECK(tl_adapter_verify(cfg, tl_file, tl_size) == TL_ERR_CONFIG);
    memcpy(tl_file, tl_trained, tl_size);
    tl_file[64u] ^= 0x01u; /* another layer index */
    tl_reseal(tl_file);
    TL_CHECK(tl_adapter_verify(cfg, tl_file, tl_size) == TL_ERR_LAYOUT);
}

/* Whether `file` is the base model's: the initial A masters, every B master 0, updates 0. */
static int tl_is_base(const uint8_t *file)
{
    const tl_adapter_config *cfg = tl_app_model_adapter_config();
    uint32_t i, j, at = TL_ADAPTER_HEADER_SIZE + TL_ADAPTER_LAYER_SIZE * cfg->n_layers;
    if (file[48] != 0u || file[49] != 0u || file[50] != 0u || file[51] != 0u) {
        return 0;
    }
    for (i = 0; i < cfg->n_layers; ++i) {
        const tl_adapter_layer *l = &cfg->layers[i];
        const uint32_t a = 2u * l->rank * l->depth, b = 2u * l->channels * l->rank;
        if (tl_unit_first_difference(file + at, tl_base + at, a) >= 0) {
            return 0;
        }
        for (j = 0; j < b; ++j) {
            if (file[at + a + j] != 0u) {
                return 0;
            }
        }
        at += a + b;
    }
    return 1;
}

/* Upload, select, hot swap: the model runs each adapter and the base again. */
static void test_upload_select_and_swap(void)
{
    const tl_adapter_config *cfg = tl_app_model_adapter_config();
    uint32_t slot = 0u;
    TL_CHECK(tl_fresh() == TL_OK);
    TL_CHECK(tl_adapter_active(&tl_store, &slot, NULL) == TL_ERR_EMPTY);
    TL_CHECK(tl_upload(tl_trained, 0u) == TL_OK);
    TL_CHECK(tl_upload(tl_base, 1u) == TL_OK);
    TL_CHECK(tl_adapter_select(&tl_store, cfg, 0u) == TL_OK);
    TL_CHECK(tl_adapter_active(&tl_store, &slot, NULL) == TL_OK && slot == 0u);
    TL_CHECK(tl_app_model_adapter_load(tl_store.region, tl_adapter_slot_offset(&tl_store, 0u)) ==
             TL_OK);
    TL_CHECK(tl_save_model(tl_file));
    TL_CHECK(tl_unit_first_difference(tl_file, tl_trained, tl_size) < 0); /* runs slot 0 */
    TL_CHECK(tl_app_model_adapter_load(NULL, 0u) == TL_OK);
    TL_CHECK(tl_save_model(tl_file));
    TL_CHECK(tl_is_base(tl_file)); /* the base model */
    TL_CHECK(tl_adapter_select(&tl_store, cfg, TL_ADAPTER_NONE) == TL_OK);
    TL_CHECK(tl_adapter_active(&tl_store, &slot, NULL) == TL_OK && slot == TL_ADAPTER_NONE);
    TL_CHECK(tl_adapter_select(&tl_store, cfg, 2u) == TL_ERR_EMPTY); /* nothing there */
    TL_CHECK(tl_adapter_select(&tl_store, cfg, TL_SLOTS) == TL_ERR_SLOT);
    TL_CHECK(tl_adapter_active(&tl_store, &slot, NULL) == TL_OK && slot == TL_ADAPTER_NONE);
}

/* Refused uploads leave the active adapter as it was. */
static void test_bad_uploads_are_refused(void)
{
    const tl_adapter_config *cfg = tl_app_model_adapter_config();
    uint32_t slot = 0u;
    TL_CHECK(tl_fresh() == TL_OK);
    TL_CHECK(tl_upload(tl_trained, 0u) == TL_OK && tl_adapter_select(&tl_store, cfg, 0u) == TL_OK);
    TL_CHECK(tl_adapter_upload_begin(&tl_up, &tl_store, cfg, 0u, tl_size) == TL_ERR_SLOT);
    TL_CHECK(tl_adapter_upload_begin(&tl_up, &tl_store, cfg, TL_SLOTS, tl_size) == TL_ERR_SLOT);
    TL_CHECK(tl_adapter_upload_begin(&tl_up, &tl_store, cfg, 1u, tl_size + 2u) == TL_ERR_LAYOUT);
    TL_CHECK(tl_adapter_upload_begin(&tl_up, &tl_store, cfg, 1u, tl_size) == TL_OK);
    TL_CHECK(tl_adapter_upload_chunk(&tl_up, 1u, tl_base, 8u, tl_crc32(0u, tl_base, 8u)) ==
             TL_ERR_ORDER);
    TL_CHECK(tl_adapter_upload_chunk(&tl_up, 0u, tl_base, 8u, 0x12345678u) == TL_ERR_CRC);
    TL_CHECK(tl_adapter_upload_chunk(&tl_up, 0u, tl_base, 8u, tl_crc32(0u, tl_base, 8u)) == TL_OK);
    TL_CHECK(tl_adapter_upload_end(&tl_up) == TL_ERR_LENGTH); /* stopped early */
    memcpy(tl_file, tl_trained, tl_size);
    tl_file[12] ^= 0x01u; /* another base model, resealed: refused at the end */
    tl_reseal(tl_file);
    TL_CHECK(tl_upload(tl_file, 1u) == TL_ERR_FOREIGN);
    TL_CHECK(tl_adapter_select(&tl_store, cfg, 1u) == TL_ERR_FOREIGN);
    TL_CHECK(tl_adapter_active(&tl_store, &slot, NULL) == TL_OK && slot == 0u);
    TL_CHECK(tl_adapter_verify_stored(cfg, tl_store.region, tl_adapter_slot_offset(&tl_store, 0u),
                                      tl_size) == TL_OK);
}

/* Power lost after every byte of an upload into the inactive slot: slot 0 stays active and
 * valid; the torn slot is refused. */
static void test_torn_upload_keeps_the_active_adapter(void)
{
    const tl_adapter_config *cfg = tl_app_model_adapter_config();
    uint32_t budget, slot = 0u;
    TL_CHECK(tl_fresh() == TL_OK);
    TL_CHECK(tl_upload(tl_trained, 0u) == TL_OK && tl_adapter_select(&tl_store, cfg, 0u) == TL_OK);
    memcpy(tl_image, tl_medium, TL_REGION);
    for (budget = 0u; budget <= tl_size; budget += TL_STORAGE_PROGRAM_UNIT) {
        memcpy(tl_medium, tl_image, TL_REGION);
        /* the erase counts 1: budget 0 cuts before it, budget 1 right after it */
        TL_CHECK(tl_adapter_store_init(&tl_store, tl_torn_region(budget), TL_ADAPTER_RAM_SLOT_SIZE,
                                       TL_SLOTS) == TL_OK);
        (void)tl_upload(tl_base, 1u);
        /* power back */
        TL_CHECK(tl_adapter_store_init(&tl_store, &tl_ram.storage, TL_ADAPTER_RAM_SLOT_SIZE,
                                       TL_SLOTS) == TL_OK);
        TL_CHECK(tl_adapter_active(&tl_store, &slot, NULL) == TL_OK && slot == 0u);
        TL_CHECK(tl_adapter_verify_stored(cfg, tl_store.region,
                                          tl_adapter_slot_offset(&tl_store, 0u), tl_size) == TL_OK);
        if (budget <= tl_size) {
            TL_CHECK(tl_adapter_select(&tl_store, cfg, 1u) != TL_OK);
        }
    }
}

/* Power lost at every byte of a selection: the previous choice or the new one, never none. */
static void test_torn_select_keeps_a_valid_choice(void)
{
    const tl_adapter_config *cfg = tl_app_model_adapter_config();
    uint32_t budget, slot = 0u, seq = 0u;
    TL_CHECK(tl_fresh() == TL_OK);
    TL_CHECK(tl_upload(tl_trained, 0u) == TL_OK && tl_upload(tl_base, 1u) == TL_OK);
    TL_CHECK(tl_adapter_select(&tl_store, cfg, 0u) == TL_OK);
    TL_CHECK(tl_adapter_select(&tl_store, cfg, 1u) == TL_OK);
    TL_CHECK(tl_adapter_select(&tl_store, cfg, 0u) == TL_OK); /* both copies written */
    memcpy(tl_image, tl_medium, TL_REGION);
    for (budget = 0u; budget <= TL_ADAPTER_RECORD_SIZE + 1u; ++budget) {
        tl_status s;
        memcpy(tl_medium, tl_image, TL_REGION);
        TL_CHECK(tl_adapter_store_init(&tl_store, tl_torn_region(budget), TL_ADAPTER_RAM_SLOT_SIZE,
                                       TL_SLOTS) == TL_OK);
        s = tl_adapter_select(&tl_store, cfg, 1u);
        TL_CHECK(tl_adapter_store_init(&tl_store, &tl_ram.storage, TL_ADAPTER_RAM_SLOT_SIZE,
                                       TL_SLOTS) == TL_OK);
        TL_CHECK(tl_adapter_active(&tl_store, &slot, &seq) == TL_OK);
        TL_CHECK(slot == (s == TL_OK ? 1u : 0u)); /* done, or the previous choice stands */
    }
}

/* A slot is checked in full once (its upload, the boot); a bit that flips in flash after that
 * is caught by the CRC of the bytes a switch copies: the slot is never run. */
static void test_a_slot_changed_after_its_check_is_never_run(void)
{
    const tl_adapter_config *cfg = tl_app_model_adapter_config();
    uint32_t slot0, k;
    TL_CHECK(tl_fresh() == TL_OK);
    slot0 = tl_adapter_slot_offset(&tl_store, 0u);
    TL_CHECK(tl_upload(tl_trained, 0u) == TL_OK && tl_upload(tl_base, 1u) == TL_OK);
    TL_CHECK(tl_adapter_slot_check(&tl_store, cfg, 0u) == TL_OK);
    TL_CHECK(tl_adapter_slot_check(&tl_store, cfg, 2u) == TL_ERR_EMPTY);
    TL_CHECK(tl_adapter_slot_check(&tl_store, cfg, TL_SLOTS) == TL_ERR_SLOT);
    TL_CHECK(tl_app_model_adapter_load(tl_store.region, tl_adapter_slot_offset(&tl_store, 1u)) ==
             TL_OK);
    TL_CHECK(tl_save_model(tl_file));
    for (k = 0u; k < 2u; ++k) {
        const uint32_t at = k == 0u ? slot0 + tl_size - 7u : slot0 + 13u; /* a master, the SHA */
        tl_medium[at] ^= 0x10u;                                       /* after the slot's check */
        TL_CHECK(tl_adapter_slot_check(&tl_store, cfg, 0u) == TL_OK); /* not read again */
        TL_CHECK(tl_app_model_adapter_load(tl_store.region, slot0) == TL_ERR_CRC);
        TL_CHECK(tl_save_model(tl_image));
        TL_CHECK(tl_unit_first_difference(tl_image, tl_file, tl_size) < 0); /* nothing changed */
        /* the next boot checks it again: refused */
        TL_CHECK(tl_adapter_store_init(&tl_store, &tl_ram.storage, TL_ADAPTER_RAM_SLOT_SIZE,
                                       TL_SLOTS) == TL_OK);
        TL_CHECK(tl_adapter_slot_check(&tl_store, cfg, 0u) == TL_ERR_CRC);
        TL_CHECK(tl_adapter_select(&tl_store, cfg, 0u) == TL_ERR_CRC);
        tl_medium[at] ^= 0x10u;
        TL_CHECK(tl_adapter_store_init(&tl_store, &tl_ram.storage, TL_ADAPTER_RAM_SLOT_SIZE,
                                       TL_SLOTS) == TL_OK);
        TL_CHECK(tl_adapter_slot_check(&tl_store, cfg, 0u) == TL_OK); /* the boot's check */
    }
    TL_CHECK(tl_adapter_select(&tl_store, cfg, 0u) == TL_OK); /* restored: good again */
}

static void test_store_geometry_is_checked(void)
{
    (void)tl_storage_ram_init(&tl_ram, tl_medium, TL_REGION, TL_ADAPTER_RAM_UNIT,
                              TL_STORAGE_PROGRAM_UNIT);
    TL_CHECK(tl_adapter_store_init(&tl_store, &tl_ram.storage, TL_ADAPTER_RAM_SLOT_SIZE,
                                   TL_SLOTS + 1u) == TL_ERR_TOO_LARGE);
    TL_CHECK(tl_adapter_store_init(&tl_store, &tl_ram.storage, TL_ADAPTER_RAM_UNIT + 1u, 1u) ==
             TL_ERR_ALIGN);
    TL_CHECK(tl_adapter_store_init(&tl_store, &tl_ram.storage, TL_ADAPTER_RAM_UNIT,
                                   TL_ADAPTER_MAX_SLOTS + 1u) == TL_ERR_TOO_LARGE);
}

static int tl_run_tests(void)
{
    tl_unit_begin("test/test_adapters/test_main.c");
    TL_RUN(test_the_model_gives_valid_files);
    TL_RUN(test_bad_files_are_refused);
    TL_RUN(test_upload_select_and_swap);
    TL_RUN(test_bad_uploads_are_refused);
    TL_RUN(test_torn_upload_keeps_the_active_adapter);
    TL_RUN(test_torn_select_keeps_a_valid_choice);
    TL_RUN(test_a_slot_changed_after_its_check_is_never_run);
    TL_RUN(test_store_geometry_is_checked);
    return tl_unit_end();
}
#else
static void test_no_adapter_slots_in_this_build(void)
{
    uint32_t slot_size = 1u, slots = 1u;
    TL_CHECK(tl_board_adapter_storage(&slot_size, &slots) == NULL && slots == 0u);
}

static int tl_run_tests(void)
{
    tl_unit_begin("test/test_adapters/test_main.c");
    TL_RUN(test_no_adapter_slots_in_this_build);
    return tl_unit_end();
}
#endif

TL_BOARD_MAIN(tl_run_tests)
