/*
 * tl_storage on STM32 internal flash, through the HAL (HAL_FLASH_Unlock, HAL_FLASHEx_Erase,
 * HAL_FLASH_Program). The region (TL_STORAGE_ADDRESS, TL_STORAGE_SIZE) is the end of the
 * flash, away from the program; see this board's entry in tinylora's boards/ for the
 * sectors. Erase units are whole sectors (F4, F7, H7) or pages (L4); program units are one
 * byte (F4, F7), a 64-bit double word (L4) or a 256-bit flash word (H7, which also cannot
 * program a word twice). Reads are plain memory reads.
 */
#if defined(USE_HAL_DRIVER) && !defined(ESP_PLATFORM)

#include <string.h>

#include "tl_board_config.h"
#include TL_STM32_HAL_H

#include "tl_storage.h"

static tl_status tl_flash_open(void *ctx)
{
    (void)ctx;
    return TL_OK;
}

static tl_status tl_flash_read(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len);
static tl_status tl_flash_erase(void *ctx, uint32_t offset, uint32_t len);
static tl_status tl_flash_write(void *ctx, uint32_t offset, const uint8_t *src, uint32_t len);

static const tl_storage tl_flash_storage = {
    .ctx = NULL,
    .name = "STM32 internal flash",
    .size = TL_STORAGE_SIZE,
    .erase_unit = TL_STORAGE_ERASE_UNIT,
    .program_unit = TL_STORAGE_PROGRAM_UNIT,
    .open = tl_flash_open,
    .read = tl_flash_read,
    .erase = tl_flash_erase,
    .program = tl_flash_write,
};

static tl_status tl_flash_read(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len)
{
    const tl_status status = tl_storage_check(&tl_flash_storage, offset, len, 1u);
    (void)ctx;
    if (status == TL_OK) {
        memcpy(dst, (const void *)(uintptr_t)(TL_STORAGE_ADDRESS + offset), len);
    }
    return status;
}

static tl_status tl_flash_erase(void *ctx, uint32_t offset, uint32_t len)
{
    FLASH_EraseInitTypeDef erase;
    uint32_t failed = 0;
    HAL_StatusTypeDef hal;
    tl_status status = tl_storage_check(&tl_flash_storage, offset, len, TL_STORAGE_ERASE_UNIT);
    (void)ctx;
    if (status != TL_OK || len == 0u) {
        return status;
    }
    memset(&erase, 0, sizeof erase);
#if defined(TL_STM32_L4)
    erase.TypeErase = FLASH_TYPEERASE_PAGES;
    erase.Banks = TL_STORAGE_BANK == 2 ? FLASH_BANK_2 : FLASH_BANK_1;
    erase.Page = TL_STORAGE_FIRST_SECTOR + offset / TL_STORAGE_ERASE_UNIT;
    erase.NbPages = len / TL_STORAGE_ERASE_UNIT;
#else
    erase.TypeErase = FLASH_TYPEERASE_SECTORS;
    erase.Sector = TL_STORAGE_FIRST_SECTOR + offset / TL_STORAGE_ERASE_UNIT;
    erase.NbSectors = len / TL_STORAGE_ERASE_UNIT;
    erase.VoltageRange = FLASH_VOLTAGE_RANGE_3;
#if defined(TL_STM32_H7)
    erase.Banks = TL_STORAGE_BANK == 2 ? FLASH_BANK_2 : FLASH_BANK_1;
#endif
#endif
    HAL_FLASH_Unlock();
    hal = HAL_FLASHEx_Erase(&erase, &failed);
    HAL_FLASH_Lock();
#if defined(TL_STM32_F7) || defined(TL_STM32_H7)
    SCB_InvalidateDCache_by_Addr((void *)(uintptr_t)(TL_STORAGE_ADDRESS + offset), (int32_t)len);
#endif
    return hal == HAL_OK ? TL_OK : TL_ERR_IO;
}

static tl_status tl_flash_write(void *ctx, uint32_t offset, const uint8_t *src, uint32_t len)
{
    HAL_StatusTypeDef hal = HAL_OK;
    uint32_t done;
    const tl_status status =
        tl_storage_check(&tl_flash_storage, offset, len, TL_STORAGE_PROGRAM_UNIT);
    (void)ctx;
    if (status != TL_OK) {
        return status;
    }
    HAL_FLASH_Unlock();
    for (done = 0; done < len && hal == HAL_OK; done += TL_STORAGE_PROGRAM_UNIT) {
        const uint32_t address = TL_STORAGE_ADDRESS + offset + done;
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
    SCB_InvalidateDCache_by_Addr((void *)(uintptr_t)(TL_STORAGE_ADDRESS + offset), (int32_t)len);
#endif
    return hal == HAL_OK ? TL_OK : TL_ERR_IO;
}

const tl_storage *tl_storage_stm32_flash(void);

const tl_storage *tl_storage_stm32_flash(void)
{
    return &tl_flash_storage;
}

#else
typedef int tl_storage_stm32_flash_unused; /* ISO C: a translation unit is not empty */
#endif
