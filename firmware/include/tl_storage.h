/*
 * tl_storage: the one storage interface of tinylora. The checkpoint store (tl_checkpoint.h),
 * the adapter slots and the active-adapter record (tl_adapter.h) all work through it.
 *
 * A storage is a region of `size` bytes with NOR-flash rules, whatever it really is:
 *   - erased bytes read 0xFF; erase() works on whole erase units (offset and length are
 *     multiples of erase_unit);
 *   - program() can only clear bits (a byte programmed twice without an erase in between
 *     holds the AND of both), and starts on / spans whole program units (program_unit bytes);
 *   - every function returns a tl_status: TL_OK, TL_ERR_RANGE, TL_ERR_ALIGN, TL_ERR_IO or
 *     TL_ERR_OPEN.
 *
 * Implementations:
 *   tl_storage_ram      (here)                     RAM that behaves like flash; QEMU, tests
 *   tl_storage_stream   (here)                     byte-sized programs over any storage
 *   esp_partition       lib/tl_board/tl_storage_esp_partition.c   a data partition (ESP-IDF)
 *   esp_nvs             lib/tl_board/tl_storage_esp_nvs.c         NVS blobs (ESP-IDF)
 *   stm32_flash         lib/tl_board/tl_storage_stm32_flash.c     internal flash (STM32Cube)
 * tl_board_storage() (tl_board.h) returns the board's checkpoint region,
 * tl_board_adapter_storage() its adapter-slot region.
 */
#ifndef TL_STORAGE_H
#define TL_STORAGE_H

#include <stddef.h>
#include <stdint.h>

#include "tl_types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    void *ctx;
    const char *name;             /* for messages: "RAM", "ESP32 partition tinylora", ... */
    uint32_t size;                /* bytes, a multiple of erase_unit */
    uint32_t erase_unit;          /* erase granularity (flash sector / page) */
    uint32_t program_unit;        /* program granularity */
    tl_status (*open)(void *ctx); /* prepare the medium (idempotent); NULL: nothing to do */
    tl_status (*read)(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len);
    tl_status (*erase)(void *ctx, uint32_t offset, uint32_t len);
    tl_status (*program)(void *ctx, uint32_t offset, const uint8_t *src, uint32_t len);
} tl_storage;

/* TL_OK if [offset, offset + len) lies in the region and offset and len are multiples of
 * `unit` (1: no alignment), else TL_ERR_RANGE / TL_ERR_ALIGN. */
tl_status tl_storage_check(const tl_storage *st, uint32_t offset, uint32_t len, uint32_t unit);

/* RAM with flash rules (for QEMU and the tests): `buffer` of `size` bytes, a multiple of
 * erase_unit, starts erased. */
typedef struct {
    uint8_t *buffer;
    tl_storage storage;
} tl_storage_ram;

const tl_storage *tl_storage_ram_init(tl_storage_ram *ram, uint8_t *buffer, uint32_t size,
                                      uint32_t erase_unit, uint32_t program_unit);

/* Byte-sized programs on any storage. The checkpoint store writes a record as its header,
 * its payload and its CRC, pieces that need not start or end on a program unit (an STM32H7
 * programs 32-byte flash words, an STM32L4 8-byte double words, each once per erase). A
 * stream collects contiguous programs in ascending order into whole program units and
 * programs each unit once: when it is full, or at tl_storage_stream_flush (the rest of the
 * unit padded with 0xFF, i.e. left erased). Reads and erases through the stream flush
 * first. `storage` is the stream as a tl_storage with program_unit 1. */
#define TL_STORAGE_STREAM_UNIT_MAX 64u

typedef struct {
    const tl_storage *base;
    tl_storage storage; /* the stream itself: pass &stream.storage to the stores */
    uint32_t at;        /* medium offset of the pending unit (a multiple of the program unit) */
    uint32_t used;      /* bytes of it collected so far */
    uint8_t pending[TL_STORAGE_STREAM_UNIT_MAX];
} tl_storage_stream;

/* TL_ERR_ALIGN if the base's program unit is 0 or above TL_STORAGE_STREAM_UNIT_MAX. */
tl_status tl_storage_stream_init(tl_storage_stream *s, const tl_storage *base);
/* Program the pending partial unit, if any. */
tl_status tl_storage_stream_flush(tl_storage_stream *s);

#ifdef __cplusplus
}
#endif

#endif /* TL_STORAGE_H */
