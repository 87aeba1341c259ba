/*
 * tl_board: everything board-specific the application needs, behind one small interface.
 *
 *   build                        selected by                       console      exit
 *   QEMU (tools/platform-...)    TL_QEMU (the local platform)      semihosting  ends QEMU
 *   ESP-IDF (ESP32, -S3, -C3)    ESP_PLATFORM                      UART0        idles
 *   STM32Cube (NUCLEO boards)    USE_HAL_DRIVER + STM32F4/F7/H7/L4 ST-LINK VCP  idles
 *
 * The console is 115200 baud, 8N1 on the devices.
 */
#ifndef TL_BOARD_H
#define TL_BOARD_H

#include <stddef.h>
#include <stdint.h>

#include "tl_storage.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TL_BOARD_NO_CHAR (-1) /* tl_board_read_char: nothing arrived within the timeout */
#define TL_BOARD_EOF (-2)     /* tl_board_read_char: the input has ended (QEMU only) */

/* Clocks, console, whatever the board needs before anything else (called by TL_BOARD_MAIN). */
void tl_board_init(void);

/* Write n bytes to the console. */
void tl_board_write(const char *data, size_t n);

/* One byte from the console, waiting at most timeout_ms; TL_BOARD_NO_CHAR or TL_BOARD_EOF. */
int tl_board_read_char(uint32_t timeout_ms);

/* Milliseconds since boot (wraps after 49 days); 0 where there is no clock (QEMU). */
uint32_t tl_board_millis(void);

/* Let other tasks run (ESP-IDF: keeps the task watchdog quiet during long training runs). */
void tl_board_yield(void);

/* The end of the program: QEMU exits with `status`; a device stays alive (console echo). */
void tl_board_exit(int status);

/* The board's name and where the arena lives, for the banner. */
const char *tl_board_name(void);

/* The training arena: `size` bytes, 8-byte aligned, for the whole run; NULL if it cannot be
 * had. `static_arena` is the application's static buffer (TL_BOARD_STATIC_ARENA), or NULL.
 * `*where` says where it is. */
uint8_t *tl_board_arena(uint8_t *static_arena, uint32_t size, const char **where);

/* Wait ms milliseconds (no-op under QEMU, which has no clock here). */
void tl_board_delay_ms(uint32_t ms);

/* Console output helpers (tl_board_common.c): no printf, no float. */
void tl_print(const char *text);
void tl_print_u32(uint32_t value);
void tl_print_i32(int32_t value);
void tl_print_percent(uint32_t part, uint32_t whole); /* "75.0%" (one decimal, rounded down) */
void tl_print_q10(int32_t value);                     /* a Q10 fixed-point number: "0.512" */

/* The checkpoint storage of this board (see tl_storage.h): ESP32 partition or NVS, STM32
 * flash sectors, RAM under QEMU. Never NULL; its open() may still fail. */
const tl_storage *tl_board_storage(void);

/* The adapter-slot region of this board (tl_adapter.h's layout: two active-record erase units,
 * then *slots slots of *slot_size bytes), or NULL with *slots = 0 when it has none: RAM under
 * QEMU (its size from tl_board_config.h), the [adapters] region of boards/<board>.toml on a
 * device. */
const tl_storage *tl_board_adapter_storage(uint32_t *slot_size, uint32_t *slots);

/*
 * Where the arena lives.
 *
 * ESP32 (the original): at most 160 KB of DRAM can be allocated statically -- the rest can
 * only be heap (ESP-IDF, "Memory Types", DRAM) -- and ESP-IDF's own static data shares that
 * space, so a large static arena overflows `dram0_0_seg` at link time. The arena is therefore
 * taken once at boot from the internal heap (heap_caps_malloc(MALLOC_CAP_INTERNAL |
 * MALLOC_CAP_8BIT)) and never freed: no static DRAM, no fragmentation. Every other target
 * (ESP32-S3/-C3, STM32, QEMU) links it as a static buffer in .bss.
 */
#if defined(ESP_PLATFORM)
#include "sdkconfig.h"
#if defined(CONFIG_IDF_TARGET_ESP32)
#define TL_BOARD_STATIC_ARENA 0
#endif
#endif
#ifndef TL_BOARD_STATIC_ARENA
#define TL_BOARD_STATIC_ARENA 1
#endif

/* The program's entry point: `int run(void)` returns the exit status (0: success). */
#if defined(ESP_PLATFORM)
#define TL_BOARD_MAIN(run)                                                                         \
    void app_main(void)                                                                            \
    {                                                                                              \
        tl_board_init();                                                                           \
        tl_board_exit(run());                                                                      \
    }
#else
#define TL_BOARD_MAIN(run)                                                                         \
    int main(void)                                                                                 \
    {                                                                                              \
        int status;                                                                                \
        tl_board_init();                                                                           \
        status = run();                                                                            \
        tl_board_exit(status);                                                                     \
        return status;                                                                             \
    }
#endif

#ifdef __cplusplus
}
#endif

#endif /* TL_BOARD_H */
