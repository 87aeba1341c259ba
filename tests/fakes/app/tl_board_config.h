/*
 * A test double of a generated project's tl_board_config.h (tests/test_app_c.py).
 */
#ifndef TL_BOARD_CONFIG_H
#define TL_BOARD_CONFIG_H

#define TL_BOARD_NAME "fake"
#define TL_BOARD_TITLE "a test double"
#define TL_STORAGE_RAM_SIZE 1024u
#define TL_STORAGE_RAM_ERASE_UNIT 256u
#define TL_STORAGE_SIZE 0x400u
#define TL_STORAGE_ERASE_UNIT 0x100u
#define TL_STORAGE_PROGRAM_UNIT 4u
#ifndef TL_ADAPTER_SLOTS
#define TL_ADAPTER_SLOTS 3u /* adapter slots: RAM, 2 record units of 256 B, 3 slots of 256 B */
#endif
#define TL_ADAPTER_RAM_UNIT 256u
#define TL_ADAPTER_SLOT_SIZE 0x1000u
#define TL_ADAPTER_ERASE_UNIT 0x1000u
#define TL_ADAPTER_REGION_SIZE (2u * TL_ADAPTER_ERASE_UNIT + TL_ADAPTER_SLOTS * TL_ADAPTER_SLOT_SIZE)
#define TL_ADAPTER_RAM_SLOT_SIZE 256u
#define TL_ADAPTER_RAM_SIZE (2u * TL_ADAPTER_RAM_UNIT + TL_ADAPTER_SLOTS * TL_ADAPTER_RAM_SLOT_SIZE)

#if defined(ESP_PLATFORM) /* the ESP-IDF board files against tests/fakes/esp_idf */
#define TL_STORAGE_PARTITION_LABEL "tinylora"
#define TL_STORAGE_PARTITION_TYPE 0x40
#define TL_STORAGE_PARTITION_SUBTYPE 0x00
#define TL_STORAGE_NVS_CHUNK 1024u
#define TL_STORAGE_NVS_CHUNKS 16u
#define TL_CONSOLE_UART_NUM 0
#endif

#if defined(USE_HAL_DRIVER) /* the STM32Cube board files against tests/fakes/stm32 */
#define TL_STORAGE_ADDRESS 0x08060000u
#define TL_STORAGE_FIRST_SECTOR 7u
#define TL_STORAGE_BANK 1
#define TL_STM32_HAL_H "stm32_hal_fake.h"
#define TL_CONSOLE_UART USART2
#define TL_CONSOLE_UART_CLK_ENABLE() __HAL_RCC_USART2_CLK_ENABLE()
#define TL_CONSOLE_GPIO_PORT GPIOA
#define TL_CONSOLE_GPIO_CLK_ENABLE() __HAL_RCC_GPIOA_CLK_ENABLE()
#define TL_CONSOLE_TX_PIN GPIO_PIN_2
#define TL_CONSOLE_RX_PIN GPIO_PIN_3
#define TL_CONSOLE_AF GPIO_AF7_USART2
#endif

#endif /* TL_BOARD_CONFIG_H */
