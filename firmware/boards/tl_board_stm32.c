/*
 * tl_board for STM32Cube (the NUCLEO boards): HAL, console on the ST-LINK virtual COM port
 * (TL_CONSOLE_UART, 115200 8N1), SysTick for time, checkpoints in internal flash
 * (tl_storage_stm32_flash.c).
 *
 * Clock: the core runs at its reset clock (HSI 16 MHz on F4/F7, HSI 64 MHz on H7, MSI 4 MHz
 * on L4), which is correct but slow. For full speed, define tl_board_stm32_clock() in your
 * code with STM32CubeMX's SystemClock_Config body; the UART's baud rate follows the clock.
 */
#if defined(USE_HAL_DRIVER) && !defined(ESP_PLATFORM)

#include "tl_board_config.h" /* TL_STM32_HAL_H: the family's HAL header */
#include TL_STM32_HAL_H

#include "tl_board.h"

const tl_storage *tl_storage_stm32_flash(void);
const tl_storage *tl_storage_stm32_adapters(void);

static UART_HandleTypeDef tl_uart;

/* HAL's time base: without this handler the startup file's default one hangs. */
void SysTick_Handler(void);

void SysTick_Handler(void)
{
    HAL_IncTick();
}

/* Replace with your clock tree (STM32CubeMX: SystemClock_Config). */
__attribute__((weak)) void tl_board_stm32_clock(void);

__attribute__((weak)) void tl_board_stm32_clock(void)
{
}

void tl_board_init(void)
{
    GPIO_InitTypeDef pins;
    HAL_Init();
    tl_board_stm32_clock();
#if defined(TL_STM32_F7) || defined(TL_STM32_H7)
    SCB_EnableICache();
    SCB_EnableDCache();
#endif
    TL_CONSOLE_GPIO_CLK_ENABLE();
    TL_CONSOLE_UART_CLK_ENABLE();
    pins.Pin = TL_CONSOLE_TX_PIN | TL_CONSOLE_RX_PIN;
    pins.Mode = GPIO_MODE_AF_PP;
    pins.Pull = GPIO_PULLUP;
    pins.Speed = GPIO_SPEED_FREQ_HIGH;
    pins.Alternate = TL_CONSOLE_AF;
    HAL_GPIO_Init(TL_CONSOLE_GPIO_PORT, &pins);
    tl_uart.Instance = TL_CONSOLE_UART;
    tl_uart.Init.BaudRate = 115200;
    tl_uart.Init.WordLength = UART_WORDLENGTH_8B;
    tl_uart.Init.StopBits = UART_STOPBITS_1;
    tl_uart.Init.Parity = UART_PARITY_NONE;
    tl_uart.Init.Mode = UART_MODE_TX_RX;
    tl_uart.Init.HwFlowCtl = UART_HWCONTROL_NONE;
    tl_uart.Init.OverSampling = UART_OVERSAMPLING_16;
    HAL_UART_Init(&tl_uart);
}

void tl_board_write(const char *data, size_t n)
{
    HAL_UART_Transmit(&tl_uart, (uint8_t *)(uintptr_t)data, (uint16_t)n, 1000);
}

int tl_board_read_char(uint32_t timeout_ms)
{
    uint8_t c;
    if (HAL_UART_Receive(&tl_uart, &c, 1, timeout_ms) == HAL_OK) {
        return (int)c;
    }
    __HAL_UART_CLEAR_OREFLAG(&tl_uart); /* bytes that came while training are lost */
    return TL_BOARD_NO_CHAR;
}

uint32_t tl_board_millis(void)
{
    return HAL_GetTick();
}

void tl_board_delay_ms(uint32_t ms)
{
    HAL_Delay(ms);
}

void tl_board_yield(void)
{
}

void tl_board_exit(int status)
{
    (void)status;
    for (;;) {
        __WFI(); /* nothing returns from main on a microcontroller */
    }
}

const char *tl_board_name(void)
{
    return TL_BOARD_TITLE;
}

uint8_t *tl_board_arena(uint8_t *static_arena, uint32_t size, const char **where)
{
    (void)size;
    *where = "static .bss";
    return static_arena;
}

const tl_storage *tl_board_storage(void)
{
    return tl_storage_stm32_flash();
}

const tl_storage *tl_board_adapter_storage(uint32_t *slot_size, uint32_t *slots)
{
    const tl_storage *region = tl_storage_stm32_adapters(); /* the [adapters] sectors */
    *slot_size = region != NULL ? TL_ADAPTER_SLOT_SIZE : 0u;
    *slots = region != NULL ? TL_ADAPTER_SLOTS : 0u;
    return region;
}

#else
typedef int tl_board_stm32_unused; /* ISO C: a translation unit is not empty */
#endif
