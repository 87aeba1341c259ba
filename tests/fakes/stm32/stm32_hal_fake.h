/*
 * Declarations of the few STM32Cube HAL names firmware/boards uses, with the HAL's shapes, so
 * that tests/test_app_c.py can compile the board files for the host with -Werror (compile
 * only: nothing here is defined or run). tests/fakes/app/tl_board_config.h names it as
 * TL_STM32_HAL_H.
 */
#ifndef STM32_HAL_FAKE_H
#define STM32_HAL_FAKE_H

#include <stdint.h>

typedef enum { HAL_OK = 0, HAL_ERROR = 1 } HAL_StatusTypeDef;
void HAL_Init(void);
void HAL_IncTick(void);
uint32_t HAL_GetTick(void);
void HAL_Delay(uint32_t ms);

typedef struct {
    uint32_t Pin, Mode, Pull, Speed, Alternate;
} GPIO_InitTypeDef;
typedef struct {
    uint32_t MODER;
} GPIO_TypeDef;
extern GPIO_TypeDef tl_fake_gpioa;
#define GPIOA (&tl_fake_gpioa)
#define GPIO_PIN_2 (1u << 2)
#define GPIO_PIN_3 (1u << 3)
#define GPIO_MODE_AF_PP 2u
#define GPIO_PULLUP 1u
#define GPIO_SPEED_FREQ_HIGH 2u
#define GPIO_AF7_USART2 7u
void HAL_GPIO_Init(GPIO_TypeDef *port, GPIO_InitTypeDef *init);
#define __HAL_RCC_GPIOA_CLK_ENABLE() ((void)0)
#define __HAL_RCC_USART2_CLK_ENABLE() ((void)0)

typedef struct {
    uint32_t SR;
} USART_TypeDef;
extern USART_TypeDef tl_fake_usart2;
#define USART2 (&tl_fake_usart2)
typedef struct {
    uint32_t BaudRate, WordLength, StopBits, Parity, Mode, HwFlowCtl, OverSampling;
} UART_InitTypeDef;
typedef struct {
    USART_TypeDef *Instance;
    UART_InitTypeDef Init;
} UART_HandleTypeDef;
#define UART_WORDLENGTH_8B 0u
#define UART_STOPBITS_1 0u
#define UART_PARITY_NONE 0u
#define UART_MODE_TX_RX 12u
#define UART_HWCONTROL_NONE 0u
#define UART_OVERSAMPLING_16 0u
HAL_StatusTypeDef HAL_UART_Init(UART_HandleTypeDef *uart);
HAL_StatusTypeDef HAL_UART_Transmit(UART_HandleTypeDef *uart, uint8_t *data, uint16_t size,
                                    uint32_t timeout);
HAL_StatusTypeDef HAL_UART_Receive(UART_HandleTypeDef *uart, uint8_t *data, uint16_t size,
                                   uint32_t timeout);
#define __HAL_UART_CLEAR_OREFLAG(uart) ((void)(uart))

typedef struct {
    uint32_t TypeErase, Banks, Sector, NbSectors, Page, NbPages, VoltageRange;
} FLASH_EraseInitTypeDef;
#define FLASH_TYPEERASE_SECTORS 0u
#define FLASH_TYPEERASE_PAGES 0u
#define FLASH_BANK_1 1u
#define FLASH_BANK_2 2u
#define FLASH_VOLTAGE_RANGE_3 2u
#define FLASH_TYPEPROGRAM_BYTE 0u
#define FLASH_TYPEPROGRAM_DOUBLEWORD 3u
#define FLASH_TYPEPROGRAM_FLASHWORD 1u
HAL_StatusTypeDef HAL_FLASH_Unlock(void);
HAL_StatusTypeDef HAL_FLASH_Lock(void);
HAL_StatusTypeDef HAL_FLASHEx_Erase(FLASH_EraseInitTypeDef *erase, uint32_t *failed);
HAL_StatusTypeDef HAL_FLASH_Program(uint32_t type, uint32_t address, uint64_t data);

void SCB_EnableICache(void);
void SCB_EnableDCache(void);
void SCB_InvalidateDCache_by_Addr(void *address, int32_t size);
void __WFI(void);

#endif /* STM32_HAL_FAKE_H */
