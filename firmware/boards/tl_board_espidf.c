/*
 * tl_board for ESP-IDF (ESP32, ESP32-S3, ESP32-C3): console on UART TL_CONSOLE_UART_NUM
 * through the UART driver (115200 8N1, the devkit's USB-UART bridge), FreeRTOS for time,
 * checkpoints in the "tinylora" data partition (tl_storage_esp_partition.c) or, with
 * -D TL_STORAGE_NVS, in NVS (tl_storage_esp_nvs.c).
 */
#if defined(ESP_PLATFORM)

#include "driver/uart.h"
#include "esp_heap_caps.h"
#include "esp_timer.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

#include "tl_board.h"
#include "tl_board_config.h"

const tl_storage *tl_storage_esp_partition(void);
const tl_storage *tl_storage_esp_nvs(void);
const tl_storage *tl_storage_esp_adapters(void);

void tl_board_init(void)
{
    const uart_config_t config = {
        .baud_rate = 115200,
        .data_bits = UART_DATA_8_BITS,
        .parity = UART_PARITY_DISABLE,
        .stop_bits = UART_STOP_BITS_1,
        .flow_ctrl = UART_HW_FLOWCTRL_DISABLE,
    };
    if (!uart_is_driver_installed(TL_CONSOLE_UART_NUM)) {
        uart_driver_install(TL_CONSOLE_UART_NUM, 2048, 0, 0, NULL, 0);
    }
    uart_param_config(TL_CONSOLE_UART_NUM, &config);
}

void tl_board_write(const char *data, size_t n)
{
    uart_write_bytes(TL_CONSOLE_UART_NUM, data, n);
}

int tl_board_read_char(uint32_t timeout_ms)
{
    uint8_t c;
    const int n = uart_read_bytes(TL_CONSOLE_UART_NUM, &c, 1, pdMS_TO_TICKS(timeout_ms));
    return n == 1 ? (int)c : TL_BOARD_NO_CHAR;
}

uint32_t tl_board_millis(void)
{
    return (uint32_t)(esp_timer_get_time() / 1000);
}

void tl_board_delay_ms(uint32_t ms)
{
    vTaskDelay(pdMS_TO_TICKS(ms));
}

void tl_board_yield(void)
{
    vTaskDelay(1); /* one tick: the idle task runs and feeds the task watchdog */
}

void tl_board_exit(int status)
{
    (void)status; /* app_main returns; ESP-IDF deletes the main task */
    uart_wait_tx_done(TL_CONSOLE_UART_NUM, pdMS_TO_TICKS(1000));
}

const char *tl_board_name(void)
{
    return TL_BOARD_TITLE;
}

uint8_t *tl_board_arena(uint8_t *static_arena, uint32_t size, const char **where)
{
#if TL_BOARD_STATIC_ARENA
    (void)size;
    *where = "static .bss";
    return static_arena;
#else
    /* ESP32: once, from the internal heap, never freed (see tl_board.h) */
    static uint8_t *arena;
    (void)static_arena;
    if (arena == NULL) {
        arena = (uint8_t *)heap_caps_malloc(size, MALLOC_CAP_INTERNAL | MALLOC_CAP_8BIT);
    }
    *where = arena != NULL ? "internal heap, taken once at boot (keeps dram0_0_seg free)"
                           : "internal heap: allocation failed";
    return arena;
#endif
}

const tl_storage *tl_board_storage(void)
{
#if defined(TL_STORAGE_NVS)
    return tl_storage_esp_nvs();
#else
    return tl_storage_esp_partition();
#endif
}

const tl_storage *tl_board_adapter_storage(uint32_t *slot_size, uint32_t *slots)
{
    const tl_storage *region = tl_storage_esp_adapters(); /* partition "adapters" */
    *slot_size = region != NULL ? TL_ADAPTER_SLOT_SIZE : 0u;
    *slots = region != NULL ? TL_ADAPTER_SLOTS : 0u;
    return region;
}

#else
typedef int tl_board_espidf_unused; /* ISO C: a translation unit is not empty */
#endif
