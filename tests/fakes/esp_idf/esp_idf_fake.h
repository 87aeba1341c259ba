/*
 * Declarations of the few ESP-IDF names firmware/boards uses, with ESP-IDF's shapes, so that
 * tests/test_app_c.py can compile the board files for the host with -Werror (compile only:
 * nothing here is defined or run). Every header of this folder includes this one.
 */
#ifndef ESP_IDF_FAKE_H
#define ESP_IDF_FAKE_H

#include <stddef.h>
#include <stdint.h>

typedef int esp_err_t;
#define ESP_OK 0
#define ESP_ERR_NVS_NOT_FOUND 0x1102
#define ESP_ERR_NVS_NO_FREE_PAGES 0x110d
#define ESP_ERR_NVS_NEW_VERSION_FOUND 0x1110

/* FreeRTOS */
typedef uint32_t TickType_t;
#define pdMS_TO_TICKS(ms) ((TickType_t)(ms))
void vTaskDelay(TickType_t ticks);

/* driver/uart.h */
typedef int uart_port_t;
typedef enum { UART_DATA_8_BITS = 3 } uart_word_length_t;
typedef enum { UART_PARITY_DISABLE = 0 } uart_parity_t;
typedef enum { UART_STOP_BITS_1 = 1 } uart_stop_bits_t;
typedef enum { UART_HW_FLOWCTRL_DISABLE = 0 } uart_hw_flowcontrol_t;
typedef struct {
    int baud_rate;
    uart_word_length_t data_bits;
    uart_parity_t parity;
    uart_stop_bits_t stop_bits;
    uart_hw_flowcontrol_t flow_ctrl;
    uint8_t rx_flow_ctrl_thresh;
    int source_clk;
} uart_config_t;
typedef void *QueueHandle_t;
esp_err_t uart_driver_install(uart_port_t port, int rx_size, int tx_size, int queue_size,
                              QueueHandle_t *queue, int flags);
int uart_is_driver_installed(uart_port_t port);
esp_err_t uart_param_config(uart_port_t port, const uart_config_t *config);
int uart_write_bytes(uart_port_t port, const void *src, size_t size);
int uart_read_bytes(uart_port_t port, void *buf, uint32_t length, TickType_t ticks);
esp_err_t uart_wait_tx_done(uart_port_t port, TickType_t ticks);

/* esp_timer.h, esp_heap_caps.h */
int64_t esp_timer_get_time(void);
#define MALLOC_CAP_8BIT (1u << 2)
#define MALLOC_CAP_INTERNAL (1u << 11)
void *heap_caps_malloc(size_t size, uint32_t caps);

/* esp_partition.h */
typedef int esp_partition_type_t;
typedef int esp_partition_subtype_t;
typedef struct {
    uint32_t address;
    uint32_t size;
} esp_partition_t;
const esp_partition_t *esp_partition_find_first(esp_partition_type_t type,
                                                esp_partition_subtype_t subtype, const char *label);
esp_err_t esp_partition_read(const esp_partition_t *p, size_t offset, void *dst, size_t size);
esp_err_t esp_partition_write(const esp_partition_t *p, size_t offset, const void *src,
                              size_t size);
esp_err_t esp_partition_erase_range(const esp_partition_t *p, size_t offset, size_t size);

/* nvs.h, nvs_flash.h */
typedef uint32_t nvs_handle_t;
typedef enum { NVS_READONLY, NVS_READWRITE } nvs_open_mode_t;
esp_err_t nvs_flash_init(void);
esp_err_t nvs_flash_erase(void);
esp_err_t nvs_open(const char *name, nvs_open_mode_t mode, nvs_handle_t *handle);
esp_err_t nvs_get_blob(nvs_handle_t handle, const char *key, void *out, size_t *length);
esp_err_t nvs_set_blob(nvs_handle_t handle, const char *key, const void *value, size_t length);
esp_err_t nvs_erase_key(nvs_handle_t handle, const char *key);
esp_err_t nvs_commit(nvs_handle_t handle);

#endif /* ESP_IDF_FAKE_H */
