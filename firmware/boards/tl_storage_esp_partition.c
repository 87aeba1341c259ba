/*
 * tl_storage on ESP-IDF data partitions of partitions.csv (type 0x40, an application-defined
 * partition type): "tinylora" (subtype 0x00, the checkpoints) and "adapters" (subtype 0x01,
 * the adapter region of tl_adapter.h). SPI NOR flash: 4 KB erase sectors, writes only clear
 * bits -- the rules of tl_storage.h as they are.
 */
#if defined(ESP_PLATFORM)

#include "esp_partition.h"

#include "tl_board_config.h"
#include "tl_storage.h"

/* One partition: where to find it and its tl_storage (ctx: the tl_part itself). */
typedef struct {
    const char *label;
    int subtype;
    const esp_partition_t *handle;
    tl_storage storage;
} tl_part;

static tl_status tl_part_open(void *ctx)
{
    tl_part *p = (tl_part *)ctx;
    if (p->handle == NULL) {
        p->handle = esp_partition_find_first((esp_partition_type_t)TL_STORAGE_PARTITION_TYPE,
                                             (esp_partition_subtype_t)p->subtype, p->label);
    }
    if (p->handle == NULL || p->handle->size < p->storage.size) {
        return TL_ERR_OPEN;
    }
    return TL_OK;
}

static tl_status tl_part_read(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len)
{
    tl_part *p = (tl_part *)ctx;
    tl_status status = tl_part_open(ctx);
    if (status == TL_OK) {
        status = tl_storage_check(&p->storage, offset, len, 1u);
    }
    if (status != TL_OK) {
        return status;
    }
    return esp_partition_read(p->handle, offset, dst, len) == ESP_OK ? TL_OK : TL_ERR_IO;
}

static tl_status tl_part_erase(void *ctx, uint32_t offset, uint32_t len)
{
    tl_part *p = (tl_part *)ctx;
    tl_status status = tl_part_open(ctx);
    if (status == TL_OK) {
        status = tl_storage_check(&p->storage, offset, len, p->storage.erase_unit);
    }
    if (status != TL_OK) {
        return status;
    }
    return esp_partition_erase_range(p->handle, offset, len) == ESP_OK ? TL_OK : TL_ERR_IO;
}

static tl_status tl_part_write(void *ctx, uint32_t offset, const uint8_t *src, uint32_t len)
{
    tl_part *p = (tl_part *)ctx;
    tl_status status = tl_part_open(ctx);
    if (status == TL_OK) {
        status = tl_storage_check(&p->storage, offset, len, p->storage.program_unit);
    }
    if (status != TL_OK) {
        return status;
    }
    return esp_partition_write(p->handle, offset, src, len) == ESP_OK ? TL_OK : TL_ERR_IO;
}

static tl_part tl_checkpoints = { TL_STORAGE_PARTITION_LABEL,
                                  TL_STORAGE_PARTITION_SUBTYPE,
                                  NULL,
                                  { &tl_checkpoints, "ESP32 partition " TL_STORAGE_PARTITION_LABEL,
                                    TL_STORAGE_SIZE, TL_STORAGE_ERASE_UNIT, TL_STORAGE_PROGRAM_UNIT,
                                    tl_part_open, tl_part_read, tl_part_erase, tl_part_write } };

const tl_storage *tl_storage_esp_partition(void);
const tl_storage *tl_storage_esp_adapters(void);

const tl_storage *tl_storage_esp_partition(void)
{
    return &tl_checkpoints.storage;
}

#if TL_ADAPTER_SLOTS > 0
static tl_part tl_adapters = { "adapters",
                               0x01,
                               NULL,
                               { &tl_adapters, "ESP32 partition adapters", TL_ADAPTER_REGION_SIZE,
                                 TL_ADAPTER_ERASE_UNIT, TL_STORAGE_PROGRAM_UNIT, tl_part_open,
                                 tl_part_read, tl_part_erase, tl_part_write } };

const tl_storage *tl_storage_esp_adapters(void)
{
    return &tl_adapters.storage;
}
#else
const tl_storage *tl_storage_esp_adapters(void)
{
    return NULL;
}
#endif

#else
typedef int tl_storage_esp_partition_unused; /* ISO C: a translation unit is not empty */
#endif
