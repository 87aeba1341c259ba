/*
 * The cost of a hot swap, in counter ticks (tinylora.bench turns them into exact instruction
 * counts under QEMU -icount): a generated project's model (lib/tinylora) with an adapter file
 * of its own masters in slot 0 of a RAM adapter region, checked once (its upload).
 *   switch_slot   tl_adapter_slot_check (cached) + tl_app_model_adapter_load(slot 0): the
 *                 masters into the trainer, the copied bytes CRC-checked in the same pass
 *   switch_base   tl_app_model_adapter_load(NULL): the base model
 *   verify        tl_adapter_verify_stored: the file's full check alone (once per slot: at
 *                 boot or at the end of its upload, no longer at a switch)
 *   crc           tl_crc32 over the file's bytes in memory (what the switch's guard costs)
 *   select        tl_adapter_select(0): the active record's erase and program (recording the
 *                 choice; the slot's check is cached)
 * Built by tests/test_device_roundtrip.py::test_switch_cost.
 */
#include <string.h>

#include "tl_adapter.h"
#include "tl_app_model.h"
#include "tl_board_config.h"
#include "tl_counter.h"
#include "tl_report.h"

#define TL_SLOTS 2u
#define TL_REGION (2u * TL_ADAPTER_RAM_UNIT + TL_SLOTS * TL_ADAPTER_RAM_SLOT_SIZE)

static union {
    uint64_t align;
    uint8_t bytes[TL_APP_ARENA_SIZE];
} tl_arena;
static uint8_t tl_medium[TL_REGION];
static tl_storage_ram tl_ram;
static tl_adapter_store tl_store;
static tl_adapter_upload tl_up;

/* The model's file, chunk by chunk, into the upload. */
static tl_status tl_to_upload(void *ctx, const uint8_t *data, uint32_t len)
{
    tl_adapter_upload *u = (tl_adapter_upload *)ctx;
    return tl_adapter_upload_chunk(u, u->next, data, len, tl_crc32(0u, data, len));
}

static void tl_report_ticks(const char *name, uint32_t a, uint32_t b, tl_status status)
{
    const int32_t ticks = (int32_t)tl_counter_elapsed(a, b);
    if (status != TL_OK) {
        tl_report_error(name, 0u, (int)status);
    }
    tl_report_i32(name, &ticks, 1u);
}

int main(void)
{
    const tl_adapter_config *cfg;
    int32_t predicted = 0, loss = 0;
    uint32_t a, b, i, crc;
    tl_status s;
    tl_counter_init();
    (void)tl_app_model_init(tl_arena.bytes, TL_APP_ARENA_SIZE);
    cfg = tl_app_model_adapter_config();
    for (i = 0; i < 2u; ++i) {
        (void)tl_app_model_train(tl_app_samples + i * TL_APP_INPUT_SIZE, (int32_t)tl_app_labels[i],
                                 &predicted, &loss);
    }
    (void)tl_storage_ram_init(&tl_ram, tl_medium, TL_REGION, TL_ADAPTER_RAM_UNIT,
                              TL_STORAGE_PROGRAM_UNIT);
    s = tl_adapter_store_init(&tl_store, &tl_ram.storage, TL_ADAPTER_RAM_SLOT_SIZE, TL_SLOTS);
    if (s == TL_OK) {
        s = tl_adapter_upload_begin(&tl_up, &tl_store, cfg, 0u, tl_adapter_size(cfg));
    }
    if (s == TL_OK) {
        s = tl_app_model_adapter_save(tl_to_upload, &tl_up);
    }
    if (s == TL_OK) {
        s = tl_adapter_upload_end(&tl_up);
    }
    if (s != TL_OK) {
        tl_report_error("setup", 0u, (int)s);
    }
    a = tl_counter();
    s = tl_adapter_slot_check(&tl_store, cfg, 0u);
    if (s == TL_OK) {
        s = tl_app_model_adapter_load(tl_store.region, tl_adapter_slot_offset(&tl_store, 0u));
    }
    b = tl_counter();
    tl_report_ticks("switch_slot", a, b, s);
    a = tl_counter();
    s = tl_app_model_adapter_load(NULL, 0u);
    b = tl_counter();
    tl_report_ticks("switch_base", a, b, s);
    a = tl_counter();
    s = tl_adapter_verify_stored(cfg, tl_store.region, tl_adapter_slot_offset(&tl_store, 0u),
                                 tl_adapter_size(cfg));
    b = tl_counter();
    tl_report_ticks("verify", a, b, s);
    a = tl_counter();
    crc = tl_crc32(0u, tl_medium + tl_adapter_slot_offset(&tl_store, 0u), tl_adapter_size(cfg));
    b = tl_counter();
    tl_report_ticks("crc", a, b, crc != 0u ? TL_OK : TL_ERR_CRC);
    a = tl_counter();
    s = tl_adapter_select(&tl_store, cfg, 0u);
    b = tl_counter();
    tl_report_ticks("select", a, b, s);
    return tl_report_done();
}
