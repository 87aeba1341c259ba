/*
 * tl_storage on ESP-IDF's NVS (select it with -D TL_STORAGE_NVS): the region is kept as
 * blobs of TL_STORAGE_NVS_CHUNK bytes, keys "c0", "c1", ... in namespace "tinylora" of the
 * default "nvs" partition. An erase deletes the chunks' keys (reads then give 0xFF); a write
 * reads a chunk, clears bits as flash would, and stores it back with nvs_set_blob +
 * nvs_commit. NVS replaces a blob atomically, so a power cut leaves either the old or the
 * new chunk -- never a torn one.
 */
#if defined(ESP_PLATFORM)

#include <stdio.h>
#include <string.h>

#include "nvs.h"
#include "nvs_flash.h"

#include "tl_board_config.h"
#include "tl_storage.h"

#define TL_NVS_SIZE (TL_STORAGE_NVS_CHUNK * TL_STORAGE_NVS_CHUNKS)

static nvs_handle_t tl_nvs;
static int tl_nvs_opened;
static uint8_t tl_chunk[TL_STORAGE_NVS_CHUNK];

static tl_status tl_nvs_open(void *ctx)
{
    esp_err_t err;
    (void)ctx;
    if (tl_nvs_opened) {
        return TL_OK;
    }
    err = nvs_flash_init();
    if (err == ESP_ERR_NVS_NO_FREE_PAGES || err == ESP_ERR_NVS_NEW_VERSION_FOUND) {
        nvs_flash_erase();
        err = nvs_flash_init();
    }
    if (err != ESP_OK || nvs_open("tinylora", NVS_READWRITE, &tl_nvs) != ESP_OK) {
        return TL_ERR_OPEN;
    }
    tl_nvs_opened = 1;
    return TL_OK;
}

static void tl_key(uint32_t chunk, char *key, size_t size)
{
    snprintf(key, size, "c%u", (unsigned)chunk);
}

/* Chunk `chunk` into tl_chunk (0xFF when it has no key). */
static tl_status tl_load_chunk(uint32_t chunk)
{
    char key[12];
    size_t len = TL_STORAGE_NVS_CHUNK;
    esp_err_t err;
    tl_key(chunk, key, sizeof key);
    err = nvs_get_blob(tl_nvs, key, tl_chunk, &len);
    if (err == ESP_ERR_NVS_NOT_FOUND) {
        memset(tl_chunk, 0xFF, sizeof tl_chunk);
        return TL_OK;
    }
    return err == ESP_OK && len == TL_STORAGE_NVS_CHUNK ? TL_OK : TL_ERR_IO;
}

static tl_status tl_nvs_read(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len);
static tl_status tl_nvs_erase(void *ctx, uint32_t offset, uint32_t len);
static tl_status tl_nvs_write(void *ctx, uint32_t offset, const uint8_t *src, uint32_t len);

static const tl_storage tl_nvs_storage = {
    .ctx = NULL,
    .name = "ESP32 NVS namespace tinylora",
    .size = TL_NVS_SIZE,
    .erase_unit = TL_STORAGE_NVS_CHUNK,
    .program_unit = 1u,
    .open = tl_nvs_open,
    .read = tl_nvs_read,
    .erase = tl_nvs_erase,
    .program = tl_nvs_write,
};

static tl_status tl_nvs_read(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len)
{
    tl_status status = tl_nvs_open(ctx);
    if (status == TL_OK) {
        status = tl_storage_check(&tl_nvs_storage, offset, len, 1u);
    }
    while (status == TL_OK && len > 0u) {
        const uint32_t chunk = offset / TL_STORAGE_NVS_CHUNK;
        const uint32_t at = offset % TL_STORAGE_NVS_CHUNK;
        const uint32_t n = len < TL_STORAGE_NVS_CHUNK - at ? len : TL_STORAGE_NVS_CHUNK - at;
        status = tl_load_chunk(chunk);
        if (status == TL_OK) {
            memcpy(dst, tl_chunk + at, n);
            dst += n;
            offset += n;
            len -= n;
        }
    }
    return status;
}

static tl_status tl_nvs_erase(void *ctx, uint32_t offset, uint32_t len)
{
    tl_status status = tl_nvs_open(ctx);
    uint32_t chunk;
    if (status == TL_OK) {
        status = tl_storage_check(&tl_nvs_storage, offset, len, TL_STORAGE_NVS_CHUNK);
    }
    for (chunk = offset / TL_STORAGE_NVS_CHUNK;
         status == TL_OK && chunk < (offset + len) / TL_STORAGE_NVS_CHUNK; ++chunk) {
        char key[12];
        esp_err_t err;
        tl_key(chunk, key, sizeof key);
        err = nvs_erase_key(tl_nvs, key);
        if (err != ESP_OK && err != ESP_ERR_NVS_NOT_FOUND) {
            status = TL_ERR_IO;
        }
    }
    if (status == TL_OK && nvs_commit(tl_nvs) != ESP_OK) {
        status = TL_ERR_IO;
    }
    return status;
}

static tl_status tl_nvs_write(void *ctx, uint32_t offset, const uint8_t *src, uint32_t len)
{
    tl_status status = tl_nvs_open(ctx);
    if (status == TL_OK) {
        status = tl_storage_check(&tl_nvs_storage, offset, len, 1u);
    }
    while (status == TL_OK && len > 0u) {
        const uint32_t chunk = offset / TL_STORAGE_NVS_CHUNK;
        const uint32_t at = offset % TL_STORAGE_NVS_CHUNK;
        const uint32_t n = len < TL_STORAGE_NVS_CHUNK - at ? len : TL_STORAGE_NVS_CHUNK - at;
        uint32_t i;
        char key[12];
        status = tl_load_chunk(chunk);
        if (status != TL_OK) {
            break;
        }
        for (i = 0; i < n; ++i) {
            tl_chunk[at + i] &= src[i];
        }
        tl_key(chunk, key, sizeof key);
        if (nvs_set_blob(tl_nvs, key, tl_chunk, TL_STORAGE_NVS_CHUNK) != ESP_OK ||
            nvs_commit(tl_nvs) != ESP_OK) {
            status = TL_ERR_IO;
        }
        src += n;
        offset += n;
        len -= n;
    }
    return status;
}

const tl_storage *tl_storage_esp_nvs(void);

const tl_storage *tl_storage_esp_nvs(void)
{
    return &tl_nvs_storage;
}

#else
typedef int tl_storage_esp_nvs_unused; /* ISO C: a translation unit is not empty */
#endif
