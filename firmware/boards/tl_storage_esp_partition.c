/*
 * tl_storage on an ESP-IDF data partition: the "tinylora" entry of partitions.csv (type 0x40,
 * an application-defined partition type, subtype 0x00). SPI NOR flash: 4 KB erase sectors,
 * writes only clear bits -- the rules of tl_storage.h as they are.
 */
#if defined(ESP_PLATFORM)

#include "esp_partition.h"

#include "tl_board_config.h"
#include "tl_storage.h"

static const esp_partition_t *tl_partition;

static tl_status tl_part_open(void *ctx)
{
    (void)ctx;
    if (tl_partition == NULL) {
        tl_partition = esp_partition_find_first(
            (esp_partition_type_t)TL_STORAGE_PARTITION_TYPE,
            (esp_partition_subtype_t)TL_STORAGE_PARTITION_SUBTYPE, TL_STORAGE_PARTITION_LABEL);
    }
    if (tl_partition == NULL || tl_partition->size < TL_STORAGE_SIZE) {
        return TL_ERR_OPEN;
    }
    return TL_OK;
}

static tl_status tl_part_read(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len);
static tl_status tl_part_erase(void *ctx, uint32_t offset, uint32_t len);
static tl_status tl_part_write(void *ctx, uint32_t offset, const uint8_t *src, uint32_t len);

static const tl_storage tl_part_storage = {
    .ctx = NULL,
    .name = "ESP32 partition " TL_STORAGE_PARTITION_LABEL,
    .size = TL_STORAGE_SIZE,
    .erase_unit = TL_STORAGE_ERASE_UNIT,
    .program_unit = TL_STORAGE_PROGRAM_UNIT,
    .open = tl_part_open,
    .read = tl_part_read,
    .erase = tl_part_erase,
    .program = tl_part_write,
};

static tl_status tl_part_read(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len)
{
    tl_status status = tl_part_open(ctx);
    if (status == TL_OK) {
        status = tl_storage_check(&tl_part_storage, offset, len, 1u);
    }
    if (status != TL_OK) {
        return status;
    }
    return esp_partition_read(tl_partition, offset, dst, len) == ESP_OK ? TL_OK : TL_ERR_IO;
}

static tl_status tl_part_erase(void *ctx, uint32_t offset, uint32_t len)
{
    tl_status status = tl_part_open(ctx);
    if (status == TL_OK) {
        status = tl_storage_check(&tl_part_storage, offset, len, TL_STORAGE_ERASE_UNIT);
    }
    if (status != TL_OK) {
        return status;
    }
    return esp_partition_erase_range(tl_partition, offset, len) == ESP_OK ? TL_OK : TL_ERR_IO;
}

static tl_status tl_part_write(void *ctx, uint32_t offset, const uint8_t *src, uint32_t len)
{
    tl_status status = tl_part_open(ctx);
    if (status == TL_OK) {
        status = tl_storage_check(&tl_part_storage, offset, len, TL_STORAGE_PROGRAM_UNIT);
    }
    if (status != TL_OK) {
        return status;
    }
    return esp_partition_write(tl_partition, offset, src, len) == ESP_OK ? TL_OK : TL_ERR_IO;
}

const tl_storage *tl_storage_esp_partition(void);

const tl_storage *tl_storage_esp_partition(void)
{
    return &tl_part_storage;
}

#else
typedef int tl_storage_esp_partition_unused; /* ISO C: a translation unit is not empty */
#endif
