/*
 * tl_storage on STM32 internal flash, through the HAL (HAL_FLASH_Unlock, HAL_FLASHEx_Erase,
 * HAL_FLASH_Program). Two regions: the checkpoints (TL_STORAGE_ADDRESS, TL_STORAGE_SIZE) and
 * the adapter slots (TL_ADAPTER_ADDRESS, TL_ADAPTER_REGION_SIZE), away from the program; see this board's entry in tinylora's boards/ for the
 * sectors. Erase units are whole sectors (F4, F7, H7) or pages (L4); program units are one
 * byte (F4, F7), a 64-bit double word (L4) or a 256-bit flash word (H7, which also cannot
 * program a word twice). Reads are plain memory reads.
 */
#if defined(USE_HAL_DRIVER) && !defined(ESP_PLATFORM)

#include <string.h>

#include "tl_board_config.h"
#include TL_STM32_HAL_H

#include "tl_storage.h"

/* One flash region: where it starts, its first sector (page) number and bank, its tl_storage
 * (ctx: the tl_flash_region itself). */
typedef struct {
    uint32_t address;
    uint32_t first_sector;
    uint32_t bank;
    tl_storage storage;
} tl_flash_region;

static tl_status tl_flash_read(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len)
{
    const tl_flash_region *r = (const tl_flash_region *)ctx;
    const tl_status status = tl_storage_check(&r->storage, offset, len, 1u);
    if (status == TL_OK) {
        memcpy(dst, (const void *)(uintptr_t)(r->address + offset), len);
    }
    return status;
}

static tl_status tl_flash_erase(void *ctx, uint32_t offset, uint32_t len)
{
    FLASH_EraseInitTypeDef erase;
    uint32_t failed = 0;
    HAL_StatusTypeDef hal;
    const tl_flash_region *r = (const tl_flash_region *)ctx;
    const uint32_t unit = r->storage.erase_unit;
    tl_status status = tl_storage_check(&r->storage, offset, len, unit);
    if (status != TL_OK || len == 0u) {
        return status;
    }
    memset(&erase, 0, sizeof erase);
#if defined(TL_STM32_L4)
    erase.TypeErase = FLASH_TYPEERASE_PAGES;
    erase.Banks = r->bank == 2u ? FLASH_BANK_2 : FLASH_BANK_1;
    erase.Page = r->first_sector + offset / unit;
    erase.NbPages = len / unit;
#else
    erase.TypeErase = FLASH_TYPEERASE_SECTORS;
    erase.Sector = r->first_sector + offset / unit;
    erase.NbSectors = len / unit;
    erase.VoltageRange = FLASH_VOLTAGE_RANGE_3;
#if defined(TL_STM32_H7)
    erase.Banks = r->bank == 2u ? FLASH_BANK_2 : FLASH_BANK_1;
#endif
#endif
    HAL_FLASH_Unlock();
    hal = HAL_FLASHEx_Erase(&erase, &failed);
    HAL_FLASH_Lock();
#if defined(TL_STM32_F7) || defined(TL_STM32_H7)
    SCB_InvalidateDCache_by_Addr((void *)(uintptr_t)(r->address + offset), (int32_t)len);
#endif
    return hal == HAL_OK ? TL_OK : TL_ERR_IO;
}

static tl_status tl_flash_write(void *ctx, uint32_t offset, const uint8_t *src, uint32_t len)
{
    HAL_StatusTypeDef hal = HAL_OK;
    uint32_t done;
    const tl_flash_region *r = (const tl_flash_region *)ctx;
    const tl_status status = tl_storage_check(&r->storage, offset, len, TL_STORAGE_PROGRAM_UNIT);
    if (status != TL_OK) {
        return status;
    }
    HAL_FLASH_Unlock();
    for (done = 0; done < len && hal == HAL_OK; done += TL_STORAGE_PROGRAM_UNIT) {
        const uint32_t address = r->address + offset + done;
#if defined(TL_STM32_H7)
        /* one 256-bit flash word from a word-aligned copy */
        uint32_t word[8];
        memcpy(word, src + done, sizeof word);
        hal = HAL_FLASH_Program(FLASH_TYPEPROGRAM_FLASHWORD, address, (uint32_t)(uintptr_t)word);
#elif defined(TL_STM32_L4)
        uint64_t dword;
        memcpy(&dword, src + done, sizeof dword);
        hal = HAL_FLASH_Program(FLASH_TYPEPROGRAM_DOUBLEWORD, address, dword);
#else
        hal = HAL_FLASH_Program(FLASH_TYPEPROGRAM_BYTE, address, src[done]);
#endif
    }
    HAL_FLASH_Lock();
#if defined(TL_STM32_F7) || defined(TL_STM32_H7)
    SCB_InvalidateDCache_by_Addr((void *)(uintptr_t)(r->address + offset), (int32_t)len);
#endif
    return hal == HAL_OK ? TL_OK : TL_ERR_IO;
}

static tl_flash_region tl_checkpoints = {
    TL_STORAGE_ADDRESS,
    TL_STORAGE_FIRST_SECTOR,
    TL_STORAGE_BANK,
    { &tl_checkpoints, "STM32 internal flash", TL_STORAGE_SIZE, TL_STORAGE_ERASE_UNIT,
      TL_STORAGE_PROGRAM_UNIT, NULL, tl_flash_read, tl_flash_erase, tl_flash_write }
};

const tl_storage *tl_storage_stm32_flash(void);
const tl_storage *tl_storage_stm32_adapters(void);

const tl_storage *tl_storage_stm32_flash(void)
{
    return &tl_checkpoints.storage;
}

#if TL_ADAPTER_SLOTS > 0
static tl_flash_region tl_adapters = { TL_ADAPTER_ADDRESS,
                                       TL_ADAPTER_FIRST_SECTOR,
                                       TL_ADAPTER_BANK,
                                       { &tl_adapters, "STM32 internal flash (adapters)",
                                         TL_ADAPTER_REGION_SIZE, TL_ADAPTER_ERASE_UNIT,
                                         TL_STORAGE_PROGRAM_UNIT, NULL, tl_flash_read,
                                         tl_flash_erase, tl_flash_write } };

const tl_storage *tl_storage_stm32_adapters(void)
{
    return &tl_adapters.storage;
}
#else
const tl_storage *tl_storage_stm32_adapters(void)
{
    return NULL;
}
#endif

#else
typedef int tl_storage_stm32_flash_unused; /* ISO C: a translation unit is not empty */
#endif
