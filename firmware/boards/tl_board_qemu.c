/*
 * tl_board for QEMU and other hosted builds (neither ESP-IDF nor STM32Cube): the console is
 * QEMU's standard input and output, there is no clock, checkpoints go to RAM (kept in a host
 * file with -D TL_QEMU_STORAGE_FILE), and the program's exit status ends the emulation.
 *
 *   core        console                                         exit status, host files
 *   Cortex-M    semihosting (newlib rdimon)                     semihosting
 *   Xtensa      semihosting (simcall)                           semihosting
 *   RISC-V      the virt machine's NS16550A UART at 0x10000000  semihosting (picolibc)
 *               (QEMU's riscv semihosting console reads no input: SYS_READ returns nothing,
 *               SYS_READC never reports the end; measured with QEMU 7.2)
 *
 * The input ends at the end of QEMU's standard input or at an EOT byte (0x04, Ctrl-D): a UART
 * has no end of input, so piped input for the RISC-V console ends with EOT.
 */
#if !defined(ESP_PLATFORM) && !defined(USE_HAL_DRIVER)

#include "tl_board.h"
#include "tl_board_config.h"

#define TL_QEMU_EOT 0x04 /* end of transmission: the input ends here */

#if defined(__riscv)
#include <stdio.h>

/* The NS16550A of QEMU's virt machine (one byte per register): receive / transmit holding
 * register, line status (bit 0: a byte waits; bit 5: room to transmit). Used as QEMU resets
 * it, FIFOs off: QEMU holds the input back until the byte before is read (enabling the FIFOs
 * would clear them, losing what arrived before). */
#define TL_UART ((volatile uint8_t *)0x10000000u)
#define TL_UART_DATA 0u
#define TL_UART_LSR 5u
#define TL_UART_LSR_READY 0x01u
#define TL_UART_LSR_EMPTY 0x20u

/* One byte of the UART: blocks (there is no clock to time out with). */
static int tl_read_byte(void)
{
    while ((TL_UART[TL_UART_LSR] & TL_UART_LSR_READY) == 0u) {
    }
    return (int)TL_UART[TL_UART_DATA];
}

static void tl_console_write(const char *data, size_t n)
{
    size_t i;
    for (i = 0; i < n; ++i) {
        while ((TL_UART[TL_UART_LSR] & TL_UART_LSR_EMPTY) == 0u) {
        }
        TL_UART[TL_UART_DATA] = (uint8_t)data[i];
    }
}
#else
/* Provided by the target support code of tools/platform-tinylora-qemu (semihosting write). */
void tl_target_write(const char *data, size_t len);

static void tl_console_write(const char *data, size_t n)
{
    tl_target_write(data, n);
}

#if defined(__XTENSA__)
int tl_simcall(int call, int a, int b, int c); /* the platform's xtensa/start.S */

/* One byte of QEMU's standard input: semihosting read(0, &c, 1). */
static int tl_read_byte(void)
{
    unsigned char c = 0;
    return tl_simcall(3, 0, (int)(uintptr_t)&c, 1) == 1 ? (int)c : -1;
}
#else
#include <stdio.h>

/* One byte of QEMU's standard input (newlib's rdimon semihosting). */
static int tl_read_byte(void)
{
    const int c = getchar();
    return c == EOF ? -1 : c;
}
#endif
#endif

void tl_board_init(void)
{
}

void tl_board_write(const char *data, size_t n)
{
    tl_console_write(data, n);
}

int tl_board_read_char(uint32_t timeout_ms)
{
    const int c = tl_read_byte(); /* blocks: there is no clock to time out with */
    (void)timeout_ms;
    return c < 0 || c == TL_QEMU_EOT ? TL_BOARD_EOF : c;
}

uint32_t tl_board_millis(void)
{
    return 0u;
}

void tl_board_delay_ms(uint32_t ms)
{
    (void)ms;
}

void tl_board_yield(void)
{
}

void tl_board_exit(int status)
{
    (void)status; /* main returns it: the C runtime ends QEMU with it */
}

/* The emulated core: the one this program was compiled for, not the project's board. */
#if defined(__XTENSA__)
#define TL_QEMU_CORE "Xtensa"
#elif defined(__riscv)
#define TL_QEMU_CORE "RISC-V"
#elif defined(__arm__)
#define TL_QEMU_CORE "Arm Cortex-M"
#else
#define TL_QEMU_CORE "host"
#endif

const char *tl_board_name(void)
{
    return "QEMU " TL_QEMU_CORE " (the " TL_BOARD_NAME " project)";
}

uint8_t *tl_board_arena(uint8_t *static_arena, uint32_t size, const char **where)
{
    (void)size;
    *where = "static .bss";
    return static_arena;
}

static uint8_t tl_ram_medium[TL_STORAGE_RAM_SIZE];
static tl_storage_ram tl_ram;
static const tl_storage *tl_storage_instance;

#if defined(TL_QEMU_STORAGE_FILE) && !defined(__XTENSA__)
/*
 * -D TL_QEMU_STORAGE_FILE (Cortex-M and RISC-V): the RAM medium is kept in the host file
 * tinylora-storage.bin in QEMU's working directory (semihosting), so the next run restores the
 * checkpoints of this one, as a board does after a reset. Every erase and write goes to the
 * file at once; stopping QEMU between the checkpoint store's writes tears a checkpoint as a
 * power cut would.
 */
#define TL_QEMU_STORAGE_PATH "tinylora-storage.bin"

static FILE *tl_file;
static tl_storage tl_file_storage;

static tl_status tl_file_sync(uint32_t offset, uint32_t len)
{
    if (tl_file == NULL || fseek(tl_file, (long)offset, SEEK_SET) != 0 ||
        fwrite(tl_ram_medium + offset, 1, len, tl_file) != len || fflush(tl_file) != 0) {
        return TL_ERR_IO;
    }
    return TL_OK;
}

static tl_status tl_file_open(void *ctx)
{
    (void)ctx;
    return tl_file != NULL ? TL_OK : TL_ERR_OPEN;
}

static tl_status tl_file_read(void *ctx, uint32_t offset, uint8_t *dst, uint32_t len)
{
    (void)ctx;
    return tl_ram.storage.read(&tl_ram, offset, dst, len);
}

static tl_status tl_file_erase(void *ctx, uint32_t offset, uint32_t len)
{
    const tl_status status = tl_ram.storage.erase(&tl_ram, offset, len);
    (void)ctx;
    return status != TL_OK ? status : tl_file_sync(offset, len);
}

static tl_status tl_file_write(void *ctx, uint32_t offset, const uint8_t *src, uint32_t len)
{
    const tl_status status = tl_ram.storage.program(&tl_ram, offset, src, len);
    (void)ctx;
    return status != TL_OK ? status : tl_file_sync(offset, len);
}

const tl_storage *tl_board_storage(void)
{
    if (tl_storage_instance == NULL) {
        (void)tl_storage_ram_init(&tl_ram, tl_ram_medium, TL_STORAGE_RAM_SIZE,
                                  TL_STORAGE_RAM_ERASE_UNIT, TL_STORAGE_PROGRAM_UNIT);
        tl_file = fopen(TL_QEMU_STORAGE_PATH, "r+b");
        if (tl_file != NULL) {
            (void)fread(tl_ram_medium, 1, TL_STORAGE_RAM_SIZE, tl_file); /* short: erased */
        } else {
            tl_file = fopen(TL_QEMU_STORAGE_PATH, "w+b");
            (void)tl_file_sync(0u, TL_STORAGE_RAM_SIZE);
        }
        tl_file_storage = tl_ram.storage;
        tl_file_storage.ctx = NULL;
        tl_file_storage.name = "RAM (kept in " TL_QEMU_STORAGE_PATH ")";
        tl_file_storage.open = tl_file_open;
        tl_file_storage.read = tl_file_read;
        tl_file_storage.erase = tl_file_erase;
        tl_file_storage.program = tl_file_write;
        tl_storage_instance = &tl_file_storage;
    }
    return tl_storage_instance;
}
#else
const tl_storage *tl_board_storage(void)
{
    if (tl_storage_instance == NULL) {
        tl_storage_instance =
            tl_storage_ram_init(&tl_ram, tl_ram_medium, TL_STORAGE_RAM_SIZE,
                                TL_STORAGE_RAM_ERASE_UNIT, TL_STORAGE_PROGRAM_UNIT);
    }
    return tl_storage_instance;
}
#endif

#if TL_ADAPTER_SLOTS > 0
/* The adapter region in RAM: two active-record units and TL_ADAPTER_SLOTS slots. */
static uint8_t tl_adapter_medium[TL_ADAPTER_RAM_SIZE];
static tl_storage_ram tl_adapter_ram;
static const tl_storage *tl_adapter_instance;

const tl_storage *tl_board_adapter_storage(uint32_t *slot_size, uint32_t *slots)
{
    if (tl_adapter_instance == NULL) {
        tl_adapter_instance =
            tl_storage_ram_init(&tl_adapter_ram, tl_adapter_medium, TL_ADAPTER_RAM_SIZE,
                                TL_ADAPTER_RAM_UNIT, TL_STORAGE_PROGRAM_UNIT);
        tl_adapter_ram.storage.name = "RAM";
    }
    *slot_size = TL_ADAPTER_RAM_SLOT_SIZE;
    *slots = TL_ADAPTER_SLOTS;
    return tl_adapter_instance;
}
#else
const tl_storage *tl_board_adapter_storage(uint32_t *slot_size, uint32_t *slots)
{
    *slot_size = 0u;
    *slots = 0u;
    return NULL;
}
#endif

#else
typedef int tl_board_qemu_unused; /* ISO C: a translation unit is not empty */
#endif
