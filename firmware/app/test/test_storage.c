/*
 * tl_storage: the flash rules of tl_storage.h on the RAM implementation (with this board's
 * program unit), and the board's own storage geometry. The board's medium is only opened and
 * read: a test must not wipe a device's checkpoints.
 */
#include "tl_board.h"
#include "tl_board_config.h"
#include "tl_storage.h"
#include "tl_unit.h"

#define TL_UNIT 64u                        /* erase unit of the RAM medium under test */
#define TL_PROGRAM TL_STORAGE_PROGRAM_UNIT /* the board's program unit */
#define TL_SIZE (4u * TL_UNIT)

static uint8_t tl_medium[TL_SIZE];
static tl_storage_ram tl_ram;
static uint8_t tl_buf[TL_UNIT];

static const tl_storage *tl_fresh(void)
{
    return tl_storage_ram_init(&tl_ram, tl_medium, TL_SIZE, TL_UNIT, TL_PROGRAM);
}

static void test_erased_storage_reads_ff(void)
{
    const tl_storage *st = tl_fresh();
    uint32_t i;
    TL_CHECK(st->open(st->ctx) == TL_OK);
    TL_CHECK(st->read(st->ctx, 0, tl_buf, TL_UNIT) == TL_OK);
    for (i = 0; i < TL_UNIT; ++i) {
        TL_CHECK(tl_buf[i] == 0xFFu);
    }
}

static void test_write_then_read_back(void)
{
    const tl_storage *st = tl_fresh();
    uint8_t data[TL_UNIT];
    uint32_t i;
    for (i = 0; i < TL_UNIT; ++i) {
        data[i] = (uint8_t)(i * 7u + 3u);
    }
    TL_CHECK(st->program(st->ctx, TL_UNIT, data, TL_UNIT) == TL_OK);
    TL_CHECK(st->read(st->ctx, TL_UNIT, tl_buf, TL_UNIT) == TL_OK);
    TL_CHECK(tl_unit_first_difference(tl_buf, data, TL_UNIT) < 0);
    TL_CHECK(st->read(st->ctx, 0, tl_buf, TL_UNIT) == TL_OK);
    TL_CHECK(tl_buf[0] == 0xFFu && tl_buf[TL_UNIT - 1u] == 0xFFu); /* its neighbour untouched */
}

static void test_writing_only_clears_bits(void)
{
    const tl_storage *st = tl_fresh();
    uint8_t first[TL_UNIT];
    uint8_t second[TL_UNIT];
    uint32_t i;
    for (i = 0; i < TL_UNIT; ++i) {
        first[i] = 0xF0u;
        second[i] = 0x3Cu;
    }
    TL_CHECK(st->program(st->ctx, 0, first, TL_UNIT) == TL_OK);
    TL_CHECK(st->program(st->ctx, 0, second, TL_UNIT) == TL_OK);
    TL_CHECK(st->read(st->ctx, 0, tl_buf, TL_UNIT) == TL_OK);
    TL_CHECK(tl_buf[0] == 0x30u && tl_buf[TL_UNIT - 1u] == 0x30u);
}

static void test_erase_restores_ff(void)
{
    const tl_storage *st = tl_fresh();
    uint8_t zeros[TL_UNIT];
    uint32_t i;
    for (i = 0; i < TL_UNIT; ++i) {
        zeros[i] = 0u;
    }
    TL_CHECK(st->program(st->ctx, 2u * TL_UNIT, zeros, TL_UNIT) == TL_OK);
    TL_CHECK(st->erase(st->ctx, 2u * TL_UNIT, TL_UNIT) == TL_OK);
    TL_CHECK(st->read(st->ctx, 2u * TL_UNIT, tl_buf, TL_UNIT) == TL_OK);
    TL_CHECK(tl_buf[0] == 0xFFu && tl_buf[TL_UNIT - 1u] == 0xFFu);
}

static void test_out_of_range_is_refused(void)
{
    const tl_storage *st = tl_fresh();
    TL_CHECK(st->read(st->ctx, TL_SIZE - 1u, tl_buf, 2u) == TL_ERR_RANGE);
    TL_CHECK(st->read(st->ctx, 0xFFFFFFFFu, tl_buf, 2u) == TL_ERR_RANGE);
    TL_CHECK(st->erase(st->ctx, TL_SIZE, TL_UNIT) == TL_ERR_RANGE);
    TL_CHECK(st->program(st->ctx, TL_SIZE, tl_buf, TL_PROGRAM) == TL_ERR_RANGE);
    TL_CHECK(st->read(st->ctx, TL_SIZE, tl_buf, 0u) == TL_OK);
}

static void test_misaligned_erase_and_write_are_refused(void)
{
    const tl_storage *st = tl_fresh();
    TL_CHECK(st->erase(st->ctx, 1u, TL_UNIT) == TL_ERR_ALIGN);
    TL_CHECK(st->erase(st->ctx, 0u, TL_UNIT / 2u) == TL_ERR_ALIGN);
    if (TL_PROGRAM > 1u) {
        TL_CHECK(st->program(st->ctx, 1u, tl_buf, TL_PROGRAM) == TL_ERR_ALIGN);
        TL_CHECK(st->program(st->ctx, 0u, tl_buf, TL_PROGRAM - 1u) == TL_ERR_ALIGN);
    }
}

static void test_board_storage_holds_two_checkpoint_slots(void)
{
    const tl_storage *st = tl_board_storage();
    TL_CHECK(st != NULL && st->name != NULL);
    TL_CHECK(st->erase_unit > 0u && st->size % st->erase_unit == 0u);
    TL_CHECK(st->size >= 2u * st->erase_unit);
    TL_CHECK(st->program_unit > 0u && st->erase_unit % st->program_unit == 0u);
    TL_CHECK(st->open(st->ctx) == TL_OK);
    TL_CHECK(st->read(st->ctx, 0, tl_buf, 16u) == TL_OK);
}

static int tl_run_tests(void)
{
    tl_unit_begin("test/test_storage/test_main.c");
    TL_RUN(test_erased_storage_reads_ff);
    TL_RUN(test_write_then_read_back);
    TL_RUN(test_writing_only_clears_bits);
    TL_RUN(test_erase_restores_ff);
    TL_RUN(test_out_of_range_is_refused);
    TL_RUN(test_misaligned_erase_and_write_are_refused);
    TL_RUN(test_board_storage_holds_two_checkpoint_slots);
    return tl_unit_end();
}

TL_BOARD_MAIN(tl_run_tests)
